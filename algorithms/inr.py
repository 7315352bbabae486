"""Implicit neural representations: random Fourier features into a SIREN, many independent networks at once.

gamma(c) = [sin(2 pi B c), cos(2 pi B c)], B ~ N(0, scale^2) (Tancik et al., NeurIPS 2020), then
h_1 = sin(w0 (gamma W_1 + b_1)), h_k = sin(w0 (h_{k-1} W_k + b_k)), out = h_L W_out + b_out
(Sitzmann et al., NeurIPS 2020, with their initialisation). `models` networks (one per sample) hold their
weights stacked on a leading dimension and run as batched matmuls, so one Adam optimiser fits all of
them independently (Adam is elementwise and a summed loss keeps their gradients apart).
Coordinates -> channels: usable for images (pixel grid -> C channels) or any other field.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator | None, device) -> Tensor:
    gdev = generator.device if generator is not None else device
    return ((torch.rand(shape, generator=generator, device=gdev) * 2 - 1) * bound).to(device)


def pixel_grid(h: int, w: int, device=None) -> Tensor:
    """(h*w, 2) pixel-centre coordinates in [-1, 1], row-major (y, x)."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 - 1
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)


class FourierSIREN(nn.Module):
    """`models` independent SIRENs on shared random Fourier features: (P, in_dim) coords -> (models, P, out_dim)."""

    def __init__(self, models: int, in_dim: int = 2, out_dim: int = 1, n_freq: int = 64, scale: float = 4.0,
                 width: int = 128, depth: int = 3, w0: float = 30.0, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if min(models, in_dim, out_dim, n_freq, width, depth) < 1:
            raise ValueError("models, in_dim, out_dim, n_freq, width and depth must all be >= 1")
        gdev = generator.device if generator is not None else device
        self.register_buffer("freqs", (torch.randn((in_dim, n_freq), generator=generator, device=gdev) * scale).to(device))
        self.w0 = w0
        dims = [2 * n_freq] + [width] * depth
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for k, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            bound = 1 / d_in if k == 0 else math.sqrt(6 / d_in) / w0
            self.weights.append(nn.Parameter(_uniform((models, d_in, d_out), bound, generator, device)))
            self.biases.append(nn.Parameter(_uniform((models, 1, d_out), 1 / math.sqrt(d_in), generator, device)))
        bound = math.sqrt(6 / width) / w0
        self.out_weight = nn.Parameter(_uniform((models, width, out_dim), bound, generator, device))
        self.out_bias = nn.Parameter(torch.zeros((models, 1, out_dim), device=device))

    def features(self, coords: Tensor) -> Tensor:
        proj = 2 * math.pi * coords @ self.freqs
        return torch.cat([proj.sin(), proj.cos()], dim=-1)

    def forward(self, coords: Tensor) -> Tensor:
        h = self.features(coords).unsqueeze(0).expand(self.out_weight.shape[0], -1, -1)
        for w, b in zip(self.weights, self.biases):
            h = torch.sin(self.w0 * torch.baddbmm(b, h, w))
        return torch.baddbmm(self.out_bias, h, self.out_weight)

    def image(self, coords: Tensor, channels: int, h: int, w: int) -> Tensor:
        """The fields on a pixel grid as images (models, channels, h, w)."""
        return self(coords).transpose(1, 2).reshape(-1, channels, h, w)
