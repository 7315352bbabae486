"""Denoising quality of the shipped prior against analytic priors fitted to the same training data.

For held-out (test split) phantoms x0 and noise levels sigma, denoise x = x0 + sigma * eps with
  - the shipped diffusion prior (phantom-brain-64, DiffusersPrior),
  - the Gaussian prior diagonal in the Fourier basis (exact MMSE for a stationary Gaussian),
  - a 4-component Gaussian mixture in the Fourier basis (k-means++ + EM),
the analytic priors being fitted to the training images the network saw (the first n of the train split).
Reports PSNR (complex: peak max|x0|^2 over the mean squared complex error; and the harness's
magnitude PSNR from benchmarks.metrics) and the noisy input's, per sigma, and writes a grid of
unconditional PF-ODE samples of the shipped prior beside test phantoms.

    python benchmarks/scripts/prior_quality.py [--prior-path DIR] [--n-test 64] [--n-train 512]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks import registry
from benchmarks.metrics import image_metrics
from priors.analytic import GaussianMixturePrior, GaussianPrior
from priors.diffusers_prior import DiffusersPrior
from priors.sampling import sample_prior
from priors.shipped import WEIGHTS
from priors.training import save_grid

RESULTS = Path(__file__).resolve().parents[1] / "results"


def complex_psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-sample 10 log10(max_pixel |ref|^2 / mean_pixel |x - ref|^2) on (B, C, H, W) (C = 2: complex)."""
    err = (x - ref).pow(2).sum(1).flatten(1).mean(1)
    peak = ref.pow(2).sum(1).flatten(1).amax(1)
    return 10 * torch.log10(peak / err.clamp_min(1e-20))


def _relative(path: Path) -> str:
    """A path relative to the repository when it lies inside it (results must not name this machine)."""
    try:
        return str(path.resolve().relative_to(RESULTS.parents[1]))
    except ValueError:
        return str(path)


def load_images(dataset: str, split: str, n: int, size: int, cache: Path | None = None) -> torch.Tensor:
    if cache is not None and cache.exists():
        x = torch.load(cache, weights_only=True)
        if x.shape[0] >= n:
            return x[:n]
    ds = registry.build("datasets", dataset, split=split, size=size)
    return torch.stack([ds[i]["image"] for i in range(min(n, len(ds)))])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior-path", default=str(WEIGHTS), help="diffusers directory of the prior to test")
    p.add_argument("--dataset", default="phantom-brain-t2")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n-test", type=int, default=64)
    p.add_argument("--n-train", type=int, default=512, help="training images the analytic priors are fitted to")
    p.add_argument("--train-cache", default="runs/brain-t2-64-train512.pt",
                   help="the training images `bench train-prior --cache` saved (regenerated when absent)")
    p.add_argument("--sigmas", default="0.02,0.05,0.1,0.2,0.5,1.0")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--sample-steps", type=int, default=18)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=str(RESULTS / "prior_quality.json"))
    p.add_argument("--png", default=str(RESULTS / "prior_samples.png"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    sigmas = [float(s) for s in args.sigmas.split(",")]
    net = DiffusersPrior(path=args.prior_path).eval()
    train = load_images(args.dataset, "train", args.n_train, args.size, Path(args.train_cache))
    test = load_images(args.dataset, "test", args.n_test, args.size)
    priors = {
        "diffusion (shipped)": net,
        "gaussian (fourier)": GaussianPrior.fit(train, "fourier"),
        "gmm-4 (fourier)": GaussianMixturePrior.fit(train, 4, "fourier", generator=torch.Generator().manual_seed(0)),
    }
    gen = torch.Generator().manual_seed(args.seed)
    rows = []
    for sigma in sigmas:
        noisy = test + sigma * torch.randn(test.shape, generator=gen)
        row = {"sigma": sigma, "noisy": {"psnr_complex": float(complex_psnr(noisy, test).mean()),
                                         "psnr_magnitude": sum(r["psnr"] for r in image_metrics(noisy, test)) / len(test)}}
        for name, prior in priors.items():
            with torch.no_grad():
                den = torch.cat([prior.denoise(noisy[i:i + args.batch_size], sigma)
                                 for i in range(0, len(test), args.batch_size)])
            mags = [r["psnr"] for r in image_metrics(den, test)]
            pc = complex_psnr(den, test)
            row[name] = {"psnr_complex": float(pc.mean()), "psnr_complex_std": float(pc.std()),
                         "psnr_magnitude": sum(mags) / len(mags)}
        rows.append(row)
        print(f"sigma {sigma:<5} " + "  ".join(f"{k}: {v['psnr_complex']:.2f}" for k, v in row.items() if k != "sigma"),
              flush=True)
    wins = all(r["diffusion (shipped)"]["psnr_complex"] > r["gaussian (fourier)"]["psnr_complex"] for r in rows)
    meta_path = Path(args.prior_path) / "metadata.json"
    result = {
        "description": "denoising PSNR (dB, mean over held-out test phantoms) of x0 + sigma*eps, images scaled to a "
                       "magnitude 99th percentile of 1; psnr_complex uses the complex error, psnr_magnitude is "
                       "benchmarks.metrics' PSNR of the magnitude images",
        "dataset": args.dataset, "size": args.size, "n_test": int(len(test)), "n_train_for_analytic": int(len(train)),
        "prior_path": _relative(Path(args.prior_path)), "seed": args.seed,
        "prior_metadata": json.loads(meta_path.read_text()) if meta_path.exists() else None,
        "diffusion_beats_gaussian_at_every_sigma": wins, "rows": rows,
        "command": "python benchmarks/scripts/prior_quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    with torch.no_grad():
        samples = sample_prior(net, args.samples, steps=args.sample_steps, generator=torch.Generator().manual_seed(args.seed))
    half = args.samples // 2
    save_grid(torch.cat([samples[:half], test[:half]]), Path(args.png),
              f"top: prior samples (PF-ODE, {args.sample_steps} Heun steps)\nbottom: test phantoms")
    result["samples_png"] = str(Path(args.png).name)
    result["sample_stats"] = {"mean_magnitude_p99": float(torch.quantile(samples.norm(dim=1).flatten(1), 0.99, 1).mean()),
                              "test_mean_magnitude_p99": float(torch.quantile(test.norm(dim=1).flatten(1), 0.99, 1).mean())}
    result["wall_seconds"] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"diffusion beats the Gaussian at every sigma: {wins} -> {args.out}, {args.png}")
    return result


if __name__ == "__main__":
    main()
