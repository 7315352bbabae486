"""Throughput of the main command's configuration across processes on one machine: samples per hour of
`bench run --problem cs_mri --algo daps+tda` with 1 process x T threads against P processes x 1 thread.

P processes shard one run the way `torchrun` does (`RANK`/`WORLD_SIZE` set per process, one `--out`; process r
takes batches r, r + P, ...; rank 0 merges the summary), so both layouts reconstruct the same samples with the same
batch size. The rows run interleaved (one process, P processes, and again with --repeat 2).

    python -m benchmarks.experiments.throughput [--n 4] [--batch-size 2] [--processes 2] [--repeat 1]
        [--out benchmarks/results/throughput.json] [--bench "python -m benchmarks.cli"]
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

MAIN = ["run", "--problem", "cs_mri", "--algo", "daps+tda", "--quiet"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--overrides", nargs="*", default=[], help="extra overrides of every run")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/throughput.json"))
    p.add_argument("--bench", help="the bench command (default: python -m benchmarks.cli of this checkout)")
    args = p.parse_args()
    os.environ.pop("OMP_NUM_THREADS", None)
    procs = args.processes
    base = [*MAIN, "--n", str(args.n), "--batch-size", str(args.batch_size), *args.overrides]
    result = {"what": f"samples per hour of bench run --problem cs_mri --algo daps+tda (8 coils, R = 4, brain-64), "
                      f"{args.n} samples, batch {args.batch_size}: 1 process x {procs} threads against {procs} "
                      f"processes x 1 thread (RANK/WORLD_SIZE, as torchrun sets them)",
              "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, no GPU", "measured_under_load": True,
              "note": "a shared machine: other jobs ran (see the load averages); compare rows of this file only",
              "command": "python -m benchmarks.experiments.throughput " + shlex.join(sys.argv[1:]), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeat):
            for layout in ("1 process", f"{procs} processes"):
                out = Path(tmp) / f"{k}-{layout.replace(' ', '-')}"
                if layout == "1 process":
                    argv = [*base, f"run.threads={procs}", "--out", str(out)]
                    t = timed([start(bench_prefix(args.bench) + argv)])
                    command = "bench " + shlex.join(argv[:-2] + ["--out", "DIR"])
                else:
                    argv = [*base, "run.threads=1", "--out", str(out)]
                    t = timed([start(bench_prefix(args.bench) + argv, {"RANK": str(r), "WORLD_SIZE": str(procs),
                                                                       "LOCAL_RANK": str(r)})
                               for r in range(procs)])
                    command = " & ".join(f"RANK={r} WORLD_SIZE={procs} bench " + shlex.join(argv[:-2] + ["--out", "DIR"])
                                         for r in range(procs))
                rows = run_samples(out)
                row = {"layout": layout, **t, "samples": len(rows),
                       "samples_per_hour": round(len(rows) / t["wall_s"] * 3600, 1),
                       "cpu_s_per_sample": round(t["cpu_s"] / len(rows), 2), **psnr_summary(rows), "command": command}
                result["runs"].append(row)
                print(json.dumps(row), flush=True)
                Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
