"""D2SA's two stages around a frozen reconstruction network (Zhang, Sun, Deng, Cheng, Schönlieb, Aviles-Rivero,
NeurIPS 2025, "dual-stage distribution and slice adaptation").

`mr-inr` (stage 1, patient level, in `prepare`): an implicit neural representation h = SIREN(gamma(v), z_s)
(depth 4, width 256, omega_0 = 30) on Gaussian Fourier features gamma(v) = [cos 2 pi v B, sin 2 pi v B] of the
pixel grid v in [0, 1]^2 (B ~ N(0, scale^2), 128 frequencies, scale 8) and a per-slice latent z_s in R^128 (init N(0, 0.01^2))
(depth counts the linear output layer) outputs an image g_s and FiLM maps (gamma, beta) that modulate the network's `film_target` (its last decoder
block) output features h as gamma * h + beta. The FiLM head starts at zero with gamma = 1 + head, so the network
is unchanged before adaptation. With input mask I and loss mask L of the baseline it follows (FINE: Omega, Omega;
NR2N: Omega and a 2x sub-mask, Omega; SSDU: Theta, Lambda), per slice

    relL1(y_L, M_L A f(y_I)) + relL1(y_Omega, M_Omega A g_s) + 1e-4 ||z_s||^2 / 0.01^2,
    relL1(a, b) = ||b - a||_1 / ||a||_1,

Adam (latents lr 1e-3, the INR 1e-4), epochs over the patient's slices; the network's weights stay frozen.

`sst` (stage 2, single slice, in `refine`): on the output h of every frozen conv block B of the network (each
`ConvBlock`, else each 3x3 convolution), h = B(x) + P(g(D h) * D h): D = the sum of central, angular, horizontal,
vertical and vanilla difference convolutions (DEA-Net's detail-enhanced convolution, re-parametrised into one 3x3
kernel, dim -> dim / 4), g(s) = 1 / (1 + (s / K)^2) the Perona-Malik diffusivity of D's response with a learnable
K, P a 1x1 convolution back to dim initialised at zero (the network is unchanged before adaptation). relL1 on the
training part of Omega with 5 % held out; Adam 1e-4; after 3 windows, stop when the held-out error's mean over the
last 30 iterations exceeds the 30 before.
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adaptation.base import MASK_SCHEME, Need
from adaptation.network.kspace import (SampleOperator, SubsampledOperator, batch_mask, nr2n_submask, rel_l1, restrict,
                               ssdu_split)
from adaptation.network.network_tta import (NetWrapper, NetworkAdapter, SliceNetworkAdapter, check_positive, core,
                                    fit_epochs, subset)
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.random import Randomness, SampleGenerators
from priors.base import Prior

MASK_SCHEMES = ("auto", "fine", "nr2n", "ssdu")


def one_generator(generator: Randomness, seed: int) -> torch.Generator:
    """A CPU torch.Generator for initialising weights (on the CPU whatever the device, then moved), seeded from the
    first per-sample generator, the given one, or `seed`."""
    if isinstance(generator, SampleGenerators):
        generator = generator[0]
    if isinstance(generator, torch.Generator):
        return torch.Generator().manual_seed(generator.initial_seed())
    return torch.Generator().manual_seed(seed)


def sample_index(operator: ForwardOperator, batch: int) -> list[int]:
    """Which samples of the adapted batch an operator's measurements belong to (SampleOperator wrappers say so;
    a plain operator holds the whole batch)."""
    selections: list[list[int]] = []
    op = operator
    while isinstance(op, (SubsampledOperator, SampleOperator)):
        if isinstance(op, SampleOperator):
            selections.append(op.index.tolist())
            batch = op.batch  # the innermost one's batch is the adapted batch
        op = op.base
    index = list(range(batch))
    for sel in reversed(selections):
        index = [index[i] for i in sel]
    return index


class Siren(nn.Module):
    """x -> sin(omega_0 (W x + b)) layers (Sitzmann et al., NeurIPS 2020), then an image head and a FiLM head
    (the FiLM head zero-initialised)."""

    def __init__(self, features: int, width: int, depth: int, image_channels: int, film_channels: int,
                 omega0: float, generator: torch.Generator) -> None:
        super().__init__()
        self.omega0 = omega0
        dims = [features] + [width] * (depth - 1)  # depth counts the output layer (D2SA's SIRENPrompt)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.image = nn.Linear(width, image_channels)
        self.film = nn.Linear(width, film_channels)
        with torch.no_grad():
            for i, layer in enumerate([*self.layers, self.image]):
                n = layer.in_features
                bound = 1 / n if i == 0 else math.sqrt(6 / n) / omega0
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-1 / math.sqrt(n), 1 / math.sqrt(n), generator=generator)
            self.film.weight.zero_()
            self.film.bias.zero_()

    def forward(self, v: Tensor) -> tuple[Tensor, Tensor]:
        for layer in self.layers:
            v = torch.sin(self.omega0 * layer(v))
        return self.image(v), self.film(v)


class MRINR(nn.Module):
    """SIREN on Gaussian Fourier features of the (H, W) grid and per-slice latents; `forward(index)` returns the
    images g (b, C, H, W) and the FiLM maps (b, 2F, H, W) of the slices `index`."""

    def __init__(self, shape: tuple[int, int, int], film_channels: int, slices: int, frequencies: int = 128,
                 scale: float = 8.0, latent: int = 128, width: int = 256, depth: int = 4, omega0: float = 30.0,
                 latent_std: float = 0.01, generator: torch.Generator | None = None) -> None:
        super().__init__()
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        c, h, w = shape
        self.shape, self.film_channels, self.latent_std = shape, film_channels, latent_std
        ys, xs = torch.linspace(0, 1, h), torch.linspace(0, 1, w)
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)
        self.register_buffer("grid", grid)
        self.register_buffer("freqs", torch.randn(2, frequencies, generator=gen) * scale)
        self.siren = Siren(2 * frequencies + latent, width, depth, c, 2 * film_channels, omega0, gen)
        self.latents = nn.Parameter(torch.randn(slices, latent, generator=gen) * latent_std)

    def forward(self, index: list[int]) -> tuple[Tensor, Tensor]:
        c, h, w = self.shape
        proj = 2 * math.pi * self.grid @ self.freqs
        feats = torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1)  # (HW, 2 frequencies)
        z = self.latents[index]  # (b, latent)
        v = torch.cat([feats.expand(len(index), -1, -1), z[:, None].expand(-1, h * w, -1)], dim=-1)
        image, film = self.siren(v)
        # contiguous (B, C, H, W): a strided map would give the modulated features another layout, and the
        # convolutions after them other rounding
        return (image.transpose(1, 2).reshape(len(index), c, h, w).contiguous(),
                film.transpose(1, 2).reshape(len(index), 2 * self.film_channels, h, w).contiguous())


class FiLMNet(NetWrapper):
    """The inner network with its `film_target` output h modulated as (1 + dgamma) h + beta, (dgamma, beta) from
    the MR-INR of the slices the operator's measurements belong to.

    Once the INR is frozen (stage 2, inference), its maps are constants of the slice: they are computed once per
    slice selection and reused (the same tensors, so the same bits), keyed by the parameters' in-place versions;
    while any INR parameter trains (stage 1) they are recomputed every call."""

    def __init__(self, inner: nn.Module, inr: MRINR) -> None:
        super().__init__()
        self.inner, self.inr = inner, inr
        self._maps: dict[tuple, Tensor] = {}  # (slice index, parameter versions) -> FiLM maps of a frozen INR

    def film(self, index: list[int]) -> Tensor:
        """The FiLM maps (b, 2F, H, W) of the slices `index` (cached while the INR is frozen)."""
        params = list(self.inr.parameters())
        if any(p.requires_grad for p in params):
            self._maps.clear()
            return self.inr(index)[1]
        key = (tuple(index), tuple(p._version for p in params))
        if key not in self._maps:
            if len(self._maps) >= 64:
                self._maps.clear()
            with torch.no_grad():
                self._maps[key] = self.inr(index)[1]
        return self._maps[key]

    def forward(self, y: Tensor, operator: ForwardOperator) -> Tensor:
        index = sample_index(operator, y.shape[0])
        if len(index) != y.shape[0] or max(index) >= self.inr.latents.shape[0]:
            raise ValueError(f"mr-inr holds latents for {self.inr.latents.shape[0]} slices (the batch it adapted on); "
                             f"it cannot modulate a batch of {y.shape[0]} measurements")
        film = self.film(index)
        f = self.inr.film_channels

        def modulate(module: nn.Module, inputs: Any, h: Tensor) -> Tensor:
            maps = film if film.shape[-2:] == h.shape[-2:] else F.interpolate(film, size=h.shape[-2:],
                                                                              mode="bilinear", align_corners=False)
            return (1 + maps[:, :f]) * h + maps[:, f:]

        handle = core(self.inner).film_target.register_forward_hook(modulate)
        try:
            return self.inner(y, operator)
        finally:
            handle.remove()


def film_features(alg: Any, net: nn.Module, y: Tensor, operator: ForwardOperator) -> int:
    """The number of feature channels of the network's `film_target` output (one probing forward pass)."""
    target = getattr(core(net), "film_target", None)
    if not isinstance(target, nn.Module):
        raise ValueError(f"mr-inr modulates the network's `film_target` (its last decoder block), but "
                         f"{type(core(net)).__name__} has none; use a unet or varnet of algorithms.networks.models")
    seen: list[int] = []
    handle = target.register_forward_hook(lambda m, i, h: seen.append(h.shape[1]))
    try:
        with torch.no_grad():
            alg.predict(y[:1], SampleOperator(operator, [0], y.shape[0]), net=net)
    finally:
        handle.remove()
    return seen[0]


class MRINRAdapter(NetworkAdapter):
    """D2SA stage 1 (MR-INR): a SIREN with per-slice latents, trained on the patient's measured k-space, FiLM-
    modulates the network's last decoder block (see the module docstring)."""

    name = "mr-inr"
    patient_level = True
    needs = (Need(MASK_SCHEME, required=False, earlier=True),)  # masks=auto: the baseline's before it, else fine's

    def __init__(self, masks: str = "auto", epochs: int = 25, batch_size: int = 1, lr: float = 1e-4,
                 latent_lr: float = 1e-3, frequencies: int = 128, scale: float = 8.0, latent: int = 128,
                 width: int = 256, depth: int = 4, omega0: float = 30.0, latent_std: float = 0.01,
                 latent_weight: float = 1e-4, rho: float = 0.4, q: float = 0.5, seed: int = 0) -> None:
        super().__init__(seed)
        if masks not in MASK_SCHEMES:
            raise ValueError(f"unknown mr-inr masks {masks!r}; choose one of {', '.join(MASK_SCHEMES)}")
        if epochs < 0 or batch_size < 1 or min(frequencies, latent, width, depth) < 1:
            raise ValueError("mr-inr needs epochs >= 0 and batch_size, frequencies, latent, width, depth >= 1")
        check_positive(lr=lr, latent_lr=latent_lr, scale=scale, omega0=omega0, latent_std=latent_std)
        self.masks, self.epochs, self.batch_size, self.lr, self.latent_lr = masks, epochs, batch_size, lr, latent_lr
        self.arch = dict(frequencies=frequencies, scale=scale, latent=latent, width=width, depth=depth, omega0=omega0,
                         latent_std=latent_std)
        self.latent_weight, self.rho, self.q = latent_weight, rho, q
        self.inr: MRINR | None = None

    def reset(self) -> None:
        super().reset()
        self.inr = None

    def scheme(self) -> str:
        """The input/loss masks: `masks`, or under `auto` those of the network baseline chained before it (fine,
        nr2n, ssdu: the chain hands them, `adaptation.base.MASK_SCHEME`; fine's when there is none)."""
        if self.masks != "auto":
            return self.masks
        return self.handed(MASK_SCHEME, "fine")

    def prepare(self, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> tuple[ForwardOperator, Prior | None]:
        alg = self.network_algorithm()
        start = time.perf_counter()
        b = y.shape[0]
        net = alg.net
        feats = film_features(alg, net, y, operator)
        inr = MRINR(tuple(operator.image_shape), feats, b, generator=one_generator(self.stream("init"), self.seed),
                    **self.arch).to(y.real.device)
        if self.carried:
            inr.load_state_dict({k[4:]: v for k, v in self.carried.items() if k.startswith("inr.")}, strict=False)
        self.inr = inr  # lazily built: dropped by reset()
        scheme = self.scheme()
        self._record = {"adapter": self.name, "adapting": bool(self.adapting), "masks": scheme, "slices": b,
                        "steps": 0, "loss_first": None, "loss_last": None}
        model = FiLMNet(net, inr)
        if self.adapting and self.epochs > 0:
            omega = batch_mask(operator, b).to(y.real.device)
            if scheme == "ssdu":
                inp_all, loss_all = ssdu_split(omega, self.rho, self.stream("split"))
            else:
                inp_all, loss_all = omega, omega
            sub_gen = self.stream("submask")
            opt = torch.optim.Adam([{"params": [inr.latents], "lr": self.latent_lr},
                                    {"params": list(inr.siren.parameters()), "lr": self.lr}], foreach=True)

            def loss_of(index: list[int]) -> Tensor:
                op_k = SampleOperator(operator, index, b)
                om, inp, lmask = omega[index], inp_all[index], loss_all[index]
                if scheme == "nr2n":
                    inp = nr2n_submask(om, self.q, subset(sub_gen, index))
                pred = self.predict(y[index] * inp, restrict(op_k, inp), model)
                g, _ = inr(index)
                z = inr.latents[index]
                return (rel_l1(y[index], op_k(pred), lmask) + rel_l1(y[index], op_k(g), om)
                        + self.latent_weight * z.pow(2).sum(1) / self.arch["latent_std"] ** 2).mean()

            fit_epochs(opt, loss_of, b, self.batch_size, self.epochs, self._record)
            self.carried = {f"inr.{k}": v.detach().clone() for k, v in inr.state_dict().items()
                            if k not in ("latents", "grid", "freqs")}
        inr.requires_grad_(False)
        alg.net = model
        self._record["seconds"] = time.perf_counter() - start
        return operator, prior


class DEConv(nn.Module):
    """Detail-enhanced convolution (Chen et al., DEA-Net, 2024): central, angular, horizontal, vertical and vanilla
    difference convolutions, summed into one 3x3 kernel (exactly equal to summing the five convolutions).

    The five weights are one tensor (cout, cin, 9 + 9 + 9 + 3 + 3) and the summed kernel is weight @ basis, a fixed
    (33, 9) matrix: central w -> w with centre w_4 - sum(w) (sum_i w_i (x_i - x_centre)); angular w -> w - w[perm]
    (each tap minus its neighbour around the ring); horizontal h -> left column h, right column -h; vertical
    v -> top row v, bottom row -v; vanilla w -> w."""

    ANGULAR = [3, 0, 1, 6, 4, 2, 7, 8, 5]  # DEA-Net's ring permutation (PiDiNet's APDC)
    PARTS = {"central": (0, 9), "angular": (9, 18), "vanilla": (18, 27), "horizontal": (27, 30), "vertical": (30, 33)}

    def __init__(self, cin: int, cout: int, generator: torch.Generator) -> None:
        super().__init__()
        bound = 1 / math.sqrt(cin * 9)
        self.weight = nn.Parameter(torch.empty(cout, cin, 33).uniform_(-bound, bound, generator=generator))
        self.bias = nn.Parameter(torch.zeros(cout))
        basis = torch.zeros(33, 9)
        basis[0:9] = torch.eye(9)
        basis[0:9, 4] -= 1
        basis[9:18] = torch.eye(9)
        for s, t in enumerate(self.ANGULAR):
            basis[9 + t, s] -= 1
        basis[18:27] = torch.eye(9)
        for j in range(3):
            basis[27 + j, 3 * j], basis[27 + j, 3 * j + 2] = 1, -1  # row j: left minus right
            basis[30 + j, j], basis[30 + j, 6 + j] = 1, -1  # column j: top minus bottom
        self.register_buffer("basis", basis)

    def part(self, name: str) -> Tensor:
        """One of the five weights (cout, cin, 9 or 3), a view of `weight`."""
        a, b = self.PARTS[name]
        return self.weight[:, :, a:b]

    def kernel(self) -> Tensor:
        """The re-parametrised (cout, cin, 3, 3) kernel."""
        return (self.weight @ self.basis).reshape(*self.weight.shape[:2], 3, 3)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.kernel(), self.bias, padding=1)


def perona_malik(s: Tensor, k: Tensor) -> Tensor:
    """The Perona-Malik diffusivity g(s) = 1 / (1 + (s / K)^2), elementwise."""
    return 1 / (1 + (s / k) ** 2)


class SSTBranch(nn.Module):
    """h -> P(g(D h) * D h): difference convolutions D (dim -> dim / ratio) gated elementwise by the Perona-Malik
    diffusivity of their own response (learnable K = exp(log_k)), then a 1x1 convolution P (-> dim) initialised
    at zero (D2SA's DEBlock, with P at zero)."""

    def __init__(self, dim: int, ratio: int, k0: float, generator: torch.Generator) -> None:
        super().__init__()
        hidden = max(1, dim // ratio)
        self.deconv = DEConv(dim, hidden, generator)
        self.log_k = nn.Parameter(torch.tensor(math.log(k0)))
        self.out = nn.Conv2d(hidden, dim, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: Tensor) -> Tensor:
        d = self.deconv(h)
        return self.out(perona_malik(d, self.log_k.exp()) * d)


def branch_sites(net: nn.Module) -> list[tuple[str, int]]:
    """Where SST adds branches in the recon network, as (module name, output channels): every `ConvBlock` (the
    fastMRI U-Net's block, where D2SA puts them), else every 3x3, stride-1, same-padding convolution."""
    def out_channels(m: nn.Module) -> int:
        convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
        return convs[-1].out_channels
    named = list(core(net).named_modules())
    blocks = [(n, out_channels(m)) for n, m in named if type(m).__name__ == "ConvBlock"
              and any(isinstance(c, nn.Conv2d) for c in m.modules())]
    if blocks:
        return blocks
    return [(n, m.out_channels) for n, m in named
            if type(m) is nn.Conv2d and m.kernel_size == (3, 3) and m.stride == (1, 1) and m.padding == (1, 1)
            and m.groups == 1 and m.dilation == (1, 1)]


class SSTNet(NetWrapper):
    """The inner network with an SST branch on the output h of each conv block: h + branch(h)."""

    def __init__(self, inner: nn.Module, k0: float, generator: torch.Generator, ratio: int = 4) -> None:
        super().__init__()
        self.inner = inner
        sites = branch_sites(inner)
        if not sites:
            raise ValueError(f"sst adds branches beside conv blocks, but {type(core(inner)).__name__} has no ConvBlock "
                             f"and no 3x3 convolution")
        self.sites = [name for name, _ in sites]
        self.branches = nn.ModuleList(SSTBranch(dim, ratio, k0, generator) for _, dim in sites)

    def forward(self, y: Tensor, operator: ForwardOperator) -> Tensor:
        modules = dict(core(self.inner).named_modules())
        handles = [modules[name].register_forward_hook(lambda m, i, out, br=branch: out + br(out))
                   for name, branch in zip(self.sites, self.branches)]
        try:
            return self.inner(y, operator)
        finally:
            for h in handles:
                h.remove()


class SST(SliceNetworkAdapter):
    """D2SA stage 2 (single-slice refinement): zero-initialised SST branches beside the frozen convolutions,
    trained per slice on relL1 of the training k-space with held-out early stopping (window 30)."""

    name = "sst"

    def __init__(self, lr: float = 1e-4, max_iters: int = 100, holdout: float = 0.05, window: int = 30,
                 start: int = 90, k0: float = 1.0, ratio: int = 4, seed: int = 0) -> None:
        super().__init__(lr, max_iters, holdout, window, start, seed)
        check_positive(k0=k0)
        if ratio < 1:
            raise ValueError(f"ratio (the branch's channel reduction) must be >= 1, got {ratio}")
        self.k0, self.ratio = k0, ratio

    def adapted(self, net: nn.Module, generator: Randomness = None) -> tuple[nn.Module, list[nn.Parameter]]:
        device = next(core(net).parameters()).device
        model = SSTNet(net, self.k0, one_generator(generator, self.seed), self.ratio)
        model.branches.to(device)
        return model, list(model.branches.parameters())


__all__ = ["MRINRAdapter", "SST", "MRINR", "FiLMNet", "SSTNet", "SSTBranch", "DEConv", "perona_malik",
           "sample_index"]
