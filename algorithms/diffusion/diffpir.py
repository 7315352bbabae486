"""Denoising diffusion models for plug-and-play image restoration (Zhu et al., CVPRW 2023; yuanzhi-zhu/DiffPIR).

Half-quadratic splitting on DiffPIR's quadratic VP-linear time grid (the official `skip_type='quad'`: n steps at
t_k = T - 1 - floor(T sqrt(k/(n-1))), the last at t = 0; large strides at high noise, dense near t = 0). Per step
k = 0..n-2:
    z = D(x_t, sigma_t)                                         (prior step)
    x0 = argmin_x ||y - A x||^2 + rho_t ||x - z||^2,  rho_t = lambda sigma_n^2 / sigma_t^2   (data step)
    x_{t-1} = x0 + sigma_{t-1} (sqrt(1 - zeta) (x_t - x0)/sigma_t + sqrt(zeta) eps)
The data step is closed form in the SVD basis where the operator has one, conjugate gradient otherwise
(`cg_iters` iterations at most, warm-started at z), or with `data_step="direct"` the operator's exact direct
solver where it has one (multi-coil MRI with a Cartesian line mask: a per-row eigendecomposition of A^H A made
once per run; the exact minimiser, where 30 CG iterations stop short of it at small rho);
sigma_n = max(operator noise, sigma_n_min) per sample, read at every step (TDA may adapt it). The start is
x_T = A^H y + sigma_T eps (the official code starts from its initial image noised to t = T - 1). As in the
official code the last step (t = 0) takes neither a data step nor a re-noising: the result is the iterate at
t = 0 that the step before produced (the official code still calls the network there and discards the output;
that call is skipped, so the NFE is n - 1).
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import DATA_STEPS, direct_solver, hqs_renoise, noise_level, prox_data, randn, vp_grid
from inverse_problems.operators.base import ForwardOperator
from priors.base import Prior


class DiffPIR(Algorithm):
    """DiffPIR: denoiser step, proximal data step (SVD closed form or CG), partial re-noising (zeta)."""

    def __init__(self, n_steps: int = 100, lam: float = 1.0, zeta: float = 1.0, sigma_n_min: float = 1e-3,
                 cg_iters: int = 30, data_step: str = "cg") -> None:
        super().__init__()
        if n_steps < 2:
            raise ValueError(f"n_steps must be >= 2 (the last step returns the iterate the one before made), got {n_steps}")
        if lam <= 0 or not 0 <= zeta <= 1 or sigma_n_min <= 0:
            raise ValueError(f"need lam > 0, 0 <= zeta <= 1, sigma_n_min > 0; got {lam}, {zeta}, {sigma_n_min}")
        if data_step not in DATA_STEPS:
            raise ValueError(f"data_step must be one of {DATA_STEPS} (cg: conjugate gradient; direct: the operator's "
                             f"exact direct solver), got {data_step!r}")
        self.n_steps, self.lam, self.zeta, self.sigma_n_min, self.cg_iters = n_steps, lam, zeta, sigma_n_min, cg_iters
        self.data_step = data_step

    def check(self, operator: ForwardOperator, prior: Prior | None) -> None:
        """Also refuse data_step='direct' before compute where the operator has neither an SVD nor a direct solver."""
        super().check(operator, prior)
        if self.data_step == "direct" and operator.svd() is None and direct_solver(operator) is None:
            raise ValueError(f"DiffPIR data_step='direct' needs an operator with an SVD or a direct proximal solver "
                             f"(multi-coil MRI with a Cartesian line mask: random, equispaced or gaussian1d); "
                             f"{type(operator).__name__} here has neither: use algorithm.data_step=cg")

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b = y.shape[0]
        sigmas = vp_grid(self.n_steps, "quad").tolist()[:-1]  # sigma(t_0 = 999), ..., sigma(t_{n-1} = 0)
        x = operator.adjoint(y) + sigmas[0] * randn(torch.empty((b, *operator.image_shape), device=y.device), generator)
        for i, (sg, sn) in enumerate(zip(sigmas[:-1], sigmas[1:])):
            sigma = torch.full((b,), sg, device=y.device)
            z = self.denoise(prior, x, sigma)
            z = self.step(callback, Step(i, self.n_steps - 1, sigma, x, z, y, operator, prior))
            sigma_n = noise_level(operator, b, y.device).clamp_min(self.sigma_n_min)  # read after adaptation
            x0 = prox_data(operator, y, z, self.lam * sigma_n**2 / sg**2, self.cg_iters, data_step=self.data_step)
            x = self.monitor.check(i, hqs_renoise(x0, x, sigma, sn, self.zeta, generator))
        return x  # the last step (t = 0): no data step, no re-noising (the official code)
