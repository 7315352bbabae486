"""Implicit neural representations: random Fourier features into a SIREN, many independent networks at once.

gamma(c) = [sin(2 pi B c), cos(2 pi B c)], B ~ N(0, scale^2) per network (Tancik et al., NeurIPS 2020), then
h_1 = sin(w0 (gamma W_1 + b_1)), h_k = sin(w0 (h_{k-1} W_k + b_k)), out = h_L W_out + b_out
(Sitzmann et al., NeurIPS 2020, with their initialisation). `models` networks (one per sample) hold their
weights stacked on a leading dimension and run as batched matmuls; `ModelwiseAdam` fits all of them
independently (Adam is elementwise, a summed loss keeps their gradients apart, and each network has its own
step count and may stop on its own). With per-sample generators (inverse_problems.operators.random) network k is drawn
from sample k's generator alone, so it does not depend on the other networks of the batch.
Coordinates -> channels: usable for images (pixel grid -> C channels) or any other field.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn

from inverse_problems.operators.random import Randomness, rand, randn


def _uniform(shape: tuple[int, ...], bound: float, generator: Randomness, device) -> Tensor:
    return (rand(shape, generator, device) * 2 - 1) * bound


def pixel_grid(h: int, w: int, device=None) -> Tensor:
    """(h*w, 2) pixel-centre coordinates in [-1, 1], row-major (y, x)."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 - 1
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)


class FourierSIREN(nn.Module):
    """`models` independent SIRENs, each on its own random Fourier features: (P, in_dim) coords -> (models, P, out_dim)."""

    def __init__(self, models: int, in_dim: int = 2, out_dim: int = 1, n_freq: int = 64, scale: float = 4.0,
                 width: int = 128, depth: int = 3, w0: float = 30.0, generator: Randomness = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if min(models, in_dim, out_dim, n_freq, width, depth) < 1:
            raise ValueError("models, in_dim, out_dim, n_freq, width and depth must all be >= 1")
        self.register_buffer("freqs", randn((models, in_dim, n_freq), generator, device) * scale)
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
        """gamma(c) per network, (models, P, 2 n_freq)."""
        proj = 2 * math.pi * torch.matmul(coords, self.freqs)
        return torch.cat([proj.sin(), proj.cos()], dim=-1)

    def forward(self, coords: Tensor) -> Tensor:
        h = self.features(coords)
        for w, b in zip(self.weights, self.biases):
            h = torch.sin(self.w0 * torch.baddbmm(b, h, w))
        if self.out_weight.shape[-1] == 1:  # one output: a product with one column goes through gemv, whose
            # rounding depends on how many networks are stacked; a plain sum over the width does not
            return (h * self.out_weight.transpose(1, 2)).sum(-1, keepdim=True) + self.out_bias
        return torch.baddbmm(self.out_bias, h, self.out_weight)

    def image(self, coords: Tensor, channels: int, h: int, w: int) -> Tensor:
        """The fields on a pixel grid as images (models, channels, h, w)."""
        return self(coords).transpose(1, 2).reshape(-1, channels, h, w)


class ModelwiseAdam:
    """Adam (Kingma & Ba, ICLR 2015) over parameters stacked per model on dimension 0, with a step count per
    model and an `active` mask: m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
    p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), applied to active models only; a stopped
    model keeps its weights and moments exactly, so each model's fit is the same whatever else is in the batch.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = [p for p in params]
        if not self.params:
            raise ValueError("ModelwiseAdam needs at least one parameter")
        self.models = self.params[0].shape[0]
        if any(p.shape[0] != self.models for p in self.params):
            raise ValueError("every parameter must hold the models on dimension 0 "
                             f"(got {[tuple(p.shape) for p in self.params]})")
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros(self.models, dtype=torch.float64, device=self.params[0].device)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: Tensor | None = None) -> None:
        """One Adam step for the models where `active` (models,) is True (all when None)."""
        act = torch.ones(self.models, dtype=torch.bool, device=self.t.device) if active is None else active.to(self.t.device)
        self.t += act.double()
        b1, b2 = self.betas
        c1 = (1 - b1 ** self.t).clamp_min(1e-300)
        c2 = (1 - b2 ** self.t).clamp_min(1e-300)
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            shape = (-1, *([1] * (p.ndim - 1)))
            a = act.view(shape)
            g = p.grad
            m.copy_(torch.where(a, b1 * m + (1 - b1) * g, m))
            v.copy_(torch.where(a, b2 * v + (1 - b2) * g * g, v))
            step = (self.lr / c1).to(p.dtype).view(shape) * m / ((v / c2.to(p.dtype).view(shape)).sqrt() + self.eps)
            p.copy_(torch.where(a, p - step, p))
