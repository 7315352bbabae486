"""Tests of algorithms: diffusion, classical and end-to-end solvers."""
