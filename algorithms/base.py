"""The algorithm interface: `reconstruct(y, operator, prior, generator, callback) -> Reconstruction`.

Every algorithm vectorises over the batch, takes all randomness from the generator, counts its
denoiser calls (NFE, per sample) and watches for divergence relative to the measurement scale: a
sample whose iterate turns NaN or explodes is stopped (zeroed and frozen) and reported failed with
the step and the reason, as is one whose reconstruction ends far above what A^H y measures, while
the other samples go on.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from inverse_problems.operators.base import SVD, ForwardOperator

from inverse_problems.problems.base import adjoint_quantile
from inverse_problems.operators.complex import magnitude
from inverse_problems.operators.dense import dense_svd
from priors.base import Prior


@dataclass
class Step:
    """What a sampler exposes at each step to test-time adaptation (docs/design.md, "Adapter").

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


@torch.no_grad()
def measurement_reference(y: Tensor, operator: ForwardOperator) -> Tensor:
    """(B,) the scale the measurements set: the 99th percentile of |A^H y| (the runner's scale, docs/design.md
    "Scaling", so about 1 in scaled units), at least a tenth of max |A^H y| (sparse measurements, whose
    99th percentile falls on unmeasured zeros). A non-linear operator (no adjoint) gives its own, `image_reference(y)`."""
    if getattr(operator, "forward_only", False):  # no A^H: the measurement's own magnitudes
        mag = (y.detach().abs() if y.is_complex() else magnitude(y.detach()).abs()).flatten(1).float()
        return torch.maximum(torch.quantile(mag, 0.99, dim=1), 0.1 * mag.amax(dim=1)).clamp_min(1e-12)
    if not operator.linear:
        return operator.image_reference(y).float()
    peak = magnitude(operator.adjoint(y).detach()).abs().flatten(1).amax(dim=1).float()
    return torch.maximum(adjoint_quantile(y, operator), 0.1 * peak)


class DivergenceMonitor:
    """Per-sample NaN/explosion detection relative to the measurement scale. `check(step, x)` returns x
    with failed samples zeroed; `final(x)` does the same for the reconstruction.

    With r the per-sample `reference` (measurement_reference: ~ the 99th percentile of |A^H y|) and sigma_max
    the prior's largest noise level, an iterate is diverged when it has NaN/Inf or max |x| > iterate_factor * (r + sigma_max) (a
    noisy iterate at sigma_max stays below ~5 sigma_max), and a reconstruction is exploded when
    max |x| > final_factor * r (a good one stays within a few r: the image is what A^H y measures).
    """

    def __init__(self, batch: int, device: torch.device | str = "cpu", reference: Tensor | float = 1.0,
                 sigma_max: float = 0.0, iterate_factor: float = 100.0, final_factor: float = 50.0) -> None:
        self.failed = torch.zeros(batch, dtype=torch.bool, device=device)
        self.failure: list[Optional[str]] = [None] * batch
        self.reference = torch.as_tensor(reference, dtype=torch.float32, device=device).expand(batch).clone()
        self.sigma_max = float(sigma_max)
        self.iterate_factor, self.final_factor = iterate_factor, final_factor

    def _bad(self, x: Tensor, limit: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        flat = x.detach().reshape(x.shape[0], -1)
        finite = torch.isfinite(flat).all(dim=1)
        peak = magnitude(x.detach().nan_to_num(0.0, 0.0, 0.0)).abs().flatten(1).amax(dim=1).float()
        big = peak > limit.to(peak)
        return (~finite | big) & ~self.failed, finite, peak

    def _stop(self, x: Tensor, bad: Tensor) -> Tensor:
        self.failed |= bad
        if bool(self.failed.any()):
            x = torch.where(self.failed.view(-1, *([1] * (x.ndim - 1))), torch.zeros_like(x), x)
        return x

    def check(self, step: int, x: Tensor) -> Tensor:
        limit = self.iterate_factor * (self.reference + self.sigma_max)
        bad, finite, peak = self._bad(x, limit)
        for i in torch.nonzero(bad).flatten().tolist():
            why = ("non-finite values (NaN/Inf)" if not bool(finite[i]) else
                   f"|x| = {float(peak[i]):.4g} exceeded {float(limit[i]):.4g} = {self.iterate_factor:g} x (measurement "
                   f"scale {float(self.reference[i]):#.3g} + sigma_max {self.sigma_max:g})")
            self.failure[i] = f"diverged at step {step}: {why}"
        return self._stop(x, bad)

    def final(self, x: Tensor) -> Tensor:
        """The reconstruction: NaN/Inf, or max |x| above final_factor times the measurement scale."""
        limit = self.final_factor * self.reference
        bad, finite, peak = self._bad(x, limit)
        for i in torch.nonzero(bad).flatten().tolist():
            self.failure[i] = ("diverged: non-finite values (NaN/Inf) in the reconstruction" if not bool(finite[i]) else
                               f"exploded: |x| = {float(peak[i]):.4g} vs measurement scale "
                               f"{float(self.reference[i]):#.3g} (limit {self.final_factor:g} x; a step size too large?)")
        return self._stop(x, bad)


# The largest matrix (bytes, float32) a forward-only operator is written out as for an SVD-based solver
# (`ForwardOnly.probed_matrix`): its dense SVD needs a few times more.
PROBE_BYTES = 2**30


class Algorithm:
    """Base class. Subclasses implement `run`, calling `self.denoise` for every network call.

    `reconstruct` wraps `run` with timing, NFE counting, the divergence monitor, and the projection onto the
operator's support (pixels the measurements cannot see are zero).
    """

    uses_prior: bool = True
    needs_svd: bool = False
    # With needs_svd: the largest image (real coordinates) given the exact dense SVD (inverse_problems.operators.dense)
    # when the operator has no closed form; 0 = none.
    dense_max: int = 0
    project_support: bool = True  # zero the pixels outside operator.support() (False: a method that uses no maps)
    # Capability: the operator attributes this algorithm needs beyond ForwardOperator's (e.g. an MRSI line-shape
    # fit); an operator without them is refused before compute. Batteries pick an operator that has them.
    operator_needs: tuple[str, ...] = ()
    # Capability: True for a solver that calls only the operator's `forward` (no adjoint, no gradient through it), the
    # only kind a forward-only operator (inverse_problems.operators.forward_only) accepts.
    derivative_free: bool = False
    # Capability: False for a solver that only differentiates `operator.forward` (DPS, DAPS's Langevin), so it also runs
    # on a non-linear operator (`operator.linear` False: no adjoint, normal or SVD); True refuses those before compute
    # (a derivative-free solver, which calls only `forward`, runs on them too)
    needs_linear: bool = True

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
        if getattr(operator, "forward_only", False) and not self.derivative_free:
            raise ValueError(f"{type(self).__name__} {self.operator_use()}; this problem's operator is forward-only "
                             f"(no adjoint, no gradient through it): use a derivative-free solver (marked so in `bench "
                             f"list algorithms`)")
        missing = [m for m in self.operator_needs if not hasattr(operator, m)]
        if missing:
            raise ValueError(f"{type(self).__name__} needs an operator with {', '.join(missing)}, which "
                             f"{type(operator).__name__} lacks; use a problem whose operator has them")
        if not operator.linear and not self.derivative_free and (self.needs_linear or self.needs_svd):
            raise ValueError(
                f"{type(self).__name__} needs a linear operator ({'an SVD' if self.needs_svd else 'its adjoint'}); "
                f"{type(operator).__name__} is non-linear (no adjoint, no SVD): use a solver that differentiates "
                f"the forward model, such as dps or daps")
        if self.uses_prior and prior is None:
            raise ValueError(f"{type(self).__name__} needs a prior; pass --prior NAME")
        size = math.prod(operator.image_shape)
        if self.needs_svd and getattr(operator, "forward_only", False):
            if not getattr(operator, "linear", False):
                raise ValueError(f"{type(self).__name__} needs a linear operator (its SVD); this forward-only operator "
                                 f"is not declared linear")
            rows = math.prod(operator.measurement_shape) * (2 if operator.measurement_dtype.is_complex else 1)
            if operator.svd() is None and 4 * rows * size > PROBE_BYTES:
                raise ValueError(
                    f"{type(self).__name__} needs the SVD of this forward-only operator, written out from forward "
                    f"calls as a {rows} x {size} matrix ({4 * rows * size / 2**30:.1f} GiB in float32), above the "
                    f"{PROBE_BYTES / 2**30:.0f} GiB the probe allows: use a solver that needs forward calls only "
                    f"(dpg, scg, enkg, dps-gsg), or a problem with fewer measurements")
        if self.needs_svd and operator.svd() is None and size > self.dense_max:
            raise ValueError(
                f"{type(self).__name__} needs an operator with an exact SVD; {type(operator).__name__} has no closed "
                f"form and its image has {size} coordinates, above algorithm.dense_max={self.dense_max} for the "
                f"exact dense route (raise it: the cost grows as the cube), or use a problem whose operator has "
                f"one, such as single-coil cs_mri (coils=1), lowfield or inpainting")

    def operator_use(self) -> str:
        """What this algorithm needs of the operator beyond `forward`, in words (for the forward-only refusal)."""
        if self.needs_svd:
            return "needs the operator's SVD (or its adjoint, for the dense one)"
        return "needs the operator's adjoint or gradients through the forward model"

    def spectral(self, operator: ForwardOperator, batch: int) -> SVD:
        """The operator's closed-form SVD, else one from its block-diagonal A^H A where it offers that
        (`eigen_svd`: multi-coil MRI under a line mask), else its exact dense one (inverse_problems.operators.dense);
        a linear forward-only operator is first written out as a matrix from forward calls (`probed_matrix`)."""
        svd = operator.svd()
        if svd is not None:
            return svd
        eigen = getattr(operator, "eigen_svd", None)
        svd = eigen() if eigen is not None else None
        if svd is not None:
            return svd
        if getattr(operator, "forward_only", False):
            return dense_svd(operator.probed_matrix(self.dense_max), batch)  # type: ignore[operator]
        return dense_svd(operator, batch)

    def reconstruct(self, y: Tensor, operator: ForwardOperator, prior: Prior | None = None,
                    generator: torch.Generator | None = None, callback: StepCallback | None = None) -> Reconstruction:
        self.check(operator, prior)
        self.nfe = 0
        self.monitor = DivergenceMonitor(y.shape[0], y.device, measurement_reference(y, operator),
                                         float(prior.sigma_max) if prior is not None else 0.0)
        start = time.perf_counter()
        image = self.run(y, operator, prior, generator, callback)
        image = self.monitor.final(image)
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
