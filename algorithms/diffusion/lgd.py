"""Loss-guided diffusion with Monte Carlo over x̂0, LGD-MC (Song, Zhang, Yin, Mardani, Liu, Kautz, Chen, Vahdat,
ICML 2023; no official release: InverseBench `algo/lgd.py`).

DPS's guidance with the point estimate x̂0 replaced by draws from N(x̂0, r_t^2 I), r_t = sigma / sqrt(1 + sigma^2) (the
paper's p(x0 | x_t) for unit-variance data): with x0_j = x̂0(x_t) + r_t eps_j, j = 1..n_mc,
    L(x_t) = sqrt(mean_j ||y - A x0_j||^2)     (per sample; n_mc = 1 and r_t = 0 give DPS's ||y - A x̂0||)
and the step is DPS's: the ancestral DDPM step in EDM variables x' = x̂0 + (s'^2/s^2)(x - x̂0) + s' sqrt(1 - s'^2/s^2) z
on the VP-linear grid, then x' - zeta c_t grad_{x_t} L (backprop through the denoiser), c_t = sqrt((1 + s^2)(1 + s'^2))
with `vp_step` (the step taken in VP coordinates, as InverseBench's VP sampler does). For a linear A the draws give
E mean_j ||y - A x0_j||^2 = ||y - A x̂0||^2 + r_t^2 ||A||_F^2: as n_mc grows the guidance tends to
J^T A^H (A x̂0 - y) / sqrt(||y - A x̂0||^2 + r_t^2 ||A||_F^2).
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.diffusion.data_consistency import randn
from algorithms.diffusion.dps import DPS
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import batch_dot


class LGD(DPS):
    """LGD-MC: ancestral DDPM steps guided by the data loss averaged over n_mc draws around x̂0 (backprop)."""

    def __init__(self, n_steps: int = 1000, zeta: float = 1.7e-3, n_mc: int = 3, vp_step: bool = True) -> None:
        if n_mc < 1:
            raise ValueError(f"n_mc (the draws around x̂0) must be >= 1, got {n_mc}")
        super().__init__(n_steps, zeta, vp_step)
        self.n_mc = n_mc

    def loss(self, x0: Tensor, sigma: float, y: Tensor, operator: ForwardOperator,
             generator: torch.Generator | None) -> Tensor:
        """(B,) sqrt(mean_j ||y - A (x0 + r eps_j)||^2), r = sigma / sqrt(1 + sigma^2), differentiable in x0."""
        r = sigma / (1 + sigma**2) ** 0.5
        total = 0.0
        for _ in range(self.n_mc):  # the draws, not the samples: every operator applies to the whole batch
            res = y - operator.forward(x0 + r * randn(x0, generator))
            total = total + batch_dot(res, res)
        return (total / self.n_mc + 1e-20).sqrt()
