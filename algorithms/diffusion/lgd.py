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

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import randn
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import batch_dot
from priors.base import Prior
from priors.schedules import vp_sigmas


class LGD(Algorithm):
    """LGD-MC: ancestral DDPM steps guided by the data loss averaged over n_mc draws around x̂0 (backprop)."""

    def __init__(self, n_steps: int = 1000, zeta: float = 1.7e-3, n_mc: int = 3, vp_step: bool = True) -> None:
        super().__init__()
        if n_steps < 1 or n_mc < 1:
            raise ValueError(f"need n_steps >= 1 and n_mc >= 1, got {n_steps} and {n_mc}")
        if zeta < 0:
            raise ValueError(f"zeta (the guidance scale) must be >= 0, got {zeta}")
        self.n_steps, self.zeta, self.n_mc, self.vp_step = n_steps, zeta, n_mc, vp_step

    def loss(self, x0: Tensor, sigma: float, y: Tensor, operator: ForwardOperator,
             generator: torch.Generator | None) -> Tensor:
        """(B,) sqrt(mean_j ||y - A (x0 + r eps_j)||^2), r = sigma / sqrt(1 + sigma^2), differentiable in x0."""
        r = sigma / (1 + sigma**2) ** 0.5
        total = 0.0
        for _ in range(self.n_mc):  # the draws, not the samples: every operator applies to the whole batch
            res = y - operator.forward(x0 + r * randn(x0, generator))
            total = total + batch_dot(res, res)
        return (total / self.n_mc + 1e-20).sqrt()

    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        sigmas = vp_sigmas(self.n_steps).tolist()
        shape = (y.shape[0], *operator.image_shape)
        x = sigmas[0] * randn(torch.empty(shape, device=y.device), generator)
        for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
            sigma = torch.full((shape[0],), s, device=y.device)
            with torch.enable_grad():
                x_in = x.detach().requires_grad_(True)
                x0_net = self.denoise(prior, x_in, sigma)
                x0 = self.step(callback, Step(i, self.n_steps, sigma, x.detach(), x0_net.detach(), y, operator, prior))
                x0_used = x0_net + (x0 - x0_net).detach()  # the callback's value, the network's gradient
                grad = torch.autograd.grad(self.loss(x0_used, s, y, operator, generator).sum(), x_in)[0]
            x0 = x0.detach()
            ratio = s_next**2 / s**2
            x = x0 + ratio * (x.detach() - x0)
            if s_next > 0:
                x = x + s_next * (1 - ratio) ** 0.5 * randn(x, generator)
            scale = ((1 + s**2) * (1 + s_next**2)) ** 0.5 if self.vp_step else 1.0
            x = self.monitor.check(i, x - self.zeta * scale * grad)
        return x.detach()
