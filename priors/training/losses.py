"""The two training losses of `bench train-prior`: DDPM's (recipe `ddpm`) and EDM's (recipe `edm`).

DDPM (Ho et al. 2020): t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps on the VP-linear
schedule (betas 1e-4..0.02, T = 1000), loss = ||f(x_t, t) - target||^2 with target eps, x0 or
v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (Salimans & Ho 2022).

EDM (Karras et al. 2022, Table 1 and Sec. 5): ln sigma ~ N(P_mean = -1.2, P_std = 1.2),
loss = lambda(sigma) ||D(x0 + sigma n; sigma) - x0||^2 with lambda(sigma) = (sigma^2 + s_d^2) / (sigma s_d)^2, s_d
(sigma_data) given or the root mean square of the training pixels.

Every random draw takes the caller's generator, so a resumed run draws what an uninterrupted one would.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

EDM_P_MEAN, EDM_P_STD = -1.2, 1.2  # Karras et al. 2022, Table 1: ln sigma ~ N(P_mean, P_std^2)


def diffusion_loss(model: nn.Module, x0: Tensor, abar: Tensor, prediction: str, generator: torch.Generator) -> Tensor:
    """DDPM loss at uniformly drawn t for the prediction type (mean squared error, per element)."""
    b = x0.shape[0]
    t = torch.randint(0, len(abar), (b,), generator=generator, device=generator.device).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device)
    a = abar.to(x0.device, torch.float32)[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    target = {"epsilon": eps, "sample": x0}.get(prediction)
    if target is None:
        target = a.sqrt() * eps - (1 - a).sqrt() * x0
    out = model(x_t, t).sample
    return torch.mean((out.float() - target) ** 2)


def measured_sigma_data(images: Tensor) -> float:
    """Root mean square of the training pixels, sqrt(E[x^2]) (EDM's sigma_data for data that need not be centred)."""
    return float(images.double().pow(2).mean().sqrt())


def edm_sigmas(n: int, generator: torch.Generator, p_mean: float = EDM_P_MEAN, p_std: float = EDM_P_STD) -> Tensor:
    """n noise levels with ln sigma ~ N(p_mean, p_std^2) (Karras et al. 2022, Table 1)."""
    return (torch.randn(n, generator=generator, device=generator.device) * p_std + p_mean).exp()


def edm_loss_weight(sigma: Tensor, sigma_data: float) -> Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (Karras et al. 2022, Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(net: nn.Module, x0: Tensor, sigma_data: float, generator: torch.Generator) -> Tensor:
    """EDM loss lambda(sigma) |D(x0 + sigma n; sigma) - x0|^2 at log-normal sigma (mean over batch and elements)."""
    sigma = edm_sigmas(x0.shape[0], generator).to(x0.device).view(-1, 1, 1, 1)
    noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device)
    denoised = net(x0 + sigma * noise, sigma)
    return torch.mean(edm_loss_weight(sigma, sigma_data) * (denoised.float() - x0) ** 2)
