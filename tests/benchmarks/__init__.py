"""Tests of the harness: CLI, runner, results, leaderboard, site, sweeps, tuning."""
