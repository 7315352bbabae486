"""Start-up time of the `bench` command line: `bench --help`, `bench list` and the fixed overhead of `bench run`.

Each command runs in a fresh interpreter (`python -m benchmarks.cli ...`, what the `bench` script runs), several
times, interleaved; the medians are reported with every repetition. The fixed overhead of `bench run` is the
time from the process start to its first sample line in samples.jsonl, with zero-filled (a solve that costs
nothing) on one sample; the whole process time is reported beside it. Each command's imported heavy libraries
are recorded too. The machine's load average before and after is written into the file: timings taken while
other jobs run are inflated, and the file says so.

    python benchmarks/experiments/cli_startup.py [--repeat 5] [--run-repeat 3] [--out benchmarks/results/cli_startup.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "hydra", "omegaconf", "diffusers", "matplotlib", "piq", "accelerate", "scipy")
RUNS = {  # the fixed overhead of `bench run`: one sample of a free solver
    "run inpainting zero-filled": ["run", "--problem", "inpainting", "--algo", "zero-filled", "--n", "1", "--quiet"],
    "run cs_mri zero-filled": ["run", "--problem", "cs_mri", "--algo", "zero-filled", "--n", "1", "--quiet"],
}
MODULES_PROBE = ("import contextlib, io, json, sys\nfrom benchmarks.cli import main\n"
                 "with contextlib.redirect_stdout(io.StringIO()):\n    try:\n        main(sys.argv[1:])\n"
                 "    except SystemExit:\n        pass\nprint(json.dumps(sorted(sys.modules)))\n")


def environment() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def children_cpu() -> float:
    """User + system CPU seconds of this process's finished (reaped) children so far."""
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def time_command(argv: list[str], first_line: Path | None = None) -> dict[str, float]:
    """Wall seconds of `python -m benchmarks.cli ARGV`; with first_line, also until that file has a line; and the
    child's CPU seconds (user + system) to its exit, which other jobs on the machine inflate far less than wall
    seconds (for bench run an upper bound of the fixed overhead's CPU: zero-filled's solve costs nothing)."""
    cpu = children_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.cli", *argv], cwd=REPO, env=environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = None
    while proc.poll() is None:
        if first is None and first_line is not None and first_line.exists() and first_line.read_text().strip():
            first = time.perf_counter() - start
        time.sleep(0.005)
    total = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"bench {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    if first_line is not None and first is None:  # written in the last poll interval
        first = total
    return {"total_s": total, **({"first_sample_s": first} if first_line is not None else {}),
            "cpu_s": children_cpu() - cpu}


def heavy_modules(argv: list[str]) -> list[str]:
    res = subprocess.run([sys.executable, "-c", MODULES_PROBE, *argv], cwd=REPO, env=environment(),
                         capture_output=True, text=True, check=True)
    loaded = set(json.loads(res.stdout.strip().splitlines()[-1]))
    return [m for m in HEAVY if m in loaded]


def summarise(samples: list[dict[str, float]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        out[key] = {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
                    "all": [round(v, 3) for v in values]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="repetitions of --help and list")
    ap.add_argument("--run-repeat", type=int, default=3, help="repetitions of each bench run")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/cli_startup.json"))
    ap.add_argument("--note", default="", help="a remark stored in the file (e.g. what else was running)")
    args = ap.parse_args()

    load_before = os.getloadavg()
    quick = {"python -c pass": None, "bench --help": ["--help"], "bench list": ["list"]}
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in [*quick, *RUNS]}
    for _ in range(args.repeat):  # interleaved, so that a load change hits every command alike
        for name, argv in quick.items():
            if argv is None:
                start, cpu = time.perf_counter(), children_cpu()
                subprocess.run([sys.executable, "-c", "pass"], check=True)
                samples[name].append({"total_s": time.perf_counter() - start, "cpu_s": children_cpu() - cpu})
            else:
                samples[name].append(time_command(argv))
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.run_repeat):
            for name, argv in RUNS.items():
                out = Path(tmp) / f"{name.replace(' ', '-')}-{rep}"
                samples[name].append(time_command([*argv, "--out", str(out)], first_line=out / "samples.jsonl"))
    load_after = os.getloadavg()
    cpus = os.cpu_count() or 1
    busy = max(load_before[0], load_after[0]) > 0.5 * cpus
    commands = {"python -c pass": "python -c pass", **{k: "bench " + " ".join(v) for k, v in quick.items() if v},
                **{k: "bench " + " ".join(v) + " --out DIR" for k, v in RUNS.items()}}
    result = {
        "what": "wall seconds from process start (fresh interpreter): to exit for --help and list; to the first "
                "line of samples.jsonl (first_sample_s, the fixed overhead) and to exit (total_s) for bench run; "
                "cpu_s: the process's user + system CPU seconds to its exit (less inflated by other jobs than "
                "wall seconds; for bench run an upper bound of the fixed overhead's CPU)",
        "measured_under_load": busy,
        "load_note": (f"measured under load: 1-min load average {load_before[0]:.2f} before, {load_after[0]:.2f} "
                      f"after, on {cpus} CPU(s); these timings are inflated by the other jobs" if busy else
                      f"1-min load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {cpus} CPU(s)"),
        "note": args.note,
        "targets (issue 15, on the 2-core machine with nothing else running)": {
            "bench --help": "<= 1 s", "bench list": "<= 1.5 s", "bench run fixed overhead": "<= 5 s"},
        "commands": commands,
        "results": {k: summarise(v) for k, v in samples.items()},
        "heavy_modules_imported": {k: heavy_modules(v) for k, v in {**{k: v for k, v in quick.items() if v},
                                                                     "bench train-prior --help": ["train-prior", "--help"]}.items()},
        "python": platform.python_version(), "platform": platform.platform(), "processor": platform.processor(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, res in result["results"].items():
        print(f"{name:<30} " + "  ".join(f"{k} {v['median']:.2f} s (min {v['min']:.2f})" for k, v in res.items()))
    print(result["load_note"] + f" -> {args.out}")


if __name__ == "__main__":
    main()
