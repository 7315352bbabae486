"""Decoupled annealing posterior sampling (Zhang et al., CVPR 2025; zhangbingliang2019/DAPS).

Annealing sigma_0 > ... > sigma_{N-1} > 0 on the EDM poly-7 grid from sigma_max to sigma_min (the official
scheduler: N + 1 points, the last, sigma_min, replaced by 0); start x ~ N(0, sigma_max^2 I). Each step:
  1. x̂0: Euler on the PF-ODE dx/dsigma = (x - D(x, sigma))/sigma, `ode_steps` steps from sigma_i to 0.01;
  2. Langevin on x0 (operator forward/adjoint only, no network):
     x <- x + eta [-grad ||A x - y||^2 / tau^2 + (x̂0 - x)/sigma_i^2] + sqrt(2 eta) eps,
     K steps, eta_i = lr (1 + (i/(N+1)) (lr_min_ratio - 1)) at annealing step i (the official `get_lr(step/(N+1))`);
  3. independent re-noising x = x0 + sigma_{i+1} eps.
The Langevin target is p(x0) ∝ exp(-||A x0 - y||^2 / tau^2 - ||x0 - x̂0||^2 / (2 sigma_i^2)) as in the official
code, i.e. a Gaussian likelihood of std tau / sqrt(2). `tau_mode="fixed"` uses tau as given (the official
code, tau = 0.01 whatever the noise); `tau_mode="noise"` uses max(tau, sqrt(2) sigma_y) per sample, the exact
likelihood of the operator's noise model when that is larger.
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.data_consistency import noise_level, randn
from inverse_problems.base import ForwardOperator
from inverse_problems.linalg import per_sample
from priors.base import Prior
from priors.sampling import pf_ode_sample
from priors.schedules import karras_sigmas

BUDGETS = {"1k": (200, 5), "4k": (400, 10)}


class DAPS(Algorithm):
    """DAPS: PF-ODE x̂0, Langevin on x0 given x̂0 and y, independent re-noising, on an annealed sigma grid."""

    def __init__(self, budget: str | None = "1k", n_steps: int | None = None, ode_steps: int | None = None,
                 langevin_steps: int = 100, lr: float = 1e-4, lr_min_ratio: float = 0.01, tau: float = 0.01,
                 tau_mode: str = "fixed", sigma_max: float = 100.0, sigma_min: float = 0.1,
                 ode_sigma_min: float = 0.01) -> None:
        super().__init__()
        if budget is not None and budget not in BUDGETS:
            raise ValueError(f"unknown budget {budget!r}; choose one of {sorted(BUDGETS)} or null with n_steps/ode_steps")
        base = BUDGETS[budget] if budget is not None else (None, None)
        self.n_steps = n_steps if n_steps is not None else base[0]
        self.ode_steps = ode_steps if ode_steps is not None else base[1]
        if self.n_steps is None or self.ode_steps is None or self.n_steps < 1 or self.ode_steps < 1:
            raise ValueError(f"need n_steps >= 1 and ode_steps >= 1 (or a budget in {sorted(BUDGETS)}), "
                             f"got {self.n_steps} and {self.ode_steps}")
        if tau_mode not in ("fixed", "noise"):
            raise ValueError(f"tau_mode must be 'fixed' (the official code) or 'noise' (max(tau, sqrt(2) sigma_y)), got {tau_mode!r}")
        if tau <= 0 or lr <= 0 or langevin_steps < 0:
            raise ValueError(f"need tau > 0, lr > 0, langevin_steps >= 0; got {tau}, {lr}, {langevin_steps}")
        if not sigma_max > sigma_min > ode_sigma_min > 0:
            raise ValueError(f"need sigma_max > sigma_min > ode_sigma_min > 0, got {sigma_max}, {sigma_min}, {ode_sigma_min}")
        self.langevin_steps, self.lr, self.lr_min_ratio = langevin_steps, lr, lr_min_ratio
        self.tau, self.tau_mode = tau, tau_mode
        self.sigma_max, self.sigma_min, self.ode_sigma_min = sigma_max, sigma_min, ode_sigma_min

    def annealing(self) -> list[float]:
        grid = karras_sigmas(self.n_steps + 1, self.sigma_max, self.sigma_min, append_zero=False)
        return grid[:-1].tolist() + [0.0]

    def step_size(self, i: int) -> float:
        """Langevin step at annealing step i: lr (1 + (i/(N+1)) (lr_min_ratio - 1)), N = n_steps.

        The official scheduler holds N + 1 levels (`num_steps + 1`) and passes ratio = step / (N + 1), so the last
        step's lr stays just above lr_min_ratio * lr.
        """
        return self.lr * (1 + i / (self.n_steps + 1) * (self.lr_min_ratio - 1))

    def langevin(self, x0: Tensor, y: Tensor, operator: ForwardOperator, sigma: float, lr: float, tau: Tensor,
                 generator: torch.Generator | None) -> Tensor:
        """K Langevin steps on -||A x - y||^2/tau^2 - ||x - x0||^2/(2 sigma^2), started at x0."""
        w = per_sample(2.0 / tau**2, x0)
        x = x0
        for _ in range(self.langevin_steps):
            grad = w * operator.adjoint(operator.forward(x) - y) + (x - x0) / sigma**2
            x = x - lr * grad + (2 * lr) ** 0.5 * randn(x, generator)
        return x

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b = y.shape[0]
        tau = torch.full((b,), self.tau, device=y.device)
        if self.tau_mode == "noise":
            tau = torch.maximum(tau, 2**0.5 * noise_level(operator, b, y.device))
        sigmas = self.annealing()
        x = sigmas[0] * randn(torch.empty((b, *operator.image_shape), device=y.device), generator)
        denoise = lambda v, s: self.denoise(prior, v, s)  # noqa: E731 - NFE-counted
        for i, (sg, sn) in enumerate(zip(sigmas[:-1], sigmas[1:])):
            sigma = torch.full((b,), sg, device=y.device)
            ode = karras_sigmas(self.ode_steps + 1, sg, self.ode_sigma_min, append_zero=False)
            x0 = pf_ode_sample(denoise, x, ode, heun=False)
            x0 = self.step(callback, Step(i, self.n_steps, sigma, x, x0, y, operator, prior))
            lr = self.step_size(i)
            x0 = self.langevin(x0, y, operator, sg, lr, tau, generator)
            x = x0 + sn * randn(x0, generator) if sn > 0 else x0
            x = self.monitor.check(i, x)
        return x
