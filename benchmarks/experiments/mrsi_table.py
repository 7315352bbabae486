"""The MRSI (dynamic deuterium metabolic imaging) table: baselines and diffusion solvers with and without TDA.

Runs `bench run --problem mrsi` for every method on the default setting and the `dmi-drift` and `dmi-field-3t`
shifts (one test subject, its first `--n` frames in time order), then on the drift shift:
  - the oracle (problem.oracle_physics=true: the frames' true drift, linewidth and phase known) of each diffusion
    solver, for gap closure = (E_unadapted - E_tda) / (E_unadapted - E_oracle), E the kinetic-curve error (mean
    over metabolites) or the mean map NRMSE;
  - the TTT schemes of DAPS+TDA and DiffPIR+TDA at batch size 1 (each frame a batch): `online` (TDA restarts at
    every frame) against `minibatch` (TDA's drift/linewidth/phase estimates carried from frame to frame).
Results go to benchmarks/results/mrsi_table.json (after every run, so a stopped script keeps what it measured)
and mrsi_table.md. Run directories under benchmarks/results/runs/mrsi_table/ (ignored by git) let a rerun
resume (`bench run --resume`: a finished run is re-read, a stopped one finished; a run directory made with other
options is refused, naming them).

    python benchmarks/experiments/mrsi_table.py --n 4
    python benchmarks/experiments/mrsi_table.py --n 4 --only csi-fit,mrsi-tv --shifts none

Extra `key=value` arguments are hydra overrides passed to every diffusion run (e.g. CPU-sized step counts).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
METABOLITES = ("water", "glc", "glx", "lac")
CLASSICAL = ("csi-fit", "mrsi-lowrank", "mrsi-tv")
DIFFUSION = ("dps", "daps", "diffpir")
SHIFTS = ("none", "dmi-drift", "dmi-field-3t")
# DAPS needs none: on mrsi it runs at the problem's 0.1K budget, 50 Langevin steps (configs/problem/mrsi.yaml)
CPU_STEPS = {"dps": ["algorithm.n_steps=100"], "diffpir": ["algorithm.n_steps=20"]}
ENTRY_POINTS = {"algorithms": {"mrsi-lowrank": "algorithms.classical.mrsi:MRSILowRank",
                               "mrsi-tv": "algorithms.classical.mrsi:MRSITV"},
                "priors": {"phantom-dmi-32": "priors.shipped:phantom_dmi_32"}}


def ensure_entry_points(where: Path) -> None:
    """Put a dist-info declaring the MRSI entry points on sys.path where the installed distribution lacks them
    (a checkout newer than its `pip install -e .`)."""
    from benchmarks import registry

    if all(set(eps) <= set(registry.names(g)) for g, eps in ENTRY_POINTS.items()):
        return
    dist = where / "medtta_mrsi_entry_points-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: medtta-mrsi-entry-points\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("".join(
        f"[medtta_bench.{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
        for g, eps in ENTRY_POINTS.items()))
    (dist / "RECORD").write_text("")
    sys.path.insert(0, str(where))


def run(label: str, algo: str, shift: str, n: int, extra: list[str], runs: Path,
        flags: tuple[str, ...] = ()) -> dict[str, Any]:
    """One `bench run` (resumed if its directory exists); its summary's MRSI numbers."""
    from benchmarks.cli import main as bench

    out = runs / label
    args = ["run", "--problem", "mrsi", "--algo", algo, "--n", str(n), "--out", str(out), "--quiet", *flags]
    if (out / "config.yaml").exists():  # an earlier (finished or stopped) run: finish it or just re-read it
        args.append("--resume")
    if shift != "none":
        args += ["--shift", shift]
    start = time.time()
    code = bench(args + extra)
    if code != 0 or not (out / "summary.json").exists():
        return {"label": label, "error": f"bench run exited {code}"}
    s = json.loads((out / "summary.json").read_text())
    pm, pr = s.get("problem_metrics") or {}, s.get("problem_run_metrics") or {}
    row = {"label": label, "algo": algo, "shift": shift, "n_ok": s.get("n_ok"), "wall_s": round(time.time() - start, 1),
           "seconds_per_sample": (s["metrics"].get("seconds") or {}).get("mean"), "nfe": (s["metrics"].get("nfe") or {}).get("mean")}
    for m in METABOLITES:
        row[f"nrmse_{m}"] = (pm.get(f"nrmse_{m}") or {}).get("mean")
        row[f"kinetic_error_{m}"] = pr.get(f"kinetic_error_{m}")
    row["snr_db"] = (pm.get("snr_db") or {}).get("mean")
    row["lac_glx_tumour_error"] = pr.get("lac_glx_tumour_error")
    row["nrmse_mean"] = mean([row[f"nrmse_{m}"] for m in METABOLITES])
    row["kinetic_error_mean"] = mean([row[f"kinetic_error_{m}"] for m in METABOLITES])
    return row


def mean(values: list[Any]) -> float | None:
    v = [float(x) for x in values if isinstance(x, (int, float)) and math.isfinite(x)]
    return sum(v) / len(v) if len(v) == len(values) and v else None


def closure(unadapted: float | None, adapted: float | None, oracle: float | None) -> float | None:
    """(E_unadapted - E_adapted) / (E_unadapted - E_oracle) for an error E (lower is better)."""
    if None in (unadapted, adapted, oracle) or unadapted == oracle:
        return None
    return (unadapted - adapted) / (unadapted - oracle)


def fmt(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    head = ["shift", "method", "n"] + [f"NRMSE {m}" for m in METABOLITES] + [f"kin. err {m}" for m in METABOLITES] + [
        "kin. err mean", "s/sample"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | failed: {r['error']} |")
            continue
        lines.append("| " + " | ".join([r["shift"], r["label"].split("/")[-1], str(r["n_ok"])]
                                       + [fmt(r[f"nrmse_{m}"]) for m in METABOLITES]
                                       + [fmt(r[f"kinetic_error_{m}"]) for m in METABOLITES]
                                       + [fmt(r["kinetic_error_mean"]), fmt(r["seconds_per_sample"], 1)]) + " |")
    if result.get("gap_closure"):
        lines += ["", "| drift shift: gap closure of TDA | kinetic-curve error | mean map NRMSE |", "|---|---|---|"]
        for algo, g in result["gap_closure"].items():
            lines.append(f"| {algo} | {fmt(g['kinetic_error'], 2)} | {fmt(g['nrmse'], 2)} |")
    if result.get("missing"):
        lines += ["", "Not measured: " + ", ".join(result["missing"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=4, help="frames of the first test subject (default 4)")
    p.add_argument("--only", default=",".join(CLASSICAL + DIFFUSION), help="comma-separated algorithms")
    p.add_argument("--shifts", default=",".join(SHIFTS), help="comma-separated: none, dmi-drift, dmi-field-3t")
    p.add_argument("--no-tda", action="store_true", help="skip the +tda, oracle and scheme runs")
    p.add_argument("--out", default=str(RESULTS / "mrsi_table"), help="JSON/markdown stem")
    p.add_argument("--cpu-steps", action="store_true",
                   help="CPU-sized solver budgets (" + "; ".join(f"{a}: {' '.join(o)}" for a, o in CPU_STEPS.items())
                        + ") instead of the defaults")
    args, extra = p.parse_known_args(argv)
    runs = RESULTS / "runs" / "mrsi_table"
    ensure_entry_points(runs / "_entry_points")
    algos = [a for a in args.only.split(",") if a]
    shifts = [s for s in args.shifts.split(",") if s]
    plan: list[tuple[str, str, str, list[str], tuple[str, ...]]] = []
    # classical rows first (seconds each), then each diffusion solver's rows (the drift shift first)
    order = [(s_, a) for a in algos if a not in DIFFUSION for s_ in shifts] + [
        (s_, a) for a in algos if a in DIFFUSION for s_ in sorted(shifts, key=lambda v: v != "dmi-drift")]
    for shift, algo in order:
        diffusion = algo in DIFFUSION
        extra_a = extra + (CPU_STEPS.get(algo, []) if args.cpu_steps else [])
        plan.append((f"{shift}/{algo}", algo, shift, extra_a if diffusion else [], ()))
        if diffusion and not args.no_tda:
            plan.append((f"{shift}/{algo}+tda", f"{algo}+tda", shift, extra_a, ()))
        if diffusion and shift == "dmi-drift" and not args.no_tda:
            plan.append((f"{shift}/{algo} (oracle physics)", algo, shift, extra_a + ["problem.oracle_physics=true"],
                         ()))
        if algo in ("daps", "diffpir") and shift == "dmi-drift" and not args.no_tda:
            for scheme in ("online", "minibatch"):
                plan.append((f"dmi-drift/{algo}+tda (batch 1, {scheme})", f"{algo}+tda", "dmi-drift", extra_a,
                             ("--batch-size", "1", "--scheme", scheme)))
    result: dict[str, Any] = {"command": "python benchmarks/experiments/mrsi_table.py " + " ".join(argv or sys.argv[1:]),
                              "n": args.n, "rows": [], "gap_closure": {}, "missing": [label for label, *_ in plan]}
    json_path, md_path = Path(args.out).with_suffix(".json"), Path(args.out).with_suffix(".md")

    def save() -> None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        md_path.write_text(markdown(result))

    for label, algo, shift, opts, flags in plan:
        safe = label.replace("/", "__").replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")
        row = run(safe, algo, shift, args.n, opts, runs, flags)
        row["label"] = label
        result["rows"].append(row)
        result["missing"].remove(label)
        by = {r["label"]: r for r in result["rows"] if "error" not in r}
        for a in DIFFUSION:
            u, t, o = (by.get(f"dmi-drift/{a}{s}") for s in ("", "+tda", " (oracle physics)"))
            if u and t and o:
                result["gap_closure"][a] = {k: closure(u[f"{k}_mean"], t[f"{k}_mean"], o[f"{k}_mean"])
                                            for k in ("kinetic_error", "nrmse")}
        save()
        print(f"{label}: NRMSE mean {fmt(row.get('nrmse_mean'))}, kinetic error mean "
              f"{fmt(row.get('kinetic_error_mean'))} ({row.get('wall_s')} s)", flush=True)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
