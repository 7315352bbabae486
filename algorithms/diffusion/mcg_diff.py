"""Monte Carlo guided diffusion, MCG-diff (Cardoso, Janati, Le Corff, Moulines, ICLR 2024; InverseBench
`algo/mcgdiff.py`, the authors' gabrielvc/mcg_diff). An auxiliary particle filter in A's SVD basis; the operator is
used through forward calls only when it is forward-only (its matrix probed from them, `dense_max` bounding the size).

With A = U S V^T, x̄ = V^T x, ȳ = S^+ U^T y and c_i = sigma_y / s_i, an observed coordinate is read as the diffused
state at level c_i: x̄_i at level sigma is modelled as N(ȳ_i, sigma^2 - c_i^2) while sigma > c_i, and is free below.
Per step sigma -> sigma' (J particles per sample): x̂0 = D(V x̄, sigma), the prior kernel N(mu, f) with
mu = x̂0 + (sigma'^2/sigma^2)(x̄ - x̂0), f = sigma'^2 (1 - sigma'^2/sigma^2) (DDPM's posterior in EDM variables);
weights w ∝ N(ȳ; mu, f + sigma'^2 - c^2) / N(ȳ; x̄, sigma^2 - c^2) over the coordinates still observed at sigma (on
the step that crosses c_i: N(ȳ; mu, f), and x̄'_i = ȳ_i, the grid level nearest below c_i); resample; then on the
coordinates still observed at sigma' the Kalman blend x̄' = K ȳ + (1 - K) mu + sqrt(K (sigma'^2 - c^2)) e,
K = f / (f + sigma'^2 - c^2), elsewhere x̄' = mu + sqrt(f) e. A coordinate with c_i below the grid's last level
(nearly noiseless) ends at ȳ_i.
Grid: EDM's poly-7 from 100 (at most the prior's sigma_max) to 0.01, then 0. The result is one particle of the final
set (`output="particle"`) or their mean.
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import StepCallback
from algorithms.diffusion.particles import SpectralSMC, particle_noise, pick, resample
from inverse_problems.operators.base import SVD, ForwardOperator
from priors.base import Prior
from priors.schedules import karras_sigmas


class MCGDiff(SpectralSMC):
    """MCG-diff (derivative-free): an auxiliary particle filter in the SVD basis reading y as a diffused state."""

    def __init__(self, n_steps: int = 200, n_particles: int = 8, sigma_max: float = 100.0, sigma_min: float = 0.01,
                 output: str = "particle", dense_max: int = 8192, chunk: int = 64) -> None:
        super().__init__(n_particles, output, dense_max, chunk)
        if n_steps < 1 or not 0 < sigma_min < sigma_max:
            raise ValueError(f"need n_steps >= 1 and 0 < sigma_min < sigma_max, got {n_steps}, {sigma_min}, {sigma_max}")
        self.n_steps, self.sigma_max, self.sigma_min = n_steps, sigma_max, sigma_min

    @torch.no_grad()
    def particles(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
                  callback: StepCallback | None = None) -> tuple[SVD, Tensor]:
        b, j = y.shape[0], self.n_particles
        svd, obs, y_bar, c = self.spectral_data(y, operator)
        sig = karras_sigmas(self.n_steps, min(self.sigma_max, float(prior.sigma_max)), self.sigma_min).tolist()
        o, target, c2 = obs.unsqueeze(1), y_bar.unsqueeze(1), (c**2).unsqueeze(1)
        x_bar = sig[0] * particle_noise(b, j, y_bar.shape[1:], generator, y.device)
        zero = torch.zeros_like(x_bar)
        for i, (s, s_next) in enumerate(zip(sig[:-1], sig[1:])):
            x0 = self.clean(prior, svd, x_bar, s, i, self.n_steps, y, operator, callback)
            ratio = s_next**2 / s**2
            mu = x0 + ratio * (x_bar - x0)
            f = s_next**2 * (1 - ratio)
            held = o & (s**2 > c2)  # observed and still read as a diffused state at sigma
            keep = o & (s_next**2 > c2)  # ... and still after the step
            gap = (s_next**2 - c2).clamp_min(0)
            log_w = torch.where(held, (target - x_bar) ** 2 / (s**2 - c2).clamp_min(1e-12)
                                - (target - mu) ** 2 / (f + gap).clamp_min(1e-12), zero).sum(-1) / 2
            mu = pick(mu, resample(log_w, generator))
            k = f / (f + gap).clamp_min(1e-12)
            e = particle_noise(b, j, y_bar.shape[1:], generator, y.device)
            blended = k * target + (1 - k) * mu + (k * gap).sqrt() * e
            x_bar = torch.where(keep, blended, torch.where(held, target.expand_as(mu), mu + f**0.5 * e))
            x_bar = self.check_particles(i, x_bar)
        return svd, x_bar
