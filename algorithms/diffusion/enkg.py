"""Ensemble Kalman diffusion guidance, EnKG (Zheng, Chen, Yao, Wang, Stuart, Azizzadenesheli, Yue, 2025; InverseBench
`algo/enkg.py`, the authors' devzhk/enkg-pytorch). Derivative-free: the operator is called forward only.

An ensemble of J particles x_j per sample runs EDM's Euler probability-flow ODE on the poly-7 grid (sigma_max 80 ->
sigma_min 0.002, then 0). Before the Euler step at sigma_i, `n_updates` times: x0_j = ODE(x_j, sigma_i -> 0) in
k_i = min(1 + (n_steps - i) // factor, 20) Euler steps, G_j = A x0_j, and
    C_jk = <G_j - y, G_k - mean_l G_l> / J,     x_j <- x_j - (scale / ||C||_F) sum_k C_jk (x_k - mean_l x_l)
(for an affine x -> G the update is C_xx grad_x (1/2)||G(x_j) - y||^2 exactly, C_xx the ensemble covariance: a
preconditioned gradient step built from forward calls). Then x0 = D(x, sigma_i), x' = x0 + (sigma'/sigma)(x - x0).
Guided steps: threshold < i < n_steps - floor(threshold/2) (every step but the first at the official 0.1). The result
is the ensemble mean.
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.particles import denoise_particles, forward_particles, particle_noise
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.forward_only import flat_measurement
from priors.base import Prior
from priors.schedules import karras_sigmas


class EnKG(Algorithm):
    """EnKG (derivative-free): Euler PF-ODE over an ensemble, nudged by ensemble-Kalman steps from forward calls."""

    derivative_free = True

    def __init__(self, n_steps: int = 80, n_particles: int = 16, n_updates: int = 2, scale: float = 2.0,
                 sigma_max: float = 80.0, sigma_min: float = 0.002, threshold: float = 0.1, factor: int = 8,
                 chunk: int = 64) -> None:
        super().__init__()
        if n_steps < 2 or n_particles < 2 or n_updates < 0 or factor < 1 or chunk < 1:
            raise ValueError(f"need n_steps >= 2, n_particles >= 2, n_updates >= 0, factor >= 1, chunk >= 1; got "
                             f"{n_steps}, {n_particles}, {n_updates}, {factor}, {chunk}")
        if scale < 0 or not 0 < sigma_min < sigma_max:
            raise ValueError(f"need scale >= 0 and 0 < sigma_min < sigma_max, got {scale}, {sigma_min}, {sigma_max}")
        self.n_steps, self.n_particles, self.n_updates, self.scale = n_steps, n_particles, n_updates, scale
        self.sigma_max, self.sigma_min, self.threshold, self.factor, self.chunk = sigma_max, sigma_min, threshold, factor, chunk

    def guided(self, i: int) -> bool:
        return self.threshold < i < self.n_steps - int(0.5 * self.threshold)

    def ode(self, prior: Prior, x: Tensor, sigma: float, k: int) -> Tensor:
        """x0 by k Euler steps of the PF-ODE from sigma to sigma_min (poly-7 grid), then 0 (k = 1: D(x, sigma))."""
        if k == 1:
            return denoise_particles(self, prior, x, sigma, self.chunk)
        levels = karras_sigmas(k, sigma, self.sigma_min).tolist()
        for s, s_next in zip(levels[:-1], levels[1:]):
            x0 = denoise_particles(self, prior, x, s, self.chunk)
            x = x0 + (s_next / s) * (x - x0)
        return x

    def update(self, x: Tensor, x0: Tensor, y: Tensor, operator: ForwardOperator) -> Tensor:
        """One ensemble-Kalman step of the particles x (B, J, ...) from their clean estimates x0 (forward calls only)."""
        b, j = x.shape[:2]
        g = forward_particles(operator, x0)  # (B, J, m)
        err = g - flat_measurement(y).unsqueeze(1)
        coef = torch.einsum("bjm,bkm->bjk", err, g - g.mean(1, keepdim=True)) / j
        dx = torch.einsum("bjk,bkn->bjn", coef, (x - x.mean(1, keepdim=True)).reshape(b, j, -1))
        lr = self.scale / torch.linalg.matrix_norm(coef).clamp_min(1e-30)
        return x - lr.view(b, 1, *([1] * (x.ndim - 2))) * dx.reshape(x.shape)

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b, shape = y.shape[0], tuple(operator.image_shape)
        sig = karras_sigmas(self.n_steps, min(self.sigma_max, float(prior.sigma_max)), self.sigma_min).tolist()
        x = sig[0] * particle_noise(b, self.n_particles, shape, generator, y.device)
        for i, (s, s_next) in enumerate(zip(sig[:-1], sig[1:])):
            if self.guided(i):
                k = min(1 + (self.n_steps - i) // self.factor, 20)
                for _ in range(self.n_updates):
                    x = self.update(x, self.ode(prior, x, s, k), y, operator)
            x0 = denoise_particles(self, prior, x, s, self.chunk)
            mean = x0.mean(1)
            sigma = torch.full((b,), s, device=y.device)
            x0 = x0 + (self.step(callback, Step(i, self.n_steps, sigma, x.mean(1), mean, y, operator, prior)) - mean).unsqueeze(1)
            x = x0 + (s_next / s) * (x - x0)
            x = self.monitor.check(i, x.reshape(b, -1, *shape[1:])).reshape(x.shape)
        return x.mean(1)
