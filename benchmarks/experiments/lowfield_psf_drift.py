"""Where physical TDA moves the lowfield PSF width, per prior: the blur-image ambiguity of blind deconvolution.

TDA fits the PSF width w by  min_w ||A_w(x̂0) - y||^2  with x̂0 the solver's current estimate. Its minimum is the
true width only when x̂0 is as sharp as the image: an x̂0 smoother than the truth is explained by a narrower PSF,
which in turn deblurs less (Levin et al., CVPR 2009, on why joint image-and-blur MAP favours the no-blur answer).
For each prior this runs on the **val** split

    diffpir            with the true PSF (2 px) and with a 1 px guess (problem.fwhm_recon=1.0)
    diffpir+tda        the same two, adapting the width (the problem's default TDA options: at every step)
    diffpir+tda        the same, fitting the width only at sigma <= 0.1 (x̂0 close to the final image)

and records mean PSNR, the width TDA ends at, and each run's implied width, the one that best explains the noise-free
data from its reconstruction (argmin_w ||A_w(x_rec) - A_2(x)||^2 on a grid): below 2 px means the reconstruction is
smoother than the image. Plain DiffPIR's implied width against TDA's says whether the bias is in the prior's
reconstructions or in the joint fit of image and width. Results: benchmarks/results/lowfield_psf_drift.json.

    mkdir -p runs/brain-64-8000 && for f in model.pt model.json metadata.json; do   # the former default's weights
        git show bba8fce:priors/weights/brain-64/$f > runs/brain-64-8000/$f; done
    python benchmarks/experiments/lowfield_psf_drift.py --n 8 \
        --prior default=brain-64 --prior 8000-steps=brain-64,path=runs/brain-64-8000
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.cli import main as bench
from benchmarks.experiments.prior_quality import parse_prior
from benchmarks.results import read_samples
from inverse_problems.operators.lowfield import LowField
from inverse_problems.problems.lowfield import LowFieldProblem

RESULTS = Path(__file__).resolve().parents[1] / "results" / "lowfield_psf_drift.json"
TRUE_FWHM = LowFieldProblem().fwhm  # the problem's default PSF, the data's width in every run here
LATE = "adapters.tda.param_sigma_max={fwhm: 0.1, noise_std: inf}"  # the width fitted in the last steps only
GRID = np.round(np.arange(1.0, 2.61, 0.05), 2)


def best_width(run_dir: Path) -> float:
    """argmin_w sum_i ||A_w(x_rec,i) - A_2(x_i)||^2 over GRID: the PSF width the reconstructions imply (the run's
    finished samples, each reconstruction with its own target, by the paths samples.jsonl records)."""
    ok = [r for r in read_samples(run_dir / "samples.jsonl") if r.get("status") == "ok"]
    recs = torch.from_numpy(np.stack([np.load(run_dir / r["reconstruction"]) for r in ok]))
    targets = torch.from_numpy(np.stack([np.load(run_dir / r["target"]) for r in ok]))
    y = LowField(recs.shape[-1], fwhm=TRUE_FWHM)(targets)
    with torch.no_grad():
        loss = [float(((LowField(recs.shape[-1], fwhm=float(w))(recs) - y) ** 2).sum()) for w in GRID]
    return float(GRID[int(np.argmin(loss))])


def final_width(run_dir: Path) -> float:
    """The mean width TDA ended at over the run's batches (adaptation.jsonl)."""
    widths = [t["final"]["fwhm"] for batch in read_samples(run_dir / "adaptation.jsonl")
              for t in batch["trace"] if "fwhm" in t.get("final", {})]
    return float(np.mean(widths))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8, help="val items per run")
    ap.add_argument("--prior", action="append", required=True, metavar="LABEL=NAME[,path=DIR]")
    ap.add_argument("--work", default="runs/lowfield_psf_drift", help="run directories (kept, resumable)")
    args = ap.parse_args()
    rows = []
    for spec in args.prior:
        label, name, opts = parse_prior(spec)
        prior_args = ["--prior", name, *[f"prior.{k}={v}" for k, v in opts.items()]]
        for guess in (None, 1.0):
            row: dict = {"prior": label, "fwhm_recon": guess or TRUE_FWHM}
            for algo, late in (("diffpir", False), ("diffpir+tda", False), ("diffpir+tda", True)):
                out = Path(args.work) / label / f"{algo}{'-late' if late else ''}-w{guess or TRUE_FWHM}"
                if not (out / "summary.json").exists():
                    code = bench(["run", "--problem", "lowfield", "--algo", algo, "--n", str(args.n), "--out", str(out),
                                  "--quiet", "run.split=val", *prior_args, *([LATE] if late else []),
                                  *([f"problem.fwhm_recon={guess}"] if guess else [])])
                    if code:
                        raise SystemExit(f"lowfield_psf_drift: bench run {algo} exited {code}")
                psnr = json.loads((out / "summary.json").read_text())["metrics"]["psnr"]["mean"]
                if late:
                    row["tda at sigma <= 0.1: psnr"] = round(psnr, 2)
                    row["tda at sigma <= 0.1: final fwhm"] = round(final_width(out), 3)
                    continue
                row[f"{algo} psnr"] = round(psnr, 2)
                row[f"{algo} implied fwhm"] = best_width(out)
                if algo == "diffpir+tda":
                    row["tda final fwhm"] = round(final_width(out), 3)
            rows.append(row)
            print(row, flush=True)
    RESULTS.write_text(json.dumps({"description": __doc__.split("\n\n")[0],
                                   "command": "python benchmarks/experiments/lowfield_psf_drift.py " + " ".join(sys.argv[1:]),
                                   "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "n": args.n, "split": "val", "true_fwhm": TRUE_FWHM,
                                   "rows": rows}, indent=1) + "\n")
    print(f"-> {RESULTS}")
    return 0


if __name__ == "__main__":
    start = time.time()
    code = main()
    print(f"{time.time() - start:.0f} s")
    sys.exit(code)
