"""DAPS in the main command (`bench run --problem cs_mri --algo daps+tda`): the x0 step's sampler and the budget,
PSNR paired on the same val samples, wall and CPU seconds per run.

Rows (each one `bench run`, interleaved in the order given, on the val split so that no default is chosen on
test): the official Langevin chain step by step, its law drawn in one go (`algorithm.x0_sampler=chain`, equal in
distribution), the exact x0-conditional (`x0_sampler=exact`), and smaller budgets with the chosen sampler.

    python benchmarks/experiments/daps_main_command.py [--n 4] [--threads 1] [--rows NAME ...]
        [--out benchmarks/results/daps_main_command.json] [--bench "python -m benchmarks.cli"]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path

from benchmarks.experiments.timed_runs import REPO, bench_prefix, psnr_summary, run_samples, start, timed

BASE = ["run", "--problem", "cs_mri", "--algo", "daps+tda", "--quiet", "run.split=val"]
ROWS = {
    "1k langevin": ["algorithm.x0_sampler=langevin", "algorithm.budget=1k"],
    "1k chain": ["algorithm.x0_sampler=chain", "algorithm.budget=1k"],
    "1k exact": ["algorithm.x0_sampler=exact", "algorithm.budget=1k"],
    "0.5k chain": ["algorithm.x0_sampler=chain", "algorithm.budget=null", "algorithm.n_steps=100",
                   "algorithm.ode_steps=5"],
    "0.2k chain": ["algorithm.x0_sampler=chain", "algorithm.budget=null", "algorithm.n_steps=40",
                   "algorithm.ode_steps=5"],
    "0.1k chain": ["algorithm.x0_sampler=chain", "algorithm.budget=0.1k"],
    "0.1k langevin": ["algorithm.x0_sampler=langevin", "algorithm.budget=0.1k"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="run.threads of every run (one: the machine is shared)")
    p.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--reference", default="1k langevin", help="the row the paired differences are taken to")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/daps_main_command.json"))
    p.add_argument("--bench", help="the bench command (default: python -m benchmarks.cli of this checkout)")
    args = p.parse_args()
    result = {"what": "daps+tda on cs_mri (8 coils, R = 4), brain-64, phantom-brain-t2 val split, seed 0, batch "
                      f"{args.n}, {args.threads} thread(s); PSNR paired on the same samples",
              "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, no GPU",
              "measured_under_load": True, "note": "the 2-core machine ran other jobs (see the load averages): seconds are "
                                     "inflated and comparable only as ratios between rows of this file",
              "command": "python -m benchmarks.experiments.daps_main_command " + shlex.join(sys.argv[1:]), "rows": {}}
    samples = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.rows:
            argv = [*BASE, "--n", str(args.n), "--batch-size", str(args.n), f"run.threads={args.threads}",
                    *ROWS[name], "--out", str(Path(tmp) / name.replace(" ", "-"))]
            t = timed([start(bench_prefix(args.bench) + argv)])
            samples[name] = run_samples(Path(tmp) / name.replace(" ", "-"))
            ref = samples.get(args.reference) if name != args.reference else None
            row = {"command": "bench " + shlex.join(argv[:-2] + ["--out", "DIR"]),
                   **t, "nfe": samples[name][min(samples[name])]["nfe"], **psnr_summary(samples[name], ref)}
            result["rows"][name] = row
            print(name, json.dumps(row), flush=True)
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
