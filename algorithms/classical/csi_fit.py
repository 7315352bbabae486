"""The standard CSI pipeline: zero-filled inverse FFT over k-space, then a linear least-squares fit of the known
line shapes in every voxel (Brown et al., PNAS 79:3523 (1982); De Feyter et al., Sci. Adv. 4:eaat7314 (2018)
fit the 2H spectra per voxel the same way, with known line shapes).

With z(r, t) = (F^H M y)(r, t) the zero-filled voxel FIDs and Phi(r) the N_t x M basis of the operator
(phi_m(r, t): shifts, T2*, B0 map and the operator's current drift, linewidth and phase), the real maps are

    x(r) = argmin_{x in R^M} ||z(r, .) - Phi(r) x||^2 = (Re Phi^H Phi + damping I)^{-1} Re Phi^H z(r, .),

and Re Phi(r)^H z(r, .) is the operator's adjoint A^H y. Fully sampled noiseless data give the maps exactly.
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm
from inverse_problems.operators.base import ForwardOperator
from priors.base import Prior


class CSIFit(Algorithm):
    """Zero-filled FFT + per-voxel linear least-squares fit of the metabolite line shapes (MRSI operators)."""

    uses_prior = False
    project_support = False
    operator_needs = ("fit",)

    def __init__(self, damping: float = 0.0) -> None:
        super().__init__()
        if not damping >= 0:
            raise ValueError(f"damping must be >= 0, got {damping}")
        self.damping = float(damping)

    def check(self, operator: ForwardOperator, prior: Prior | None) -> None:
        if not hasattr(operator, "fit"):
            raise ValueError(f"csi-fit fits spectral line shapes and needs an MRSI operator (problem mrsi); "
                             f"{type(operator).__name__} has no line-shape fit: use zero-filled or cg-sense")
        super().check(operator, prior)

    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: torch.Generator | None,
            callback=None) -> Tensor:
        return operator.fit(y, self.damping)
