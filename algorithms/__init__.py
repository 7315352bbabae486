"""Reconstruction algorithms: diffusion solvers, classical and end-to-end baselines."""
from algorithms.base import Algorithm, DivergenceMonitor, Reconstruction, Step, StepCallback

__all__ = ["Algorithm", "DivergenceMonitor", "Reconstruction", "Step", "StepCallback"]
