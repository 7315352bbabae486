"""Simulated receive-coil sensitivity maps and coil combination.

`birdcage_maps` follows the common Biot-Savart-like model (as in sigpy.mri.birdcage_maps): coil c sits
on a circle of radius `radius` (in units of the half field of view) at angle 2*pi*c/coils; its
sensitivity falls off as 1/distance, with a phase that turns with the angle around the coil.
Normalisation: the maps are divided by their root-sum-of-squares, so sum_c |S_c|^2 = 1 at every
pixel (inside and outside any object), which makes the fully sampled SENSE operator an isometry.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def birdcage_maps(coils: int, size: int | tuple[int, int], radius: float = 1.5, dtype: torch.dtype = torch.complex64,
                  device: torch.device | str | None = None) -> Tensor:
    """(coils, H, W) complex maps with sum_c |S_c|^2 = 1; coils = 1 gives the constant map 1."""
    if coils < 1:
        raise ValueError(f"coils must be >= 1, got {coils}")
    h, w = (size, size) if isinstance(size, int) else size
    if coils == 1:
        return torch.ones((1, h, w), dtype=dtype, device=device)
    if radius <= 1:
        raise ValueError(f"radius must exceed 1 (coils outside the field of view), got {radius}")
    y = (torch.arange(h, dtype=torch.float64, device=device) - h / 2) / (h / 2)
    x = (torch.arange(w, dtype=torch.float64, device=device) - w / 2) / (w / 2)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    angles = 2 * math.pi * torch.arange(coils, dtype=torch.float64, device=device) / coils
    dx = xx[None] - radius * torch.cos(angles)[:, None, None]
    dy = yy[None] - radius * torch.sin(angles)[:, None, None]
    dist = torch.sqrt(dx**2 + dy**2)
    phase = torch.atan2(dx, -dy) - angles[:, None, None]
    maps = torch.polar(1.0 / dist, phase)
    return (maps / rss(maps, dim=0)).to(dtype)


def rss(z: Tensor, dim: int = 1) -> Tensor:
    """Root-sum-of-squares over the coil dimension, keeping it: sqrt(sum_c |z_c|^2)."""
    return torch.sqrt((z.abs() ** 2).sum(dim=dim, keepdim=True))


def align_phase(maps: Tensor, reference: int = 0) -> Tensor:
    """Remove the per-pixel phase ambiguity of coil maps: rotate each pixel so that coil `reference` is real >= 0.

    Maps estimated from data are defined up to a phase per pixel (it moves into the image); comparing
    two sets of maps needs one convention. maps: (..., coils, H, W) complex.
    """
    ref = maps.select(-3, reference).unsqueeze(-3)
    return maps * torch.sgn(ref).conj()
