"""Reconstruction algorithms: diffusion solvers, classical and end-to-end baselines.

The names below are loaded from algorithms.base on first use, so that a torch-free module below
(algorithms.networks.training_config, which `bench train-recon --help` reads) imports no torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from algorithms.base import Algorithm, DivergenceMonitor, Reconstruction, Step, StepCallback

__all__ = ["Algorithm", "DivergenceMonitor", "Reconstruction", "Step", "StepCallback"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import algorithms.base

        return getattr(algorithms.base, name)
    raise AttributeError(f"module 'algorithms' has no attribute {name!r}")
