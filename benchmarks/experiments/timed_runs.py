"""Shared by the speed drivers of issue 32: `bench run` in a child process, timed by wall clock and by the child's
CPU seconds (`resource.getrusage(RUSAGE_CHILDREN)`, user + system), with the 1-minute load average before and
after and the per-sample metrics of its run directory. Timings on a shared machine are inflated by the other
jobs; the load average travels with every figure so that a reader can tell.
"""
from __future__ import annotations

import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def bench_prefix(bench: str | None) -> list[str]:
    """The `bench` command as argv: the given string split, or `python -m benchmarks.cli` of this checkout."""
    return shlex.split(bench) if bench else [sys.executable, "-m", "benchmarks.cli"]


def child_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def load() -> float:
    return round(os.getloadavg()[0], 2)


def start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start one command in this checkout (PYTHONPATH = the repository)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": path, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def timed(procs: list[subprocess.Popen]) -> dict[str, Any]:
    """Wait for the started processes: wall seconds from now, their CPU seconds, the load before and after."""
    cpu0, wall0, load0 = child_cpu(), time.perf_counter(), load()
    logs = [p.communicate()[0] for p in procs]
    for p, log in zip(procs, logs):
        if p.returncode:
            raise RuntimeError(f"{shlex.join(p.args)} failed ({p.returncode}):\n{log[-3000:]}")
    return {"wall_s": round(time.perf_counter() - wall0, 2), "cpu_s": round(child_cpu() - cpu0, 2),
            "load_before": load0, "load_after": load()}


def run_samples(run_dir: Path) -> dict[int, dict[str, Any]]:
    """index -> the sample's line of RUN_DIR/samples.jsonl (and of the other ranks' samples.rank{r}.jsonl)."""
    rows = [json.loads(line) for path in sorted(run_dir.glob("samples*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]
    return {int(r["index"]): r for r in rows if "index" in r}


def psnr_summary(rows: dict[int, dict[str, Any]], reference: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Mean PSNR over the samples, each sample's, and the paired mean difference to a reference run's samples."""
    ids = sorted(rows)
    out: dict[str, Any] = {"psnr": round(statistics.fmean(rows[i]["psnr"] for i in ids), 3),
                           "psnr_per_sample": {i: round(rows[i]["psnr"], 3) for i in ids}}
    if reference is not None:
        diff = [rows[i]["psnr"] - reference[i]["psnr"] for i in ids if i in reference]
        out["paired_psnr_difference"] = round(statistics.fmean(diff), 3)
        out["paired_psnr_difference_std"] = round(statistics.stdev(diff), 3) if len(diff) > 1 else None
    return out
