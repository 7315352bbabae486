"""D2SA's Table 1/2 extended: network test-time adaptation against diffusion solvers under the same shifts.

The driver of the suite configs/suites/tta.yaml (its shifts, source models and rows; `bench suite tta --list` shows
its runs); this script adds patients, --quick iteration counts, the cells' timing and the Markdown.

For each shift with a shipped source model, every method row of D2SA's tables for the U-Net and the VarNet (each
where its source is shipped: `Shift.network_model`) (Non-TTA, DIP-TTT, FINE, FINE+MR-INR, FINE+SST, FINE+MR-INR+SST,
SSDU(+SST, +MR-INR+SST), NR2N(+SST, +MR-INR+SST)) and the suite's diffusion rows (DAPS, DPS, DiffPIR, each with and
without +tda, and DiffPIR+prior-affine, with the shift's source prior where configs/sources.yaml names one (knee-64
for knee PD -> brain T2), else the problem's default prior) on the shift's target data, each one
`bench run` on patients of `--slices` slices (`dataset.slices=S`, so patient-level adapters see a patient's slices
together). Per cell: SSIM, PSNR, LPIPS (null when its weights are not installed) and minutes per patient, twice:
wall (the samples' `seconds`, which include adaptation, summed over the patient's slices) and CPU (the process time
of the cell's whole `bench run` over its patients; at one thread the compute it costs, whatever else loads the
machine). Run directories go under `--runs/<shift>/<row>`; a finished run is read back, a partly written one
resumed, so the script can be stopped and restarted; the cells of an existing results file with the same settings
are kept (`--fresh`: start anew), also those of shifts left out by `--shifts`, so the table can be filled row by row
and shift by shift.

    python benchmarks/experiments/tta_table.py                          # the full table (GPU-sized)
    python benchmarks/experiments/tta_table.py --n 1 --slices 4 --quick # 1 patient, reduced iterations (CPU)
    python benchmarks/experiments/tta_table.py --only unet --rows non-tta fine fine+mr-inr+sst \
        adapters.fine.epochs=5                                      # extra key=value: hydra overrides for every run

Results: benchmarks/results/tta_table.json and tta_table.md (written after every finished cell).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cli import main as bench
from benchmarks.suites import load_suite

RESULTS = Path(__file__).resolve().parents[1] / "results" / "tta_table.json"


@dataclass
class Shift:
    """A D2SA shift on the suite's data: the `bench run` arguments of its target and its source networks."""

    name: str
    description: str
    args: list[str]
    # shipped `algorithm.model` of the source network of each family (unet, varnet); a family without one is not run
    network_model: dict[str, str]
    missing: str = ""  # what is not shipped (shown when a network family has no model)


SUITE = "tta"  # configs/suites/tta.yaml: the shifts (groups), their source models and the rows, in run order
NETWORKS = ("unet", "varnet")


def family_row(algo: str) -> tuple[str, str]:
    """('unet', 'fine+mr-inr') of `unet+fine+mr-inr`, ('unet', 'non-tta') of `unet`, ('diffusion', 'daps+tda') of a
    diffusion solver's chain (the inverse of `algo_of`)."""
    head, _, rest = algo.partition("+")
    return (head, rest or "non-tta") if head in NETWORKS else ("diffusion", algo)


def from_suite(name: str = SUITE) -> tuple[list[Shift], list[str], list[str]]:
    """The table's shifts (each group's target flags and each network family's `algorithm.model`), the network rows
    in run order and the diffusion rows, as the suite lists them."""
    suite = load_suite(name)
    shifts: dict[str, Shift] = {}
    run_order: list[str] = []
    diffusion: list[str] = []
    for r in suite.runs:
        sh = shifts.setdefault(r.group, Shift(r.group, suite.groups.get(r.group, ""), r.flags(), {}))
        family, row = family_row(r.algo)
        if family == "diffusion":
            diffusion += [] if row in diffusion else [row]
            continue
        run_order += [] if row in run_order else [row]
        models = [o.split("=", 1)[1] for o in r.overrides if o.startswith("algorithm.model=")]
        if models:
            sh.network_model[family] = models[-1]
    return list(shifts.values()), run_order, diffusion


SHIFTS, RUN_ORDER, DIFFUSION_ROWS = from_suite()
# table order of the network rows (D2SA's); the run order (the rows of the U-Net ordering check first) is the suite's
NETWORK_ROWS = ["non-tta", "dip-ttt", "fine", "fine+mr-inr", "fine+sst", "fine+mr-inr+sst",
                "ssdu", "ssdu+sst", "ssdu+mr-inr+sst", "nr2n", "nr2n+sst", "nr2n+mr-inr+sst"]

# --quick: iteration counts for a CPU run (every other option at its default); recorded in the results.
QUICK = {
    "dip-ttt": ["adapters.dip-ttt.max_iters=60", "adapters.dip-ttt.start=20", "adapters.dip-ttt.window=10"],
    "fine": ["adapters.fine.epochs=5"],
    "ssdu": ["adapters.ssdu.epochs=5"],
    "nr2n": ["adapters.nr2n.epochs=5"],
    "mr-inr": ["adapters.mr-inr.epochs=3"],
    "sst": ["adapters.sst.max_iters=30", "adapters.sst.start=18", "adapters.sst.window=6"],
    "daps": ["algorithm.n_steps=20", "algorithm.ode_steps=2"],
    "dps": ["algorithm.n_steps=50"],
    "diffpir": ["algorithm.n_steps=20"],
}


def algo_of(network: str | None, row: str) -> str:
    """`bench run --algo` of a row: `unet+fine+mr-inr+sst` for network rows, the row itself for diffusion rows."""
    if network is None:
        return row
    return network if row == "non-tta" else f"{network}+{row}"


def quick_overrides(algo: str) -> list[str]:
    """The --quick iteration counts of every component in the chain."""
    return [o for part in algo.split("+") for o in QUICK.get(part, [])]


def run_cell(out: Path, algo: str, flags: list[str], overrides: list[str]) -> dict:
    """One `bench run` (read back if finished, resumed if partly written); its summary and wall time."""
    summary_path = out / "summary.json"
    done = out / "tta_table.done.json"
    if done.exists() and summary_path.exists():
        return json.loads(done.read_text())
    argv = ["run", "--problem", "cs_mri", "--algo", algo, "--out", str(out), "--quiet", *flags, *overrides]
    resumed = (out / "samples.jsonl").exists()
    if resumed:
        argv.insert(1, "--resume")
    start, cpu = time.perf_counter(), time.process_time()
    code = bench(argv)
    if code:
        raise RuntimeError(f"bench {' '.join(argv)} exited with {code}")
    summary = json.loads(summary_path.read_text())
    # CPU time of this process (1 thread: the compute the cell costs, whatever else loads the machine); a resumed
    # cell only counted its last leg, so it has none
    cell = {"algo": algo, "argv": argv, "wall_seconds": round(time.perf_counter() - start, 1),
            "cpu_seconds": None if resumed else round(time.process_time() - cpu, 1), "summary": summary}
    done.write_text(json.dumps(cell, indent=2))
    return cell


def metric(summary: dict, name: str) -> float | None:
    m = summary["metrics"].get(name) or {}
    v = m.get("mean")
    return None if v is None else float(v)


def cell_row(cell: dict, slices: int, patients: int) -> dict:
    """A table cell: metrics, wall minutes per patient (the samples' seconds) and CPU minutes per patient (the
    whole `bench run`, start-up and data included, over its patients)."""
    s = cell["summary"]
    seconds = metric(s, "seconds")
    cpu = cell.get("cpu_seconds")
    return {"algo": cell["algo"], "prior": (s.get("names") or {}).get("prior"),
            "psnr": metric(s, "psnr"), "ssim": metric(s, "ssim"), "lpips": metric(s, "lpips"),
            "minutes_per_patient": None if seconds is None else seconds * slices / 60.0,
            "cpu_minutes_per_patient": None if cpu is None else cpu / patients / 60.0,
            "n_ok": s.get("n_ok"), "wall_seconds": cell["wall_seconds"], "cpu_seconds": cpu}


def fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def minutes(c: dict | None) -> str:
    """`wall; CPU` minutes per patient of a cell (– where not measured)."""
    if c is None:
        return "–"
    return f"{fmt(c['minutes_per_patient'], '.2f')}; {fmt(c.get('cpu_minutes_per_patient'), '.2f')}"


def markdown(report: dict) -> str:
    lines = []
    for sh in report["shifts"]:
        lines.append(f"**{sh['name']}** ({sh['description']})" + (f": {sh['missing']}" if sh.get("missing") else ""))
        if not sh.get("cells"):
            lines.append("")
            continue
        lines += ["", "| method | U-Net PSNR / SSIM / LPIPS | U-Net min/patient (wall; CPU) | VarNet PSNR / SSIM / "
                      "LPIPS | VarNet min/patient (wall; CPU) |", "|---|---|---|---|---|"]
        cells = sh["cells"]
        for row in NETWORK_ROWS:
            u, v = cells.get(f"unet/{row}"), cells.get(f"varnet/{row}")
            if u is None and v is None:
                continue
            lines.append(f"| {row} | " + " | ".join(
                f"{fmt(c and c['psnr'], '.2f')} / {fmt(c and c['ssim'], '.3f')} / {fmt(c and c['lpips'], '.3f')} | "
                f"{minutes(c)}" for c in (u, v)) + " |")
        diff = [(r, cells[f"diffusion/{r}"]) for r in DIFFUSION_ROWS if f"diffusion/{r}" in cells]
        if diff:
            priors = sorted({c["prior"] for _, c in diff if c.get("prior")})  # as run (a shift's source prior)
            lines += ["", f"| diffusion (prior {', '.join(priors) or report.get('prior') or 'default'}) | PSNR / SSIM / "
                          "LPIPS | min/patient (wall; CPU) |", "|---|---|---|"]
            for r, c in diff:
                lines.append(f"| {r} | {fmt(c['psnr'], '.2f')} / {fmt(c['ssim'], '.3f')} / {fmt(c['lpips'], '.3f')} | "
                             f"{minutes(c)} |")
        lines.append("")
    if report.get("ordering"):
        lines.append("U-Net ordering check (D2SA: Non-TTA < FINE <= FINE+MR-INR < FINE+MR-INR+SST, "
                     "FINE+MR-INR+SST within 1 dB of DIP-TTT at <= 1/3 of its minutes):")
        for shift, checks in report["ordering"].items():
            for name, ok in checks.items():
                lines.append(f"- {shift}: {name}: {'holds' if ok else 'FAILS' if ok is False else 'not measured'}")
    return "\n".join(lines) + "\n"


def ordering(cells: dict) -> dict[str, bool | None]:
    """The paper's U-Net ordering, step by step (None where a cell is missing)."""
    def p(row: str) -> float | None:
        c = cells.get(f"unet/{row}")
        return None if c is None else c["psnr"]

    def m(row: str) -> float | None:  # CPU minutes (load-independent at 1 thread)
        c = cells.get(f"unet/{row}")
        return None if c is None else c.get("cpu_minutes_per_patient")

    def cmp(a: float | None, b: float | None, f) -> bool | None:
        return None if a is None or b is None else bool(f(a, b))

    return {
        "Non-TTA < FINE": cmp(p("non-tta"), p("fine"), lambda a, b: a < b),
        "FINE <= FINE+MR-INR": cmp(p("fine"), p("fine+mr-inr"), lambda a, b: a <= b),
        "FINE+MR-INR < FINE+MR-INR+SST": cmp(p("fine+mr-inr"), p("fine+mr-inr+sst"), lambda a, b: a < b),
        "FINE+MR-INR+SST within 1 dB of DIP-TTT": cmp(p("fine+mr-inr+sst"), p("dip-ttt"),
                                                       lambda a, b: a >= b - 1.0),
        "FINE+MR-INR+SST CPU minutes <= 1/3 of DIP-TTT's": cmp(m("fine+mr-inr+sst"), m("dip-ttt"),
                                                            lambda a, b: a <= b / 3.0),
    }


SETTINGS = ("patients", "slices", "size", "seed", "quick", "overrides", "prior")


def kept_cells(results: Path, report: dict) -> tuple[dict[str, dict], list[str]]:
    """The cells per shift and the commands of an existing results file made with the same settings (none
    otherwise), so a table can be filled in several invocations (`--rows`, `--only`)."""
    if not results.exists():
        return {}, []
    old = json.loads(results.read_text())
    if any(old.get(k) != report[k] for k in SETTINGS):
        print(f"{results}: other settings; starting a new table", flush=True)
        return {}, []
    commands = old.get("commands") or [old["command"]]
    return {sh["name"]: sh.get("cells", {}) for sh in old.get("shifts", [])}, commands


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4, help="patients per cell (default 4)")
    p.add_argument("--slices", type=int, default=4, help="slices per patient (dataset.slices; default 4)")
    p.add_argument("--size", type=int, help="image size (dataset.size); the shipped networks and prior are 64x64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--only", nargs="*", choices=["unet", "varnet", "diffusion"], help="subset of method families")
    p.add_argument("--rows", nargs="*", help=f"subset of rows: {', '.join(NETWORK_ROWS + DIFFUSION_ROWS)}")
    p.add_argument("--shifts", nargs="*", help=f"subset of shifts: {', '.join(s.name for s in SHIFTS)}")
    p.add_argument("--prior", help="prior of the diffusion rows (default: the problem's)")
    p.add_argument("--quick", action="store_true", help="reduced iteration counts for a CPU run (see QUICK)")
    p.add_argument("--runs", default="runs/tta_table", help="folder for the run directories")
    p.add_argument("--results", default=str(RESULTS), help="where the JSON goes (the Markdown beside it, .md)")
    p.add_argument("--fresh", action="store_true",
                   help="start a new results file (default: keep the cells of the existing one when its settings "
                        "are these: --n, --slices, --size, --seed, --quick, --prior, overrides)")
    p.add_argument("overrides", nargs="*", help="hydra overrides for every run, e.g. adapters.fine.epochs=5")
    args = p.parse_args(argv)
    known = NETWORK_ROWS + DIFFUSION_ROWS
    if args.rows and set(args.rows) - set(known):
        p.error(f"unknown rows {sorted(set(args.rows) - set(known))}; choose from {', '.join(known)}")
    if args.shifts and set(args.shifts) - {s.name for s in SHIFTS}:
        p.error(f"unknown shift in --shifts; choose from {', '.join(s.name for s in SHIFTS)}")
    if args.n < 1 or args.slices < 1:
        p.error("--n and --slices must be >= 1")
    families = args.only or ["unet", "varnet", "diffusion"]
    data = [f"dataset.slices={args.slices}"] + ([f"dataset.size={args.size}"] if args.size else [])
    common = ["--n", str(args.n * args.slices), "--batch-size", str(args.slices), "--seed", str(args.seed),
              "--device", args.device, "--scheme", "online"]
    command = "python benchmarks/experiments/tta_table.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = {"command": command, "patients": args.n, "slices": args.slices, "size": args.size or 64,
              "seed": args.seed, "quick": args.quick, "quick_overrides": QUICK if args.quick else None,
              "overrides": args.overrides, "prior": args.prior, "shifts": []}
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    kept, commands = kept_cells(results, report) if not args.fresh else ({}, [])
    report["commands"] = commands + [command]  # every invocation that filled the table

    def write() -> None:
        report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        report["ordering"] = {sh["name"]: ordering(sh["cells"]) for sh in report["shifts"] if sh.get("cells")}
        results.write_text(json.dumps(report, indent=2))
        results.with_suffix(".md").write_text(markdown(report))

    for shift in SHIFTS:
        entry = {"name": shift.name, "description": shift.description, "cells": dict(kept.get(shift.name, {}))}
        if any(f not in shift.network_model for f in ("unet", "varnet")):
            entry["missing"] = shift.missing
        report["shifts"].append(entry)  # a shift not run (--shifts, nothing shipped) keeps the cells it had
        if (args.shifts and shift.name not in args.shifts) or not shift.network_model:
            continue
        plan = [(f, r) for f in families if f in shift.network_model for r in RUN_ORDER]
        plan += [("diffusion", r) for r in DIFFUSION_ROWS] if "diffusion" in families else []
        # U-Net first (the ordering check), then the VarNet, then the diffusion rows
        for family, row in plan:
            if args.rows and row not in args.rows:
                continue
            algo = algo_of(None if family == "diffusion" else family, row)
            flags, extra = common + shift.args, list(data)
            if family != "diffusion":
                extra.append(f"algorithm.model={shift.network_model[family]}")
            elif args.prior:
                flags += ["--prior", args.prior]
            if args.quick:
                extra += quick_overrides(algo)
            cell = run_cell(Path(args.runs) / shift.name / f"{family}-{row}", algo, flags, extra + list(args.overrides))
            entry["cells"][f"{family}/{row}"] = cell_row(cell, args.slices, args.n)
            c = entry["cells"][f"{family}/{row}"]
            print(f"{shift.name} {family}/{row}: PSNR {fmt(c['psnr'], '.2f')} SSIM {fmt(c['ssim'], '.3f')} "
                  f"{fmt(c['minutes_per_patient'], '.2f')} min/patient", flush=True)
            write()
    write()
    print(f"-> {results} and {results.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
