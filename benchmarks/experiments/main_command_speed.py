"""The main command (`bench run --problem cs_mri --algo daps+tda`) on a busy machine: the former thread choice
against `run.threads=auto`, wall and CPU seconds, at the machine's current load and with extra busy processes.

- "former": torch's default, one thread per core (`run.threads=N`, N = the affinity) and libgomp's default wait
  policy (spin, then sleep; OMP_WAIT_POLICY is set to an empty value, which libgomp reads as its default, with a
  warning), as `bench run` ran before `run.threads` existed;
- "passive": one thread per core as before, with OMP_WAIT_POLICY=PASSIVE (what `bench` sets now): the wait
  policy's share of the difference;
- "auto": `run.threads=auto` (the free cores) with OMP_WAIT_POLICY=PASSIVE, the default now.
For each extra load (0, 2, ...: that many `python -c 'while 1: pass'` processes started before and killed after
its runs), the rows run interleaved ABBA (former, auto, auto, former with --repeat 2). A run's CPU seconds are its
process's (all threads): above the idle CPU need, the excess is threads waiting or spinning, not work.

    python -m benchmarks.experiments.main_command_speed [--n 1] [--extra-loads 0 2] [--repeat 1] [--modes former auto]
        [--out benchmarks/results/main_command_speed.json] [--bench "python -m benchmarks.cli"]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.experiments.timed_runs import REPO, bench_prefix, psnr_summary, run_samples, start, timed

MAIN = ["run", "--problem", "cs_mri", "--algo", "daps+tda", "--quiet"]


def modes(affinity: int) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (overrides, environment) of each thread choice."""
    return {"former": ([f"run.threads={affinity}"], {"OMP_WAIT_POLICY": ""}),
            "passive": ([f"run.threads={affinity}"], {}),
            "auto": (["run.threads=auto"], {})}


def busy(k: int) -> list[subprocess.Popen]:
    """k processes that spin on a core each (killed by their ids afterwards)."""
    return [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(k)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--extra-loads", type=int, nargs="*", default=[0, 2])
    p.add_argument("--repeat", type=int, default=1, help="1: former, auto; 2: former, auto, auto, former (ABBA); "
                                                          "4: ABBA twice")
    p.add_argument("--modes", nargs=2, default=["former", "auto"], choices=["former", "passive", "auto"],
                   help="the two thread choices compared (A and B of the ABBA order)")
    p.add_argument("--append", action="store_true", help="add the rows to an existing --out file")
    p.add_argument("--overrides", nargs="*", default=[], help="extra overrides of every run")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/main_command_speed.json"))
    p.add_argument("--bench", help="the bench command (default: python -m benchmarks.cli of this checkout)")
    args = p.parse_args()
    os.environ.pop("OMP_NUM_THREADS", None)  # run.threads decides
    affinity = len(os.sched_getaffinity(0))
    env_modes = modes(affinity)
    result = {"what": f"bench run --problem cs_mri --algo daps+tda --n {args.n} (8 coils, R = 4, brain-64), "
                      "former thread choice against run.threads=auto",
              "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": f"{platform.machine()}, {affinity} cores, no GPU", "measured_under_load": True,
              "note": "a shared machine: other jobs ran besides the extra busy processes (see the load averages)",
              "command": "python -m benchmarks.experiments.main_command_speed " + shlex.join(sys.argv[1:]),
              "runs": []}
    if args.append and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        result["runs"] = old["runs"]
        result["command"] = old["command"] + "; then " + result["command"]
    with tempfile.TemporaryDirectory() as tmp:
        for extra in args.extra_loads:
            spinners = busy(extra)
            time.sleep(2 if extra else 0)
            try:
                a, b = args.modes
                order = [a, b, b, a][: 2 * args.repeat] * max(1, args.repeat // 2)
                for k, mode in enumerate(order):
                    overrides, env = env_modes[mode]
                    out = Path(tmp) / f"{extra}-{k}-{mode}"
                    argv = [*MAIN, "--n", str(args.n), *overrides, *args.overrides, "--out", str(out)]
                    t = timed([start(bench_prefix(args.bench) + argv, env)])
                    chosen = json.loads((out / "environment.json").read_text())["thread_choice"]
                    row = {"extra_busy_processes": extra, "mode": mode, "threads": chosen["threads"],
                           "load_seen_by_auto": chosen["load_1min"], **t,
                           "cpu_per_sample_s": round(t["cpu_s"] / args.n, 2),
                           "wall_per_sample_s": round(t["wall_s"] / args.n, 2), **psnr_summary(run_samples(out)),
                           "command": (" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " if env else "")
                           + "bench " + shlex.join(argv[:-2] + ["--out", "DIR"])}
                    result["runs"].append(row)
                    print(json.dumps(row), flush=True)
                    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
            finally:
                for s in spinners:
                    os.kill(s.pid, signal.SIGKILL)
                    s.wait()


if __name__ == "__main__":
    main()
