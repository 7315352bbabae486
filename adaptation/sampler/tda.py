"""TDA: test-time degradation adaptation interleaved with the sampler (after Gou et al., ICML 2024, TAO).

At each sampler step (every `every`-th, only where sigma <= `sigma_max`; per parameter `param_sigma_max`
and `param_lr` refine both; where not set, the operator's `adaptation_sigma_max` and `adaptation_lr_scale`
give each parameter's threshold (default 1.0) and step (lr times the scale): a PSF width is fitted at every
step, a fine coil-map correction only late, with a tenth of the step) a few Adam steps fit the
adapted degradation to the measurement with the clean estimate x̂0 held fixed (detached):

    theta <- theta - lr * Adam(grad_theta sum_b ||A_theta(x̂0_b) - y_b||^2 / ||y_b||^2).

`kind=physical`: theta are the operator's own adaptable parameters (`adaptable_parameters()`: coil-map
correction and phase, PSF width, ...), trained in place on the operator the solver holds, so its data term
uses them at once. A parameter named `noise_std` gets its maximum-likelihood value instead, the RMS residual
per measured real component.

`kind=network`: TAO's non-parametric adapter g(u) = u + h(u) (a conv stack h whose last layer is zero at
start, so g is the identity), on the image before A (`where=input`: A g(x)) or on A x (`where=output`),
trained with content-preserving terms lambda_identity ||g(u) - u||^2 / ||u||^2 + lambda_tv TV(g(u) - u) / TV(u)
and, optionally, a PatchGAN discriminator (real: y, fake: the adapted measurement; BCE). A linear g
(`activation=none`, the default) has its adjoint written out, so the solver's data term uses A g; a
nonlinear g (TAO's LeakyReLU) reaches the reconstruction through AIR's guidance (`+tda+air`) only.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adaptation.base import Adapter, adaptable_parameters
from adaptation.sampler.losses import (PatchDiscriminator, as_image_channels, discriminator_loss, generator_loss,
                               total_variation)
from algorithms.base import Reconstruction, Step
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import batch_dot
from priors.base import Prior

KINDS = ("physical", "network")
DEFAULT_SIGMA_MAX = 1.0  # above it x̂0 is too blurry to fit a degradation to (unless the operator says otherwise)
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


def _summary(t: Tensor, limit: int = 256) -> Any:
    """A JSON-friendly value: the list of values (complex as [re, im]) when small, else shape and norm."""
    t = t.detach().cpu()
    if t.numel() > limit:
        return {"shape": list(t.shape), "norm": float(t.abs().pow(2).sum().sqrt())}
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.tolist()


class TDA(Adapter):
    """Test-time degradation adaptation (TAO's TDA): physical operator parameters or a conv adapter, per step."""

    def __init__(self, kind: str = "physical", lr: float = 1e-2, iters: int = 1, every: int = 1,
                 sigma_max: float | None = None, parameters: Sequence[str] | None = None,
                 param_lr: Mapping[str, float] | None = None, param_sigma_max: Mapping[str, float] | None = None,
                 estimate_noise: bool = True,
                 where: str = "input", hidden: Sequence[int] = (64, 128, 256), kernel: int = 3,
                 activation: str = "none", lambda_identity: float = 1.0, lambda_tv: float = 0.0,
                 lambda_adv: float = 0.0, disc_lr: float = 1e-4, disc_width: int = 32, seed: int = 0) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown TDA kind {kind!r}; choose one of {KINDS}")
        if where not in PLACES:
            raise ValueError(f"unknown TDA where={where!r}; choose one of {PLACES}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}")
        if iters < 1 or every < 1:
            raise ValueError(f"iters and every must be >= 1, got iters={iters}, every={every}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.kind, self.lr, self.iters, self.every = kind, lr, iters, every
        self.sigma_max = None if sigma_max is None else float(sigma_max)
        self.parameter_names = None if parameters is None else list(parameters)
        self.param_lr = dict(param_lr or {})
        self.param_sigma_max = {k: float(v) for k, v in (param_sigma_max or {}).items()}
        self.estimate_noise = estimate_noise
        self.where, self.hidden, self.kernel, self.activation = where, tuple(hidden), kernel, activation
        self.lambda_identity, self.lambda_tv, self.lambda_adv = lambda_identity, lambda_tv, lambda_adv
        self.disc_lr, self.disc_width, self.seed = disc_lr, disc_width, seed
        self.net: ConvAdapter | None = None
        self.disc: PatchDiscriminator | None = None
        self.history: list[dict[str, Any]] = []
        self._clear_batch()

    def reset(self) -> None:
        """Pretrained state: no carried physical values, the conv adapter re-made as the identity at next use."""
        super().reset()
        self.net = None
        self.disc = None
        self._clear_batch()

    def _clear_batch(self) -> None:
        self._base: ForwardOperator | None = None
        self._params: dict[str, nn.Parameter] = {}
        self._sigma_max_of: dict[str, float] = {}
        self._opt: torch.optim.Optimizer | None = None
        self._disc_opt: torch.optim.Optimizer | None = None
        self._record: dict[str, Any] = {}

    # hooks --------------------------------------------------------------------------------------
    def prepare(self, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> tuple[ForwardOperator, Prior | None]:
        self._clear_batch()
        self._base = operator
        self._record = {"adapter": "tda", "kind": self.kind, "adapting": bool(self.adapting), "steps_adapted": 0,
                        "loss_first": None, "loss_last": None}
        if self.kind == "physical":
            return self._prepare_physical(operator), prior
        return self._prepare_network(y, operator), prior

    def _prepare_physical(self, operator: ForwardOperator) -> ForwardOperator:
        params = adaptable_parameters(operator)
        if not params:
            raise ValueError(
                f"TDA kind=physical needs an operator with adaptable parameters; {type(operator).__name__} has none. "
                f"Use adapters.tda.kind=network, or a problem whose operator exposes adaptable_parameters()")
        if self.parameter_names is not None:
            unknown = sorted(set(self.parameter_names) - set(params))
            if unknown:
                raise ValueError(f"TDA parameters {unknown} are not adaptable parameters of {type(operator).__name__}; "
                                 f"valid: {', '.join(params)}")
            params = {k: params[k] for k in self.parameter_names}
        unknown = sorted((set(self.param_lr) | set(self.param_sigma_max)) - set(params))
        if unknown:
            raise ValueError(f"TDA param_lr/param_sigma_max name {unknown}, not adaptable parameters of "
                             f"{type(operator).__name__}; valid: {', '.join(params)}")
        with torch.no_grad():
            for name, p in params.items():
                if name in self.carried:
                    p.copy_(_fit_shape(self.carried[name].to(p), p.shape, name))
        self._params = params
        self._record["initial"] = {k: _summary(p) for k, p in params.items()}
        trainable = {k: p for k, p in params.items() if not _is_noise(k)}
        for p in trainable.values():
            p.requires_grad_(True)
        hints = getattr(operator, "adaptation_sigma_max", {})
        self._sigma_max_of = {k: self.param_sigma_max.get(k, self.sigma_max if self.sigma_max is not None
                                                          else hints.get(k, DEFAULT_SIGMA_MAX)) for k in params}
        if self.adapting and trainable:
            scale = getattr(operator, "adaptation_lr_scale", {})
            self._opt = torch.optim.Adam([{"params": [p], "lr": self.param_lr.get(k, self.lr * scale.get(k, 1.0))}
                                          for k, p in trainable.items()])
        return operator

    def _prepare_network(self, y: Tensor, operator: ForwardOperator) -> ForwardOperator:
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
        """A_theta x: the operator (physical, adapted in place) or A with the conv adapter."""
        if self.kind == "network" and self.net is not None:
            base = operator.base if isinstance(operator, NetworkAdaptedOperator) else operator
            return apply_network(self.net, base, x, self.where)
        return operator(x)

    def should_adapt(self, step: Step) -> bool:
        has_work = self._opt is not None or (self.estimate_noise and any(_is_noise(k) for k in self._params))
        return (self.adapting and has_work and step.index % self.every == 0
                and float(torch.as_tensor(step.sigma).max()) <= self.threshold())

    def threshold(self) -> float:
        """The largest sigma at which anything is adapted."""
        if self._sigma_max_of:
            return max(self._sigma_max_of.values())
        return self.sigma_max if self.sigma_max is not None else DEFAULT_SIGMA_MAX

    def on_step(self, step: Step) -> Tensor | None:
        if not self.should_adapt(step):
            return None
        x0 = step.x0.detach()
        y = step.y
        sigma = float(torch.as_tensor(step.sigma).max())
        frozen = [p for k, p in self._params.items() if sigma > self._sigma_max_of.get(k, math.inf)]
        if self._opt is None:  # a noise level only: nothing to step, the loss is recorded as is
            with torch.no_grad():
                loss = self._loss(x0, y)
        else:
            with torch.enable_grad():
                for _ in range(self.iters):
                    loss = self._loss(x0, y)
                    self._opt.zero_grad(set_to_none=True)
                    loss.backward()
                    for p in frozen:  # above its own threshold: Adam skips a parameter without a gradient
                        p.grad = None
                    self._opt.step()
        if self.kind == "physical" and self.estimate_noise:
            self._estimate_noise(x0, y, sigma)
        value = float(loss.detach())
        if self._record["loss_first"] is None:
            self._record["loss_first"] = value
        self._record["loss_last"] = value
        self._record["steps_adapted"] += 1
        return None

    def _loss(self, x0: Tensor, y: Tensor) -> Tensor:
        """sum_b ||A_theta x0 - y||^2 / ||y||^2 (+ the network's content and adversarial terms)."""
        y_norm = batch_dot(y, y).clamp_min(1e-30)
        if self.kind == "physical":
            r = self._base(x0) - y
            return (batch_dot(r, r) / y_norm).sum()
        assert self.net is not None and self._base is not None
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

    @torch.no_grad()
    def _estimate_noise(self, x0: Tensor, y: Tensor, sigma: float = 0.0) -> None:
        """noise_std <- sqrt(||A x0 - y||^2 / m), m the measured real components (maximum likelihood)."""
        for name, p in self._params.items():
            if not _is_noise(name) or sigma > self._sigma_max_of.get(name, math.inf):
                continue
            r = self._base(x0) - y
            measured = (y != 0).reshape(y.shape[0], -1).sum(1).clamp_min(1) * (2 if y.is_complex() else 1)
            est = (batch_dot(r, r) / measured).sqrt()
            p.copy_(_fit_shape(est, p.shape, name))

    def refine(self, recon: Reconstruction, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> Reconstruction:
        if self.kind == "physical":
            self._record["final"] = {k: _summary(p) for k, p in self._params.items()}
            if self.adapting:
                self.carried = {k: p.detach().clone() for k, p in self._params.items()}
            for p in self._params.values():
                p.requires_grad_(False)
        elif self.net is not None and self._base is not None:
            with torch.no_grad():
                u = recon.image
                gu = self.net(u if self.where == "input" else as_image_channels(self._base(u)))
                ref = u if self.where == "input" else as_image_channels(self._base(u))
                gap = ((gu - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1).clamp_min(1e-30)).tolist()
            self._record["final"] = {"identity_gap": gap}
        self.history.append(self._record)
        recon.trace.append(self._record)
        base = self._base
        self._clear_batch()
        self._base = base  # AIR in a later refine may still degrade through it
        return recon


def _is_noise(name: str) -> bool:
    return name.split(".")[-1] == "noise_std"


def _fit_shape(value: Tensor, shape: torch.Size, name: str) -> Tensor:
    """A carried value for a parameter of `shape`: as is, or averaged over a batch dimension that changed."""
    if value.shape == shape:
        return value
    if value.ndim == len(shape) and value.shape[1:] == shape[1:]:
        return value.mean(0, keepdim=True).expand(shape)
    if value.numel() == 1 or len(shape) == 0 or value.ndim == 0:
        return value.mean().expand(shape) if len(shape) else value.mean()
    if value.ndim == 1 and len(shape) == 1:
        return value.mean().expand(shape)
    raise ValueError(f"cannot carry adapted parameter {name!r} of shape {tuple(value.shape)} to shape {tuple(shape)}; "
                     f"use the online scheme")
