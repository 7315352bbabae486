"""Denoising quality of diffusion priors against each other and against analytic priors, per test set.

For held-out images x0 of each test set (default: anatomical test phantoms `anatomy-brain-mix` and the
real-anatomy set `real-brain` of other subjects) and noise levels sigma, denoise x = x0 + sigma * eps with
  - each diffusion prior given by --prior LABEL=NAME[,key=value...] (registered names, e.g.
    old=phantom-brain-64, new=brain-64 or new=edm,path=runs/brain-64-edm/model.pt),
  - the Gaussian prior diagonal in the Fourier basis (exact MMSE for a stationary Gaussian),
  - a 4-component Gaussian mixture in the Fourier basis (k-means++ + EM),
the analytic priors being fitted to training images (--train-dataset, train split). Every image is scaled to a
magnitude 99th percentile of 1 (the benchmark's measurement scale). Reports PSNR (complex: peak max|x0|^2 over
the mean squared complex error; and the harness's magnitude PSNR from benchmarks.metrics) per set and sigma, the
gain of --compare NEW,OLD at every sigma, and writes a grid of unconditional PF-ODE samples of the first prior.

    python benchmarks/experiments/prior_quality.py --prior new=brain-64 --prior old=phantom-brain-64
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from benchmarks import registry
from benchmarks.metrics import image_metrics
from priors.analytic import GaussianMixturePrior, GaussianPrior
from priors.sampling import sample_prior
from priors.training.common import save_grid
from priors.training.loop import normalise

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
    """The first n images of a dataset's split (or of a `bench train-prior --cache` file), each scaled to p99 = 1."""
    if cache is not None and cache.exists():
        x = torch.load(cache, weights_only=True)
        if x.shape[0] >= n:
            return normalise(x[:n])
    ds = registry.build("datasets", dataset, split=split, size=size)
    return normalise(torch.stack([ds[i]["image"] for i in range(min(n, len(ds)))]))


def parse_prior(spec: str) -> tuple[str, str, dict[str, str]]:
    """'LABEL=NAME[,key=value...]' -> (label, registered name, options)."""
    label, sep, rest = spec.partition("=")
    if not sep or not rest:
        raise SystemExit(f"--prior {spec!r}: write LABEL=NAME[,key=value...], e.g. new=edm,path=runs/x/model.pt")
    name, *opts = rest.split(",")
    options = {}
    for o in opts:
        k, eq, v = o.partition("=")
        if not eq:
            raise SystemExit(f"--prior {spec!r}: option {o!r} is not key=value")
        options[k] = v
    return label, name, options


def denoise_all(prior, noisy: torch.Tensor, sigma: float, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([prior.denoise(noisy[i:i + batch_size], sigma) for i in range(0, len(noisy), batch_size)])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior", action="append", default=None,
                   help="LABEL=NAME[,key=value...] (repeatable; default new=brain-64 and old=phantom-brain-64)")
    p.add_argument("--compare", default="new,old", help="NEW,OLD: the labels whose PSNR gain is reported")
    p.add_argument("--test", action="append", default=None,
                   help="DATASET[:SPLIT] test set (repeatable; default anatomy-brain-mix:test and real-brain:test)")
    p.add_argument("--train-dataset", default="anatomy-brain-mix", help="train split the analytic priors are fitted to")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n-test", type=int, default=64)
    p.add_argument("--n-train", type=int, default=512, help="training images the analytic priors are fitted to")
    p.add_argument("--train-cache", default="runs/anatomy-mix-64-5000.pt",
                   help="training images `bench train-prior --cache` saved (regenerated from --train-dataset when absent)")
    p.add_argument("--sigmas", default="0.02,0.05,0.1,0.2,0.5,1.0")
    p.add_argument("--goal-sigmas", default="0.1,0.2,0.5", help="sigmas at which NEW must beat OLD by --goal-db")
    p.add_argument("--goal-db", type=float, default=1.5)
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
    goal_sigmas = [float(s) for s in args.goal_sigmas.split(",")]
    specs = [parse_prior(s) for s in (args.prior or ["new=brain-64", "old=phantom-brain-64"])]
    nets = {label: registry.build("priors", name, **opts).eval() for label, name, opts in specs}
    train = load_images(args.train_dataset, "train", args.n_train, args.size, Path(args.train_cache))
    priors = dict(nets)
    priors["gaussian (fourier)"] = GaussianPrior.fit(train, "fourier")
    priors["gmm-4 (fourier)"] = GaussianMixturePrior.fit(train, 4, "fourier", generator=torch.Generator().manual_seed(0))
    new, _, old = args.compare.partition(",")
    tests = args.test or ["anatomy-brain-mix:test", "real-brain:test"]
    sets, first_test = {}, None
    for spec in tests:
        dataset, _, split = spec.partition(":")
        test = load_images(dataset, split or "test", args.n_test, args.size)
        first_test = test if first_test is None else first_test
        gen = torch.Generator().manual_seed(args.seed)
        rows = []
        for sigma in sigmas:
            noisy = test + sigma * torch.randn(test.shape, generator=gen)
            row = {"sigma": sigma, "noisy": {"psnr_complex": float(complex_psnr(noisy, test).mean())}}
            for name, prior in priors.items():
                den = denoise_all(prior, noisy, sigma, args.batch_size)
                mags = [r["psnr"] for r in image_metrics(den, test)]
                pc = complex_psnr(den, test)
                row[name] = {"psnr_complex": float(pc.mean()), "psnr_complex_std": float(pc.std()),
                             "psnr_magnitude": sum(mags) / len(mags)}
            if new in row and old in row:
                row[f"gain {new} - {old}"] = row[new]["psnr_complex"] - row[old]["psnr_complex"]
            rows.append(row)
            print(f"{dataset} sigma {sigma:<5} " + "  ".join(f"{k}: {v['psnr_complex']:.2f}" for k, v in row.items()
                                                             if isinstance(v, dict)), flush=True)
        gains = [r[f"gain {new} - {old}"] for r in rows if r["sigma"] in goal_sigmas and f"gain {new} - {old}" in r]
        sets[spec] = {"n_test": int(len(test)), "rows": rows,
                      "goal_met": bool(gains) and min(gains) >= args.goal_db, "min_gain_at_goal_sigmas": min(gains, default=None)}
    first = next(iter(nets))
    metadata = {}
    for label, name, opts in specs:
        where = opts.get("path")
        meta = Path(where).parent / "metadata.json" if where else None
        metadata[label] = json.loads(meta.read_text()) if meta is not None and meta.exists() else None
    result = {
        "description": "denoising PSNR (dB, mean over held-out test images) of x0 + sigma*eps, images scaled to a "
                       "magnitude 99th percentile of 1; psnr_complex uses the complex error, psnr_magnitude is "
                       "benchmarks.metrics' PSNR of the magnitude images",
        "priors": {label: {"name": name, "options": {k: (_relative(Path(v)) if k == "path" else v) for k, v in opts.items()}}
                   for label, name, opts in specs},
        "prior_metadata": metadata, "train_dataset": args.train_dataset, "size": args.size,
        "n_train_for_analytic": int(len(train)), "seed": args.seed, "compare": [new, old],
        "goal": f"{new} >= {old} + {args.goal_db} dB (complex PSNR) at sigma {goal_sigmas} on every test set",
        "goal_met": all(v["goal_met"] for v in sets.values()), "test_sets": sets,
        "command": "python benchmarks/experiments/prior_quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    with torch.no_grad():
        samples = sample_prior(nets[first], args.samples, steps=args.sample_steps,
                               generator=torch.Generator().manual_seed(args.seed))
    half = args.samples // 2
    save_grid(torch.cat([samples[:half], first_test[:half]]), Path(args.png),
              f"top: {first} prior samples (PF-ODE, {args.sample_steps} Heun steps)\nbottom: test images ({tests[0]})")
    result["samples_png"] = str(Path(args.png).name)
    result["sample_stats"] = {"mean_magnitude_p99": float(torch.quantile(samples.norm(dim=1).flatten(1), 0.99, 1).mean()),
                              "test_mean_magnitude_p99": float(torch.quantile(first_test.norm(dim=1).flatten(1), 0.99, 1).mean())}
    result["wall_seconds"] = round(time.time() - t0, 1)
    result["date_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["measured_under_load"] = os.getloadavg()[0] > 0.5  # denoising PSNR does not depend on it; the wall time does
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"goal ({result['goal']}) met: {result['goal_met']} -> {args.out}, {args.png}")
    return result


if __name__ == "__main__":
    main()
