"""Denoisers D(x, sigma) = E[x0 | x0 + sigma * eps = x] in the EDM (variance-exploding) convention.

Knows nothing of algorithms, adaptation or the harness.
"""
from priors.base import Prior

__all__ = ["Prior"]
