"""Solver overhead against its floor: wall time / (NFE x one denoiser call [+ backward, + INR fits]).

The floor of each solver is measured in the same run, right after it, with the same prior at the same
batch size, as NFE back-to-back calls of: one no-grad denoiser call (DDRM, DAPS, DiffPIR, DiffDeuR), one denoiser call with its backward pass
through ||y - A D(x)|| (DPS), plus for DiffDeuR its INR Adam iterations (one INR forward/backward/Adam step each). Medians of 3.
The ratio is what the solver adds on top of the network: 1.0 is a free solver. Target <= 1.10 for
DDRM, DAPS and DiffPIR with a realistic network prior (a diffusers UNet2DModel through DiffusersPrior).

    python benchmarks/scripts/solver_cost.py [--size 32] [--batch 4] [--device cpu] [--out benchmarks/results/solver_cost.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from algorithms.daps import DAPS
from algorithms.ddrm import DDRM
from algorithms.diffdeur import DiffDeuR
from algorithms.diffpir import DiffPIR
from algorithms.dps import DPS
from algorithms.inr import FourierSIREN, pixel_grid
from inverse_problems.inpainting import Inpainting
from inverse_problems.linalg import batch_dot


def build_prior(size: int, device: torch.device):
    from diffusers import UNet2DModel

    from priors.diffusers_prior import DiffusersPrior

    unet = UNet2DModel(sample_size=size, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
                       layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
    config = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear",
              "prediction_type": "epsilon"}
    prior = DiffusersPrior(unet=unet, scheduler_config=config).to(device).eval()
    for p in prior.parameters():
        p.requires_grad_(False)
    return prior


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeat: int = 5) -> float:
    fn()
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "solver_cost.json"))
    args = ap.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    prior = build_prior(args.size, device)
    mask = (torch.rand((args.size, args.size), generator=g) < 0.5).float()
    op = Inpainting(mask, 1, noise_std=0.05).to(device)
    x = torch.randn((args.batch, 1, args.size, args.size), generator=g).to(device) * 0.5
    y = op.measure(x, torch.Generator(device=device).manual_seed(1))
    sigma = torch.full((args.batch,), 1.0, device=device)

    with torch.no_grad():
        t_call = timed(lambda: prior.denoise(x, sigma), device)

    def call_and_backward():
        with torch.enable_grad():
            xi = x.detach().requires_grad_(True)
            r = y - op.forward(prior.denoise(xi, sigma))
            torch.autograd.grad(batch_dot(r, r).sqrt().sum(), xi)

    t_grad = timed(call_and_backward, device)
    deur = DiffDeuR(n_steps=5, inr_iters=20, patience=1000)
    inr = FourierSIREN(args.batch, 2, 1, device=device, **deur.inr_options)
    opt = torch.optim.Adam(inr.parameters(), lr=1e-3)
    coords = pixel_grid(args.size, args.size, device)

    def inr_iteration():
        with torch.enable_grad():
            f = inr.image(coords, 1, args.size, args.size)
            r = op.forward(f) - y
            loss = batch_dot(r, r) + batch_dot(f - x, f - x)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()

    t_inr = timed(inr_iteration, device, repeat=10)
    solvers = {"dps": DPS(n_steps=50), "ddrm": DDRM(n_steps=20),
               "daps": DAPS(budget=None, n_steps=20, ode_steps=5, langevin_steps=100),
               "diffpir": DiffPIR(n_steps=50), "diffdeur": deur}
    rows = {}
    for name, algo in solvers.items():
        algo.reconstruct(y, op, prior, torch.Generator(device=device).manual_seed(0))  # warm-up
        times = []
        for rep in range(3):
            rec = algo.reconstruct(y, op, prior, torch.Generator(device=device).manual_seed(rep))
            times.append(rec.seconds)
        seconds = statistics.median(times)
        one = call_and_backward if name == "dps" else (lambda: torch.no_grad()(prior.denoise)(x, sigma))
        n_inr = algo.inr_iterations if name == "diffdeur" else 0

        def floor_work():
            for _ in range(rec.nfe):
                one()
            for _ in range(n_inr):
                inr_iteration()

        floor = timed(floor_work, device, repeat=3)  # the same number of calls, back to back, right after
        rows[name] = {"seconds_per_batch": seconds, "seconds_per_sample": seconds / args.batch, "nfe": rec.nfe,
                      "floor_seconds_per_batch": floor, "ratio": seconds / floor,
                      **({"inr_iterations": algo.inr_iterations} if name == "diffdeur" else {})}
        print(f"{name:9s} {seconds:8.3f} s/batch  nfe {rec.nfe:4d}  floor {floor:8.3f} s  ratio {seconds / floor:5.3f}")
    out = {"device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "platform": platform.platform(),
           "batch": args.batch, "size": args.size, "prior": "DiffusersPrior(UNet2DModel 32-64-64, attention at 2)",
           "problem": "random inpainting, 50 % observed, noise 0.05",
           "denoiser_call_seconds": t_call, "denoiser_call_and_backward_seconds": t_grad,
           "inr_iteration_seconds": t_inr, "target_ratio": {"ddrm": 1.10, "daps": 1.10, "diffpir": 1.10},
           "solvers": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
