"""Denoisers D(x, sigma) = E[x0 | x0 + sigma * eps = x] in the EDM (variance-exploding) convention.

Knows nothing of algorithms, adaptation or the harness. `Prior` is loaded on first use, so that a torch-free module
below (priors.training.config, which `bench train-prior --help` reads) imports no torch. Part of the plugin API:
`EDMPrior` (priors.edm: an EDM network from a model.pt + model.json) and `SourceDomain` (priors.domain: its training
domain, read from a metadata.json), and `shipped_edm` (priors.shipped: both at once from a weights folder), for a
plugin that ships weights trained by `bench train-prior`; they are re-exported here rather than in priors.base, which
priors.edm imports.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from priors.base import Prior
    from priors.domain import SourceDomain
    from priors.edm import EDMPrior
    from priors.shipped import shipped_edm

__all__ = ["EDMPrior", "Prior", "SourceDomain", "shipped_edm"]


def __getattr__(name: str) -> Any:
    if name == "Prior":
        from priors.base import Prior

        return Prior
    if name == "EDMPrior":
        from priors.edm import EDMPrior

        return EDMPrior
    if name == "SourceDomain":
        from priors.domain import SourceDomain

        return SourceDomain
    if name == "shipped_edm":
        from priors.shipped import shipped_edm

        return shipped_edm
    raise AttributeError(f"module 'priors' has no attribute {name!r}")
