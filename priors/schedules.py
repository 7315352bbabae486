"""Noise schedules in the EDM convention, shared by priors (sampling, training) and algorithms.

- `karras_sigmas`: the EDM polynomial grid (Karras et al. 2022, eq. 5), rho = 7.
- VP-linear DDPM (betas 1e-4..0.02, T = 1000): alpha_bar_t and sigma_t = sqrt((1 - abar_t) / abar_t);
  `vp_sigmas` gives the sigmas of an evenly strided subsequence of timesteps (DDIM-style).
- `sigma_to_t` / `t_to_sigma`: the continuous map between a VP timestep and sigma by log-linear
  interpolation of the discrete table, so a VP network can be queried at any sigma.
"""
from __future__ import annotations

import torch
from torch import Tensor


def karras_sigmas(n: int, sigma_max: float = 80.0, sigma_min: float = 0.002, rho: float = 7.0,
                  append_zero: bool = True) -> Tensor:
    """sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho, i = 0..n-1, then 0."""
    if n < 1:
        raise ValueError(f"need at least one step, got {n}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    inv = sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    sigmas = inv**rho
    if append_zero:
        sigmas = torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])
    return sigmas.float()


def vp_alphas_cumprod(beta_start: float = 1e-4, beta_end: float = 0.02, steps: int = 1000) -> Tensor:
    """DDPM's linear-beta alpha_bar_t, t = 0..T-1 (Ho et al. 2020)."""
    betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def vp_noise_std(sigma: float | Tensor) -> float | Tensor:
    """The VP (DDPM) noise std sqrt(1 - abar) of the EDM noise level sigma = sqrt((1 - abar) / abar): sigma / sqrt(1 + sigma^2)."""
    return sigma / (1 + sigma**2) ** 0.5


def vp_sigma_table(alphas_cumprod: Tensor | None = None) -> Tensor:
    """sigma_t = sqrt((1 - abar_t) / abar_t) for every discrete timestep (increasing in t)."""
    abar = vp_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod.double()
    return ((1 - abar) / abar).sqrt()


def vp_sigmas(n: int, alphas_cumprod: Tensor | None = None, append_zero: bool = True) -> Tensor:
    """Decreasing sigmas of n evenly spaced VP timesteps from T-1 down to 0 (then 0)."""
    table = vp_sigma_table(alphas_cumprod)
    idx = torch.linspace(len(table) - 1, 0, n).round().long()
    sigmas = table[idx]
    if append_zero:
        sigmas = torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])
    return sigmas.float()


def sigma_to_t(sigma: Tensor, alphas_cumprod: Tensor | None = None) -> Tensor:
    """Continuous VP timestep for a sigma: interpolate t linearly in log sigma over the table."""
    log_table = vp_sigma_table(alphas_cumprod).log().to(sigma.device)
    ls = torch.as_tensor(sigma, dtype=torch.float64, device=sigma.device).clamp_min(1e-12).log()
    ls = ls.clamp(log_table[0], log_table[-1])
    hi = torch.searchsorted(log_table, ls.contiguous()).clamp(1, len(log_table) - 1)
    lo = hi - 1
    w = (ls - log_table[lo]) / (log_table[hi] - log_table[lo])
    return (lo.double() + w).to(torch.float32)


def t_to_sigma(t: Tensor, alphas_cumprod: Tensor | None = None) -> Tensor:
    """Inverse of `sigma_to_t` (log-linear interpolation of the table at a fractional t)."""
    log_table = vp_sigma_table(alphas_cumprod).log().to(t.device)
    t = torch.as_tensor(t, dtype=torch.float64, device=t.device).clamp(0, len(log_table) - 1)
    lo = t.floor().long().clamp(0, len(log_table) - 2)
    w = t - lo.double()
    return (log_table[lo] * (1 - w) + log_table[lo + 1] * w).exp().to(torch.float32)
