"""Filtering posterior sampling, FPS-SMC (Dou & Song, ICLR 2024; InverseBench `algo/fps.py`, the authors'
ZehaoDou-official/FPS-SMC-2023). A particle filter in A's SVD basis; the operator is used through forward calls only
when it is forward-only (its matrix probed from them, `dense_max` bounding the size).

With A = U S V^T, x̄ = V^T x and ȳ = S^+ U^T y (ȳ_i = x̄_i + c_i n_i on the observed coordinates, c_i = sigma_y/s_i):
1. the measurement sequence, a DDIM chain from ȳ_T = sigma_0 z̄ (the start's own noise): ȳ_{k+1} = ȳ +
   sqrt(1 - eta^2)(sigma_{k+1}/sigma_k)(ȳ_k - ȳ) + eta sigma_{k+1} e, ending at ȳ;
2. per step sigma -> sigma' and particle: x̂0 = D(V x̄, sigma), the DDIM prior kernel N(mu, tau^2),
   mu = x̄0 + sqrt(1 - eta^2)(sigma'/sigma)(x̄ - x̄0), tau = eta sigma', times the likelihood N(ȳ_{k+1}; x̄', c^2) on the
   observed coordinates: the exact conditional proposal, var v = (1/tau^2 + 1/c^2)^-1, mean v(mu/tau^2 + ȳ_{k+1}/c^2);
   weight N(ȳ_{k+1}; mu, tau^2 + c^2); multinomial resampling of the J particles.
Grid: the VP-SDE's sigma(t) = sqrt(exp(19.9 t^2/2 + 0.1 t) - 1), t from 1 to 1e-3 in n steps, then 0. The result is
one particle of the final set (`output="particle"`, a posterior draw) or their mean.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from algorithms.base import StepCallback
from algorithms.diffusion.data_consistency import randn
from algorithms.diffusion.particles import SpectralSMC, particle_noise, pick, resample, vp_sde_sigmas
from inverse_problems.operators.base import SVD, ForwardOperator
from priors.base import Prior


class FPS(SpectralSMC):
    """FPS-SMC (derivative-free): a particle filter in the SVD basis on a noised measurement sequence (DDIM proposals)."""

    def __init__(self, n_steps: int = 100, n_particles: int = 8, eta: float = 0.85, output: str = "particle",
                 dense_max: int = 8192, chunk: int = 64) -> None:
        super().__init__(n_particles, output, dense_max, chunk)
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if not 0 < eta <= 1:
            raise ValueError(f"eta must lie in (0, 1] (the proposal's noise), got {eta}")
        self.n_steps, self.eta = n_steps, eta

    @torch.no_grad()
    def particles(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
                  callback: StepCallback | None = None) -> tuple[SVD, Tensor]:
        b, j, eta = y.shape[0], self.n_particles, self.eta
        svd, obs, y_bar, c = self.spectral_data(y, operator)
        sig = vp_sde_sigmas(self.n_steps).tolist()
        z = sig[0] * randn(torch.empty_like(y_bar), generator)
        ys = [torch.where(obs, z, torch.zeros_like(z))]
        for s, s_next in zip(sig[:-1], sig[1:]):  # the measurement sequence, from sigma_0 down to 0
            ys.append(y_bar + math.sqrt(1 - eta**2) * (s_next / s) * (ys[-1] - y_bar)
                      + eta * s_next * randn(y_bar, generator) * obs)
        x_bar = z.unsqueeze(1).repeat(1, j, 1)
        c2 = (c**2).unsqueeze(1)
        for i, (s, s_next) in enumerate(zip(sig[:-1], sig[1:])):
            x0 = self.clean(prior, svd, x_bar, s, i, self.n_steps, y, operator, callback)
            mu = x0 + math.sqrt(1 - eta**2) * (s_next / s) * (x_bar - x0)
            tau2 = (eta * s_next) ** 2
            target = ys[i + 1].unsqueeze(1)
            o = obs.unsqueeze(1)
            if tau2 > 0:
                var = torch.where(o, 1 / (1 / tau2 + 1 / c2), torch.full_like(c2, tau2))
                mean = torch.where(o, var * (mu / tau2 + target / c2), mu)
                x_new = mean + var.sqrt() * particle_noise(b, j, mu.shape[2:], generator, y.device)
            else:
                x_new = mu
            log_w = -(torch.where(o, (target - mu) ** 2 / (tau2 + c2), torch.zeros_like(mu))).sum(-1) / 2
            x_bar = self.check_particles(i, pick(x_new, resample(log_w, generator)))
        return svd, x_bar
