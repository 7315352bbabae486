"""The `interp4d` problem: 4-D medical image interpolation as temporal inpainting (UVI-Net, Kim et al., CVPR 2024;
TTT4MII, Zhang et al.).

A 2-D+t sequence is a real image (T, H, W), frames as channels (a 3-D+t volume is a patient of slice items, so
patient-level adapters see a whole volume). Only the frames K of a protocol are acquired, y = S_K x + n
(inverse_problems.operators.frames); the task is to predict the frames between. `random:p` draws K per sequence
from (mask_seed, the item's id), so the same sequence misses the same frames in every run and the metrics know
which.

Metrics (inverse_problems.problems.frame_metrics) are over the missing frames only: per sequence the mean over its
missing frames (`psnr_missing`, `lncc9_missing`, `ssim_missing`, `nmse100_missing`), per run the mean and standard
error over all missing frames pooled (`<metric>_frames_mean`, `<metric>_frames_se`: the papers' "± standard error
over frames").
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from inverse_problems.operators.frames import FrameSelection, kept_frames, parse_protocol
from inverse_problems.operators.random import Randomness, item_seed
from inverse_problems.problems.base import Problem, ProblemInstance, check_int, check_number
from inverse_problems.problems.frame_metrics import FRAME_METRICS, frame_metrics, mean_se


class Interp4DProblem(Problem):
    """Frame interpolation y = S_K x + n of (T, H, W) sequences; protocol `endpoints` | `stride:R` | `random:p`,
    Gaussian noise `noise_std` on the acquired frames (0: they are given exactly, as in the papers)."""

    def __init__(self, size: int = 64, frames: int = 12, protocol: str = "endpoints", noise_std: float = 0.0,
                 mask_seed: int = 0) -> None:
        size, frames = check_int("size", size, 2), check_int("frames", frames, 3)
        self.noise_std = check_number("noise_std", noise_std, 0.0)
        parse_protocol(protocol)
        self.protocol, self.mask_seed = protocol, mask_seed
        self.image_shape = (frames, size, size)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The figures' row names: each channel is a frame, the protocol's acquired ones marked (for `random:p` those
        of an item without id)."""
        keep = self.kept()
        return tuple(f"frame {t}" + (" (acquired)" if bool(keep[t]) else "") for t in range(self.image_shape[0]))

    def kept(self, item: dict[str, Any] | None = None) -> Tensor:
        """(T,) bool: the frames acquired of this item (by its id for `random:p`)."""
        frames = self.image_shape[0]
        g = torch.Generator().manual_seed(item_seed("interp4d", self.mask_seed, (item or {}).get("id", "")))
        return kept_frames(self.protocol, frames, g)

    def operator(self, keep: Tensor, device: torch.device | str, times: Tensor | None = None) -> FrameSelection:
        return FrameSelection(keep, self.image_shape[1:], self.noise_std, times).to(device)

    def acquisition_operator(self, x: Tensor, generator: Randomness = None) -> FrameSelection:
        """The protocol's frames, the same for every sample (`random:p`: those of an item without id; `instance`
        draws each item's own)."""
        return self.operator(self.kept(), x.device)

    def instance(self, items: list[dict[str, Any]], device: torch.device | str, generator: Randomness = None
                 ) -> ProblemInstance:
        """Simulate the batch, each item with its own acquired frames (and frame times, where an item has them: a
        real cine's frames picked between ED and ES)."""
        x = torch.stack([it["image"] for it in items]).to(device)
        frames = self.image_shape[0]
        times = None
        if any("times" in it for it in items):
            times = torch.stack([torch.as_tensor(it.get("times", torch.arange(frames)), dtype=torch.float32)
                                 for it in items])
        true_op = self.operator(torch.stack([self.kept(it) for it in items]), device, times)
        true_op.check_image(x)
        y = true_op.measure(x, generator)
        op = self.reconstruction_operator(y, true_op)
        scale = self.measurement_scale(y, op)
        op.set_noise_std(op.noise_std.detach() / scale)
        return ProblemInstance(y / scale.view(-1, 1, 1, 1), op, true_op, scale, self.info(true_op))

    def info(self, operator: FrameSelection) -> dict[str, Any]:
        return {"frames": self.image_shape[0], "acquired_frames": float(operator.keep.float().sum(1).mean())}

    metrics_version = "interp4d-1"

    def _missing(self, recon: Tensor, target: Tensor, item: dict[str, Any]) -> dict[str, list[float]]:
        miss = ~self.kept(item)
        return frame_metrics(recon[miss], target[miss]) if bool(miss.any()) else {m: [] for m in FRAME_METRICS}

    def metrics(self, recon: Tensor, target: Tensor, item: dict[str, Any]) -> dict[str, Any]:
        """The sequence's means over its missing frames."""
        return {f"{m}_missing": mean_se(v)[0] for m, v in self._missing(recon, target, item).items()}

    def sample_record(self, recon: Tensor, target: Tensor, item: dict[str, Any]) -> dict[str, Any]:
        """Every missing frame's metrics, for the per-run mean and standard error over frames."""
        return {"frames": self._missing(recon, target, item)}

    @classmethod
    def run_metrics(cls, records: list[dict[str, Any]]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for m in FRAME_METRICS:
            values = [v for r in records for v in (r.get("frames") or {}).get(m, [])]
            out[f"{m}_frames_mean"], out[f"{m}_frames_se"] = mean_se(values)
        return out
