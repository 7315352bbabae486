"""What a DAPS run on `mrsi` costs per budget: one operator round-trip A^T A x and one denoiser call, timed in turn
in one process on the default problem's first test batch (4 frames), then the run's reconstruction time
extrapolated for each budget: n_steps x (langevin_steps x normal + ode_steps x denoiser).

    python benchmarks/experiments/mrsi_daps_cost.py [--batch 4] [--rounds 3]

Writes benchmarks/results/mrsi_daps_cost.json. The calls are interleaved (normal, denoiser, normal, ...), so the
ratio holds under a shared CPU; absolute seconds are what the machine gave at the time.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable

import torch

from benchmarks.experiments.mrsi_table import RESULTS, ensure_entry_points

# (label, n_steps, ode_steps, langevin_steps): the official 1K budget and the one mrsi declares
BUDGETS = [("1k (official)", 200, 5, 100), ("0.1k, 50 Langevin steps (mrsi default)", 50, 2, 50)]


def timed(fn: Callable[[], Any], calls: int) -> float:
    """Mean seconds per call over `calls` calls (after one warm-up call)."""
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4, help="frames per batch (the default run's 4)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of (normal x 10, denoiser x 3)")
    args = p.parse_args(argv)
    ensure_entry_points(RESULTS / "runs" / "mrsi_table" / "_entry_points")
    from benchmarks.config import Selection, compose_config
    from benchmarks.build import build_components
    from inverse_problems.operators.random import SampleGenerators

    cfg = compose_config(Selection("mrsi", "daps", []))
    comp = build_components(cfg, torch.device("cpu"))
    items = [comp.dataset[i] for i in range(args.batch)]
    inst = comp.problem.instance(items, "cpu", SampleGenerators.seeded(0, [it["id"] for it in items], "cpu"))
    op, prior = inst.operator, comp.prior
    x = torch.randn(args.batch, *op.image_shape, generator=torch.Generator().manual_seed(0))
    sigma = torch.ones(args.batch)
    normal, denoise = [], []
    with torch.no_grad():
        for _ in range(args.rounds):
            normal.append(timed(lambda: op.normal(x), 10))
            denoise.append(timed(lambda: prior.denoise(x, sigma), 3))
    tn, td = sum(normal) / len(normal), sum(denoise) / len(denoise)
    out: dict[str, Any] = {"command": "python benchmarks/experiments/mrsi_daps_cost.py " + " ".join(argv or []),
                           "batch": args.batch, "threads": torch.get_num_threads(), "normal_s": tn, "denoiser_s": td,
                           "denoiser_over_normal": td / tn, "budgets": []}
    for label, n, ode, k in BUDGETS:
        seconds = n * (k * tn + ode * td)
        out["budgets"].append({"budget": label, "n_steps": n, "ode_steps": ode, "langevin_steps": k,
                               "operator_round_trips": n * k, "nfe": n * ode, "seconds_per_batch": seconds})
        print(f"{label}: {n * k} round-trips + {n * ode} NFE = {seconds / 60:.1f} min per batch of {args.batch}")
    print(f"normal {tn * 1e3:.1f} ms, denoiser {td * 1e3:.1f} ms (ratio {td / tn:.2f}), "
          f"{torch.get_num_threads()} thread(s)")
    (RESULTS / "mrsi_daps_cost.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
