"""One forward call of the shipped prior `brain-64` on each inference backend: eager PyTorch (channels_last, as the
runner sets it on a CPU: run.memory_format=auto) and ONNX Runtime (prior.backend=onnxruntime, CPU provider, all
graph optimisations), one thread each.

The backends alternate call by call (A B B A ...) at each batch size, so that a shared machine's changing load
affects both alike; each figure is a median over `--rounds` calls of the process's CPU time and of wall time, with
the 1-minute load average read beside each call. Also records the largest output difference from eager PyTorch.
Writes benchmarks/results/inference_backends.json.

    OMP_NUM_THREADS=1 python benchmarks/experiments/inference_backends.py [--batch 1 4] [--rounds 60]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from priors.edm import EDMPrior
from priors.shipped import brain_64


def timed(prior: EDMPrior, x: torch.Tensor, sigma: torch.Tensor) -> tuple[float, float, float]:
    """(CPU seconds, wall seconds, 1-minute load average) of one no-grad denoise call."""
    load = os.getloadavg()[0]
    with torch.no_grad():
        c0, w0 = time.process_time(), time.perf_counter()
        prior.denoise(x, sigma)
        return time.process_time() - c0, time.perf_counter() - w0, load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--rounds", type=int, default=60, help="calls per backend and batch size (alternating)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "inference_backends.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    priors = {"torch": brain_64().set_execution("fp32", "channels_last"),
              "onnxruntime": brain_64(backend="onnxruntime").set_execution("fp32", "channels_last")}
    import onnxruntime

    rows = []
    for batch in args.batch:
        g = torch.Generator().manual_seed(batch)
        sigma = torch.exp(torch.empty(batch).uniform_(-4.0, 4.0, generator=g))
        x = torch.randn((batch, 2, 64, 64), generator=g) * (1 + sigma.view(-1, 1, 1, 1))
        with torch.no_grad():  # warm-up (the first ONNX call exports the graph or reads it from the cache)
            outs = {name: p.denoise(x, sigma) for name, p in priors.items()}
            for p in priors.values():
                p.denoise(x, sigma)
        diff = float((outs["onnxruntime"] - outs["torch"]).abs().max())
        times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in priors}
        order = list(priors)
        for r in range(args.rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                times[name].append(timed(priors[name], x, sigma))
        row: dict[str, object] = {"batch": batch, "max_abs_diff": diff}
        for name, ts in times.items():
            row[name] = {"cpu_seconds": statistics.median(t[0] for t in ts),
                         "wall_seconds": statistics.median(t[1] for t in ts),
                         "load_1min": [min(t[2] for t in ts), statistics.median(t[2] for t in ts), max(t[2] for t in ts)]}
        eager, onnx = row["torch"], row["onnxruntime"]
        row["cpu_ratio_torch_over_onnxruntime"] = eager["cpu_seconds"] / onnx["cpu_seconds"]  # type: ignore[index]
        row["wall_ratio_torch_over_onnxruntime"] = eager["wall_seconds"] / onnx["wall_seconds"]  # type: ignore[index]
        rows.append(row)
        print(f"batch {batch}: torch {eager['cpu_seconds'] * 1e3:.1f} ms CPU, onnxruntime "  # type: ignore[index]
              f"{onnx['cpu_seconds'] * 1e3:.1f} ms CPU (torch/onnxruntime x{row['cpu_ratio_torch_over_onnxruntime']:.2f}; "
              f"wall x{row['wall_ratio_torch_over_onnxruntime']:.2f}), max|diff| {diff:.1e}, load "  # type: ignore[index]
              f"{eager['load_1min'][1]:.1f}")  # type: ignore[index]
    out = {"command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv), "prior": "brain-64", "threads": 1,
           "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
           "measured_under_load": max(r["torch"]["load_1min"][2] for r in rows) > 1.5,  # type: ignore[index]
           "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "platform": platform.platform(),
           "cpu_count": os.cpu_count(), "rounds": args.rounds, "torch_memory_format": "channels_last",
           "note": "medians over alternating calls on a machine shared with other jobs; load_1min is [min, median, "
                   "max] of the 1-minute load average read before each call", "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
