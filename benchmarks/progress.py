"""What a run shows while it runs: the line that names the run and its directory when it starts (on stderr, as the
progress bar), a progress bar in samples that moves at every sampler step, and optionally TensorBoard scalars."""
from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from adaptation.base import adaptable_parameters
from algorithms.base import Step
from benchmarks.config import ConfigError


def method_label(cfg: DictConfig) -> str:
    """'daps+tda on cs_mri'."""
    return f"{cfg.names.algorithm}{''.join('+' + a for a in cfg.names.adapters)} on {cfg.names.problem}"


def run_heading(cfg: DictConfig, out: str | os.PathLike) -> str:
    """'daps+tda on cs_mri (phantom-brain-t2, prior phantom-brain-64) -> RUN_DIR': the run and where it writes."""
    return f"{method_label(cfg)} ({cfg.names.dataset}, prior {cfg.names.prior}) -> {out}"


def announce(cfg: DictConfig, out: str | os.PathLike, written: int, total: int) -> None:
    """The run's heading on stderr when it starts (before the first sample), with what a resume finds written."""
    resumed = f"  [resuming: {written} of {total} samples written]" if written else ""
    print(run_heading(cfg, out) + resumed, file=sys.stderr, flush=True)


class StepProgress:
    """A tqdm bar in samples that moves at every sampler step (via the algorithm's step callback), with ETA;
    optionally logs each step to TensorBoard (data misfit of x̂0 and the operator's adaptable parameters)."""

    def __init__(self, total: int, desc: str, enabled: bool, writer: Any = None) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="sample", disable=not enabled, smoothing=0.1)
        self.writer = writer
        self.size, self.done, self.indices = 0, 0.0, []

    @contextlib.contextmanager
    def batch(self, indices: list[int]) -> Iterator[None]:
        self.size, self.done, self.indices = len(indices), 0.0, list(indices)
        yield
        self.advance(float(self.size))

    def advance(self, target: float) -> None:
        if target > self.done:
            self.bar.update(target - self.done)
            self.done = target

    def __call__(self, step: Step) -> None:
        """The step callback: returns None (never changes the sampler's estimate)."""
        self.advance(self.size * min(1.0, (step.index + 1) / max(step.n_steps, 1)))
        if self.writer is not None:
            self.log_step(step)
        return None

    @torch.no_grad()
    def log_step(self, step: Step) -> None:
        misfit = step.operator.data_misfit(step.x0, step.y).tolist()
        params = adaptable_parameters(step.operator)
        for k, i in enumerate(self.indices[: len(misfit)]):
            self.writer.add_scalar(f"sample_{i:06d}/data_misfit", misfit[k], step.index)
            self.writer.add_scalar(f"sample_{i:06d}/sigma", float(step.sigma.reshape(-1)[0]), step.index)
            for name, p in params.items():
                value = p.detach()
                if value.ndim and value.shape[0] == len(misfit):
                    value = value[k]
                self.writer.add_scalar(f"sample_{i:06d}/{name}", float(value.abs().pow(2).sum().sqrt())
                                       if value.numel() > 1 else float(value.reshape(())), step.index)

    def log_trace(self, indices: list[int], trace: list[dict[str, Any]]) -> None:
        """An adapter's per-batch record (losses, adapted values): its numbers as scalars at the batch's first index."""
        if self.writer is None:
            return
        for record in trace:
            name = record.get("adapter", "adapter")
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.writer.add_scalar(f"adaptation/{name}/{key}", value, indices[0])

    def postfix(self, rows: list[dict[str, Any]]) -> None:
        ok = [r["psnr"] for r in rows if r.get("psnr") is not None]
        if ok:
            self.bar.set_postfix(psnr=f"{sum(ok) / len(ok):.2f}")

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()



def tensorboard_writer(path: Path, rank: int) -> Any:
    """A TensorBoard SummaryWriter in RUN_DIR/tensorboard (optional extra: pip install medtta-bench[tensorboard])."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ConfigError("run.tensorboard=true needs the tensorboard package: pip install 'medtta-bench[tensorboard]' "
                          "(or pip install tensorboard)") from exc
    return SummaryWriter(str(path / "tensorboard" / (f"rank{rank}" if rank else "")))

