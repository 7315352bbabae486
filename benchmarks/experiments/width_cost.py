"""The cost of one denoiser call of `brain-64`'s network at two widths (or any EDM checkpoints of the prior).

Times a no-grad `denoise` call (what DAPS, DiffPIR and DDRM pay per step) and a call with its backward pass (what DPS
pays) of each checkpoint at batch size B on one thread, the checkpoints interleaved round by round so that a change
of machine load affects them alike; reports medians and each one's ratio to the first. Writes
benchmarks/results/width_cost.json.

    python benchmarks/experiments/width_cost.py --prior 16=runs/brain-64-16ch-curve/step-3000 \\
        --prior 32=runs/brain-64-wide-curve/step-3000 [--batch 16] [--rounds 9]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from benchmarks import registry

RESULTS = Path(__file__).resolve().parents[1] / "results"


def call_seconds(prior, x: torch.Tensor, sigma: float, backward: bool) -> float:
    """Wall seconds of one denoise call (with the gradient of its output's sum with respect to x when `backward`,
    the weights frozen as a run freezes them)."""
    x = x.clone().requires_grad_(backward)
    t0 = time.perf_counter()
    if backward:
        torch.autograd.grad(prior.denoise(x, sigma).sum(), x)
    else:
        with torch.no_grad():
            prior.denoise(x, sigma)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", action="append", required=True, metavar="LABEL=DIR",
                    help="a checkpoint folder of brain-64's kind (model.pt + model.json)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--out", type=Path, default=RESULTS / "width_cost.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    specs = [p.partition("=")[::2] for p in args.prior]
    priors = {label: registry.build("priors", "brain-64", path=path).eval().requires_grad_(False)
              for label, path in specs}
    x = torch.randn(args.batch, 2, 64, 64, generator=torch.Generator().manual_seed(0))
    times: dict[str, dict[str, list[float]]] = {k: {"no_grad": [], "backward": []} for k in priors}
    for p in priors.values():  # warm-up
        call_seconds(p, x, 0.5, False)
    for _ in range(args.rounds):
        for label, p in priors.items():
            for kind in ("no_grad", "backward"):
                times[label][kind].append(call_seconds(p, x, 0.5, kind == "backward"))
    first = specs[0][0]
    med = {k: {kind: statistics.median(v) for kind, v in t.items()} for k, t in times.items()}
    out = {"description": __doc__.split("\n\n")[0], "command": "python benchmarks/experiments/width_cost.py "
           + " ".join(f"--prior {p}" for p in args.prior) + f" --batch {args.batch} --rounds {args.rounds}",
           "batch": args.batch, "rounds": args.rounds, "threads": 1, "torch": torch.__version__,
           "parameters": {k: sum(q.numel() for q in p.parameters()) for k, p in priors.items()},
           "median_seconds": med,
           "ratio_to_first": {k: {kind: m[kind] / med[first][kind] for kind in m} for k, m in med.items()},
           "load_average": os.getloadavg()[0], "measured_under_load": os.getloadavg()[0] > 0.5,
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["ratio_to_first"]))
    return out


if __name__ == "__main__":
    main()
