"""Deterministic sampling of the probability-flow ODE (Karras et al. 2022, "Elucidating the design
space of diffusion-based generative models", Algorithm 1).

In the EDM convention x = x0 + sigma * eps the PF-ODE is dx/dsigma = (x - D(x, sigma)) / sigma.
`pf_ode_sample` integrates it along a decreasing sigma grid with Euler steps, optionally corrected
by Heun's 2nd-order rule (not on the last step when it goes to sigma = 0). The denoiser is a plain
callable so that an algorithm can pass its NFE-counted `self.denoise`.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

Denoiser = Callable[[Tensor, Tensor], Tensor]


def _sig(value: Tensor, x: Tensor) -> Tensor:
    return value.to(device=x.device, dtype=torch.float32).expand(x.shape[0]).clone()


def pf_ode_sample(denoise: Denoiser, x: Tensor, sigmas: Tensor | list[float], heun: bool = True) -> Tensor:
    """Integrate dx/dsigma = (x - D(x, sigma)) / sigma from sigmas[0] to sigmas[-1].

    `x` is the state at sigmas[0] (e.g. sigma_max * N(0, I) for an unconditional sample, or the
    current iterate for DAPS's x̂0 ODE); `sigmas` is decreasing (a 0 at the end returns D's estimate).
    `denoise(x, sigma)` is called with sigma as a (B,) tensor. Euler: 1 call per step; Heun:
    2 calls per step except a step to 0.
    """
    sig = torch.as_tensor(sigmas, dtype=torch.float32)
    if sig.ndim != 1 or len(sig) < 2:
        raise ValueError(f"sigmas must be a 1-D grid of at least 2 levels, got shape {tuple(sig.shape)}")
    if bool((sig[1:] > sig[:-1]).any()) or bool((sig < 0).any()):
        raise ValueError("sigmas must be non-negative and non-increasing (from high noise to low)")
    for s_cur, s_next in zip(sig[:-1], sig[1:]):
        if float(s_cur) == float(s_next):
            continue
        if float(s_cur) == 0.0:
            break
        d_cur = (x - denoise(x, _sig(s_cur, x))) / float(s_cur)
        x_next = x + (float(s_next) - float(s_cur)) * d_cur
        if heun and float(s_next) > 0:
            d_next = (x_next - denoise(x_next, _sig(s_next, x))) / float(s_next)
            x_next = x + (float(s_next) - float(s_cur)) * 0.5 * (d_cur + d_next)
        x = x_next
    return x


def sample_prior(prior, n: int, steps: int = 18, generator: torch.Generator | None = None,
                 sigma_max: float | None = None, sigma_min: float | None = None, heun: bool = True,
                 device: torch.device | str | None = None) -> Tensor:
    """Unconditional samples of a prior by the EDM sampler on the Karras grid (rho = 7, then 0)."""
    from priors.schedules import karras_sigmas

    if prior.resolution is None:
        raise ValueError(f"{type(prior).__name__} has no fixed resolution; sample with pf_ode_sample and your own x")
    device = device or next((b.device for b in prior.buffers()), None) or next(
        (p.device for p in prior.parameters()), torch.device("cpu"))
    smax = min(80.0, prior.sigma_max) if sigma_max is None else sigma_max
    smin = max(0.002, prior.sigma_min) if sigma_min is None else sigma_min
    sigmas = karras_sigmas(steps, smax, smin)
    draw_on = generator.device if generator is not None else device
    x = torch.randn((n, prior.channels, *prior.resolution), generator=generator, device=draw_on).to(device) * smax
    with torch.no_grad():
        return pf_ode_sample(prior.denoise, x, sigmas, heun=heun)
