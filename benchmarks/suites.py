"""Suites: named lists of runs in configs/suites/<name>.yaml, run by `bench suite NAME` and read by the experiment
drivers (benchmarks/experiments/leaderboard_runs.py: suite `board`; tta_table.py: suite `tta`). Reads YAML only
(no hydra, no torch).

    description: one line
    n: 4                        # optional: samples per run (`bench run --n`), unless a run or the command says
    groups: {NAME: description} # optional: what each group (a leaderboard setting, a table's shift) is
    runs:
      - group: cs_mri-R4        # the run's setting; its name is `{group}-{algo}` unless `name:` says otherwise
        problem: cs_mri
        algo: [daps, dps]       # ALGORITHM[+ADAPTER...]; a list is one run each
        adapters: ["", fine]    # optional: chains appended to each algo ("": none); one run each
        shift: contrast         # optional (`--shift`), as are dataset (`--dataset`), prior (`--prior`) and n
        overrides: [problem.acceleration=4]   # hydra overrides of every run of the entry
        tune: true              # optional: the leaderboard driver tunes these on val (`bench tune`)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from configs import CONFIG_DIR

ENTRY_KEYS = {"group", "name", "problem", "algo", "adapters", "shift", "dataset", "prior", "overrides", "n", "tune"}


class SuiteError(ValueError):
    """An unknown suite or a malformed entry, with the fix in the message."""


@dataclass(frozen=True)
class SuiteRun:
    """One `bench run` of a suite."""

    name: str
    group: str
    problem: str
    algo: str
    shift: str | None = None
    dataset: str | None = None
    prior: str | None = None
    overrides: tuple[str, ...] = ()
    n: int | None = None
    tune: bool = False

    def flags(self) -> list[str]:
        """`--shift`/`--dataset`/`--prior` of the run (what names its target and its model besides overrides)."""
        out: list[str] = []
        for flag, value in (("--shift", self.shift), ("--dataset", self.dataset), ("--prior", self.prior)):
            if value:
                out += [flag, value]
        return out

    def argv(self) -> list[str]:
        """`bench run` arguments of the run (without --out)."""
        n = ["--n", str(self.n)] if self.n else []
        return ["run", "--problem", self.problem, "--algo", self.algo, *n, *self.flags(), *self.overrides]


@dataclass
class Suite:
    name: str
    description: str = ""
    groups: dict[str, str] = field(default_factory=dict)
    runs: list[SuiteRun] = field(default_factory=list)


def suite_names() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "suites").glob("*.yaml"))


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def load_suite(name: str) -> Suite:
    """configs/suites/<name>.yaml expanded into its runs, in file order (algo-major, then adapter chains)."""
    import yaml

    path = CONFIG_DIR / "suites" / f"{name}.yaml"
    if not path.exists():
        raise SuiteError(f"unknown suite {name!r}; suites: {', '.join(suite_names()) or '(none)'}")
    node = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    suite = Suite(name, str(node.get("description", "")), dict(node.get("groups") or {}))
    default_n = node.get("n")
    for k, entry in enumerate(node.get("runs") or []):
        unknown = sorted(set(entry) - ENTRY_KEYS)
        if unknown or "problem" not in entry or "algo" not in entry:
            raise SuiteError(f"{path}: run entry {k} needs problem and algo and takes {', '.join(sorted(ENTRY_KEYS))}"
                             + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        group = str(entry.get("group", ""))
        for algo in _list(entry["algo"]):
            for chain in _list(entry.get("adapters")) or [""]:
                full = f"{algo}+{chain}" if chain else algo
                template = str(entry.get("name", "{group}-{algo}" if group else "{algo}"))
                suite.runs.append(SuiteRun(
                    template.format(group=group, algo=full), group, str(entry["problem"]), full,
                    entry.get("shift"), entry.get("dataset"), entry.get("prior"), tuple(_list(entry.get("overrides"))),
                    entry.get("n", default_n), bool(entry.get("tune", False))))
    names = [r.name for r in suite.runs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SuiteError(f"{path}: run names {', '.join(twice)} occur twice (each run needs its own directory)")
    return suite


def finished(run_dir: Path, n: int | None) -> bool:
    """Whether a run directory holds a summary of at least n samples."""
    import json

    done = run_dir / "summary.json"
    return done.exists() and (n is None or json.loads(done.read_text())["n"] >= n)


COST_FILE = "suite_cost.json"


def run_cost(run_dir: Path) -> dict[str, Any] | None:
    """A run directory's recorded cost (summary.json `cost`: process CPU and wall seconds of every process that
    wrote it), or None where it has none (not run yet, or made before costs were recorded)."""
    import json

    path = run_dir / "summary.json"
    return json.loads(path.read_text()).get("cost") if path.exists() else None


def suite_cost(suite: Suite, out: Path) -> dict[str, Any]:
    """CPU-hours per run of the suite and in total, from each run directory's recorded cost; runs without one are
    listed as missing (the total then covers the others only)."""
    import datetime
    import os

    rows, missing = {}, []
    for job in suite.runs:
        cost = run_cost(out / job.name)
        if cost is None:
            missing.append(job.name)
            continue
        rows[job.name] = {"cpu_hours": round(cost["cpu_seconds"] / 3600, 4), "cpu_seconds": cost["cpu_seconds"],
                          "wall_seconds": cost["wall_seconds"], "threads": cost.get("threads")}
    return {"suite": suite.name, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "total_cpu_hours": round(sum(r["cpu_seconds"] for r in rows.values()) / 3600, 4),
            "runs": rows, "missing": missing, "load_1min": round(os.getloadavg()[0], 2),
            "what": "process CPU seconds of every process that wrote each run (all threads; start-up counted once "
                    "per process), summed; recorded in each run's summary.json `cost`"}


def write_suite_cost(suite: Suite, out: Path) -> dict[str, Any]:
    """Write OUT/suite_cost.json and return it."""
    import json

    cost = suite_cost(suite, out)
    out.mkdir(parents=True, exist_ok=True)
    (out / COST_FILE).write_text(json.dumps(cost, indent=2) + "\n")
    return cost


def last_suite_cost(out: Path) -> dict[str, Any] | None:
    """OUT/suite_cost.json of the last `bench suite` run, if any."""
    import json

    path = out / COST_FILE
    return json.loads(path.read_text()) if path.exists() else None
