"""Solver overhead against its floor: wall time / (NFE x one denoiser call), on 64 x 64 MRI and inpainting.

Problems: cs_mri R = 4 single-coil and 8-coil (estimated ESPIRiT maps, the suite's defaults) and 50 % random
inpainting of the same 2-channel images; the shipped prior `phantom-brain-64` in the runner's execution setting
(run.memory_format=auto: channels_last on CPU). Each solver runs once on a batch (after a warm-up of the prior),
and its floor is measured right after it, in the same process, at the same batch size: NFE back-to-back calls of
one no-grad denoiser call (DDRM, DAPS, DiffPIR), or of one call with its backward pass through ||y - A D(x)||
(DPS: its floor is forward + backward). The ratio is what the solver adds on top of the network; 1.0 is free.
Step counts are reduced (the ratio is per network call); a shared machine makes single timings noisy, so the
ratio, taken within one run, is the figure, not the seconds; on CPU the ratio of process CPU seconds (one thread:
what this process computed, which other jobs move far less than wall seconds) is reported beside the wall-clock
one. Results are written after every row; `--out` to an existing file updates only the rows measured.

    python benchmarks/experiments/solver_cost.py [--batch 4] [--device cpu] [--problems single-coil multi-coil inpainting]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from algorithms.diffusion.daps import DAPS
from algorithms.diffusion.ddrm import DDRM
from algorithms.diffusion.diffpir import DiffPIR
from algorithms.diffusion.dps import DPS
from inverse_problems.data.phantoms.datasets import BrainT2
from inverse_problems.operators.linalg import batch_dot
from inverse_problems.problems.cs_mri import CSMRIProblem
from inverse_problems.problems.inpainting import InpaintingProblem
from priors.shipped import phantom_brain_64

PROBLEMS = {"single-coil": lambda: CSMRIProblem(size=64, coils=1), "multi-coil": lambda: CSMRIProblem(size=64, coils=8),
            "inpainting": lambda: InpaintingProblem(size=64, channels=2)}


def solvers(steps: int) -> dict[str, object]:
    return {"dps": DPS(n_steps=steps), "ddrm": DDRM(n_steps=20), "diffpir": DiffPIR(n_steps=steps),
            "diffpir-direct": DiffPIR(n_steps=steps, data_step="direct"),
            "daps-langevin": DAPS(budget=None, n_steps=steps // 5, ode_steps=5),
            "daps-exact": DAPS(budget=None, n_steps=steps // 5, ode_steps=5, x0_sampler="exact")}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def floor_calls(prior, xs: torch.Tensor, y: torch.Tensor, op, sigma: torch.Tensor) -> dict[str, Callable[[], None]]:
    """One denoiser call without gradients ("call"), and one with its backward pass through ||y - A D(x)||
    ("call + backward"): the floors of the solvers that only call the network and of those that differentiate it."""

    def call() -> None:
        with torch.no_grad():
            prior.denoise(xs, sigma)

    def call_and_backward() -> None:
        with torch.enable_grad():
            xi = xs.detach().requires_grad_(True)
            r = y - op.forward(prior.denoise(xi, sigma))
            torch.autograd.grad(batch_dot(r, r).sqrt().sum(), xi)

    return {"call": call, "call + backward": call_and_backward}


def time_solver(algo, y: torch.Tensor, op, prior, device: torch.device, floor: str,
                one: Callable[[], None], repeats: int = 1) -> dict[str, object]:
    """`repeats` timed runs of `algo`, each followed by its floor (NFE back-to-back `one()` calls); the wall and CPU
    ratios are the medians over the repeats (alternating solver and floor cancels slow drifts of a shared machine)."""
    runs = []
    for _ in range(repeats):
        cpu = time.process_time()
        rec = algo.reconstruct(y, op, prior, torch.Generator(device=device).manual_seed(0))
        cpu = time.process_time() - cpu
        sync(device)
        start, cpu_floor = time.perf_counter(), time.process_time()
        for _ in range(rec.nfe):
            one()
        sync(device)
        wall_floor, cpu_floor = time.perf_counter() - start, time.process_time() - cpu_floor
        runs.append((rec.seconds, wall_floor, cpu, cpu_floor))
    wall, wall_floor, cpu, cpu_floor = zip(*runs)
    cpu_ratios = [c / f for c, f in zip(cpu, cpu_floor)]
    row = {"seconds_per_batch": statistics.median(wall), "nfe": rec.nfe,
           "floor_seconds_per_batch": statistics.median(wall_floor), "floor": floor,
           "ratio": statistics.median([w / f for w, f in zip(wall, wall_floor)]),
           "cpu_seconds_per_batch": statistics.median(cpu), "cpu_floor_seconds_per_batch": statistics.median(cpu_floor),
           "cpu_ratio": statistics.median(cpu_ratios), "failed": int(rec.failed.sum()),
           "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    if repeats > 1:
        row.update(repeats=repeats, cpu_ratios=[round(r, 3) for r in cpu_ratios])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20, help="diffusion steps (DAPS: steps/5 annealing x 5 ODE)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument("--solvers", nargs="+", default=None)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "solver_cost.json"))
    args = ap.parse_args()
    device = torch.device(args.device)
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    prior = phantom_brain_64(str(device)).requires_grad_(False)
    prior.set_execution("fp32", "channels_last" if device.type == "cpu" else "contiguous")
    data = BrainT2(split="test", size=64)
    x = torch.stack([data[i]["image"] for i in range(args.batch)]).to(device)
    sigma = torch.full((args.batch,), 1.0, device=device)
    out = {"device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "platform": platform.platform(),
           "batch": args.batch, "size": 64, "prior": "phantom-brain-64", "memory_format": prior.memory_format,
           "command": "python benchmarks/experiments/solver_cost.py " + " ".join(f"--{k} {v}" for k, v in
                                                                           (("batch", args.batch), ("steps", args.steps))),
           "note": "one timed run per solver and its floor right after; the 2-core machine was shared with other "
                   "jobs (under load), so seconds vary between rows and only the within-row ratio is meaningful; rows "
                   "carry the command and date of their own run (cpu_ratio: the rows measured with CPU seconds too)",
           "target_ratio": 1.05, "problems": previous.get("problems", {})}
    with torch.no_grad():
        prior.denoise(x, sigma)  # warm-up
    for pname in args.problems:
        inst = PROBLEMS[pname]().simulate(x, torch.Generator(device=device).manual_seed(1))
        y, op = inst.y, inst.operator
        xs = x / inst.scale.view(-1, 1, 1, 1)
        floors = floor_calls(prior, xs, y, op, sigma)

        rows = out["problems"].setdefault(pname, {})
        for name, algo in solvers(args.steps).items():
            if args.solvers and name not in args.solvers:
                continue
            if name == "diffpir-direct" and op.svd() is not None:
                continue  # the SVD route: the same as diffpir
            if name == "ddrm" and op.svd() is None:
                rows[name] = {"skipped": "no closed-form SVD (the dense one costs about a minute per sample)"}
                continue
            floor = "call + backward" if name == "dps" else "call"
            row = rows[name] = time_solver(algo, y, op, prior, device, floor, floors[floor])
            row["row_command"] = (f"python benchmarks/experiments/solver_cost.py --batch {args.batch} --steps "
                                  f"{args.steps} --problems {pname} --solvers {name}")
            print(f"{pname:12s} {name:14s} {row['seconds_per_batch']:8.2f} s  nfe {row['nfe']:4d}  floor "
                  f"{row['floor_seconds_per_batch']:8.2f} s  ratio {row['ratio']:5.3f}  CPU ratio {row['cpu_ratio']:5.3f}",
                  flush=True)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
