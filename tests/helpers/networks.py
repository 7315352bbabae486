"""Tiny stand-ins with the interface of algorithms.networks.models (ReconNet / NetworkAlgorithm), for the network-TTA tests."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from algorithms.base import Algorithm
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.problems.base import adjoint_quantile


class ConvBlock(nn.Module):
    """3x3 conv, instance norm, LeakyReLU, twice."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout),
                                    nn.LeakyReLU(0.2), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                    nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class TinyUNet(nn.Module):
    """x = x_in + U(x_in), x_in = A^H y / s (s = adjoint_quantile), one pooling level; `film_target` = last decoder."""

    def __init__(self, channels: int = 2, chans: int = 4, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.enc = ConvBlock(channels, chans)
            self.bottom = ConvBlock(chans, 2 * chans)
            self.up = nn.ConvTranspose2d(2 * chans, chans, 2, stride=2)
            self.dec = ConvBlock(2 * chans, chans)
            self.out = nn.Conv2d(chans, channels, 1)
        self.film_target = self.dec

    def core(self, x: Tensor) -> Tensor:
        e = self.enc(x)
        h = self.dec(torch.cat([self.up(self.bottom(nn.functional.avg_pool2d(e, 2))), e], 1))
        return x + self.out(h)

    def forward(self, y: Tensor, operator: ForwardOperator) -> Tensor:
        s = adjoint_quantile(y, operator).view(-1, *([1] * (y.ndim - 1)))
        x_in = operator.adjoint(y / s)
        return self.core(x_in) * s.view(-1, 1, 1, 1)


class TinyVarNet(TinyUNet):
    """Two cascades x <- x - A^H(A x - y) - U(x), sharing the structure of TinyUNet (film_target: last decoder)."""

    def __init__(self, channels: int = 2, chans: int = 4, seed: int = 0) -> None:
        super().__init__(channels, chans, seed)
        self.first = TinyUNet(channels, chans, seed + 1)

    def forward(self, y: Tensor, operator: ForwardOperator) -> Tensor:
        s = adjoint_quantile(y, operator).view(-1, *([1] * (y.ndim - 1)))
        ys = y / s
        x = operator.adjoint(ys)
        for step in (self.first.core, self.core):
            x = x - operator.adjoint(operator(x) - ys) - (x - step(x))
        return x * s.view(-1, 1, 1, 1)


class NetAlgorithm(Algorithm):
    """The NetworkAlgorithm interface: a frozen `net`, predict(y, operator, net=None), no prior."""

    uses_prior = False

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)

    def predict(self, y: Tensor, operator: ForwardOperator, net: nn.Module | None = None) -> Tensor:
        return (self.net if net is None else net)(y, operator)

    @torch.no_grad()
    def run(self, y, operator, prior, generator, callback=None) -> Tensor:
        return self.predict(y, operator)
