"""`interp-io`: interpolation by instance-optimised registration of each pair of acquired frames.

For acquired frames i0, i1 bracketing missing ones, two displacement fields are fitted by Adam on that pair alone
(no training data): F01 with warp(i0, F01) ~ i1 and F10 with warp(i1, F10) ~ i0 (bidirectional), minimising

    L = -lncc(warp(i0, F01), i1) - lncc(warp(i1, F10), i0) + lam (||grad F01||^2 + ||grad F10||^2)

(VoxelMorph's local NCC, window 9, and its diffusion regulariser: Balakrishnan et al., TMI 38:1788 (2019)); the
fields live on a grid `coarse` times smaller, upsampled bilinearly (smooth, and a wider capture range). A missing
frame at alpha in (0, 1) is UVI-Net's blend under linear motion (Kim et al., CVPR 2024):

    i_alpha = (1 - alpha) warp(i0, alpha F01) + alpha warp(i1, (1 - alpha) F10).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from algorithms.classical.interpolation import FrameInterpolation, brackets
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.warp import warp
from inverse_problems.problems.frame_metrics import lncc
from priors.base import Prior


def smoothness(flow: Tensor) -> Tensor:
    """(B,) mean squared forward differences of a (B, 2, h, w) field (VoxelMorph's diffusion regulariser)."""
    dy = (flow[:, :, 1:] - flow[:, :, :-1]).pow(2).flatten(1).mean(1)
    dx = (flow[:, :, :, 1:] - flow[:, :, :, :-1]).pow(2).flatten(1).mean(1)
    return dx + dy


class InterpIO(FrameInterpolation):
    """Instance-optimised bidirectional flow between bracketing acquired frames, UVI-Net's blend (see the module)."""

    def __init__(self, steps: int = 300, lr: float = 0.1, lam: float = 0.1, window: int = 9, coarse: int = 4) -> None:
        super().__init__()
        if steps < 0 or lr <= 0 or lam < 0 or window < 1 or coarse < 1:
            raise ValueError(f"interp-io needs steps >= 0, lr > 0, lam >= 0, window >= 1, coarse >= 1; got "
                             f"steps={steps}, lr={lr}, lam={lam}, window={window}, coarse={coarse}")
        self.steps, self.lr, self.lam, self.window, self.coarse = steps, lr, lam, window, coarse

    def register(self, i0: Tensor, i1: Tensor) -> tuple[Tensor, Tensor]:
        """(F01, F10) (P, 2, H, W) in pixels for P pairs of frames (P, H, W); every pair optimised on its own loss."""
        p, h, w = i0.shape
        a, b = i0[:, None].detach(), i1[:, None].detach()
        grid = torch.zeros((2, p, 2, max(1, h // self.coarse), max(1, w // self.coarse)), device=i0.device,
                           dtype=i0.dtype, requires_grad=True)
        opt = torch.optim.Adam([grid], lr=self.lr)
        up = lambda g: F.interpolate(g, size=(h, w), mode="bilinear", align_corners=False)  # noqa: E731
        with torch.enable_grad():
            for _ in range(self.steps):
                f01, f10 = up(grid[0]), up(grid[1])
                loss = (-lncc(warp(a, f01)[:, 0], b[:, 0], self.window) - lncc(warp(b, f10)[:, 0], a[:, 0], self.window)
                        + self.lam * (smoothness(grid[0]) + smoothness(grid[1])))
                opt.zero_grad()
                loss.sum().backward()  # a sum of per-pair losses: each pair's gradient is its own
                opt.step()
        with torch.no_grad():
            return up(grid[0]), up(grid[1])

    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: torch.Generator | None,
            callback=None) -> Tensor:
        keep = operator.keep.expand(y.shape[0], -1)
        a, b, alpha = brackets(keep, operator.times)
        out = y.detach().clone()
        miss = ~keep
        if not bool(miss.any()):
            return out
        s, k = miss.nonzero(as_tuple=True)
        pairs = torch.unique(torch.stack([s, a[s, k], b[s, k]], 1), dim=0)  # (P, 3): sample, a, b
        f01, f10 = self.register(y[pairs[:, 0], pairs[:, 1]], y[pairs[:, 0], pairs[:, 2]])
        # each missing frame's pair
        key = (s * y.shape[1] + a[s, k]) * y.shape[1] + b[s, k]
        pair_key = (pairs[:, 0] * y.shape[1] + pairs[:, 1]) * y.shape[1] + pairs[:, 2]
        which = torch.searchsorted(pair_key, key)
        w = alpha[s, k].to(y).view(-1, 1, 1, 1)
        i0, i1 = y[s, a[s, k]][:, None], y[s, b[s, k]][:, None]
        with torch.no_grad():
            frame = (1 - w) * warp(i0, w * f01[which]) + w * warp(i1, (1 - w) * f10[which])
        out[s, k] = frame[:, 0]
        return out
