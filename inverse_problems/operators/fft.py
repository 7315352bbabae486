"""Centred orthonormal 2-D Fourier transforms over the last two axes (fastMRI's fft2c/ifft2c).

k-space arrays are centred: the DC sample sits at index (H // 2, W // 2). With norm="ortho" the
transforms are unitary, so F^H = F^{-1} and ||F x|| = ||x|| (Zbontar et al. 2018, fastMRI).
"""
from __future__ import annotations

import torch
from torch import Tensor

DIMS = (-2, -1)


def fft2c(x: Tensor) -> Tensor:
    """Centred unitary DFT: fftshift(fft2(ifftshift(x))) over the last two axes of a complex tensor."""
    if not x.is_complex():
        raise TypeError(f"fft2c takes a complex tensor, got {x.dtype}; convert (B, 2, H, W) images with "
                        f"inverse_problems.operators.complex.to_complex")
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=DIMS), norm="ortho"), dim=DIMS)


def ifft2c(k: Tensor) -> Tensor:
    """Centred unitary inverse DFT: fftshift(ifft2(ifftshift(k))) over the last two axes."""
    if not k.is_complex():
        raise TypeError(f"ifft2c takes a complex tensor, got {k.dtype}")
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=DIMS), norm="ortho"), dim=DIMS)


def centred_frequencies(n: int, device: torch.device | str | None = None) -> Tensor:
    """Frequencies (cycles per pixel) of a centred k-space axis of length n: (j - n // 2) / n."""
    return (torch.arange(n, device=device, dtype=torch.float32) - n // 2) / n
