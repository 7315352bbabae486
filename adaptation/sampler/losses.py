"""Regularisers and the adversarial term used by TDA/AIR (after Gou et al., ICML 2024, TAO).

- `total_variation(u, eps)`: smoothed isotropic TV, sum_p sqrt(|D_h u|^2 + |D_v u|^2 + eps^2) - eps, per sample.
- `PatchDiscriminator`: a PatchGAN (Isola et al., CVPR 2017) that scores overlapping patches as real or fake.
- `discriminator_loss` / `generator_loss`: BCE of the discriminator (real -> 1, fake -> 0) and of the generator (fake -> 1).
- `as_image_channels`: measurements as real (B, C, H, W) channels so image-domain nets can read them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def total_variation(u: Tensor, eps: float = 1e-3) -> Tensor:
    """Smoothed isotropic TV per sample, shape (B,): sum sqrt(dh^2 + dv^2 + eps^2) - eps (Neumann boundary)."""
    dh = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1, 0, 0))
    dv = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    return ((dh**2 + dv**2 + eps**2).sqrt() - eps).flatten(1).sum(1)


def as_image_channels(y: Tensor) -> Tensor:
    """A measurement batch as real image channels: real (B, C, H, W) as is; complex (B, C, H, W) -> (B, 2C, H, W)."""
    if y.ndim != 4:
        raise ValueError(f"expected image-like measurements (B, C, H, W), got shape {tuple(y.shape)}; "
                         f"use the network adapter with where=input or without the discriminator")
    if y.is_complex():
        return torch.cat([y.real, y.imag], dim=1).float()
    return y


class PatchDiscriminator(nn.Module):
    """PatchGAN: conv 4x4 stride 2 blocks with LeakyReLU(0.2), then a 1-channel conv giving per-patch logits."""

    def __init__(self, in_channels: int, width: int = 32, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i in range(depth):
            out = width * 2**i
            layers += [nn.Conv2d(c, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c = out
        layers.append(nn.Conv2d(c, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def discriminator_loss(disc: PatchDiscriminator, real: Tensor, fake: Tensor) -> Tensor:
    """BCE with logits, patch-averaged: real -> 1, fake (detached) -> 0."""
    d_real, d_fake = disc(real), disc(fake.detach())
    return F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
        F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))


def generator_loss(disc: PatchDiscriminator, fake: Tensor) -> Tensor:
    """BCE with logits of the fake against 1 (the adapter's output should look like a measurement)."""
    out = disc(fake)
    return F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
