"""Real/complex conversions for MR images stored as 2 channels (fastMRI-style plain transforms)."""
from __future__ import annotations

import torch
from torch import Tensor


def to_complex(x: Tensor) -> Tensor:
    """(B, 2, H, W) real -> (B, H, W) complex; the channel pair is (real, imaginary)."""
    if x.shape[1] != 2:
        raise ValueError(f"expected 2 channels (real, imaginary), got shape {tuple(x.shape)}")
    return torch.complex(x[:, 0].float(), x[:, 1].float())


def to_real(z: Tensor) -> Tensor:
    """(B, H, W) complex -> (B, 2, H, W) real."""
    return torch.stack([z.real, z.imag], dim=1).to(torch.float32)


def magnitude(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 1, H, W): the modulus for C = 2, the image itself for C = 1."""
    if x.shape[1] == 2:
        return torch.sqrt(x[:, :1] ** 2 + x[:, 1:2] ** 2)
    return x
