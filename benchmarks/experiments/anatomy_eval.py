"""Does the shipped prior know real anatomy? DAPS with each prior against L1-wavelet and CG-SENSE on cs_mri.

For each test set (anatomical test phantoms `anatomy-brain-t2` and the real-anatomy set `real-brain` of other
subjects) `bench run`s, with every option at its default (8 coils, R = 4, ESPIRiT maps), the same seed and samples:
    l1-wavelet, cg-sense                     the classical baselines
    each of --algos (default daps, diffpir+tda) with each --prior LABEL=NAME (default: new=brain-64,
                                             old=phantom-brain-64)
and writes, per set, the mean PSNR/SSIM of every row and the gain of DAPS with each prior over L1-wavelet, with the
goal of the anatomy-prior issue (DAPS with the new prior: >= 1 dB above L1-wavelet on the phantoms, >= 0.5 dB on real
anatomy), to
benchmarks/results/anatomy_eval.json and a Markdown table. Run directories go to --runs (resumable: a finished run is
read back, an interrupted one is finished with --resume).

    python benchmarks/experiments/anatomy_eval.py --n 4
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.cli import main as bench

RESULTS = Path(__file__).resolve().parents[1] / "results"
GOALS = {"anatomy-brain-t2": 1.0, "real-brain": 0.5}


def run(run_dir: Path, dataset: str, algo: str, n: int, extra: list[str]) -> dict:
    summary = run_dir / "summary.json"
    if not (summary.exists() and json.loads(summary.read_text())["n"] >= n):
        resume = ["--resume"] if (run_dir / "config.yaml").exists() else []
        code = bench(["run", "--problem", "cs_mri", "--algo", algo, "--dataset", dataset, "--n", str(n),
                      "--batch-size", str(n), "--out", str(run_dir), "--quiet", *resume, *extra])
        if code:
            raise SystemExit(f"bench run for {run_dir.name} exited {code}")
    m = json.loads(summary.read_text())["metrics"]
    return {"psnr": m["psnr"]["mean"], "psnr_std": m["psnr"]["std"], "ssim": m["ssim"]["mean"],
            "seconds_per_sample": m["seconds"]["mean"], "n": m["psnr"]["n"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--prior", action="append", default=None,
                    help="LABEL=NAME or LABEL=NAME,key=value... (repeatable; default new=brain-64, old=phantom-brain-64)")
    ap.add_argument("--datasets", default="anatomy-brain-t2,real-brain")
    ap.add_argument("--algos", default="daps,diffpir+tda", help="diffusion methods run with each prior")
    ap.add_argument("--runs", default="runs/anatomy_eval")
    ap.add_argument("--out", default=str(RESULTS / "anatomy_eval.json"))
    args = ap.parse_args(argv)
    priors = []
    for spec in args.prior or ["new=brain-64", "old=phantom-brain-64"]:
        label, _, rest = spec.partition("=")
        name, *opts = rest.split(",")
        priors.append((label, name, [f"prior.{o}" for o in opts]))
    start = time.time()
    result: dict = {"command": "python benchmarks/experiments/anatomy_eval.py " + " ".join(sys.argv[1:] if argv is None else argv),
                    "problem": "cs_mri (defaults: 8 coils, R = 4, ESPIRiT maps)", "n": args.n, "sets": {}}
    lines = ["| test set | method | prior | PSNR | SSIM | − L1-wavelet (dB) |", "|---|---|---|---|---|---|"]
    for dataset in args.datasets.split(","):
        rows = {algo: run(Path(args.runs) / f"{dataset}-{algo}", dataset, algo, args.n, [])
                for algo in ("l1-wavelet", "cg-sense")}
        for algo in args.algos.split(","):
            for label, name, opts in priors:
                rows[f"{algo} ({label})"] = {**run(Path(args.runs) / f"{dataset}-{algo}-{name}", dataset, algo, args.n,
                                                  ["--prior", name, *opts]), "prior": name}
        l1 = rows["l1-wavelet"]["psnr"]
        for key, row in rows.items():
            row["gain_over_l1_wavelet"] = row["psnr"] - l1
            lines.append(f"| {dataset} | {key.split(' (')[0]} | {row.get('prior', '–')} | {row['psnr']:.2f} ± "
                         f"{row['psnr_std']:.2f} | {row['ssim']:.4f} | {row['gain_over_l1_wavelet']:+.2f} |")
        new = rows.get(f"daps ({priors[0][0]})")
        goal = GOALS.get(dataset)
        result["sets"][dataset] = {"rows": rows, "goal_db_over_l1_wavelet": goal,
                                   "goal_met": None if goal is None or new is None else new["gain_over_l1_wavelet"] >= goal}
    result["wall_seconds"] = round(time.time() - start, 1)
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    result["measured_under_load"] = os.getloadavg()[0] > 0.5  # PSNR does not depend on it; wall_seconds does
    result["markdown"] = "\n".join(lines) + "\n"
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(result["markdown"], end="")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
