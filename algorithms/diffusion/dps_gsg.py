"""DPS with Gaussian-smoothed gradient estimates, DPS-GSG (the zero-order DPS of Zheng et al. 2025, EnKG's paper;
InverseBench `algo/dps_gsg.py`). Derivative-free in the operator: the data-term gradient comes from forward calls.

With L(x0) = ||y - A x0||^2 and u_q ~ N(0, I), q = 1..n (n = n_queries/2 pairs), the central estimate is
    g = (1/(2 mu n)) sum_q [L(x0 + mu u_q) - L(x0 - mu u_q)] u_q        (forward: (1/(mu n)) sum_q [L(x0 + mu u_q) - L(x0)] u_q)
(unbiased for the gradient of the mu-smoothed L; exact in mean for a quadratic L). Per step on the poly-7 grid
(sigma 100 -> 0.01, then 0): x0 = D(x, sigma), the DDPM ancestral step x' in EDM variables, then
    x' <- x' - zeta J_D(x)^T g / (2 sqrt(L(x0)))
(the vector-Jacobian product through the denoiser: DPS's step on ||y - A x0|| with A's gradient replaced by g).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import randn
from algorithms.diffusion.particles import ancestral, data_loss, particle_noise
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import per_sample
from inverse_problems.operators.random import Randomness
from priors.base import Prior
from priors.schedules import karras_sigmas


def smoothed_gradient(loss: Callable[[Tensor], Tensor], x0: Tensor, n_queries: int, mu: float, central: bool,
                      generator: Randomness, batch: int = 256) -> Tensor:
    """Gaussian-smoothed estimate of grad loss at x0 (B, ...) from loss values only; `loss` maps particles (B, K, ...)
    to (B, K). n_queries loss evaluations per sample (central: n_queries/2 pairs), in batches of `batch`."""
    b, shape = x0.shape[0], tuple(x0.shape[1:])
    n = n_queries // 2 if central else n_queries
    base = None if central else loss(x0.unsqueeze(1))
    grad = torch.zeros_like(x0)
    for start in range(0, n, batch):
        u = particle_noise(b, min(batch, n - start), shape, generator, x0.device)
        plus = loss(x0.unsqueeze(1) + mu * u)
        diff = plus - loss(x0.unsqueeze(1) - mu * u) if central else plus - base
        grad = grad + (diff.view(*diff.shape, *([1] * len(shape))) * u).sum(1)
    return grad / ((2.0 if central else 1.0) * mu * n)


class DPSGSG(Algorithm):
    """DPS-GSG (derivative-free): DPS whose data-term gradient is a Gaussian-smoothed estimate from forward calls."""

    derivative_free = True

    def __init__(self, n_steps: int = 1000, zeta: float = 0.1, n_queries: int = 256, mu: float = 0.01,
                 central: bool = True, sigma_max: float = 100.0, sigma_min: float = 0.01, batch: int = 256) -> None:
        super().__init__()
        if n_steps < 1 or n_queries < 2 or batch < 1:
            raise ValueError(f"need n_steps >= 1, n_queries >= 2, batch >= 1; got {n_steps}, {n_queries}, {batch}")
        if zeta < 0 or mu <= 0 or not 0 < sigma_min < sigma_max:
            raise ValueError(f"need zeta >= 0, mu > 0 and 0 < sigma_min < sigma_max; got {zeta}, {mu}, "
                             f"{sigma_min}, {sigma_max}")
        self.n_steps, self.zeta, self.n_queries, self.mu, self.central = n_steps, zeta, n_queries, mu, central
        self.sigma_max, self.sigma_min, self.batch = sigma_max, sigma_min, batch

    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b = y.shape[0]
        sig = karras_sigmas(self.n_steps, min(self.sigma_max, float(prior.sigma_max)), self.sigma_min).tolist()
        x = sig[0] * randn(torch.empty((b, *operator.image_shape), device=y.device), generator)
        loss = lambda p: data_loss(operator, p, y)
        for i, (s, s_next) in enumerate(zip(sig[:-1], sig[1:])):
            sigma = torch.full((b,), s, device=y.device)
            with torch.enable_grad():
                x_in = x.detach().requires_grad_(True)
                x0_net = self.denoise(prior, x_in, sigma)
                x0 = self.step(callback, Step(i, self.n_steps, sigma, x.detach(), x0_net.detach(), y, operator, prior))
                with torch.no_grad():
                    g = smoothed_gradient(loss, x0, self.n_queries, self.mu, self.central, generator, self.batch)
                    g = g / per_sample(2 * loss(x0.unsqueeze(1)).squeeze(1).clamp_min(1e-30).sqrt(), g)
                grad = torch.autograd.grad(x0_net, x_in, g)[0]
            x = ancestral(x.detach(), x0.detach(), s, s_next, generator) - self.zeta * grad
            x = self.monitor.check(i, x)
        return x.detach()
