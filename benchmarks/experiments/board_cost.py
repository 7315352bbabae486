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
        recorded = json.loads((Path(args.suite_out) / "suite_cost.json").read_text())
        result["recorded"] = {"kind": "process CPU seconds recorded by bench suite board", **recorded}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
