"""The harness: the `bench` CLI, registry, config composition, runner, metrics, results, leaderboard."""
