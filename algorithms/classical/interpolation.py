"""Temporal interpolation baselines of 4-D imaging (the `interp4d` problem): each missing frame from the acquired
frames that bracket it in time.

With acquired frames a < k < b at times t_a < t_k < t_b and alpha = (t_k - t_a) / (t_b - t_a):
- `interp-linear`: x_k = (1 - alpha) y_a + alpha y_b (intensity blending, no motion);
- `interp-nearest`: x_k = y_a if alpha <= 1/2 else y_b.
Acquired frames are returned as measured. They need a frame-selection operator (its `keep` and `times`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm
from inverse_problems.operators.base import ForwardOperator
from priors.base import Prior

FRAME_OPERATOR = ("keep", "times")


def brackets(keep: Tensor, times: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For each sample and frame (B, T): the acquired frames a <= k <= b that bracket it and alpha in [0, 1]
    (a = b = k, alpha = 0 on acquired frames). `keep` (B, T) bool with both ends acquired, `times` (T,) or
    (B, T)."""
    b, t = keep.shape
    idx = torch.arange(t, device=keep.device).expand(b, t)
    before = torch.where(keep, idx, torch.zeros_like(idx)).cummax(1).values
    after = torch.where(keep, idx, torch.full_like(idx, t - 1)).flip(1).cummin(1).values.flip(1)
    times = times.reshape(-1, t).expand(b, t)
    ta, tb, tk = times.gather(1, before), times.gather(1, after), times
    alpha = torch.where(after > before, (tk - ta) / (tb - ta).clamp_min(1e-12), torch.zeros_like(tk))
    return before, after, alpha


class FrameInterpolation(Algorithm):
    """Base of the interpolators: `blend(y, a, b, alpha)` fills the frames; acquired frames stay as measured."""

    uses_prior = False
    project_support = False
    operator_needs = FRAME_OPERATOR

    def blend(self, y: Tensor, a: Tensor, b: Tensor, alpha: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: torch.Generator | None,
            callback=None) -> Tensor:
        keep = operator.keep.expand(y.shape[0], -1)
        a, b, alpha = brackets(keep, operator.times)
        return self.blend(y, a, b, alpha)


def frames_at(y: Tensor, index: Tensor) -> Tensor:
    """(B, T, H, W): frame index[s, k] of sample s at position k."""
    return torch.gather(y, 1, index[:, :, None, None].expand(-1, -1, *y.shape[2:]))


class InterpLinear(FrameInterpolation):
    """Linear interpolation in time between the bracketing acquired frames."""

    def blend(self, y: Tensor, a: Tensor, b: Tensor, alpha: Tensor) -> Tensor:
        w = alpha[:, :, None, None].to(y)
        return (1 - w) * frames_at(y, a) + w * frames_at(y, b)


class InterpNearest(FrameInterpolation):
    """The acquired frame nearest in time (the earlier one at a tie)."""

    def blend(self, y: Tensor, a: Tensor, b: Tensor, alpha: Tensor) -> Tensor:
        return frames_at(y, torch.where(alpha <= 0.5, a, b))
