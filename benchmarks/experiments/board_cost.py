"""The board's cost as a number: CPU-hours of `bench suite board`, or until such a run exists, an estimate from the
leaderboard file.

With `--suite-out DIR` (a finished `bench suite board` folder) the figures are that run's recorded process CPU
seconds (DIR/suite_cost.json, from every run's summary `cost`). Without one, the estimate is the sum over the
leaderboard's rows of n x seconds per sample (wall seconds as the rows recorded them, one thread per run on a
shared machine: neither the start-up of each process nor the tuning trials are in it).

    python -m benchmarks.experiments.board_cost [--leaderboard benchmarks/results/leaderboard.json]
        [--suite-out runs/suites/board] [--out benchmarks/results/board_cost.json]
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import defaultdict
from pathlib import Path

from benchmarks.experiments.timed_runs import REPO


def estimate(board: dict) -> dict:
    """Hours per problem and in total: sum of n x seconds_per_sample over the leaderboard's rows."""
    hours: dict[str, float] = defaultdict(float)
    for e in board["entries"]:
        hours[e["problem"]] += e["n"] * (e.get("seconds_per_sample") or 0.0) / 3600
    return {"kind": "estimate from the leaderboard's recorded seconds per sample (wall, shared machine)",
            "date_utc": board.get("created"), "rows": len(board["entries"]),
            "hours_per_problem": {k: round(v, 2) for k, v in sorted(hours.items())},
            "total_hours": round(sum(hours.values()), 2)}


def per_group(recorded: dict, jobs: list) -> dict:
    """CPU-hours, runs done and runs missing per group of the board suite (its settings), from suite_cost.json."""
    groups: dict[str, dict] = {}
    for job in jobs:
        g = groups.setdefault(job.group, {"cpu_hours": 0.0, "runs": 0, "missing": 0})
        row = recorded["runs"].get(job.name)
        if row is None:
            g["missing"] += 1
        else:
            g["cpu_hours"] = round(g["cpu_hours"] + row["cpu_hours"], 4)
            g["runs"] += 1
    return groups


def full_board(recorded: dict, jobs: list) -> dict:
    """The whole suite's CPU-hours: the recorded runs, plus each missing run estimated as the mean of the same method
    (with the same adapters) in the groups where it ran; methods that ran nowhere are counted, not estimated."""
    by_algo: dict[str, list[float]] = {}
    for job in jobs:
        if job.name in recorded["runs"]:
            by_algo.setdefault(job.algo, []).append(recorded["runs"][job.name]["cpu_hours"])
    estimated, unknown = 0.0, []
    for job in jobs:
        if job.name not in recorded["runs"]:
            seen = by_algo.get(job.algo)
            if seen:
                estimated += sum(seen) / len(seen)
            else:
                unknown.append(job.name)
    return {"recorded_cpu_hours": recorded["total_cpu_hours"], "missing_estimated_cpu_hours": round(estimated, 3),
            "total_cpu_hours": round(recorded["total_cpu_hours"] + estimated, 3), "not_estimated": unknown,
            "how": "missing runs at the mean recorded CPU-hours of the same method and adapters in other groups"}


def _cpu_seconds(folders: list[Path]) -> float:
    return sum((json.loads(p.read_text()).get("cost") or {}).get("cpu_seconds", 0.0)
               for folder in folders for p in folder.rglob("summary.json"))


def tuning_cost(studies: Path, tests: Path) -> dict:
    """CPU-hours of the val-split tuning studies (every trial run's recorded cost) with their tuned test runs
    (tests/*-tuned), and how many studies."""
    done = sorted(p for p in studies.iterdir() if p.is_dir())
    seconds = _cpu_seconds(done) + _cpu_seconds(sorted(tests.glob("*-tuned")))
    return {"studies": len(done), "cpu_hours": round(seconds / 3600, 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--leaderboard", default=str(REPO / "benchmarks/results/leaderboard.json"))
    p.add_argument("--suite-out", help="a `bench suite board` output folder with its suite_cost.json")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/board_cost.json"))
    args = p.parse_args()
    board = json.loads(Path(args.leaderboard).read_text())
    result = {"command": ("python -m benchmarks.experiments.board_cost " + shlex.join(sys.argv[1:])).strip(),
              "date_utc": board.get("created"), "estimate": estimate(board)}
    if args.suite_out:
        from benchmarks.suites import load_suite

        recorded = json.loads((Path(args.suite_out) / "suite_cost.json").read_text())
        jobs = load_suite(recorded.get("suite", "board")).runs  # the suite's runs: groups and methods
        result["recorded"] = {"kind": "process CPU seconds recorded by bench suite board", **recorded,
                              "per_group": per_group(recorded, jobs), "full_board": full_board(recorded, jobs)}
        studies = Path(args.suite_out).parent / "studies"
        if studies.is_dir():
            result["recorded"]["tuning"] = tuning_cost(studies, Path(args.suite_out))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
