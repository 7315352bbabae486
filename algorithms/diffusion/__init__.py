"""Diffusion solvers (one per file; docs/solvers.md), their shared data-consistency steps (data_consistency) and the
particle and forward-only pieces of the derivative-free solvers (particles)."""
