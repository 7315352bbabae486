"""Denoisers D(x, sigma) = E[x0 | x0 + sigma * eps = x] in the EDM (variance-exploding) convention.

Knows nothing of algorithms, adaptation or the harness. `Prior` is loaded on first use, so that a torch-free module
below (priors.training.config, which `bench train-prior --help` reads) imports no torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from priors.base import Prior

__all__ = ["Prior"]


def __getattr__(name: str) -> Any:
    if name == "Prior":
        from priors.base import Prior

        return Prior
    raise AttributeError(f"module 'priors' has no attribute {name!r}")
