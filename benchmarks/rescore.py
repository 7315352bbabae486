"""`bench rescore RUN_DIR...` (or folders holding run directories): re-score finished runs by the current metric convention (benchmarks.metrics) from
their saved reconstructions and targets, without re-running anything.

Per run directory: every samples*.jsonl is rewritten through a temporary file and a rename (readers see the old or
the new file whole), line for line in the same order, so no sample is lost or repeated; a scored line gets the new
psnr, ssim, nmse, ncc (and lpips where its weights are present) and `metric_convention`; failed lines and lines
without a target keep their numbers. The file as it was is kept beside it as `<name>.before-rescore` (the first
one: a second rescore keeps the original), and so is summary.json, which is then rewritten from the new lines.

The target of a line is its `targets/<index>.npy`. A run made before targets were saved is re-scored against the
target rebuilt from the run's own config: the dataset is built with the run's options and split, and item `index`
gives the image (a dataset makes item i from its options and i: procedural phantoms from (their seed, i),
file-backed ones from the same file), checked against the line's sample id. A line without a saved
reconstruction (a run with run.save_reconstructions=false) cannot be re-scored: the run is refused, untouched.
The directory is locked as `bench run` locks it: a run being written is refused.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from benchmarks.metrics import image_metrics, metric_convention
from benchmarks.results import CONFIG, RunDir, _clean, is_run_dir, write_atomic

BACKUP = ".before-rescore"
RESCORED = ("psnr", "ssim", "nmse", "ncc")


class RescoreError(RuntimeError):
    """A run directory that cannot be re-scored (the message names it, the cause and the fix)."""


@dataclass
class Rescored:
    """What one run's re-scoring changed: samples re-scored, targets rebuilt, mean PSNR/SSIM before and after."""

    path: Path
    convention: str
    n: int = 0
    rebuilt: int = 0
    before: dict[str, list[float]] = field(default_factory=lambda: {"psnr": [], "ssim": []})
    after: dict[str, list[float]] = field(default_factory=lambda: {"psnr": [], "ssim": []})

    def mean(self, which: str, metric: str) -> float | None:
        vals = [v for v in getattr(self, which)[metric] if v is not None and math.isfinite(v)]
        return sum(vals) / len(vals) if vals else None

    def line(self) -> str:
        parts = [f"{self.path}: {self.n} sample(s) re-scored ({self.convention})"]
        for m in ("psnr", "ssim"):
            b, a = self.mean("before", m), self.mean("after", m)
            if a is not None:
                parts.append(f"mean {m.upper()} {'–' if b is None else format(b, '.4g')} -> {a:.4g}")
        if self.rebuilt:
            parts.append(f"{self.rebuilt} target(s) rebuilt from the dataset")
        return "; ".join(parts)


def ssim_convention_of(problem: str) -> str:
    """The SSIM convention a problem declares (`ssim_convention`), fastMRI's by default."""
    from benchmarks import registry

    return str(getattr(registry.load_optional("problems", problem), "ssim_convention", "fastmri"))


class TargetSource:
    """Targets of a run's lines: the saved file, else the image of the dataset item rebuilt from the run's config."""

    def __init__(self, path: Path, cfg: DictConfig) -> None:
        self.path, self.cfg = path, cfg
        self._dataset: Any = None

    def __call__(self, row: dict[str, Any]) -> tuple[np.ndarray, bool]:
        """The target of one line and whether it was rebuilt."""
        saved = row.get("target")
        if isinstance(saved, str) and (self.path / saved).is_file():
            return np.load(self.path / saved), False
        if self._dataset is None:
            from benchmarks.build import build_dataset

            split = str((self.cfg.get("run") or {}).get("split") or "test")  # runs before run.split: test
            self._dataset = build_dataset(str(self.cfg.names.dataset), self.cfg, split)
        item = self._dataset[int(row["index"])]
        if row.get("id") is not None and str(item.get("id")) != str(row["id"]):
            raise RescoreError(f"{self.path}: sample {row['index']} has no saved target and the dataset's item "
                               f"{row['index']} is {item.get('id')!r}, not {row['id']!r} (the data changed); it "
                               f"cannot be re-scored: re-run it")
        if item.get("image") is None:
            raise RescoreError(f"{self.path}: sample {row['index']} has no saved target and its dataset item has none")
        return item["image"].detach().float().cpu().numpy(), True


def rescore_line(row: dict[str, Any], path: Path, targets: TargetSource, ssim: str, convention: str,
                 report: Rescored) -> dict[str, Any]:
    """One line re-scored (a new dict); failed lines and lines without a target keep their numbers."""
    from benchmarks.items import NO_TARGET

    row = dict(row)
    if row.get("status") != "ok" or row.get("reason") == NO_TARGET:
        return row
    rec = row.get("reconstruction")
    if not isinstance(rec, str) or not (path / rec).is_file():
        raise RescoreError(f"{path}: sample {row.get('index')} has no saved reconstruction "
                           f"({rec or 'the run was made with run.save_reconstructions=false'}); nothing was "
                           f"changed: a run without its reconstructions can only be re-run")
    target, rebuilt = targets(row)
    x = torch.from_numpy(np.load(path / rec)).float()[None]
    m = image_metrics(x, torch.as_tensor(target).float()[None], ssim)[0]
    for k in ("psnr", "ssim"):
        report.before[k].append(row.get(k))
        report.after[k].append(m[k])
    row.update({k: m[k] for k in RESCORED})
    if m["lpips"] is not None:
        row["lpips"] = m["lpips"]
    row["metric_convention"] = convention
    report.n += 1
    report.rebuilt += rebuilt
    return row


def rescore_file(samples: Path, targets: TargetSource, ssim: str, convention: str, report: Rescored) -> str:
    """The new text of one samples file: each line re-scored in place; a line that does not parse stays as it is."""
    out = []
    for line in samples.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            out.append(line)
            continue
        if not isinstance(row, dict):
            out.append(line)
            continue
        new = rescore_line(row, samples.parent, targets, ssim, convention, report)
        out.append(json.dumps(_clean(new), default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    return "".join(line + "\n" for line in out)


def keep_before(path: Path) -> None:
    """`path` copied to `<path>.before-rescore` unless an earlier rescore kept one (the original is kept)."""
    backup = path.with_name(path.name + BACKUP)
    if path.is_file() and not backup.exists():
        write_atomic(backup, path.read_text())


def run_dirs(paths: list[str | Path]) -> list[Path]:
    """Each path that is a run directory, else the run directories below it (folders starting with a dot skipped)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if is_run_dir(p):
            out.append(p)
            continue
        below = sorted(q.parent for q in p.rglob(CONFIG)
                       if is_run_dir(q.parent) and not any(part.startswith(".") for part in q.relative_to(p).parts))
        if not below:
            raise RescoreError(f"{p}: neither a run directory nor a folder holding run directories (made by `bench "
                               f"run`, with a config.yaml); pass run directories")
        out.extend(below)
    return out


def rescore(run_dir: str | Path) -> Rescored:
    """Re-score one run directory in place (module docstring); nothing is written unless every line can be."""
    from benchmarks.summary import summarise

    path = Path(run_dir)
    if not is_run_dir(path):
        raise RescoreError(f"{path} is not a run directory (no config.yaml of `bench run`); pass run directories")
    cfg = OmegaConf.load(path / CONFIG)
    ssim = ssim_convention_of(str(cfg.names.problem))
    report = Rescored(path, metric_convention(ssim))
    rundir = RunDir(path)
    rundir._lock()  # a run being written is refused: its next line would be scored the old way
    try:
        targets = TargetSource(path, cfg)
        files = sorted(path.glob("samples*.jsonl"))
        texts = {p: rescore_file(p, targets, ssim, report.convention, report) for p in files}  # all, then write
        for p, text in texts.items():
            keep_before(p)
            write_atomic(p, text)
        old = json.loads((path / "summary.json").read_text()) if (path / "summary.json").is_file() else {}
        keep_before(path / "summary.json")
        summary = summarise(cfg, rundir, old.get("device", "cpu"))
        summary.update({"finished_at": old.get("finished_at", summary["finished_at"]),
                        "rescored_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        rundir.write_summary(summary)
    finally:
        rundir.close()
    return report
