"""Pieces shared by the diffusion solvers: noise draws, time grids, the HQS data step, re-noising.

All functions are batched over the first dimension and take noise levels as floats or (B,) tensors.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import conjugate_gradient, per_sample
from inverse_problems.operators.random import Randomness, randn_like
from priors.schedules import vp_sigma_table


def randn(like: Tensor, generator: Randomness) -> Tensor:
    """Standard normal noise shaped like `like`: row k from sample k's generator (inverse_problems.operators.random)."""
    return randn_like(like, generator)


def noise_level(operator: ForwardOperator, batch: int, device: torch.device) -> Tensor:
    """The operator's noise std per real component as a (B,) tensor (detached)."""
    s = operator.noise_std.detach().to(device=device, dtype=torch.float32).reshape(-1)
    return s.expand(batch).clone() if s.numel() == 1 else s.reshape(batch)


def spectral_measurement(svd, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(s, obs, y_bar) in the operator's SVD basis A = U S V^T for a batch y: the singular values s (B, k), the mask
    obs = s > 0 of the observed coordinates, and y_bar = S^+ U^T y (0 where s = 0). DDRM and DDNM start here."""
    b = y.shape[0]
    s = svd.s.to(y.device).expand(b, -1) if svd.s.ndim == 1 else svd.s.to(y.device)
    obs = s > 0
    return s, obs, torch.where(obs, svd.Ut(y) / torch.where(obs, s, torch.ones_like(s)), torch.zeros_like(s))


def vp_timesteps(n: int, spacing: str = "uniform", train_steps: int = 1000) -> Tensor:
    """The n VP timesteps a solver visits, in visiting order (decreasing, from high noise to t = 0).

    - "uniform": t = (n - 1 - k) T/n, k = 0..n-1, i.e. DDRM's `range(0, T, T // n)` visited in reverse
      (the official range has more than n entries when n does not divide T; the first n are kept, so that
      n is the number of denoiser calls).
    - "quad": DiffPIR's `skip_type='quad'`: seq_k = floor(T sqrt(k/(n-1))), the last minus 1, and step k
      visits t_k = T - 1 - seq_k: large strides at high noise, dense near t = 0
      (n = 100: 999, 899, 857, 825, ..., 10, 5, 0). n = 1 visits t = T - 1.
    """
    if n < 1 or n > train_steps:
        raise ValueError(f"number of steps must be in [1, {train_steps}], got {n}")
    if spacing == "uniform":
        return torch.arange(0, train_steps, train_steps // n)[:n].flip(0)
    if spacing == "quad":
        if n == 1:
            return torch.tensor([train_steps - 1])
        seq = np.sqrt(np.linspace(0, train_steps**2, n)).astype(np.int64)  # as the official code (float64)
        seq[-1] -= 1
        return torch.from_numpy(train_steps - 1 - seq)
    raise ValueError(f"unknown spacing {spacing!r}; choose 'uniform' or 'quad'")


def vp_grid(n: int, spacing: str = "uniform", train_steps: int = 1000) -> Tensor:
    """Sigmas of the n VP-linear timesteps of `vp_timesteps` in visiting order (decreasing), then 0."""
    sig = vp_sigma_table()[vp_timesteps(n, spacing, train_steps)]
    return torch.cat([sig, torch.zeros(1, dtype=sig.dtype)]).float()


DATA_STEPS = ("cg", "direct")


def direct_solver(operator: ForwardOperator) -> Callable[[Tensor, Tensor, Tensor], Tensor] | None:
    """The operator's direct proximal solver (`prox_solver`, e.g. multi-coil MRI with a Cartesian line mask), or None."""
    make = getattr(operator, "prox_solver", None)
    return make() if make is not None else None


def prox_data(operator: ForwardOperator, y: Tensor, z: Tensor, rho: Tensor, cg_iters: int = 30,
              cg_tol: float = 1e-6, data_step: str = "cg") -> Tensor:
    """x = argmin ||y - A x||^2 + rho ||x - z||^2, rho (B,), i.e. (A^H A + rho I) x = A^H y + rho z.

    Closed form in the SVD basis where the operator has one, x = V[(s U^T y + rho V^T z) / (s^2 + rho)];
    otherwise with `data_step="direct"` the operator's exact direct solver (`prox_solver`: a refusal naming the
    fix where it has none), with "cg" conjugate gradient (warm-started at z, `cg_iters` iterations at most, the
    operator's `normal_map` built once per solve).
    """
    if data_step not in DATA_STEPS:
        raise ValueError(f"data_step must be one of {DATA_STEPS}, got {data_step!r}")
    svd = operator.svd()
    if svd is not None:
        r = rho.view(-1, 1)
        zs = svd.Vt(z)
        return svd.V((svd.s * svd.Ut(y) + r * zs) / (svd.s**2 + r))
    if data_step == "direct":
        solve = direct_solver(operator)
        if solve is None:
            raise ValueError(f"data_step='direct' needs an operator with a direct proximal solver (multi-coil MRI "
                             f"with a Cartesian line mask: random, equispaced or gaussian1d); "
                             f"{type(operator).__name__} here has none: use data_step='cg'")
        return solve(operator.adjoint(y), z, rho)
    rhs = operator.adjoint(y) + per_sample(rho, z) * z
    normal = operator.normal_map()
    return conjugate_gradient(lambda v: normal(v) + per_sample(rho, v) * v, rhs, x0=z,
                              n_iter=cg_iters, tol=cg_tol)


def hqs_renoise(x0: Tensor, x: Tensor, sigma: Tensor, sigma_next: float, zeta: float,
                generator: Randomness) -> Tensor:
    """DiffPIR's step to sigma': x' = x0 + sigma'(sqrt(1 - zeta) eps_hat + sqrt(zeta) eps), eps_hat = (x - x0)/sigma.

    Zhu et al. 2023, eq. (13) in EDM variables (eta = 0); zeta = 1 re-noises independently.
    """
    if sigma_next == 0:
        return x0
    eps_hat = (x - x0) / per_sample(sigma, x)
    return x0 + sigma_next * ((1 - zeta) ** 0.5 * eps_hat + zeta**0.5 * randn(x, generator))
