"""Denoising diffusion restoration models (Kawar et al., NeurIPS 2022; bahjat-kawar/ddrm).

In the SVD basis of A = U S V^T, with x̄ = V^T x, ȳ_i = (U^T y)_i / s_i and ε̂ = (x̄ - x̄0)/sigma, a step from
sigma to sigma' is, per spectral coordinate (METHODS.md, EDM variables):
    s_i = 0:                 x̄' = x̄0 + sqrt(1 - eta^2) sigma' ε̂ + eta sigma' z
    s_i sigma' < sigma_y:    x̄' = x̄0 + sqrt(1 - eta^2) sigma' s_i (ȳ_i - x̄0) / sigma_y + eta sigma' z
    otherwise:               x̄' = (1 - eta_b) x̄0 + eta_b ȳ_i + sqrt(sigma'^2 - eta_b^2 sigma_y^2 / s_i^2) z
Timesteps t = 0, T/n, ... of the VP-linear schedule (the official `range(0, T, T // n)`, visited from the top; where
n does not divide T the official range is longer than n and the first n are kept), then sigma = 0.
sigma_y is read at every step (test-time adaptation may set it). An operator without a closed-form SVD
(multi-coil SENSE) gets its exact SVD from its per-row eigenbasis under a line mask (`eigen_svd`), else from its
dense Gram matrix (inverse_problems.operators.dense) when its image has at most `dense_max` real coordinates
(8192: 64 x 64 complex); the SVD is that of the operator as given.
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import noise_level, randn, spectral_measurement, vp_grid
from inverse_problems.operators.base import ForwardOperator
from priors.base import Prior


class DDRM(Algorithm):
    """DDRM: a variational posterior chain in the operator's SVD basis (closed form, or dense when small)."""

    needs_svd = True

    def __init__(self, n_steps: int = 20, eta: float = 0.85, eta_b: float = 1.0, dense_max: int = 8192) -> None:
        super().__init__()
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if not (0 <= eta <= 1 and 0 <= eta_b <= 1):
            raise ValueError(f"eta and eta_b must lie in [0, 1], got eta={eta}, eta_b={eta_b}")
        self.n_steps, self.eta, self.eta_b, self.dense_max = n_steps, eta, eta_b, dense_max

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b = y.shape[0]
        svd = self.spectral(operator, b)
        s, obs, y_bar = spectral_measurement(svd, y)
        s_safe = torch.where(obs, s, torch.ones_like(s))

        def data_noise() -> tuple[Tensor, Tensor]:
            """sigma_y (B, 1) and sigma_y / s_i (inf where s_i = 0), read from the operator now."""
            sig_y = noise_level(operator, b, y.device).view(-1, 1)
            return sig_y, torch.where(obs, sig_y / s_safe, torch.full_like(s, float("inf")))

        sig_y, noise_of_y = data_noise()
        sigmas = vp_grid(self.n_steps, "uniform").tolist()
        z = randn(s, generator)
        x_bar = torch.where(noise_of_y < sigmas[0], y_bar + (sigmas[0]**2 - noise_of_y.clamp_max(sigmas[0])**2).sqrt() * z,
                            sigmas[0] * z)
        x = svd.V(x_bar)
        eta, eta_b = self.eta, self.eta_b
        for i, (sg, sn) in enumerate(zip(sigmas[:-1], sigmas[1:])):
            sigma = torch.full((b,), sg, device=y.device)
            x0 = self.denoise(prior, x, sigma)
            x0 = self.step(callback, Step(i, self.n_steps, sigma, x, x0, y, operator, prior))
            sig_y, noise_of_y = data_noise()  # after the step hook: TDA may have set the noise level
            x0_bar, x_bar = svd.Vt(x0), svd.Vt(x)
            z = randn(x0_bar, generator)
            missing = x0_bar + (1 - eta**2) ** 0.5 * sn * (x_bar - x0_bar) / sg + eta * sn * z
            residual = s * (y_bar - x0_bar) / torch.where(sig_y > 0, sig_y, torch.ones_like(sig_y))
            less_noisy = x0_bar + (1 - eta**2) ** 0.5 * sn * residual + eta * sn * z
            var = (sn**2 - eta_b**2 * noise_of_y.clamp_max(max(sn, 0.0))**2).clamp_min(0)
            noisier = (1 - eta_b) * x0_bar + eta_b * y_bar + var.sqrt() * z
            after = obs & (s * sn < sig_y)
            before = obs & (s * sn > sig_y)
            x_bar = torch.where(before, noisier, torch.where(after, less_noisy, missing))
            x = self.monitor.check(i, svd.V(x_bar))
        return x
