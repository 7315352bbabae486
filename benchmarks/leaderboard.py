"""Aggregate run directories into one leaderboard (JSON, validated by a shipped schema) and markdown.

Rows are grouped by (problem, dataset, shift, algorithm, adapters, prior) and the problem's and
dataset's options (so R = 4 and R = 8 are separate rows); each row holds mean and
std of every metric over all finished samples of its runs, n, device, NFE, seconds per sample and
the run ids. Samples are read from samples*.jsonl (the source of truth), not from summary.json.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable

from omegaconf import OmegaConf

from benchmarks.results import METRICS, RunDir, aggregate, problem_info

SCHEMA_VERSION = "1.1"
SCHEMA_PATH = Path(__file__).resolve().parent / "leaderboard.schema.json"
KEY = ("problem", "dataset", "shift", "algorithm", "adapters", "prior", "problem_options", "dataset_options",
       "algorithm_options", "adapter_options")
TABLE = ("psnr", "ssim", "nmse", "data_misfit", "seconds", "nfe")


class LeaderboardError(ValueError):
    """A directory that is not a run directory."""


def load_run(path: Path) -> dict[str, Any]:
    cfg_path = path / "config.yaml"
    if not cfg_path.exists():
        raise LeaderboardError(f"{path} is not a run directory (no config.yaml); pass directories made by `bench run`")
    cfg = OmegaConf.load(cfg_path)
    rows = RunDir(path).all_samples()
    env = json.loads((path / "environment.json").read_text()) if (path / "environment.json").exists() else {}
    names = cfg.names
    key = {"problem": names.problem, "dataset": names.dataset, "shift": names.get("shift"),
           "algorithm": names.algorithm, "adapters": "+".join(names.adapters) if names.adapters else "",
           "prior": names.get("prior"),
           "problem_options": _container(cfg.get("problem")), "dataset_options": _container(cfg.get("dataset")),
           "algorithm_options": _container(cfg.get("algorithm")), "adapter_options": _container(cfg.get("adapters"))}
    return {"key": key, "rows": rows, "device": env.get("device", "unknown"), "run_id": str(path),
            "info": problem_info(rows)}


def changed_options(key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per component (the algorithm, each adapter), the options that differ from its registered defaults.

    Rows of one method with other options are separate entries; this is what tells them apart. A component
    no longer registered shows all its options."""
    from benchmarks.config import component_defaults
    from benchmarks.registry import RegistryError

    parts = [("algorithms", key["algorithm"], "algorithm", key["algorithm_options"])]
    parts += [("adapters", name, name, opts) for name, opts in key["adapter_options"].items()]
    changed = {}
    for group, name, label, opts in parts:
        try:
            defaults = component_defaults(group, name)
        except RegistryError:
            defaults = {}
        diff = {k: v for k, v in opts.items() if k not in defaults or defaults[k] != v}
        if diff:
            changed[label] = diff
    return changed


def method_label(entry: dict[str, Any]) -> str:
    """algorithm[+adapters], then the changed options, e.g. `diffpir (lam=30)`."""
    name = entry["algorithm"] + (f"+{entry['adapters']}" if entry["adapters"] else "")
    opts = [f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}"
            for part in entry["changed_options"].values() for k, v in part.items()]
    return name + (f" ({', '.join(opts)})" if opts else "")


def _container(node) -> dict[str, Any]:
    return {} if node is None else dict(OmegaConf.to_container(node, resolve=True))


def _frozen(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else value


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories among the paths: each path itself or, recursively, those below it."""
    found = []
    for p in map(Path, paths):
        if not p.exists():
            raise LeaderboardError(f"{p} does not exist")
        if (p / "config.yaml").exists():
            found.append(p)
        else:
            found.extend(sorted(q.parent for q in p.rglob("config.yaml")))
    if not found:
        raise LeaderboardError(f"no run directories under {', '.join(map(str, paths))}")
    return found


def build(paths: Iterable[str | Path]) -> dict[str, Any]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in map(load_run, find_runs(paths)):
        groups.setdefault(tuple(_frozen(run["key"][k]) for k in KEY), []).append(run)
    entries = []
    for key, runs in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        rows = [r for run in runs for r in run["rows"]]
        agg = aggregate(rows, METRICS)
        metrics = {m: {"mean": v["mean"], "std": v["std"]} for m, v in agg["metrics"].items()}
        info: dict[str, float] = {}
        for run in runs:
            for k, v in run["info"].items():
                info[k] = v  # runs of one group share their problem settings
        entries.append({
            **{k: (json.loads(v) if k.endswith("_options") else v) for k, v in zip(KEY, key)},
            "changed_options": changed_options(runs[0]["key"]),
            "n": agg["n_ok"],
            "n_failed": agg["n_failed"],
            "metrics": metrics,
            "nfe": metrics["nfe"]["mean"],
            "seconds_per_sample": metrics["seconds"]["mean"],
            "device": sorted({run["device"] for run in runs}),
            "problem_info": info,
            "run_ids": [run["run_id"] for run in runs],
        })
    entries.sort(key=lambda e: (e["problem"], e["problem_info"].get("acceleration", 0),
                                -int(e["problem_options"].get("coils") or 0), e["dataset"], str(e["shift"]),
                                str(e["prior"]), e["algorithm"], e["adapters"]))
    return {"schema_version": SCHEMA_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "entries": entries}


def validate(board: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(board, json.loads(SCHEMA_PATH.read_text()))


def _fmt(v: float | None, m: str) -> str:
    if v is None:
        return "–"
    if m in ("nmse", "data_misfit"):
        return f"{v:.3g}"
    if m in ("seconds",):
        return f"{v:.2f}"
    if m == "nfe":
        return f"{v:.0f}"
    return f"{v:.4f}" if m == "ssim" else f"{v:.2f}"


def markdown(board: dict[str, Any], metrics: tuple[str, ...] = TABLE) -> str:
    head = ["problem", "R", "coils", "dataset", "shift", "method", "prior", "n"] + [
        "s/sample" if m == "seconds" else m.upper() if m in ("psnr", "ssim", "nmse", "nfe") else m for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in board["entries"]:
        method = method_label(e)
        accel = e["problem_info"].get("acceleration")
        coils = e["problem_options"].get("coils")
        cells = [e["problem"], f"{accel:.1f}" if accel else "–", str(coils) if coils else "–", e["dataset"], e["shift"] or "–", method,
                 e["prior"] or "–", str(e["n"])]
        for m in metrics:
            mm = e["metrics"][m]
            cell = _fmt(mm["mean"], m)
            if m in ("psnr", "ssim") and mm["std"] is not None:
                cell += f" ± {_fmt(mm['std'], m)}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
