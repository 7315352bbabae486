"""A run's summary (summary.json: the metrics' mean and std over the ok samples, the problem's own metrics, the
failures, the tier and conventions, fastMRI's per-volume metrics) and the plain-text table `bench run` prints."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from benchmarks import registry
from benchmarks.items import NO_TARGET
from benchmarks.metrics import VOLUME_METRICS, line_conventions
from benchmarks.results import RunDir, aggregate, problem_info
from benchmarks.volumes import per_volume, write_submission


def summarise(cfg: DictConfig, rundir: RunDir, device: torch.device | str) -> dict[str, Any]:
    rows = rundir.all_samples()
    summary = aggregate(rows)
    summary.update({"names": OmegaConf.to_container(cfg.names), "device": str(device), "run_id": Path(rundir.path).resolve().name,
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    summary["problem_info"] = problem_info(rows)
    extra = sorted({m for r in rows for m in (r.get("problem_metrics") or {})})
    if extra:  # the problem's own metrics: mean and std over the ok samples, as the image metrics
        summary["problem_metrics"] = aggregate([{"status": r.get("status"), **(r.get("problem_metrics") or {})}
                                                for r in rows], extra)["metrics"]
    run_metrics = problem_run_metrics(str(cfg.names.problem), rows)
    if run_metrics is not None:
        summary["problem_run_metrics"] = run_metrics
    version = getattr(registry.load_optional("problems", str(cfg.names.problem)), "metrics_version", None)
    if version is not None:
        summary["problem_metrics_version"] = version
    failures = [{"index": r["index"], "reason": r.get("reason")} for r in rows if r.get("status") != "ok"]
    summary["failures"] = failures
    summary["tier"] = "+".join(sorted({str(r["tier"]) for r in rows if r.get("tier")})) or "simulated"
    summary["target_convention"] = "+".join(sorted({str(r["target_convention"]) for r in rows
                                                     if r.get("target_convention")})) or None
    summary["metric_convention"] = f"per-slice ({' + '.join(line_conventions(rows)) or 'no scored sample'})"
    volumes = per_volume(rows, Path(rundir.path))
    if volumes:
        summary["metric_convention"] += " + per-volume (fastMRI)"
        summary["volumes"] = volumes
        summary["volume_metrics"] = aggregate(volumes, VOLUME_METRICS)["metrics"]
    untargeted = [r for r in rows if r.get("status") == "ok" and r.get("reason") == NO_TARGET]
    if untargeted:
        summary["n_no_target"] = len(untargeted)
        summary["no_target"] = (f"{len(untargeted)} sample(s) have no target (prospective data): their "
                                f"reconstructions are written and they are excluded from every metric")
        summary["submission"] = write_submission(untargeted, Path(rundir.path))
    rundir.write_summary(summary)
    return summary


def problem_run_metrics(problem: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The problem's per-run metrics (Problem.run_metrics) of the ok rows' `problem_record`s; None if it has none."""
    records = [r["problem_record"] for r in rows if r.get("status") == "ok" and r.get("problem_record")]
    cls = registry.load_optional("problems", problem)
    if not records or cls is None:
        return None
    return cls.run_metrics(records)


def format_table(summary: dict[str, Any], metrics: tuple[str, ...] = ("psnr", "ssim", "nmse", "ncc", "lpips",
                                                                     "data_misfit", "seconds", "nfe")) -> str:
    """A plain-text table of mean ± std per metric."""
    lines = [f"{'metric':<14}{'mean':>12}{'std':>12}"]
    for m in metrics:
        s = summary["metrics"].get(m, {})
        if s.get("mean") is None:
            lines.append(f"{m:<14}{'null':>12}{'':>12}")
        else:
            lines.append(f"{m:<14}{s['mean']:>12.4g}{s['std']:>12.3g}")
    for m, s in (summary.get("problem_metrics") or {}).items():
        lines.append(f"{m:<14}{'null':>12}" if s.get("mean") is None else f"{m:<14}{s['mean']:>12.4g}{s['std']:>12.3g}")
    for m, v in (summary.get("problem_run_metrics") or {}).items():
        lines.append(f"{m:<22}{'null' if v is None else format(v, '.4g'):>12}  (per run)")
    lines.append(f"samples: {summary['n_ok']} ok, {summary['n_failed']} failed")
    for k, v in summary.get("problem_info", {}).items():
        lines.append(f"{k}: {v:.4g}")
    if summary.get("tier") == "measured" or summary.get("volumes"):
        lines.append(f"tier: {summary.get('tier')}, target: {summary.get('target_convention')}, "
                     f"metrics: {summary.get('metric_convention')}")
    for m, s in (summary.get("volume_metrics") or {}).items():
        if s.get("mean") is not None:
            lines.append(f"volume {m} (fastMRI, {s['n']} volume(s)): {s['mean']:.4g} ± {s['std']:.3g}")
    if summary.get("no_target"):
        lines.append(f"{summary['no_target']}; submission files in {summary.get('submission')}")
    return "\n".join(lines)
