"""TDA: test-time degradation adaptation interleaved with the sampler (after Gou et al., ICML 2024, TAO).

Two adapters, one per kind of adapted degradation:

- `PhysicalTDA` (adaptation.sampler.tda_physical): the operator's own adaptable parameters, trained in place;
- `NetworkTDA` (adaptation.sampler.tda_network, registered as `tda-net`): TAO's conv adapter g around the operator.

The registered `tda` is `TDA` below: `kind=physical` (the default) builds the physical adapter and
`kind=network` the network one (`+tda adapters.tda.kind=network` is `+tda-net`), each from its own options; the
other kind's options are accepted (a run's config records them all) and not used.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from adaptation.sampler.tda_base import TDABase
from adaptation.sampler.tda_network import ConvAdapter, NetworkAdaptedOperator, NetworkTDA, apply_network
from adaptation.sampler.tda_physical import NONE, PhysicalTDA

KINDS = ("physical", "network")

__all__ = ["KINDS", "TDA", "ConvAdapter", "NetworkAdaptedOperator", "NetworkTDA", "PhysicalTDA", "TDABase",
           "apply_network"]


def TDA(kind: str = "physical", lr: float = 0.02, iters: int = 1, every: int = 1, sigma_max: float = 1.0,  # noqa: N802
        parameters: Sequence[str] | None = None, param_lr: Mapping[str, float] = NONE,
        param_lr_scale: Mapping[str, float] = NONE, param_sigma_max: Mapping[str, float] = NONE,
        estimate_noise: bool = True,
        where: str = "input", hidden: Sequence[int] = (16, 32), kernel: int = 3, activation: str = "none",
        lambda_identity: float = 1.0, lambda_tv: float = 0.0, lambda_adv: float = 0.0, disc_lr: float = 1e-4,
        disc_width: int = 32, seed: int = 0) -> TDABase:
    """Test-time degradation adaptation (TAO's TDA) per sampler step: the operator's parameters, or kind=network.

    kind=physical: `PhysicalTDA` from lr, iters, every, sigma_max, parameters, param_lr, param_lr_scale,
    param_sigma_max, estimate_noise; kind=network: `NetworkTDA` (also registered as `tda-net`) from lr, iters, every,
    sigma_max, where, hidden, kernel, activation, lambda_identity, lambda_tv, lambda_adv, disc_lr, disc_width, seed."""
    if kind == "physical":
        return PhysicalTDA(lr, iters, every, sigma_max, parameters, param_lr, param_lr_scale, param_sigma_max,
                           estimate_noise)
    if kind == "network":
        adapter = NetworkTDA(lr, iters, every, sigma_max, where, hidden, kernel, activation, lambda_identity, lambda_tv,
                             lambda_adv, disc_lr, disc_width, seed)
        adapter.name = "tda"  # its trace records carry the name it was chained under
        return adapter
    raise ValueError(f"unknown TDA kind {kind!r}; choose one of {KINDS}")
