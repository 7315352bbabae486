"""How many test samples resolve a 0.5 dB paired difference? The paired spread of PSNR, measured.

Runs a few methods on one leaderboard setting (default: cs_mri, 8 coils, R = 4, the board's first column) on the same
--n test samples, builds their leaderboard (benchmarks.leaderboard: paired differences to L1-wavelet) and writes, per
method, the standard deviation of its per-sample PSNR differences to the reference and the n that
`benchmarks.stats.samples_for` derives from it, n = ceil((1.96 sd / 0.5 dB)^2), to
benchmarks/results/paired_spread.json. Run directories go to --runs (resumable: a finished run is skipped).

    python benchmarks/experiments/paired_spread.py --n 16
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
SETTING = ["problem.acceleration=4"]  # configs/suites/board.yaml's cs_mri-R4 group: 8 coils, ESPIRiT maps
# name -> (algorithm, overrides): the classical rows and DiffPIR with the options its val study chose for this setting
METHODS = {"zero-filled": ("zero-filled", []), "cg-sense": ("cg-sense", []), "l1-wavelet": ("l1-wavelet", []),
           "tv": ("tv", []), "diffpir-tuned": ("diffpir", ["algorithm.lam=23.72", "algorithm.zeta=0.5289"])}
RESOLVE_DB = 0.5


def run(run_dir: Path, algo: str, n: int, overrides: list[str]) -> None:
    """`bench run` into run_dir unless it finished n samples already."""
    done = run_dir / "summary.json"
    if done.exists() and json.loads(done.read_text()).get("n", 0) >= n:
        return
    resume = ["--resume"] if (run_dir / "config.yaml").exists() else []
    code = bench(["run", "--problem", "cs_mri", "--algo", algo, "--n", str(n), "--batch-size", str(n),
                  "--out", str(run_dir), "--quiet", *resume, *SETTING, *overrides])
    if code:
        raise SystemExit(f"bench run for {run_dir.name} exited {code}")


def spread(board: dict) -> list[dict]:
    """Per row of the board: mean PSNR, its interval, and its paired difference to the reference with the spread."""
    from benchmarks.stats import samples_for

    rows = []
    for e in board["entries"]:
        c = e["comparison"]
        d = c["paired"].get("psnr")
        rows.append({"method": e["label"], "n": e["n"], "psnr": e["metrics"]["psnr"]["mean"],
                     "psnr_ci95": e["metrics"]["psnr"].get("ci95"), "role": c["role"], "rank": c["rank"],
                     "paired": d, "n_to_resolve": samples_for(d["sd"], RESOLVE_DB) if d and d["sd"] else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    from benchmarks import leaderboard

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--runs", default="runs/paired_spread")
    ap.add_argument("--out", default=str(RESULTS / "paired_spread.json"))
    args = ap.parse_args(argv)
    start = time.time()
    for name in args.methods.split(","):
        algo, overrides = METHODS[name]
        run(Path(args.runs) / name, algo, args.n, overrides)
    board = leaderboard.build([Path(args.runs) / name for name in args.methods.split(",")])
    rows = spread(board)
    sds = [r["paired"]["sd"] for r in rows if r["paired"] and r["paired"]["sd"] is not None]
    result = {
        "command": "python benchmarks/experiments/paired_spread.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "setting": "cs_mri, 8 coils, R = 4, ESPIRiT coil maps, brain-T2 phantoms (64×64, simulated k-space), test split",
        "reference": board["statistics"]["reference"], "n": args.n, "resolve_db": RESOLVE_DB,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "threads": os.environ.get("OMP_NUM_THREADS"),
        "wall_seconds_this_call": round(time.time() - start, 1),
        "sample_seconds": round(sum(e["metrics"]["seconds"]["mean"] * e["n"] for e in board["entries"]), 1),
        "rows": rows,
        "max_paired_sd": max(sds) if sds else None, "median_paired_sd": sorted(sds)[len(sds) // 2] if sds else None}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        sd = r["paired"]["sd"] if r["paired"] else None
        print(f"{r['method']:<40} PSNR {r['psnr']:.2f}  paired sd {sd if sd is None else round(sd, 3)}  "
              f"n for {RESOLVE_DB} dB: {r['n_to_resolve']}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
