"""The problem interface: a problem turns dataset items into a measured batch (`ProblemInstance`) and builds the
operator a reconstruction sees from the measurements alone (docs/design.md, "Operators").
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from inverse_problems.operators.complex import magnitude
from inverse_problems.operators.linalg import per_sample
from inverse_problems.operators.random import Randomness
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.forward_only import ForwardOnly


@dataclass
class ProblemInstance:
    """A simulated batch: what a reconstruction sees, plus the truth for reporting only.

    `y` and `operator` are in the scaled units the algorithm works in (x_scaled = x / scale);
    `true_operator` made the data and is kept for oracle runs; `scale` (B,) came from `y` alone.
    """

    y: Tensor
    operator: ForwardOperator
    true_operator: ForwardOperator
    scale: Tensor
    info: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def adjoint_quantile(y: Tensor, operator: ForwardOperator, percentile: float = 0.99) -> Tensor:
    """(B,) the `percentile` quantile of magnitude(A^H y) per sample, floored at 1e-12: the measurement's
    own scale (docs/design.md, "Scaling"), a constant (no gradient)."""
    mag = magnitude(operator.adjoint(y).detach()).flatten(1)
    return torch.quantile(mag.float(), percentile, dim=1).clamp_min(1e-12)


def check_int(name: str, value: object, minimum: int) -> int:
    """value as an int >= minimum; a float, bool or string is refused (a coil count is never rounded)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_number(name: str, value: object, minimum: float | None = None) -> float:
    """value as a finite float (>= minimum where given); a string, bool or NaN is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value}")
    return float(value)


SNR_DB_RANGE = (-60.0, 300.0)  # beyond: noise 1e3 x the signal (nothing measured) or 1e-15 of it (float32 round-off)


def check_snr_db(value: object) -> float:
    """problem.snr_db as a finite number of decibels inside SNR_DB_RANGE, refused before any sample runs: at -1000 dB
    the noise is 10^50 times the signal, every reconstruction overflows and the run would only report divergence."""
    snr = check_number("snr_db", value)
    lo, hi = SNR_DB_RANGE
    if not lo <= snr <= hi:
        ratio = f"1e{-snr / 20:.0f} times" if snr < lo else f"1e{-snr / 20:.0f} of"
        raise ValueError(f"problem.snr_db={value:g} is outside [{lo:g}, {hi:g}] dB: the noise would be {ratio} the "
                         f"signal ({'nothing would be measured' if snr < lo else 'below float32 round-off'}); choose "
                         f"an SNR in that range, or set problem.noise_std")
    return snr


class Problem:
    """An inverse problem: turns a batch of ground-truth images into measurements and operators.

    Subclasses implement `acquisition_operator` (the true physics for a batch); they may override
    `reconstruction_operator` (what the reconstruction is given, built from measurements only, e.g.
    coil maps estimated from the ACS lines) and `measurement_scale`.

    A problem describes its physics only: the choices made for it (its default dataset and prior, solver options
    such as a budget, an adapter's step sizes for its operator's parameters) live in configs/problem/<name>.yaml,
    which the harness reads (benchmarks.config.problem_choices).
    """

    image_shape: tuple[int, int, int]
    tier = "simulated"  # or "measured": the data are a dataset's own measurements (docs/design.md)
    # hand the reconstruction its operator forward-only (no adjoint, no gradient: a black-box simulator's contract,
    # inverse_problems.operators.forward_only); the problem's option `forward_only` where it offers one
    forward_only: bool = False

    def acquisition_operator(self, x: Tensor, generator: Randomness = None) -> ForwardOperator:
        raise NotImplementedError

    def reconstruction_operator(self, y: Tensor, true_operator: ForwardOperator) -> ForwardOperator:
        """The operator the reconstruction is given; by default a copy of the true one."""
        return copy.deepcopy(true_operator)

    def handed(self, operator: ForwardOperator) -> ForwardOperator:
        """The reconstruction operator as the algorithm gets it: behind the forward-only contract with `forward_only`
        (after the problem has scaled y with its own physics, as a simulator's owner would)."""
        return ForwardOnly(operator) if self.forward_only else operator

    @torch.no_grad()
    def measurement_scale(self, y: Tensor, operator: ForwardOperator, percentile: float = 0.99) -> Tensor:
        """Per-sample scale from the measurement only: a percentile of |A^H y| (never the target); a
        constant, so no gradient flows into the operator's adaptable parameters."""
        return adjoint_quantile(y, operator, percentile)

    def info(self, operator: ForwardOperator) -> dict[str, Any]:
        """Facts about the realised problem recorded with every sample (e.g. the acceleration)."""
        return {}

    def metrics(self, recon: Tensor, target: Tensor, item: dict[str, Any]) -> dict[str, Any]:
        """The problem's own metrics of one sample (recon and target (C, H, W), target units), by name; the runner
        stores them as the row's `problem_metrics` and the summary aggregates them (docs/design.md: one hook)."""
        return {}

    # the version of this problem's metrics block (per-sample `metrics`, per-run `run_metrics`) in summaries and
    # the leaderboard; None: the problem adds no metrics of its own
    metrics_version: str | None = None

    def sample_record(self, recon: Tensor, target: Tensor, item: dict[str, Any]) -> dict[str, Any]:
        """JSON-plain facts of one scored sample that a per-run metric needs (e.g. ROI means per frame), stored as
        the row's `problem_record`; computed after the reconstruction, from the target and the item."""
        return {}

    @classmethod
    def run_metrics(cls, records: list[dict[str, Any]]) -> dict[str, float | None]:
        """Per-run metrics from the `problem_record`s of a run's ok samples (e.g. kinetic curves across frames)."""
        return {}

    def instance(self, items: list[dict[str, Any]], device: torch.device | str, generator: Randomness = None
                 ) -> ProblemInstance:
        """The problem instance of a batch of dataset items: by default their images, simulated; a measured
        tier reads the items' own measurements instead (the runner does not care which)."""
        return self.simulate(torch.stack([it["image"] for it in items]).to(device), generator)

    def simulate(self, x: Tensor, generator: Randomness = None) -> ProblemInstance:
        """Measure x with the true operator; scale from the measurement; build the recon operator.

        `generator`: one per sample (inverse_problems.operators.random.SampleGenerators) for numbers that do not depend on
        the batch, or a plain torch.Generator."""
        true_op = self.acquisition_operator(x, generator)
        true_op.check_image(x)
        y = true_op.measure(x, generator)
        op = self.reconstruction_operator(y, true_op)
        scale = self.measurement_scale(y, op)
        op.set_noise_std(op.noise_std.detach() / scale)
        y_scaled = y / per_sample(scale, y)
        return ProblemInstance(y_scaled, self.handed(op), true_op, scale, self.info(true_op))
def noise_std_for_snr(clean: Tensor, snr_db: float, weight: Tensor | None = None) -> Tensor:
    """Per-sample std per real component with SNR = mean |signal|^2 / (2 sigma^2) = 10^(snr_db/10).

    clean: complex (B, ...) or real 2-channel (B, 2, ...) noiseless measurement; `weight` (broadcastable
    {0, 1}) restricts the mean to acquired samples.
    """
    power = clean.abs() ** 2 if clean.is_complex() else (clean**2).sum(1, keepdim=True)
    w = torch.ones_like(power) if weight is None else weight.expand_as(power)
    mean = (power * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1)
    return torch.sqrt(mean / 2 / 10 ** (snr_db / 10)).float().detach()
