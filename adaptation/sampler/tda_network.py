"""Network TDA: TAO's non-parametric degradation adapter, fitted at the sampler's steps (after Gou et al., ICML 2024).

g(u) = u + h(u) (a conv stack h whose last layer is zero at start, so g is the identity), on the image before A
(`where=input`: A g(x)) or on A x (`where=output`), trained at each sampler step (every `every`-th, where sigma <=
`sigma_max`) with x̂0 held fixed on

    sum_b ||A g(x̂0_b) - y_b||^2 / ||y_b||^2 + lambda_identity ||g(u) - u||^2 / ||u||^2 + lambda_tv TV(g(u) - u) / TV(u)

and, optionally, a PatchGAN discriminator (real: y, fake: the adapted measurement; BCE). A linear g
(`activation=none`, the default) has its adjoint written out, so the solver's data term uses A g; a nonlinear g
(TAO's LeakyReLU) reaches the reconstruction through AIR's guidance (`+tda-net+air`) only: the adapter provides its
degradation (`adaptation.base.DEGRADATION`) and the chain hands it to AIR. Registered as `tda-net`, and built by
`tda` with `kind=network`. The conv widths default to (16, 32), sized for a CPU; TAO's are (64, 128, 256).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adaptation.base import DEGRADATION, Capability, T
from adaptation.sampler.losses import (PatchDiscriminator, as_image_channels, discriminator_loss, generator_loss,
                                       total_variation)
from adaptation.sampler.tda_base import TDABase
from algorithms.base import Reconstruction
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import batch_dot

PLACES = ("input", "output")
ACTIVATIONS = ("none", "leaky_relu")


class ConvAdapter(nn.Module):
    """g(u) = u + h(u), h = k x k convs (widths `hidden`, activation between), then a 1x1 conv initialised to 0."""

    def __init__(self, channels: int, hidden: Sequence[int] = (64, 128, 256), kernel: int = 3,
                 activation: str = "none", generator: torch.Generator | None = None) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}")
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd (same-size convolutions), got {kernel}")
        self.linear = activation == "none"
        widths = [channels, *hidden]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, kernel, padding=kernel // 2, bias=not self.linear)
                                   for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Conv2d(widths[-1], channels, 1, bias=not self.linear)
        for conv in self.convs:
            nn.init.kaiming_uniform_(conv.weight, a=0.2, generator=generator)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.out.weight)
        if self.out.bias is not None:
            nn.init.zeros_(self.out.bias)

    def forward(self, u: Tensor) -> Tensor:
        h = u
        for conv in self.convs:
            h = conv(h) if self.linear else F.leaky_relu(conv(h), 0.2)
        return u + self.out(h)

    def adjoint(self, v: Tensor) -> Tensor:
        """g^T v = v + h^T v for a linear g: the transposed convolutions in reverse order."""
        if not self.linear:
            raise TypeError("a nonlinear adapter (activation=leaky_relu) has no adjoint; use activation=none")
        h = F.conv_transpose2d(v, self.out.weight)
        for conv in reversed(self.convs):
            h = F.conv_transpose2d(h, conv.weight, padding=conv.padding)
        return v + h


def _to_channels(y: Tensor) -> tuple[Tensor, bool]:
    return as_image_channels(y), y.is_complex()


def _from_channels(z: Tensor, was_complex: bool) -> Tensor:
    if not was_complex:
        return z
    c = z.shape[1] // 2
    return torch.complex(z[:, :c], z[:, c:])


def apply_network(net: ConvAdapter, base: ForwardOperator, x: Tensor, where: str) -> Tensor:
    """A g(x) (where=input) or g(A x) (where=output; complex channels as real pairs)."""
    if where == "input":
        return base(net(x))
    z, cplx = _to_channels(base(x))
    return _from_channels(net(z), cplx)


class NetworkAdaptedOperator(ForwardOperator):
    """A composed with a linear adapter g: A g (where=input) or g A (where=output), adjoint written out."""

    def __init__(self, base: ForwardOperator, net: ConvAdapter, where: str = "input") -> None:
        nn.Module.__init__(self)
        if not net.linear:
            raise TypeError("NetworkAdaptedOperator needs a linear adapter (activation=none)")
        self.base, self.net, self.where = base, net, where
        self.image_shape = base.image_shape
        self.measurement_shape = base.measurement_shape
        self.measurement_dtype = base.measurement_dtype

    @property
    def noise_std(self) -> Tensor:  # type: ignore[override]
        return self.base.noise_std

    def set_noise_std(self, value: float | Tensor) -> None:
        self.base.set_noise_std(value)

    def forward(self, x: Tensor) -> Tensor:
        return apply_network(self.net, self.base, x, self.where)

    def adjoint(self, y: Tensor) -> Tensor:
        if self.where == "input":
            return self.net.adjoint(self.base.adjoint(y))
        z, cplx = _to_channels(y)
        return self.base.adjoint(_from_channels(self.net.adjoint(z), cplx))


class NetworkTDA(TDABase):
    """Test-time degradation adaptation with a conv adapter g around the operator (TAO's non-parametric TDA)."""

    name = "tda-net"
    kind = "network"
    provides = (DEGRADATION,)

    def __init__(self, lr: float = 0.02, iters: int = 1, every: int = 1, sigma_max: float = 1.0,
                 where: str = "input", hidden: Sequence[int] = (16, 32), kernel: int = 3, activation: str = "none",
                 lambda_identity: float = 1.0, lambda_tv: float = 0.0, lambda_adv: float = 0.0,
                 disc_lr: float = 1e-4, disc_width: int = 32, seed: int = 0) -> None:
        if where not in PLACES:
            raise ValueError(f"unknown TDA where={where!r}; choose one of {PLACES}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}")
        super().__init__(lr, iters, every, sigma_max)
        self.where, self.hidden, self.kernel, self.activation = where, tuple(hidden), kernel, activation
        self.lambda_identity, self.lambda_tv, self.lambda_adv = lambda_identity, lambda_tv, lambda_adv
        self.disc_lr, self.disc_width, self.seed = disc_lr, disc_width, seed
        self.net: ConvAdapter | None = None
        self.disc: PatchDiscriminator | None = None

    def reset(self) -> None:
        """Pretrained state: the conv adapter re-made as the identity at next use."""
        super().reset()
        self.net = None
        self.disc = None

    def _clear_batch(self) -> None:
        super()._clear_batch()
        self._disc_opt: torch.optim.Optimizer | None = None

    def provide(self, capability: Capability[T]) -> T:
        if capability is DEGRADATION:
            return self.degrade  # type: ignore[return-value]
        return super().provide(capability)

    def _prepare(self, y: Tensor, operator: ForwardOperator) -> ForwardOperator:
        if self.where == "input":
            channels = operator.image_shape[0]
        else:
            channels = as_image_channels(y).shape[1]
        if self.net is None:
            gen = torch.Generator().manual_seed(self.seed)
            self.net = ConvAdapter(channels, self.hidden, self.kernel, self.activation, gen).to(y.device)
        elif self.net.out.out_channels != channels:
            raise ValueError(f"the carried TDA adapter has {self.net.out.out_channels} channels but this batch needs "
                             f"{channels}; use the online scheme for problems whose shapes change")
        if self.lambda_adv > 0 and self.disc is None:
            with torch.random.fork_rng(devices=[]):  # its initial weights from the adapter's seed, not global state
                torch.manual_seed(self.seed + 1)
                self.disc = PatchDiscriminator(as_image_channels(y).shape[1], self.disc_width).to(y.device)
        if self.adapting:
            self._opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
            if self.disc is not None:
                self._disc_opt = torch.optim.Adam(self.disc.parameters(), lr=self.disc_lr, betas=(0.5, 0.999))
        if self.net.linear:
            return NetworkAdaptedOperator(operator, self.net, self.where)
        return operator

    def degrade(self, x: Tensor, operator: ForwardOperator) -> Tensor:
        """A_theta x = A g(x) (or g(A x)): the nominal operator with the conv adapter (what AIR guides through)."""
        if self.net is not None:
            base = operator.base if isinstance(operator, NetworkAdaptedOperator) else operator
            return apply_network(self.net, base, x, self.where)
        return operator(x)

    def _loss(self, x0: Tensor, y: Tensor) -> Tensor:
        """sum_b ||A g(x0) - y||^2 / ||y||^2 + the content-preserving and adversarial terms."""
        assert self.net is not None and self._base is not None
        y_norm = batch_dot(y, y).clamp_min(1e-30)
        if self.where == "input":
            u, gu = x0, self.net(x0)
            ay = self._base(gu)
        else:
            z, cplx = _to_channels(self._base(x0))
            u, gu = z, self.net(z)
            ay = _from_channels(gu, cplx)
        r = ay - y
        loss = (batch_dot(r, r) / y_norm).sum()
        if self.lambda_identity > 0:
            d = gu - u
            loss = loss + self.lambda_identity * (batch_dot(d, d) / batch_dot(u, u).clamp_min(1e-30)).sum()
        if self.lambda_tv > 0:
            loss = loss + self.lambda_tv * (total_variation(gu - u) / total_variation(u).clamp_min(1e-30)).sum()
        if self.lambda_adv > 0 and self.disc is not None:
            fake = as_image_channels(ay)
            if self._disc_opt is not None:  # one discriminator step first (TAO), then the adapter's BCE
                self._disc_opt.zero_grad(set_to_none=True)
                discriminator_loss(self.disc, as_image_channels(y), fake).backward(inputs=list(self.disc.parameters()))
                self._disc_opt.step()
            loss = loss + self.lambda_adv * generator_loss(self.disc, fake)
        return loss

    def _finish(self, recon: Reconstruction) -> None:
        if self.net is None or self._base is None:
            return
        with torch.no_grad():
            u = recon.image
            gu = self.net(u if self.where == "input" else as_image_channels(self._base(u)))
            ref = u if self.where == "input" else as_image_channels(self._base(u))
            gap = ((gu - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1).clamp_min(1e-30)).tolist()
        self._record["final"] = {"identity_gap": gap}
