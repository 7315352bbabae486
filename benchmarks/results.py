"""The run directory (DESIGN.md, "The harness").

    RUN_DIR/config.yaml          resolved config (names, every option)
    RUN_DIR/environment.json     package versions, git revision, device, torch threads, command
    RUN_DIR/samples.jsonl        one JSON line per finished sample, appended (and fsynced) as it finishes
    RUN_DIR/adaptation.jsonl     per batch, what the adapters learned (Reconstruction.trace), if any
    RUN_DIR/summary.json         mean/std of every metric over the finished samples
    RUN_DIR/reconstructions/<index>.npy   float32 (C, H, W) reconstruction in the target's units
                                          (C = 2: real, imaginary), written before its JSON line

A line is written only after its reconstruction file, so a kill at any moment loses nothing that
was reported finished; a half-written last line is dropped on resume and the sample redone.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

SAMPLES = "samples.jsonl"
METRICS = ("psnr", "ssim", "nmse", "ncc", "lpips", "data_misfit", "seconds", "nfe", "peak_memory_mb")
PACKAGES = ("medtta-bench", "torch", "torchvision", "diffusers", "numpy", "scipy", "piq", "hydra-core", "accelerate",
            "h5py")


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked (exists without --resume, or config mismatch)."""


def git_revision() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        rev = out.stdout.strip()
        if out.returncode == 0 and rev:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def environment(device: torch.device) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    dev = str(device)
    if device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(device)})"
    return {
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_revision": git_revision(),
        "device": dev,
        "torch_threads": torch.get_num_threads(),
        "command": sys.argv,
    }


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def read_samples(path: Path) -> list[dict[str, Any]]:
    """All complete lines of a samples file (a torn last line from a kill is skipped)."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class RunDir:
    """A run directory on disk; see the module docstring for its layout."""

    def __init__(self, path: str | os.PathLike, rank: int = 0) -> None:
        self.path = Path(path)
        self.rank = rank
        self.samples_path = self.path / (SAMPLES if rank == 0 else f"samples.rank{rank}.jsonl")
        self.trace_path = self.path / ("adaptation.jsonl" if rank == 0 else f"adaptation.rank{rank}.jsonl")

    def start(self, cfg: DictConfig, device: torch.device, resume: bool) -> None:
        cfg_path = self.path / "config.yaml"
        existing = read_samples(self.samples_path)  # this process's own file: ranks start at different times
        if existing and not resume:
            raise RunDirError(f"{self.path} already holds {len(existing)} finished samples; pass --resume to finish "
                              f"that run, or choose another --out")
        if resume and cfg_path.exists():
            old = OmegaConf.load(cfg_path)
            old_core = {k: old.get(k) for k in ("names", "problem", "algorithm", "prior", "dataset", "adapters")}
            new_core = {k: cfg.get(k) for k in old_core}
            if OmegaConf.to_container(OmegaConf.create(old_core)) != OmegaConf.to_container(OmegaConf.create(new_core)):
                raise RunDirError(f"--resume: {self.path} was made with another configuration; rerun with the same "
                                  f"arguments (see {cfg_path}) or choose another --out")
        (self.path / "reconstructions").mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            OmegaConf.save(cfg, cfg_path)
            (self.path / "environment.json").write_text(json.dumps(environment(device), indent=2))
        self._repair()

    def _repair(self) -> None:
        """Drop a torn last line (a kill mid-write) so the file stays one JSON object per line."""
        if not self.samples_path.exists():
            return
        text = self.samples_path.read_text()
        if text and not text.endswith("\n"):
            keep = text[: text.rfind("\n") + 1]
            self.samples_path.write_text(keep)

    def all_samples(self) -> list[dict[str, Any]]:
        rows = []
        for p in sorted(self.path.glob("samples*.jsonl")):
            rows.extend(read_samples(p))
        return rows

    def finished(self) -> set[int]:
        return {int(r["index"]) for r in self.all_samples()}

    def save_reconstruction(self, index: int, image: torch.Tensor) -> str:
        rel = f"reconstructions/{index:06d}.npy"
        tmp = self.path / f"{rel}.tmp.npy"
        np.save(tmp, image.detach().float().cpu().numpy())
        os.replace(tmp, self.path / rel)
        return rel

    def save_target(self, index: int, image: torch.Tensor) -> str:
        """RUN_DIR/targets/<index>.npy: the ground truth (float32 C, H, W, target units), so that a report of
        the run never depends on the dataset being present; written only after the reconstruction is made."""
        rel = f"targets/{index:06d}.npy"
        (self.path / "targets").mkdir(exist_ok=True)
        tmp = self.path / f"{rel}.tmp.npy"
        np.save(tmp, image.detach().float().cpu().numpy())
        os.replace(tmp, self.path / rel)
        return rel

    def append(self, row: dict[str, Any], path: Path | None = None) -> None:
        """Append one JSON line (to samples.jsonl by default) and fsync it."""
        with open(path or self.samples_path, "a") as f:
            f.write(json.dumps(_clean(row), default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def write_summary(self, summary: dict[str, Any]) -> None:
        (self.path / "summary.json").write_text(json.dumps(_clean(summary), indent=2))


def problem_info(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Mean over samples of each numeric `problem_*` fact (e.g. the realised acceleration), prefix dropped."""
    rows = list(rows)
    info = {}
    for k in sorted({k for r in rows for k in r if k.startswith("problem_")}):
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float))]
        if vals:
            info[k.removeprefix("problem_")] = sum(vals) / len(vals)
    return info


def aggregate(rows: Iterable[dict[str, Any]], metrics: Iterable[str] = METRICS) -> dict[str, Any]:
    """Mean and (population) std of each metric over the samples that finished with status ok."""
    rows = list(rows)
    ok = [r for r in rows if r.get("status") == "ok"]
    out: dict[str, Any] = {"n": len(rows), "n_ok": len(ok), "n_failed": len(rows) - len(ok), "metrics": {}}
    for m in metrics:
        vals = [float(r[m]) for r in ok if r.get(m) is not None]
        if vals:
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
            out["metrics"][m] = {"mean": mean, "std": std, "n": len(vals)}
        else:
            out["metrics"][m] = {"mean": None, "std": None, "n": 0}
    return out
