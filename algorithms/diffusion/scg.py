"""Stochastic control guidance, SCG (Huang, Ghatare, Liu, Hu, Zhang, Sastry, Gururani, Oore, Yue, ICML 2024: "Symbolic
music generation with non-differentiable rule guided diffusion"; InverseBench `algo/scg.py`, the authors'
yjhuangcd/rule-guided-music). Derivative-free: best-of-n selection of the sampler's own noise by forward calls.

Ancestral DDPM steps on the VP-SDE grid (1000 steps, in EDM variables). From step int(threshold N) on (until the last):
draw n candidates x'_k = x̂0 + (sigma'^2/sigma^2)(x - x̂0) + sigma' sqrt(1 - sigma'^2/sigma^2) e_k, score each by
L_k = ||y - A D(x'_k, sigma')||^2 (n denoiser calls) and keep x' = x'_argmin. For a loss linear near the step's mean
the kept noise has mean -kappa_n grad L/||grad L|| (kappa_n = E[max of n standard normals]): a gradient step found
without a gradient. The last step returns x̂0.
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import randn
from algorithms.diffusion.particles import data_loss, denoise_particles, particle_noise, pick, vp_sde_sigmas
from inverse_problems.operators.base import ForwardOperator
from priors.base import Prior


def best_candidate(losses: Tensor) -> Tensor:
    """(B, 1) index of the lowest loss among each sample's candidates (B, n)."""
    return losses.argmin(dim=1, keepdim=True)


class SCG(Algorithm):
    """SCG (derivative-free): ancestral steps whose noise is the best of n candidates by their clean estimates' data loss."""

    derivative_free = True

    def __init__(self, n_steps: int = 1000, n_candidates: int = 8, threshold: float = 0.25, chunk: int = 64) -> None:
        super().__init__()
        if n_steps < 2 or n_candidates < 1 or chunk < 1:
            raise ValueError(f"need n_steps >= 2, n_candidates >= 1, chunk >= 1; got {n_steps}, {n_candidates}, {chunk}")
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold (the fraction of unguided first steps) must lie in [0, 1], got {threshold}")
        self.n_steps, self.n_candidates, self.threshold, self.chunk = n_steps, n_candidates, threshold, chunk

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b, n, shape = y.shape[0], self.n_steps, tuple(operator.image_shape)
        sig = vp_sde_sigmas(n).tolist()
        x = sig[0] * randn(torch.empty((b, *shape), device=y.device), generator)
        start = int(n * self.threshold)
        for i, (s, s_next) in enumerate(zip(sig[:-1], sig[1:])):
            sigma = torch.full((b,), s, device=y.device)
            x0 = self.step(callback, Step(i, n, sigma, x, self.denoise(prior, x, sigma), y, operator, prior))
            ratio = s_next**2 / s**2
            mean = x0 + ratio * (x - x0)
            if i == n - 1:
                x = x0
            elif i < start:
                x = mean + s_next * (1 - ratio) ** 0.5 * randn(x, generator)
            else:
                cand = mean.unsqueeze(1) + s_next * (1 - ratio) ** 0.5 * particle_noise(
                    b, self.n_candidates, shape, generator, y.device)
                clean = denoise_particles(self, prior, cand, s_next, self.chunk)
                x = pick(cand, best_candidate(data_loss(operator, clean, y)))[:, 0]
            x = self.monitor.check(i, x)
        return x
