"""2-D convolution with one kernel for every channel ('same' size, zero padding), and motion-blur kernels.

y_c = k * x_c (true convolution, odd kernel), adjoint = correlation with k (the transposed convolution).
No closed-form SVD (the kernel is not separable): pseudo-inverse by conjugate gradients (the base class).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from inverse_problems.operators.base import ForwardOperator


class Convolution(ForwardOperator):
    """y = k * x per channel, 'same' output with zero padding; k is (kh, kw) with odd sides."""

    def __init__(self, kernel: Tensor, image_shape: tuple[int, int, int], noise_std: float = 0.0) -> None:
        super().__init__(noise_std)
        if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
            raise ValueError(f"the kernel must be 2-D with odd sides, got shape {tuple(kernel.shape)}")
        self.register_buffer("kernel", kernel.float())
        self.image_shape = tuple(image_shape)  # type: ignore[assignment]
        self.measurement_shape = self.image_shape

    def _weight(self) -> Tensor:
        return self.kernel.flip(0, 1)[None, None]  # conv2d correlates: flip for a true convolution

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        pad = (self.kernel.shape[0] // 2, self.kernel.shape[1] // 2)
        return F.conv2d(x.reshape(b * c, 1, h, w), self._weight(), padding=pad).reshape(b, c, h, w)

    def adjoint(self, y: Tensor) -> Tensor:
        b, c, h, w = y.shape
        pad = (self.kernel.shape[0] // 2, self.kernel.shape[1] // 2)
        return F.conv_transpose2d(y.reshape(b * c, 1, h, w), self._weight(), padding=pad).reshape(b, c, h, w)


def motion_kernel(size: int = 61, intensity: float = 0.5, seed: int = 0, steps: int = 200) -> Tensor:
    """A (size, size) motion-blur kernel: a seeded random camera trajectory, rasterised and normalised to sum 1.

    The direction of motion drifts as a Gaussian random walk over `steps` unit steps whose total standard
    deviation is pi * intensity (0: a straight line, 1: curling around); the path, scaled so its farthest point
    is 3/8 of the kernel from the centre, is splatted bilinearly onto the grid.
    Same kind of kernel as DPS's (61 px, intensity 0.5), not the same generator: pass a kernel file for those.
    """
    if size < 3 or size % 2 == 0:
        raise ValueError(f"motion kernel size must be odd and >= 3, got {size}")
    if not 0 <= intensity <= 1:
        raise ValueError(f"intensity must be in [0, 1], got {intensity}")
    g = torch.Generator().manual_seed(seed)
    turns = torch.randn(steps, generator=g, dtype=torch.float64) * (math.pi * intensity / math.sqrt(steps))
    angle = 2 * math.pi * float(torch.rand(1, generator=g, dtype=torch.float64)) + torch.cumsum(turns, 0)
    path = torch.cumsum(torch.stack([angle.cos(), angle.sin()], 1), 0)
    path = path - path.mean(0)
    span = float(path.abs().max().clamp_min(1e-12))
    path = path * (0.375 * (size - 1) / span) + (size - 1) / 2
    kernel = torch.zeros(size, size, dtype=torch.float64)
    r0, c0 = path[:, 1].floor().long(), path[:, 0].floor().long()
    fr, fc = path[:, 1] - r0, path[:, 0] - c0
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (1, 0, fr * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 1, fr * fc)):
        kernel.index_put_(((r0 + dr).clamp(0, size - 1), (c0 + dc).clamp(0, size - 1)), w, accumulate=True)
    return (kernel / kernel.sum()).float()


def load_kernel(path: str | Path) -> Tensor:
    """A kernel from a .npy / .pt file (2-D, odd sides), normalised to sum 1."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"blur kernel file {p} does not exist")
    k = torch.as_tensor(np.load(p)) if p.suffix == ".npy" else torch.load(p, map_location="cpu", weights_only=True)
    k = torch.as_tensor(k, dtype=torch.float32).squeeze()
    if k.ndim != 2 or float(k.sum()) <= 0:
        raise ValueError(f"{p}: a blur kernel must be a 2-D array with a positive sum, got shape {tuple(k.shape)}")
    return k / k.sum()
