"""Gap closure of test-time adaptation: how much of the loss from a distribution shift does adaptation win back?

For each shift, three `bench run`s with the same algorithm, seed and samples:
    oracle     the true operator (operator shifts) or in-distribution data (contrast/anatomy shifts)
    unadapted  the shifted setting, no adaptation
    adapted    the shifted setting with the adapter (TDA for operator shifts, prior-affine for data shifts)
and gap closure = (PSNR_adapted - PSNR_unadapted) / (PSNR_oracle - PSNR_unadapted) (mean PSNR over samples).
Results go to benchmarks/results/gap_closure.json and a markdown table is printed.

    python benchmarks/experiments/gap_closure.py --n 4 --algo diffpir
    python benchmarks/experiments/gap_closure.py --only lowfield-psf --prior gaussian \
        prior.dataset=phantom-brain-t2 'prior.dataset_options={size: 64}'

Extra `key=value` arguments are hydra overrides passed to every run (e.g. CPU-sized step counts).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.cli import main as bench

RESULTS = Path(__file__).resolve().parents[1] / "results" / "gap_closure.json"


@dataclass
class Shift:
    """One shift: the problem, and the extra arguments of the oracle and of the shifted runs."""

    name: str
    kind: str  # operator | data
    problem: str
    adapter: str
    oracle: list[str] = field(default_factory=list)
    shifted: list[str] = field(default_factory=list)


SHIFTS = [
    # ESPIRiT maps from the 5 ACS columns differ from the true ones by a smooth common phase (which moves into
    # the image) and ~5 % per-coil error: a model error 7x the thermal noise. TDA's defaults fit the noise level
    # (maximum likelihood, which absorbs it), the global phase and the coil-map correction at sigma <= 1.
    Shift("cs_mri-coil-maps", "operator", "cs_mri", "tda",
          oracle=["problem.coil_maps=true"], shifted=["problem.coil_maps=estimated"]),
    # The reconstruction assumes a 1 px PSF for data blurred by 2 px; TDA fits the width at every step.
    Shift("lowfield-psf", "operator", "lowfield", "tda",
          oracle=[], shifted=["problem.fwhm_recon=1.0"]),
    Shift("contrast-t1", "data", "cs_mri", "prior-affine",
          oracle=["--dataset", "phantom-brain-t2", "problem.coil_maps=true"],
          shifted=["--dataset", "phantom-brain-t1", "problem.coil_maps=true"]),
]


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """(flags, overrides): `--dataset NAME` pairs are flags, `key=value` are overrides."""
    flags, overrides, i = [], [], 0
    while i < len(args):
        if args[i].startswith("--"):
            flags += args[i:i + 2]
            i += 2
        else:
            overrides.append(args[i])
            i += 1
    return flags, overrides


def run_one(out: Path, problem: str, algo: str, extra: list[str], common: list[str], overrides: list[str],
            resume: bool) -> dict:
    flags, own = split_args(extra)
    argv = ["run", "--problem", problem, "--algo", algo, "--out", str(out), "--quiet", *common, *flags,
            *overrides, *own]
    if resume and (out / "samples.jsonl").exists():
        argv.insert(1 + argv.index("run"), "--resume")
    code = bench(argv)
    if code:
        raise RuntimeError(f"bench {' '.join(argv)} exited with {code}")
    return json.loads((out / "summary.json").read_text())


def psnr(summary: dict) -> float:
    return float(summary["metrics"]["psnr"]["mean"])


def closure(oracle: float, unadapted: float, adapted: float) -> float | None:
    """(adapted - unadapted) / (oracle - unadapted); None when there is no gap (the shifted setting is not worse than
    the oracle), where the ratio would have no meaning."""
    gap = oracle - unadapted
    return None if gap < 1e-9 else (adapted - unadapted) / gap


def markdown(rows: list[dict]) -> str:
    lines = ["| shift | kind | adapter | oracle PSNR | unadapted PSNR | adapted PSNR | gap closure |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        gc = "n/a (no gap)" if r["gap_closure"] is None else f"{100 * r['gap_closure']:.0f} %"
        lines.append(f"| {r['shift']} | {r['kind']} | {r['adapter']} | {r['psnr']['oracle']:.2f} | "
                     f"{r['psnr']['unadapted']:.2f} | {r['psnr']['adapted']:.2f} | {gc} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", default="diffpir", help="the solver every run uses (default diffpir)")
    p.add_argument("--prior", help="prior for every run (default: the problem's, brain-64)")
    p.add_argument("--n", type=int, default=4, help="test samples per run")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--only", nargs="*", help=f"subset of shifts: {', '.join(s.name for s in SHIFTS)}")
    p.add_argument("--runs", default="runs/gap_closure", help="folder for the run directories")
    p.add_argument("--results", default=str(RESULTS), help="where the JSON goes")
    p.add_argument("--resume", action="store_true", help="reuse finished runs in --runs")
    p.add_argument("overrides", nargs="*", help="hydra overrides for every run, e.g. algorithm.n_steps=20")
    args = p.parse_args(argv)
    shifts = [s for s in SHIFTS if not args.only or s.name in args.only]
    if args.only and len(shifts) != len(args.only):
        p.error(f"unknown shift in --only; choose from {', '.join(s.name for s in SHIFTS)}")
    common = ["--n", str(args.n), "--batch-size", str(args.batch_size), "--seed", str(args.seed),
              "--device", args.device, "--scheme", "online"] + (["--prior", args.prior] if args.prior else [])
    rows = []
    for s in shifts:
        base = Path(args.runs) / s.name
        res = {
            "oracle": run_one(base / "oracle", s.problem, args.algo, s.oracle, common, args.overrides, args.resume),
            "unadapted": run_one(base / "unadapted", s.problem, args.algo, s.shifted, common, args.overrides,
                                 args.resume),
            "adapted": run_one(base / "adapted", s.problem, f"{args.algo}+{s.adapter}", s.shifted,
                               common, args.overrides, args.resume),
        }
        values = {k: psnr(v) for k, v in res.items()}
        gc = closure(values["oracle"], values["unadapted"], values["adapted"])
        rows.append({"shift": s.name, "kind": s.kind, "problem": s.problem, "adapter": s.adapter, "psnr": values,
                     "ssim": {k: v["metrics"]["ssim"]["mean"] for k, v in res.items()},
                     "seconds_per_sample": {k: round(v["metrics"]["seconds"]["mean"], 2) for k, v in res.items()},
                     "gap_closure": None if gc is None or math.isnan(gc) else gc,
                     "runs": {k: str(base / k) for k in res}})
        print(markdown(rows[-1:]), flush=True)
    report = {"algorithm": args.algo, "prior": args.prior, "n": args.n, "seed": args.seed, "overrides": args.overrides,
              "command": "python benchmarks/experiments/gap_closure.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "shifts": rows}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(report, indent=2))
    print("\n" + markdown(rows))
    print(f"-> {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
