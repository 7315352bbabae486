"""The shipped end-to-end networks against the classical baselines, in distribution and under the D2SA shifts.

For each network (default: the shipped `unet` model `knee-pd`) and each test dataset (default: its source, knee PD,
and the anatomy-shift target, brain T2), every sample is run through the benchmark's own batch function
(benchmarks.batch.run_batch: the same measurements, scale and metrics as `bench run`) for the network, the
zero-filled image and CG-SENSE. Writes the mean ± std PSNR / SSIM per cell as JSON and a figure (bars, plus one
example per dataset: zero-filled | CG-SENSE | network | target).

    python benchmarks/experiments/recon_baselines.py [--algo unet] [--model knee-pd | --path OUT/model.pt]
        [--datasets phantom-knee-pd phantom-brain-t2] [--n 16] [--problem-options acceleration=4]
        [--out benchmarks/results/recon_baselines.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from algorithms.classical.compressed_sensing import CGSense
from algorithms.networks.models import UNetAlgorithm, VarNetAlgorithm
from algorithms.classical.zero_filled import ZeroFilled
from benchmarks import registry
from benchmarks.batch import run_batch
from benchmarks.build import Components
from benchmarks.schedule import batches_of
from inverse_problems.operators.complex import magnitude


def evaluate(problem, dataset, algorithm, n: int, batch_size: int, seed: int) -> tuple[dict, list]:
    comp = Components(dataset=dataset, problem=problem, algorithm=algorithm)
    rows, images = [], []
    start = time.perf_counter()
    for b in batches_of(n, batch_size):
        r, im, _, _ = run_batch(comp, b, seed, torch.device("cpu"))
        rows += r
        images += im
    ok = [r for r in rows if r["status"] == "ok"]
    out = {"n": len(ok), "n_failed": len(rows) - len(ok), "seconds_per_sample": (time.perf_counter() - start) / n}
    for m in ("psnr", "ssim", "nmse"):
        vals = [r[m] for r in ok]
        out[m] = {"mean": statistics.fmean(vals), "std": statistics.pstdev(vals)}
    return out, images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algo", choices=["unet", "varnet"], default="unet")
    ap.add_argument("--model", default="knee-pd", help="shipped model name (algorithms.networks.models.SHIPPED)")
    ap.add_argument("--path", help="a model.pt of bench train-recon (overrides --model)")
    ap.add_argument("--datasets", nargs="+", default=["phantom-knee-pd", "phantom-brain-t2"])
    ap.add_argument("--labels", nargs="+", help="a label per dataset (default: the names)")
    ap.add_argument("--problem-options", nargs="*", default=[], help="cs_mri options key=value")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/recon_baselines.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    opts = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.problem_options)}
    cls = {"unet": UNetAlgorithm, "varnet": VarNetAlgorithm}[args.algo]
    net = cls(path=args.path, model=None if args.path else args.model)
    problem = registry.build("problems", "cs_mri", **opts)
    labels = args.labels or args.datasets
    methods = {"zero-filled": ZeroFilled(), "cg-sense": CGSense(), args.algo: net}
    results, examples = {}, {}
    for name, label in zip(args.datasets, labels):
        dataset = registry.build("datasets", name, split="test", size=problem.image_shape[-1])
        results[label] = {"dataset": name}
        for m, alg in methods.items():
            results[label][m], images = evaluate(problem, dataset, alg, args.n, args.batch_size, args.seed)
            examples.setdefault(label, {})[m] = images[0]
            print(f"{label:>24} {m:>12}: PSNR {results[label][m]['psnr']['mean']:.2f} ± "
                  f"{results[label][m]['psnr']['std']:.2f} dB, SSIM {results[label][m]['ssim']['mean']:.3f}", flush=True)
        examples[label]["target"] = dataset[0]["image"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": "python benchmarks/experiments/recon_baselines.py " + " ".join(
                  f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                  for k, v in vars(args).items() if v not in (None, [], False)),
              "network": {"algo": args.algo, "path": net.path, "training": net.training},
              "problem": {"name": "cs_mri", **opts}, "n": args.n, "seed": args.seed, "results": results,
              "torch": torch.__version__, "threads": args.threads}
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    figure(results, examples, list(methods), out.with_suffix(".png"))


def figure(results: dict, examples: dict, methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results)
    fig = plt.figure(figsize=(3.2 + 1.6 * 4, 2.2 * len(labels)))
    grid = fig.add_gridspec(len(labels), 5, width_ratios=[2, 1, 1, 1, 1])
    ax = fig.add_subplot(grid[:, 0])
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        means = [results[lab][m]["psnr"]["mean"] for lab in labels]
        stds = [results[lab][m]["psnr"]["std"] for lab in labels]
        ax.bar([i + k * width for i in range(len(labels))], means, width, yerr=stds, label=m)
    ax.set_xticks([i + width * (len(methods) - 1) / 2 for i in range(len(labels))], labels, fontsize=7)
    ax.set_ylabel("PSNR (dB)")
    ax.legend(fontsize=7)
    for r, lab in enumerate(labels):
        for c, key in enumerate(methods + ["target"]):
            a = fig.add_subplot(grid[r, c + 1])
            img = magnitude(examples[lab][key][None].float())[0, 0]
            a.imshow(img.numpy(), cmap="gray", vmin=0, vmax=float(magnitude(examples[lab]["target"][None])[0, 0].max()))
            a.set_title(f"{key}" + (f"\n{lab}" if c == 0 else ""), fontsize=7)
            a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
