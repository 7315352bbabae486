"""The algorithm interface: `reconstruct(y, operator, prior, generator, callback) -> Reconstruction`.

Every algorithm vectorises over the batch, takes all randomness from the generator, counts its
denoiser calls (NFE, per sample) and watches for divergence: a sample whose iterate turns NaN or
explodes is stopped (zeroed and frozen) and reported failed with the step and the reason, while
the other samples go on.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from inverse_problems.base import SVD, ForwardOperator
from inverse_problems.dense import dense_svd
from priors.base import Prior


@dataclass
class Step:
    """What a sampler exposes at each step to test-time adaptation (DESIGN.md, "Adapter").

    `x0` is the current clean estimate; a callback may return a replacement for it (AIR-style
    guidance) or None. `sigma` is the current noise level, (B,) tensor.
    """

    index: int
    n_steps: int
    sigma: Tensor
    x: Tensor
    x0: Tensor
    y: Tensor
    operator: ForwardOperator
    prior: Optional[Prior] = None


StepCallback = Callable[[Step], Optional[Tensor]]


@dataclass
class Reconstruction:
    """The result of one batch: image (B, C, H, W), NFE per sample, wall time, per-sample status."""

    image: Tensor
    nfe: int
    seconds: float
    failed: Tensor
    failure: list[Optional[str]]
    trace: list[dict[str, Any]] = field(default_factory=list)


class DivergenceMonitor:
    """Per-sample NaN/explosion detection. `check(step, x)` returns x with failed samples zeroed."""

    def __init__(self, batch: int, device: torch.device | str = "cpu", limit: float = 1e6) -> None:
        self.failed = torch.zeros(batch, dtype=torch.bool, device=device)
        self.failure: list[Optional[str]] = [None] * batch
        self.limit = limit

    def check(self, step: int, x: Tensor) -> Tensor:
        flat = x.detach().reshape(x.shape[0], -1)
        finite = torch.isfinite(flat).all(dim=1)
        big = flat.nan_to_num(0.0).abs().amax(dim=1) > self.limit
        bad = (~finite | big) & ~self.failed
        for i in torch.nonzero(bad).flatten().tolist():
            why = "non-finite values (NaN/Inf)" if not bool(finite[i]) else f"iterate exceeded {self.limit:g}"
            self.failure[i] = f"diverged at step {step}: {why}"
        self.failed |= bad
        if bool(self.failed.any()):
            x = torch.where(self.failed.view(-1, *([1] * (x.ndim - 1))), torch.zeros_like(x), x)
        return x


class Algorithm:
    """Base class. Subclasses implement `run`, calling `self.denoise` for every network call.

    `reconstruct` wraps `run` with timing, NFE counting, the divergence monitor, and the projection onto the
operator's support (pixels the measurements cannot see are zero).
    """

    uses_prior: bool = True
    needs_svd: bool = False
    # With needs_svd: the largest image (real coordinates) given the exact dense SVD (inverse_problems.dense)
    # when the operator has no closed form; 0 = none.
    dense_max: int = 0
    project_support: bool = True  # zero the pixels outside operator.support() (False: a method that uses no maps)

    def __init__(self) -> None:
        self.nfe = 0
        self.monitor: DivergenceMonitor | None = None

    def denoise(self, prior: Prior, x: Tensor, sigma: float | Tensor) -> Tensor:
        """One counted network evaluation."""
        self.nfe += 1
        return prior.denoise(x, sigma)

    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        raise NotImplementedError

    def check(self, operator: ForwardOperator, prior: Prior | None) -> None:
        """Refuse, before any compute, an operator or prior this algorithm cannot use."""
        if self.uses_prior and prior is None:
            raise ValueError(f"{type(self).__name__} needs a prior; pass --prior NAME")
        size = math.prod(operator.image_shape)
        if self.needs_svd and operator.svd() is None and size > self.dense_max:
            raise ValueError(
                f"{type(self).__name__} needs an operator with an exact SVD; {type(operator).__name__} has no closed "
                f"form and its image has {size} coordinates, above algorithm.dense_max={self.dense_max} for the "
                f"exact dense route (raise it: the cost grows as the cube), or use a problem whose operator has "
                f"one, such as single-coil cs_mri (coils=1), lowfield or inpainting")

    @staticmethod
    def spectral(operator: ForwardOperator, batch: int) -> SVD:
        """The operator's closed-form SVD, else its exact dense one (inverse_problems.dense)."""
        return operator.svd() or dense_svd(operator, batch)

    def reconstruct(self, y: Tensor, operator: ForwardOperator, prior: Prior | None = None,
                    generator: torch.Generator | None = None, callback: StepCallback | None = None) -> Reconstruction:
        self.check(operator, prior)
        self.nfe = 0
        self.monitor = DivergenceMonitor(y.shape[0], y.device)
        start = time.perf_counter()
        image = self.run(y, operator, prior, generator, callback)
        image = self.monitor.check(-1, image)
        support = operator.support() if self.project_support else None
        if support is not None:  # outside it the measurements see nothing: zero, as SENSE gives
            image = image * support.to(image)
        if y.is_cuda:
            torch.cuda.synchronize(y.device)
        seconds = time.perf_counter() - start
        return Reconstruction(image.detach(), self.nfe, seconds, self.monitor.failed.clone(), list(self.monitor.failure))

    def step(self, callback: StepCallback | None, step: Step) -> Tensor:
        """Hand a step to the callback (test-time adaptation); returns the possibly replaced x0."""
        if callback is None:
            return step.x0
        out = callback(step)
        return step.x0 if out is None else out
