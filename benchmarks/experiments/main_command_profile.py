"""Where the main command's time goes: `bench run --problem cs_mri --algo daps+tda` under cProfile, one thread, split
into the parts a user could change (network calls, DAPS's x0 step, TDA's preparation and steps, problem set-up,
configuration, imports), written to benchmarks/results/main_command_profile.json.

Each part is the cumulative time of the function that owns it (`PARTS`: a path suffix and function name of this
repository); parts do not nest. "other" is the rest of `cmd_run` (scoring, writing the run directory). cProfile's own overhead inflates Python-heavy parts a little; the network
call, which is mostly inside C++, least.

    python -m benchmarks.experiments.main_command_profile [--n 1] [--out benchmarks/results/main_command_profile.json]
"""
from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import os
import platform
import pstats
import tempfile
import time
from pathlib import Path

from benchmarks.experiments.timed_runs import REPO

# part -> (file suffix, function name): the owners of the time, none inside another
PARTS = {
    "imports (torch and the packages, at first use)": ("benchmarks/runner.py", "<module>"),
    "network calls (prior.denoise)": ("priors/edm.py", "denoise"),
    "DAPS x0 step (sample_x0)": ("algorithms/diffusion/daps.py", "sample_x0"),
    "TDA preparation (optimiser set-up: torch.optim imports torch._dynamo once)": ("adaptation/sampler/tda_physical.py", "_prepare"),
    "TDA steps (on_step)": ("adaptation/sampler/tda_base.py", "on_step"),
    "problem instance (simulation, ESPIRiT)": ("inverse_problems/problems/base.py", "instance"),
    "components (prior weights, registry)": ("benchmarks/build.py", "build_components"),
    "configuration (hydra compose)": ("benchmarks/config.py", "compose_config"),
}


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> tuple[float, int]:
    """(cumulative seconds, calls) of the repository function `name` in a file ending with `suffix`."""
    for (path, _line, func), (_cc, nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and path.replace(os.sep, "/").endswith(suffix):
            return ct, nc
    return 0.0, 0


def profile(n: int) -> dict:
    from benchmarks.cli import main as bench

    with tempfile.TemporaryDirectory() as tmp:
        prof = cProfile.Profile()
        start, cpu = time.perf_counter(), time.process_time()
        prof.enable()
        code = bench(["run", "--problem", "cs_mri", "--algo", "daps+tda", "--n", str(n), "--quiet", "--out",
                      str(Path(tmp) / "run"), "run.threads=1"])
        prof.disable()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
    if code:
        raise SystemExit(f"bench run exited with {code}")
    stats = pstats.Stats(prof)
    run_s, _ = cumulative(stats, "benchmarks/cli.py", "cmd_run")
    parts = {}
    for label, (suffix, name) in PARTS.items():
        seconds, calls = cumulative(stats, suffix, name)
        parts[label] = {"seconds": round(seconds, 3), "calls": calls, "share_of_run": round(seconds / run_s, 3)}
    rest = run_s - sum(p["seconds"] for p in parts.values())
    parts["other (scoring, writing, bookkeeping)"] = {"seconds": round(rest, 3), "calls": None,
                                                      "share_of_run": round(rest / run_s, 3)}
    return {"n": n, "run_seconds_profiled": round(run_s, 3), "wall_seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3), "psnr": summary["metrics"]["psnr"]["mean"], "parts": parts}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/main_command_profile.json"))
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    result = {"what": "bench run --problem cs_mri --algo daps+tda under cProfile, one thread, in one process (the "
                      "interpreter's start-up and the imports before `cmd_run` are not in `run_seconds_profiled`)",
              "command": f"python -m benchmarks.experiments.main_command_profile --n {args.n}",
              "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU", "load_before": round(load, 2),
              "measured_under_load": load > 1.0, **profile(args.n)}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for label, p in result["parts"].items():
        print(f"{p['seconds']:7.2f} s  {100 * p['share_of_run']:5.1f} %  {label}")
    print(f"-> {args.out}")
    return result


if __name__ == "__main__":
    main()
