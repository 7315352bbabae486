"""The solver roster's overhead against its denoiser floor (issues 28 and 30): wall time / (NFE x one denoiser call).

Single-coil cs_mri R = 4 at 64 x 64 with the shipped prior `brain-64`, in the runner's CPU execution setting
(channels_last). Each solver runs once on a batch (after a warm-up of the prior), and its floor is measured right after
it, in the same process, at the same batch size: NFE back-to-back no-grad denoiser calls, or for the methods that
backpropagate through the network (ΠGDM, LGD) NFE calls each with its backward pass through ||y - A D(x)||. The ratio
is what the solver adds on top of the network (1.0 is free): its own operator applications, CG solves, Monte Carlo
draws and bookkeeping. Step counts are cut to a few NFE so that the script is cheap (the ratio is per network call, but
a fixed per-run cost, such as RED-diff's pseudo-inverse start, weighs more at few steps); on a shared CPU single timings
are noisy, so the process CPU-seconds ratio (one thread) is reported beside the wall-clock one. Rows are written as they
finish; `--out` to an existing file updates only the rows measured.

    python benchmarks/experiments/solver_roster_cost.py [--batch 2] [--steps 6] [--device cpu] [--solvers ddnm ...]
        [--repeats R]   (R alternations of solver and floor; the ratios are their medians)
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from algorithms.diffusion.csgm import CSGM
from algorithms.diffusion.ddnm import DDNM
from algorithms.diffusion.dpg import DPG
from algorithms.diffusion.dps_gsg import DPSGSG
from algorithms.diffusion.enkg import EnKG
from algorithms.diffusion.fps import FPS
from algorithms.diffusion.lgd import LGD
from algorithms.diffusion.mcg_diff import MCGDiff
from algorithms.diffusion.pigdm import PiGDM
from algorithms.diffusion.pnpdm import PnPDM
from algorithms.diffusion.reddiff import REDDiff
from algorithms.diffusion.scg import SCG
from algorithms.diffusion.score_mri import ScoreMRI
from benchmarks.experiments.solver_cost import floor_calls, time_solver
from benchmarks.threads import load_average
from inverse_problems.data.phantoms.datasets import BrainT2
from inverse_problems.problems.cs_mri import CSMRIProblem
from priors.shipped import brain_64

BACKPROP = ("pigdm", "lgd")  # their floor is a call plus its backward pass


def solvers(steps: int) -> dict[str, object]:
    """Each solver at its defaults but for the number of steps (about `steps` NFE; DDNM's time travel doubles it)."""
    return {"ddnm": DDNM(n_steps=steps), "pigdm": PiGDM(n_steps=steps), "reddiff": REDDiff(n_steps=steps),
            "pnpdm": PnPDM(n_iters=2, n_levels=2 * steps), "lgd": LGD(n_steps=steps),
            "score-mri": ScoreMRI(n_steps=max(2, steps // 2)),
            "csgm": CSGM(start_iter=2311 - 1 - max(1, steps // 3)),
            # part 2 (issue 30): forward calls only; particles and candidates count as network evaluations
            "fps": FPS(n_steps=steps), "mcg-diff": MCGDiff(n_steps=steps), "dpg": DPG(n_steps=steps),
            "scg": SCG(n_steps=steps), "enkg": EnKG(n_steps=max(1, steps // 4)), "dps-gsg": DPSGSG(n_steps=steps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6, help="about the NFE of each solver")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--solvers", nargs="+", default=None)
    ap.add_argument("--repeats", type=int, default=1, help="alternate solver and floor this many times; medians")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "solver_roster_cost.json"))
    args = ap.parse_args()
    device = torch.device(args.device)
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    prior = brain_64(str(device)).requires_grad_(False)
    prior.set_execution("fp32", "channels_last" if device.type == "cpu" else "contiguous")
    data = BrainT2(split="test", size=64)
    x = torch.stack([data[i]["image"] for i in range(args.batch)]).to(device)
    sigma = torch.full((args.batch,), 1.0, device=device)
    inst = CSMRIProblem(size=64, coils=1).simulate(x, torch.Generator(device=device).manual_seed(1))
    y, op = inst.y, inst.operator
    xs = x / inst.scale.view(-1, 1, 1, 1)
    command = f"python benchmarks/experiments/solver_roster_cost.py --batch {args.batch} --steps {args.steps}"
    command += f" --repeats {args.repeats}" if args.repeats > 1 else ""
    out = {"device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "platform": platform.platform(),
           "problem": "cs_mri, coils=1, R = 4, 64 x 64", "prior": "brain-64", "batch": args.batch,
           "memory_format": prior.memory_format, "command": command,
           "note": "one timed run per solver at a few NFE and its floor right after (or the medians of `repeats` such "
                   "alternations, where a row records them); a shared 2-core machine, so seconds vary between rows and "
                   "only the within-row ratios are meaningful",
           "target_ratio": 1.2, "solvers": previous.get("solvers", {}),
           "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
           # any row measured beside other jobs marks the table (the rows keep their own dates)
           "measured_under_load": bool(previous.get("measured_under_load")) or load_average() > 0.5}

    floors = floor_calls(prior, xs, y, op, sigma)

    with torch.no_grad():
        prior.denoise(xs, sigma)  # warm-up
    for name, algo in solvers(args.steps).items():
        if args.solvers and name not in args.solvers:
            continue
        floor = "call + backward" if name in BACKPROP else "call"
        row = out["solvers"][name] = time_solver(algo, y, op, prior, device, floor, floors[floor], args.repeats)
        row["row_command"] = f"{command} --solvers {name}"
        print(f"{name:10s} {row['seconds_per_batch']:8.2f} s  nfe {row['nfe']:4d}  floor "
              f"{row['floor_seconds_per_batch']:8.2f} s  ratio {row['ratio']:5.3f}  CPU ratio {row['cpu_ratio']:5.3f}",
              flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
