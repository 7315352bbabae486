"""Pieces shared by the diffusion solvers: noise draws, time grids, the HQS data step, re-noising.

All functions are batched over the first dimension and take noise levels as floats or (B,) tensors.
"""
from __future__ import annotations

import torch
from torch import Tensor

from inverse_problems.base import ForwardOperator
from inverse_problems.linalg import conjugate_gradient, per_sample
from inverse_problems.random import Randomness, randn_like
from priors.schedules import vp_sigma_table


def randn(like: Tensor, generator: Randomness) -> Tensor:
    """Standard normal noise shaped like `like`: row k from sample k's generator (inverse_problems.random)."""
    return randn_like(like, generator)


def noise_level(operator: ForwardOperator, batch: int, device: torch.device) -> Tensor:
    """The operator's noise std per real component as a (B,) tensor (detached)."""
    s = operator.noise_std.detach().to(device=device, dtype=torch.float32).reshape(-1)
    return s.expand(batch).clone() if s.numel() == 1 else s.reshape(batch)


def vp_grid(n: int, spacing: str = "uniform", train_steps: int = 1000) -> Tensor:
    """Decreasing sigmas of n VP-linear timesteps, then 0.

    - "uniform": t = 0, T/n, 2T/n, ... (DDRM's `range(0, T, T // n)`), visited in reverse.
    - "quad": t_k = floor(sqrt(k/(n-1)) T), last t = T - 1 (DiffPIR's `skip_type='quad'`).
    """
    table = vp_sigma_table()
    if n < 1 or n > train_steps:
        raise ValueError(f"number of steps must be in [1, {train_steps}], got {n}")
    if spacing == "uniform":
        t = torch.arange(0, train_steps, train_steps // n)[:n]
    elif spacing == "quad":
        t = torch.sqrt(torch.linspace(0, train_steps**2, n, dtype=torch.float64)).long() if n > 1 \
            else torch.tensor([train_steps])
        t[-1] = t[-1] - 1
    else:
        raise ValueError(f"unknown spacing {spacing!r}; choose 'uniform' or 'quad'")
    sig = table[t.flip(0)]
    return torch.cat([sig, torch.zeros(1, dtype=sig.dtype)]).float()


def prox_data(operator: ForwardOperator, y: Tensor, z: Tensor, rho: Tensor, cg_iters: int = 30,
              cg_tol: float = 1e-6) -> Tensor:
    """x = argmin ||y - A x||^2 + rho ||x - z||^2, rho (B,), i.e. (A^H A + rho I) x = A^H y + rho z.

    Closed form in the SVD basis where the operator has one, x = V[(s U^T y + rho V^T z) / (s^2 + rho)];
    conjugate gradient (warm-started at z) otherwise.
    """
    svd = operator.svd()
    if svd is not None:
        r = rho.view(-1, 1)
        zs = svd.Vt(z)
        return svd.V((svd.s * svd.Ut(y) + r * zs) / (svd.s**2 + r))
    rhs = operator.adjoint(y) + per_sample(rho, z) * z
    return conjugate_gradient(lambda v: operator.normal(v) + per_sample(rho, v) * v, rhs, x0=z,
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
