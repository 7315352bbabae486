"""Run the README's leaderboard, the suite configs/suites/board.yaml: every method on cs_mri (R = 4, 8; 8 coils and
single-coil) and lowfield, with default options and tuned on val, then `bench leaderboard`.

    python benchmarks/experiments/leaderboard_runs.py [--n 16] [--trials 8] [--n-val 2] [--stage all]
                                                  [--only SUBSTRING | --jobs NAME ...] [--no-board] [--batch-size B]
                                                  [--out benchmarks/results/runs]

Stages (in this order with `--stage all`):
- `defaults`: every run of the suite with its registered defaults (`bench suite board` runs the same);
- `tune`: `bench tune` studies (Optuna TPE, seed 0) of the suite's `tune: true` runs on the **val** split, the same
  number of trials and val samples for every method, into OUT/studies/<setting>-<method>/;
- `tuned`: the test runs with each study's best options (`bench run ... --tuned STUDY`).
Test run directories go to OUT/test/<name>/ (resumable: an unfinished run is finished with --resume, a
finished one is skipped, and a run or study made with other weights of its prior than those it loads now, e.g. before
a new default prior shipped, is moved to OUT/superseded/<its fingerprint>/ and made again); the leaderboard is built from OUT/test only (the studies' val runs stay out) and
written to benchmarks/results/leaderboard.{json,md}. Diffusion solvers use the shipped prior.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from benchmarks.build import build_prior
from benchmarks.cli import main as bench
from benchmarks.fingerprint import prior_fingerprint
from benchmarks.results import device_kind
from benchmarks.suites import SuiteRun, finished, load_suite
from benchmarks.tune import neutral_prior_hash

RESULTS = Path(__file__).resolve().parents[1] / "results"
SUITE = "board"  # configs/suites/board.yaml: the settings, the methods, which are tuned


def jobs(stage: str) -> list[SuiteRun]:
    """The suite's runs of a stage: every run for `defaults`, the `tune: true` runs for `tune` and `tuned`."""
    runs = load_suite(SUITE).runs
    return runs if stage == "defaults" else [r for r in runs if r.tune]


def ordered(runs: list[SuiteRun], names: list[str] | None) -> list[SuiteRun]:
    """The runs named (in the order named; a name the suite lacks is an error), or all of them."""
    if not names:
        return runs
    by_name = {r.name: r for r in runs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"leaderboard_runs: no job named {unknown} in configs/suites/{SUITE}.yaml; "
                         f"names look like {runs[0].name!r}")
    return [by_name[n] for n in names]


def recorded_fingerprint(folder: Path, study: bool = False) -> str | None:
    """The prior fingerprint a row's run directory (names.prior_hash) or a study (study.json) recorded."""
    if study:
        return json.loads((folder / "study.json").read_text()).get("prior_hash")
    return OmegaConf.load(folder / "config.yaml").names.get("prior_hash")


def stale(folder: Path, study: bool = False) -> str | None:
    """Why a row's run directory (or, `study`, a tuning study) must be made again: the prior weights its config loads
    here are not the ones it recorded (a run's names.prior_hash, fingerprinted as the runner did on the device kind it
    ran on; a study's study.json prior_hash, as `bench tune` takes it); None when they are, or without a prior."""
    config = folder / "0" / "config.yaml" if study else folder / "config.yaml"  # a study: its first trial's options
    if not config.exists():
        return None
    cfg = OmegaConf.load(config)
    if cfg.names.get("prior") is None:
        return None
    if study:
        here = neutral_prior_hash(cfg)
    else:
        env = folder / "environment.json"
        made_on = device_kind(json.loads(env.read_text()).get("device", "cpu")) if env.exists() else "cpu"
        here = prior_fingerprint(build_prior(cfg, torch.device("cpu"), made_on=torch.device(made_on)))
    recorded = recorded_fingerprint(folder, study)
    if here == recorded:
        return None
    return (f"made with other weights of its prior {cfg.names.get('prior')!r} (fingerprint {str(recorded)[:19]}, "
            f"now {str(here)[:19]})")


def remove_if_stale(name: str, folder: Path, study: bool = False) -> None:
    """Move a row's run directory (OUT/test/NAME) or a study (OUT/studies/NAME) made with other prior weights to
    OUT/superseded/<12 hex digits of its fingerprint>/test|studies/NAME, saying so: it is made again, the old one kept."""
    why = stale(folder, study)
    if why:
        hex12 = str(recorded_fingerprint(folder, study)).removeprefix("sha256:")[:12]
        dest = folder.parent.parent / "superseded" / hex12 / folder.parent.name / folder.name
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        print(f"{name}: {why}: moved to {dest}, making it again", flush=True)
        shutil.move(str(folder), dest)


def run(name: str, run_dir: Path, problem: str, algo: str, n: int, overrides: list[str], timing: dict,
        batch: int | None = None) -> None:
    remove_if_stale(name, run_dir)
    if finished(run_dir, n):
        return
    start = time.time()
    resume = ["--resume"] if (run_dir / "config.yaml").exists() else []
    code = bench(["run", "--problem", problem, "--algo", algo, "--n", str(n), "--batch-size", str(batch or n),
                  "--out", str(run_dir), "--quiet", *resume, *overrides])
    timing[name] = round(time.time() - start, 1)
    print(f"{name}: exit {code}, {timing[name]} s", flush=True)


def tune(name: str, study: Path, problem: str, algo: str, trials: int, n_val: int, overrides: list[str],
         timing: dict) -> None:
    if (study / "study.json").exists():
        remove_if_stale(f"tune {name}", study, study=True)
    if (study / "study.json").exists():  # still there: made with these weights
        return
    start = time.time()
    resume = ["--resume"] if study.exists() else []
    code = bench(["tune", "--problem", problem, "--algo", algo, "--trials", str(trials), "--n-val", str(n_val),
                  "--out", str(study), *resume, *overrides])
    timing[f"tune {name}"] = round(time.time() - start, 1)
    print(f"tune {name}: exit {code}, {timing[f'tune {name}']} s", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=next((r.n for r in load_suite(SUITE).runs if r.n), 4), help="test samples per row (default: the suite's n)")
    ap.add_argument("--trials", type=int, default=8, help="Optuna trials per study (one budget for every method)")
    ap.add_argument("--n-val", type=int, default=2, help="val samples per trial")
    ap.add_argument("--stage", choices=["all", "defaults", "tune", "tuned", "board"], default="all")
    ap.add_argument("--only", default="", help="run only the jobs whose name contains this")
    ap.add_argument("--jobs", nargs="+", metavar="NAME",
                    help="run exactly these jobs, in this order (a priority list; e.g. the headline settings first)")
    ap.add_argument("--no-board", action="store_true", help="run the jobs only; build the leaderboard later")
    ap.add_argument("--batch-size", type=int, help="samples per batch (default: all n at once; smaller saves memory, "
                                                   "e.g. for the dense SVD of 8-coil DDRM under a 2-D mask)")
    ap.add_argument("--out", default=str(RESULTS / "runs"))
    ap.add_argument("--keep", action="append", default=[], metavar="LEADERBOARD.json",
                    help="carry the rows of an earlier board (e.g. the former default prior's) into the new one")
    args = ap.parse_args()
    out = Path(args.out)
    timing: dict[str, float] = {}
    stages = ["defaults", "tune", "tuned"] if args.stage == "all" else [args.stage]
    for stage in stages:
        for job in ordered(jobs(stage), args.jobs):
            name, overrides = job.name, [*job.flags(), *job.overrides]
            if args.only not in name:
                continue
            study = out / "studies" / name
            if stage == "defaults":
                run(name, out / "test" / name, job.problem, job.algo, args.n, overrides, timing, args.batch_size)
            elif stage == "tune":
                tune(name, study, job.problem, job.algo, args.trials, args.n_val, overrides, timing)
            elif stage == "tuned" and (study / "study.json").exists():
                run(f"{name}-tuned", out / "test" / f"{name}-tuned", job.problem, job.algo, args.n,
                    overrides + ["--tuned", str(study)], timing, args.batch_size)
    if args.no_board:
        return 0
    keep = [a for k in args.keep for a in ("--keep", k)]
    return bench(["leaderboard", str(out / "test"), *keep, "-o", str(RESULTS / "leaderboard.json"), "--markdown",
                  str(RESULTS / "leaderboard.md")])


if __name__ == "__main__":
    sys.exit(main())
