"""Score-MRI: predictor-corrector sampling with data consistency (Chung & Ye, Medical Image Analysis 2022;
HJ-harry/score-MRI `sampling.get_pc_fouriercs_RI`, InverseBench `algo/score_mri.py`).

VE noise levels sigma_k = sigma_min (sigma_max/sigma_min)^(k/(N-1)), k = N-1 .. 0 (the official VESDE's discrete
sigmas, from the top), score s(x, sigma) = (D(x, sigma) - x)/sigma^2. Start x = DC(sigma_max z). At each level:
  corrector (`corrector_steps` Langevin steps, snr r): eps = 2 (r ||z|| / ||s||)^2, x_mean = x + eps s, x = x_mean + sqrt(2 eps) z;
  DC;
  predictor (reverse diffusion to sigma_{k-1}, sigma_{-1} = 0): x_mean = x + (sigma_k^2 - sigma_{k-1}^2) s,
  x = x_mean + sqrt(sigma_k^2 - sigma_{k-1}^2) z;  DC on x and x_mean.
The result is the last x_mean (the official `denoise=True`). DC is a gradient step on (1/2)||A x - y||^2,
x <- x - lam A^H (A x - y): with lam = 1 on single-coil Cartesian MRI (A^H A = F^H M F, a projection) it is the official
k-space replacement F^H[(1 - M) F x + M y], and for any operator with A^H A a projection (inpainting) the projection onto
{x : A^H A x = A^H y}; on multi-coil SENSE it is a gradient step (the official code replaces k-space coil by coil).
sigma_max is the official 378 (fastMRI knee), at most the prior's sigma_max (a network is not asked above its range).
Norms in the corrector's step size are per sample (the official code averages them over the batch).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import randn
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import batch_norm, per_sample
from priors.base import Prior


class ScoreMRI(Algorithm):
    """Score-MRI: VE predictor-corrector (reverse diffusion + Langevin) with a data-consistency step after each."""

    def __init__(self, n_steps: int = 2000, snr: float = 0.16, corrector_steps: int = 1, lam: float = 1.0,
                 sigma_max: float = 378.0, sigma_min: float = 0.01) -> None:
        super().__init__()
        if n_steps < 2 or corrector_steps < 0:
            raise ValueError(f"need n_steps >= 2 and corrector_steps >= 0, got {n_steps} and {corrector_steps}")
        if snr < 0 or lam < 0:
            raise ValueError(f"need snr >= 0 and lam >= 0, got {snr} and {lam}")
        if not sigma_max > sigma_min > 0:
            raise ValueError(f"need sigma_max > sigma_min > 0, got {sigma_max} and {sigma_min}")
        self.n_steps, self.snr, self.corrector_steps, self.lam = n_steps, snr, corrector_steps, lam
        self.sigma_max, self.sigma_min = sigma_max, sigma_min

    def levels(self, prior: Prior) -> list[float]:
        """The N VE levels from the top, sigma_max capped at the prior's."""
        top = min(self.sigma_max, float(prior.sigma_max))
        lo, hi = math.log(self.sigma_min), math.log(top)
        return [math.exp(lo + (hi - lo) * k / (self.n_steps - 1)) for k in range(self.n_steps - 1, -1, -1)]

    def dc(self, x: Tensor, y: Tensor, operator: ForwardOperator) -> Tensor:
        return x - self.lam * operator.adjoint(operator.forward(x) - y)

    def score(self, prior: Prior, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        x0 = self.denoise(prior, x, sigma)
        return x0, (x0 - x) / per_sample(sigma**2, x)

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b = y.shape[0]
        sig = self.levels(prior)
        x = self.dc(sig[0] * randn(torch.empty((b, *operator.image_shape), device=y.device), generator), y, operator)
        x_mean = x
        for i, sg in enumerate(sig):
            sn = sig[i + 1] if i + 1 < len(sig) else 0.0
            sigma = torch.full((b,), sg, device=y.device)
            for _ in range(self.corrector_steps):
                _, s = self.score(prior, x, sigma)
                z = randn(x, generator)
                eps = 2 * (self.snr * batch_norm(z) / batch_norm(s).clamp_min(1e-30)) ** 2
                x = self.dc(x + per_sample(eps, x) * s + per_sample((2 * eps).sqrt(), z) * z, y, operator)
            x0, s = self.score(prior, x, sigma)
            x0_used = self.step(callback, Step(i, self.n_steps, sigma, x, x0, y, operator, prior))
            if x0_used is not x0:  # a replaced clean estimate replaces the score it implies
                s = (x0_used - x) / sg**2
            x_mean = x + (sg**2 - sn**2) * s
            x = self.dc(x_mean + (sg**2 - sn**2) ** 0.5 * randn(x, generator), y, operator)
            x_mean = self.dc(x_mean, y, operator)
            x = self.monitor.check(i, x)
        return x_mean
