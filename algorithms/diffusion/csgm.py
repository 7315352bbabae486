"""CSGM with annealed Langevin dynamics for MRI (Jalal, Arvinte, Daras, Price, Dimakis, Tamir, NeurIPS 2021;
utcsilab/csgm-mri-langevin `main.py`, InverseBench `algo/csgm_mri.py`).

A geometric ladder sigma_c = sigma_begin (sigma_end/sigma_begin)^(c/(n_levels-1)), c = 0 .. n_levels-1 (NCSNv2's);
levels c <= start_iter are skipped (the official start: about sigma = 1.2). Start x ~ U[0, 1) (the official
`torch.rand`). At each level `steps_each` Langevin steps with eta_c = step_lr (sigma_c / sigma_end)^2:
    x <- x + eta_c (s(x, sigma_c) - g) + sqrt(2 eta_c) z,     s = (D(x, sigma_c) - x) / sigma_c^2
with the data term g from r = A^H (A x - y):
  - `data_term="normalized"` (the official code): g = mse ||s|| r / ||r|| (per-sample norms; the official code takes
    them over the whole batch);
  - `data_term="likelihood"` (the paper's Algorithm 1, the likelihood's score with the annealed noise added):
    g = r / (sigma_y^2 + sigma_c^2), so that each level's target is p_sigma(x) N(y; A x, (sigma_y^2 + sigma_c^2) I),
    the posterior as sigma_c -> 0.
The result is the last iterate (no final denoising, as the official code). Defaults: the official ladder (2311 levels
232 -> 0.0066, start_iter 1155, 3 steps per level: 3465 NFE) with InverseBench's MRI step_lr = 3e-5 and mse = 0.3; the
official knee/brain values (5e-5, 5) make eta_c / sigma_c^2 = step_lr / sigma_end^2 = 1.15 on every level and diverge
on the suite's test problems.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import noise_level, randn
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import batch_norm, per_sample
from inverse_problems.operators.random import rand
from priors.base import Prior

DATA_TERMS = ("normalized", "likelihood")


class CSGM(Algorithm):
    """CSGM-Langevin: annealed Langevin on the prior score plus a data gradient scaled to mse x its norm (MRI)."""

    def __init__(self, n_levels: int = 2311, start_iter: int = 1155, steps_each: int = 3, step_lr: float = 3e-5,
                 mse: float = 0.3, sigma_begin: float = 232.0, sigma_end: float = 0.0066,
                 data_term: str = "normalized") -> None:
        super().__init__()
        if n_levels < 2 or not 0 <= start_iter < n_levels - 1 or steps_each < 1:
            raise ValueError(f"need n_levels >= 2, 0 <= start_iter < n_levels - 1, steps_each >= 1; got {n_levels}, "
                             f"{start_iter}, {steps_each}")
        if step_lr <= 0 or mse < 0 or not sigma_begin > sigma_end > 0:
            raise ValueError(f"need step_lr > 0, mse >= 0, sigma_begin > sigma_end > 0; got {step_lr}, {mse}, "
                             f"{sigma_begin}, {sigma_end}")
        if data_term not in DATA_TERMS:
            raise ValueError(f"data_term must be one of {DATA_TERMS} ('normalized': the official code; 'likelihood': "
                             f"the paper's A^H(y - Ax)/(sigma_y^2 + sigma^2)), got {data_term!r}")
        self.n_levels, self.start_iter, self.steps_each, self.step_lr, self.mse = n_levels, start_iter, steps_each, step_lr, mse
        self.sigma_begin, self.sigma_end, self.data_term = sigma_begin, sigma_end, data_term

    def levels(self) -> list[float]:
        """The visited levels sigma_c, c = start_iter + 1 .. n_levels - 1."""
        lo, hi = math.log(self.sigma_end), math.log(self.sigma_begin)
        return [math.exp(hi + (lo - hi) * c / (self.n_levels - 1)) for c in range(self.start_iter + 1, self.n_levels)]

    def data_gradient(self, x: Tensor, s: Tensor, y: Tensor, operator: ForwardOperator, sigma: float) -> Tensor:
        r = operator.adjoint(operator.forward(x) - y)
        if self.data_term == "likelihood":
            sig_y = noise_level(operator, x.shape[0], x.device)
            return r / per_sample(sig_y**2 + sigma**2, r)
        return r * per_sample(self.mse * batch_norm(s) / batch_norm(r).clamp_min(1e-30), r)

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b = y.shape[0]
        x = rand((b, *operator.image_shape), generator, y.device)
        levels = self.levels()
        n = len(levels) * self.steps_each
        for c, sg in enumerate(levels):
            eta = self.step_lr * (sg / self.sigma_end) ** 2
            sigma = torch.full((b,), sg, device=y.device)
            for j in range(self.steps_each):
                k = c * self.steps_each + j
                x0 = self.denoise(prior, x, sigma)
                x0 = self.step(callback, Step(k, n, sigma, x, x0, y, operator, prior))
                s = (x0 - x) / sg**2
                x = x + eta * (s - self.data_gradient(x, s, y, operator, sg)) + (2 * eta) ** 0.5 * randn(x, generator)
                x = self.monitor.check(k, x)
        return x
