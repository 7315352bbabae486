"""The training curve of a diffusion prior: prior quality and reconstruction PSNR at each saved checkpoint.

For every checkpoint directory STEPS_DIR/step-N (model.pt + model.json, as `bench train-prior` exports them), in
order of N:
  - denoising PSNR (complex, as benchmarks/experiments/prior_quality.py) of x0 + sigma * eps at sigma in
    {0.05, 0.1, 0.2, 0.5} on held-out anatomical phantoms (`anatomy-brain-mix`, test split), on `real-brain`'s val
    split (other dipy volumes) and on its test slices;
  - `bench run` PSNR of DAPS and DiffPIR+TDA on 4 items of `real-brain`'s val split, and of DAPS on 4 items of the
    problem's own val split, cs_mri R = 4 with 8 coils, every option at its default; L1-wavelet on the same items
    once, as the reference the issue's goals are stated against.
`--prior knee-64` (the knee source-domain prior, trained on `phantom-knee-pd`): denoising on held-out knee PD
phantoms, and DAPS on 4 val items of its own domain (`--shift anatomy`, knee PD) and of D2SA's knee -> brain target
(`--shift knee-to-brain`, brain T2 phantoms), with L1-wavelet on each.
Each later checkpoint's rows are also paired, item by item, against the first checkpoint's (`paired`: mean difference,
95 % bootstrap interval, Wilcoxon p), the evidence for choosing it. Checkpoints are chosen on the val rows only; the
test rows are reported, never used to choose. Results are merged
into --out as they come (a re-run skips checkpoints already there), so the curve grows while training runs.

    python benchmarks/experiments/training_curve.py --steps-dir runs/brain-64-curve --every 2000
    python benchmarks/experiments/training_curve.py --prior knee-64 --steps-dir runs/knee-64-curve --every 2000
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks import registry
from benchmarks.experiments.prior_quality import complex_psnr, denoise_all, load_images
from benchmarks.results import read_samples
from benchmarks.stats import paired

RESULTS = Path(__file__).resolve().parents[1] / "results"
SIGMAS = (0.05, 0.1, 0.2, 0.5)
# per prior: the denoising sets (label: dataset, split, n), the reconstruction rows (label: bench run arguments), the
# methods of each row, and the denoising set the plot shows
PROFILES = {
    "brain-64": {
        "sets": {"anatomy-brain-mix test": ("anatomy-brain-mix", "test", 32), "real-brain val": ("real-brain", "val", 22),
                 "real-brain test": ("real-brain", "test", 12)},
        "runs": {"real-brain val": ["--shift", "real-brain", "run.split=val"], "in-distribution val": ["run.split=val"]},
        "methods": {"real-brain val": ("daps", "diffpir+tda"), "in-distribution val": ("daps",)},
        "plotted": "real-brain val"},
    "knee-64": {
        "sets": {"phantom-knee-pd test": ("phantom-knee-pd", "test", 32)},
        "runs": {"knee val": ["--shift", "anatomy", "run.split=val"],
                 "knee-to-brain val": ["--shift", "knee-to-brain", "run.split=val"]},
        "methods": {"knee val": ("daps",), "knee-to-brain val": ("daps",)},
        "plotted": "phantom-knee-pd test"},
}


def denoising(prior_dir: Path, seed: int = 0, name: str = "brain-64") -> dict[str, dict[str, float]]:
    """Mean complex denoising PSNR per set and sigma for the prior `name` with the weights in prior_dir."""
    prior = registry.build("priors", name, path=str(prior_dir))
    out: dict[str, dict[str, float]] = {}
    for label, (dataset, split, n) in PROFILES[name]["sets"].items():
        x0 = load_images(dataset, split, n, 64)
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(x0.shape, generator=g)
        with torch.no_grad():
            out[label] = {str(s): float(complex_psnr(denoise_all(prior, x0 + s * noise, s, 8), x0).mean())
                          for s in SIGMAS}
    return out


def bench_psnr(args: list[str], out: Path, n: int) -> float:
    """Mean PSNR of a `bench run` (resumed when out already holds part of it)."""
    if not (out / "summary.json").exists():
        cmd = [sys.executable, "-m", "benchmarks.cli", "run", "--problem", "cs_mri", "--n", str(n), "--out", str(out),
               "--quiet", *args] + (["--resume"] if out.exists() else [])
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return float(json.loads((out / "summary.json").read_text())["metrics"]["psnr"]["mean"])


def run_name(step: str, algo: str, label: str) -> str:
    """The folder (under --runs) of a checkpoint's `bench run` for one reconstruction row."""
    return f"step-{step}-{algo}-{label.replace(' ', '-')}"


def per_item(out: Path) -> dict[str, float]:
    """{item id: PSNR} of a finished `bench run` directory."""
    return {r["id"]: float(r["psnr"]) for r in read_samples(out / "samples.jsonl") if r.get("status", "ok") == "ok"}


def paired_against(runs: Path, step: str, first: str, keys: list[tuple[str, str]], other: Path | None = None) -> dict:
    """Per reconstruction row, the paired difference (same items) of checkpoint `step` against checkpoint `first`
    (in `other`, another curve's runs folder, when given): mean, 95 % bootstrap interval and Wilcoxon p
    (benchmarks.stats.paired)."""
    out: dict = {"against": first, **({"runs": str(other)} if other is not None else {})}
    for algo, label in keys:
        a, b = runs / run_name(step, algo, label), (other or runs) / run_name(first, algo, label)
        if (a / "samples.jsonl").exists() and (b / "samples.jsonl").exists():
            x, y = per_item(a), per_item(b)
            both = set(x) & set(y)  # the items both reconstructed
            pr = paired({i: x[i] for i in both}, {i: y[i] for i in both})
            if pr is not None:
                out[f"{algo} {label}"] = {"mean": pr.diff.mean, "low": pr.diff.low, "high": pr.diff.high,
                                          "n": pr.diff.n, "p_wilcoxon": pr.p_wilcoxon}
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", choices=sorted(PROFILES), default="brain-64", help="the shipped prior being trained")
    ap.add_argument("--steps-dir", type=Path, required=True, help="folder of step-N checkpoint directories")
    ap.add_argument("--every", type=int, default=2000, help="evaluate steps divisible by this (and the first)")
    ap.add_argument("--step-offset", type=int, default=0,
                    help="add this to the step-N names: a fine-tuning run (`bench train-prior --init`) started from "
                         "step OFFSET of another run, so both curves share one axis")
    ap.add_argument("--n", type=int, default=4, help="val items per reconstruction row")
    ap.add_argument("--runs", type=Path, default=Path("runs/training-curve"), help="where the bench runs go")
    ap.add_argument("--out", type=Path, help="results file (default: benchmarks/results/training_curve_PRIOR.json)")
    ap.add_argument("--paired-with", type=Path, metavar="RUNS",
                    help="also pair each checkpoint item by item with the same step of another curve, whose bench "
                         "runs are in RUNS (its --runs folder): e.g. a wider network trained alike against the narrow one")
    ap.add_argument("--no-recon", action="store_true", help="denoising rows only")
    args = ap.parse_args(argv)
    profile = PROFILES[args.prior]
    args.out = args.out or RESULTS / f"training_curve_{args.prior}.json"

    board = json.loads(args.out.read_text()) if args.out.exists() else {"checkpoints": {}}
    board.update(command="python benchmarks/experiments/training_curve.py " + " ".join(argv or sys.argv[1:]),
                 description=__doc__.split("\n\n")[0], sigmas=list(SIGMAS), n_recon=args.n)
    dirs = sorted((p for p in args.steps_dir.glob("step-*") if re.fullmatch(r"step-\d+", p.name)),
                  key=lambda p: int(p.name[5:]))
    chosen = [p for i, p in enumerate(dirs) if i == 0 or int(p.name[5:]) % args.every == 0]
    ref = board.setdefault("l1-wavelet", {})
    if not args.no_recon:
        for label, extra in profile["runs"].items():
            if label not in ref:
                ref[label] = bench_psnr(["--algo", "l1-wavelet", *extra], args.runs / f"l1-wavelet-{label.replace(' ', '-')}",
                                        args.n)
    first = str(int(chosen[0].name[5:]) + args.step_offset) if chosen else ""
    keys = [(a, label) for label in profile["runs"] for a in profile["methods"][label]]  # the reconstruction rows
    for d in chosen:
        step = str(int(d.name[5:]) + args.step_offset)
        row = board["checkpoints"].setdefault(step, {})
        t0 = time.time()
        if "denoising" not in row:
            row["denoising"] = denoising(d, name=args.prior)
        if not args.no_recon:
            recon = row.setdefault("recon", {})
            for label, extra in profile["runs"].items():
                for algo in profile["methods"][label]:
                    key = f"{algo} {label}"
                    if key not in recon:
                        recon[key] = bench_psnr(["--algo", algo, "--prior", args.prior, f"prior.path={d.resolve()}",
                                                 *extra], args.runs / run_name(step, algo, label), args.n)
        if not args.no_recon and step != first and "paired" not in row:
            row["paired"] = paired_against(args.runs, step, first, keys)
        if not args.no_recon and args.paired_with and "paired_with" not in row:
            row["paired_with"] = paired_against(args.runs, step, step, keys, other=args.paired_with)
        row.setdefault("seconds", round(time.time() - t0, 1))
        row.setdefault("load_average", os.getloadavg()[0])
        board.update(date_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), measured_under_load=True,
                     threads=int(os.environ.get("OMP_NUM_THREADS", "0")) or None, torch=torch.__version__)
        args.out.write_text(json.dumps(board, indent=1) + "\n")
        plot(board, args.out.with_suffix(".png"), profile["plotted"])
        print(step, json.dumps(row))
    return board


def plot(board: dict, path: Path, plotted: str = "real-brain val") -> None:
    """Denoising PSNR (on the set `plotted`) and val reconstruction PSNR against the training step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(board["checkpoints"], key=int)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for s in SIGMAS:
        a.plot([int(k) for k in steps], [board["checkpoints"][k]["denoising"][plotted][str(s)] for k in steps],
               "o-", label=f"σ = {s:g}")
    a.set(xlabel="training step", ylabel="denoising PSNR (dB)", title=plotted)
    a.legend(fontsize=8)
    for key in sorted({k for v in board["checkpoints"].values() for k in v.get("recon", {})}):
        pts = [(int(k), board["checkpoints"][k]["recon"][key]) for k in steps if key in board["checkpoints"][k].get("recon", {})]
        b.plot(*zip(*pts), "o-", label=key)
    for label, v in board.get("l1-wavelet", {}).items():
        b.axhline(v, ls="--", lw=1, color="grey" if "real" in label else "black", label=f"l1-wavelet {label}")
    b.set(xlabel="training step", ylabel="PSNR (dB)", title="cs_mri R = 4, 8 coils, val items")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
