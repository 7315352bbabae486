"""Diffusion posterior sampling (Chung et al., ICLR 2023; DPS2022/diffusion-posterior-sampling).

DDPM ancestral steps on the VP-linear grid, written in EDM variables: the DDPM posterior
q(x_{t-1} | x_t, x0) is exactly x' = x0 + (s'^2/s^2)(x_t - x0) + s' sqrt(1 - s'^2/s^2) z with s = sigma_t,
s' = sigma_{t-1}. Then the measurement gradient x_{t-1} = x' - zeta' c_t grad_{x_t} ||y - A x0(x_t)||,
with per-sample (un-squared) norms. With `vp_step` (default) c_t = sqrt((1 + s^2)(1 + s'^2)) makes the step
the official one taken in VP coordinates (x_vp = x / sqrt(1 + sigma^2)), so zeta' keeps its published values;
without it c_t = 1 (the step taken in EDM coordinates).
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


class DPS(Algorithm):
    """DPS: ancestral DDPM steps plus zeta' * grad ||y - A x0_hat(x_t)|| (backprop through the denoiser)."""

    needs_linear = False  # the data term is differentiated by autograd through operator.forward

    def __init__(self, n_steps: int = 1000, zeta: float = 0.5, vp_step: bool = True) -> None:
        super().__init__()
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if zeta < 0:
            raise ValueError(f"zeta (the step scale) must be >= 0, got {zeta}")
        self.n_steps, self.zeta, self.vp_step = n_steps, zeta, vp_step

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

    def loss(self, x0: Tensor, sigma: float, y: Tensor, operator: ForwardOperator,
             generator: torch.Generator | None) -> Tensor:
        """(B,) ||y - A x0|| per sample (smooth at 0), differentiable in x0: what the guidance descends."""
        r = y - operator.forward(x0)
        return (batch_dot(r, r) + 1e-20).sqrt()
