"""Physical TDA: test-time adaptation of the operator's own physical parameters, interleaved with the sampler
(after Gou et al., ICML 2024, TAO).

theta are the operator's adaptable parameters (`adaptable_parameters()`: coil-map correction and phase, PSF width,
frequency drift, ...), trained in place on the operator the solver holds, so its data term uses them at once. At
each sampler step (every `every`-th, only where sigma <= the parameter's threshold) `iters` Adam steps

    theta <- theta - lr_k * Adam(grad_theta sum_b ||A_theta(x̂0_b) - y_b||^2 / ||y_b||^2)

with x̂0 held fixed. Per parameter k the step is `param_lr[k]`, else `lr * param_lr_scale[k]` (else `lr`), and the
threshold `param_sigma_max[k]`, else `sigma_max`: how the adapter tunes a parameter is its own configuration, never
the operator's (a problem's choices, e.g. cs_mri's smaller step for the 256-number coil-map correction, are laid
over these options by configs/problem/<name>.yaml). A parameter named `noise_std` gets its maximum-likelihood value
instead of a step, the RMS residual per measured real component.
"""
from __future__ import annotations

import math
from types import MappingProxyType
from typing import Mapping, Sequence

import torch
from torch import Tensor

from adaptation.base import adaptable_parameters
from adaptation.sampler.tda_base import TDABase, summary
from algorithms.base import Reconstruction
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import batch_dot

NONE: Mapping[str, float] = MappingProxyType({})  # an empty per-parameter map (a default that cannot be changed)


class PhysicalTDA(TDABase):
    """Test-time degradation adaptation of the operator's physical parameters (coil maps, PSF width, drift, ...)."""

    kind = "physical"

    def __init__(self, lr: float = 0.02, iters: int = 1, every: int = 1, sigma_max: float = 1.0,
                 parameters: Sequence[str] | None = None, param_lr: Mapping[str, float] = NONE,
                 param_lr_scale: Mapping[str, float] = NONE, param_sigma_max: Mapping[str, float] = NONE,
                 estimate_noise: bool = True) -> None:
        super().__init__(lr, iters, every, sigma_max)
        self.parameter_names = None if parameters is None else list(parameters)
        self.param_lr = dict(param_lr)
        self.param_lr_scale = dict(param_lr_scale)
        self.param_sigma_max = {k: float(v) for k, v in param_sigma_max.items()}
        self.estimate_noise = estimate_noise

    def _prepare(self, y: Tensor, operator: ForwardOperator) -> ForwardOperator:
        params = adaptable_parameters(operator)
        if not params:
            raise ValueError(
                f"TDA kind=physical needs an operator with adaptable parameters; {type(operator).__name__} has none. "
                f"Use adapters.tda.kind=network (or +tda-net), or a problem whose operator exposes "
                f"adaptable_parameters()")
        # explicit per-parameter values must name the operator's parameters; a step scale is a rule by name (a
        # problem's yaml names parameters its operator has under some options only, e.g. cs_mri's coil_correction)
        unknown = sorted((set(self.param_lr) | set(self.param_sigma_max)) - set(params))
        if unknown:
            raise ValueError(f"TDA param_lr/param_sigma_max name {unknown}, not adaptable parameters of "
                             f"{type(operator).__name__}; valid: {', '.join(params)}")
        if self.parameter_names is not None:
            unknown = sorted(set(self.parameter_names) - set(params))
            if unknown:
                raise ValueError(f"TDA parameters {unknown} are not adaptable parameters of {type(operator).__name__}; "
                                 f"valid: {', '.join(params)}")
            params = {k: params[k] for k in self.parameter_names}
        with torch.no_grad():
            for name, p in params.items():
                if name in self.carried:
                    p.copy_(_fit_shape(self.carried[name].to(p), p.shape, name))
        self._params = params
        self._record["initial"] = {k: summary(p) for k, p in params.items()}
        trainable = {k: p for k, p in params.items() if not _is_noise(k)}
        for p in trainable.values():
            p.requires_grad_(True)
        self._sigma_max_of = {k: self.param_sigma_max.get(k, self.sigma_max) for k in params}
        if self.adapting and trainable:
            self._opt = torch.optim.Adam([{"params": [p], "lr": self.step_of(k)} for k, p in trainable.items()])
        return operator

    def step_of(self, name: str) -> float:
        """The Adam step of parameter `name`: `param_lr`, else `lr` times `param_lr_scale` (1 where absent)."""
        return self.param_lr.get(name, self.lr * self.param_lr_scale.get(name, 1.0))

    def _has_work(self) -> bool:
        return self._opt is not None or (self.estimate_noise and any(_is_noise(k) for k in self._params))

    def _loss(self, x0: Tensor, y: Tensor) -> Tensor:
        """sum_b ||A_theta x0 - y||^2 / ||y||^2."""
        y_norm = batch_dot(y, y).clamp_min(1e-30)
        r = self._base(x0) - y
        return (batch_dot(r, r) / y_norm).sum()

    def _after_step(self, x0: Tensor, y: Tensor, sigma: float) -> None:
        if self.estimate_noise:
            self._estimate_noise(x0, y, sigma)

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

    def _finish(self, recon: Reconstruction) -> None:
        self._record["final"] = {k: summary(p) for k, p in self._params.items()}
        if self.adapting:
            self.carried = {k: p.detach().clone() for k, p in self._params.items()}
        for p in self._params.values():
            p.requires_grad_(False)


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
