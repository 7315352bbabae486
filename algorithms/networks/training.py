"""`bench train-recon`: supervised training of the end-to-end networks (`unet`, `varnet`) on simulated data.

Data: the first n_images items of a registered dataset's train split, measured by a registered problem exactly as
the benchmark measures them (problem.instance with per-sample generators seeded from (seed, item id): the noise,
mask and ESPIRiT maps the benchmark would give these items), in the problem's scaled units (y / s, the target
x / s, s from the measurements). The pairs are simulated once, in chunks of --batch-size, and kept in memory; each
step draws one chunk. Loss (on magnitudes, as the benchmark scores them):

    l1:  mean | |f(y; A)| - |x / s| |          mse: mean ( |f(y; A)| - |x / s| )^2

(fastMRI's U-Net baseline trains with L1, Zbontar et al. 2018.) Adam with linear warm-up, gradient clipping at 1,
EMA weights, checkpoints every --save-every steps that --resume continues (the stored configuration; only RESUMABLE
options may change), a progress bar and a loss curve: the training core of priors/training/common.py, which
`bench train-prior` runs too. At the end, the validation PSNR of the EMA network against the zero-filled image on
n_val items of the val split. Output (the run-directory conventions of train-prior): OUT/model.pt (+ model.json)
for `algorithm.path`, OUT/checkpoint/state.pt, OUT/loss.png, OUT/val.png, OUT/metadata.json. The options are
ReconTrainConfig (algorithms/networks/training_config.py, importable without torch); the command line lives in
benchmarks/train_recon_cli.py.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from algorithms.networks.models import ReconNet, build_network, save_network
from algorithms.networks.training_config import RESUMABLE, ReconTrainConfig, check_config
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.problems.base import Problem
from inverse_problems.operators.complex import magnitude
from inverse_problems.operators.random import SampleGenerators
from priors.training.common import (checkpoint_path, final_loss, plot_loss, start_process,
                                    save_grid, save_state, start_optimisation, train_steps)
from priors.training.config import plain_config


@dataclass
class Chunk:
    """One simulated batch: scaled measurements, the reconstruction operator, the scaled target."""

    y: Tensor
    operator: ForwardOperator
    target: Tensor


def simulate(problem: Problem, dataset: Any, n: int, batch_size: int, seed: int, device: torch.device | str,
             desc: str = "simulating") -> list[Chunk]:
    """The first n items of `dataset`, measured by `problem` as the benchmark measures them (per-sample generators
    from (seed, item id)), in chunks of batch_size; targets divided by the measurement scale."""
    from tqdm.auto import tqdm

    n = min(n, len(dataset))
    chunks = []
    for start in tqdm(range(0, n, batch_size), desc=desc, leave=False):
        items = [dataset[i] for i in range(start, min(start + batch_size, n))]
        if any(it.get("image") is None for it in items):
            raise ValueError("train-recon needs items with a target image (a simulated dataset); this dataset has "
                             "measurements without a reference")
        inst = problem.instance(items, device, SampleGenerators.seeded(seed, [it["id"] for it in items], device))
        target = torch.stack([it["image"] for it in items]).to(device) / inst.scale.view(-1, 1, 1, 1).to(device)
        op = inst.operator.requires_grad_(False)
        chunks.append(Chunk(inst.y.detach(), op, target.float()))
    if not chunks:
        raise ValueError("the dataset is empty; check its options")
    return chunks


def smooth_magnitude(x: Tensor, eps: float = 1e-12) -> Tensor:
    """sqrt(re^2 + im^2 + eps) for 2-channel images (finite gradient where the image is 0), else the image."""
    return (x.pow(2).sum(1, keepdim=True) + eps).sqrt() if x.shape[1] == 2 else x


def recon_loss(out: Tensor, target: Tensor, kind: str) -> Tensor:
    """l1 or mse between magnitudes (complex 2-channel images) or images (other channel counts)."""
    diff = smooth_magnitude(out.float()) - magnitude(target)
    return diff.abs().mean() if kind == "l1" else diff.pow(2).mean()


def psnr_db(x: Tensor, ref: Tensor) -> Tensor:
    """(B,) 10 log10(max|ref|^2 / mean(|x| - |ref|)^2) on magnitudes (the benchmark's data range convention)."""
    xm, rm = magnitude(x.float()).flatten(1), magnitude(ref.float()).flatten(1)
    mse = (xm - rm).pow(2).mean(1).clamp_min(1e-20)
    return 10 * torch.log10(rm.amax(1).pow(2) / mse)


@torch.no_grad()
def validate(net: ReconNet, chunks: list[Chunk]) -> dict[str, float]:
    """Mean PSNR (dB) of the network and of the zero-filled image A^H y on the validation chunks."""
    net_psnr, zf_psnr = [], []
    for c in chunks:
        net_psnr.append(psnr_db(net(c.y, c.operator), c.target))
        zf_psnr.append(psnr_db(c.operator.adjoint(c.y), c.target))
    if not net_psnr:
        return {}
    return {"val_psnr_db": float(torch.cat(net_psnr).mean()), "val_psnr_zero_filled_db": float(torch.cat(zf_psnr).mean()),
            "n_val": int(sum(c.y.shape[0] for c in chunks))}


def train(cfg: ReconTrainConfig, dataset: Any, problem: Problem, val_dataset: Any = None) -> dict[str, Any]:
    """Train (or resume) a network on `dataset` (train split) measured by `problem`; validate on `val_dataset`.

    Writes OUT/model.pt, OUT/checkpoint/state.pt, OUT/loss.png, OUT/val.png and OUT/metadata.json (module docstring);
    returns the metadata."""
    check_config(cfg)
    out = Path(cfg.out)
    ckpt_path = checkpoint_path(out)
    state, acc = start_process(cfg, ReconTrainConfig, RESUMABLE)
    start_step = int(state["step"]) if state is not None else 0
    n_train = min(cfg.n_images, len(dataset))
    if n_train < 1:
        raise ValueError(f"dataset {cfg.dataset!r} (train split) is empty; check its options {cfg.dataset_kwargs()}")
    # a resumed run already at --steps only writes its outputs: no training data to simulate
    chunks = simulate(problem, dataset, n_train, cfg.batch_size, cfg.seed, acc.device, "simulating train") \
        if start_step < cfg.steps else []
    val = simulate(problem, val_dataset, cfg.n_val, max(cfg.batch_size, 8), cfg.seed, acc.device,
                   "simulating val") if val_dataset is not None and cfg.n_val > 0 else []
    channels = int(dataset[0]["image"].shape[0])
    net_config = cfg.network_config(channels)
    model = build_network(net_config)
    n_params = sum(p.numel() for p in model.parameters())
    model, opt, sched, gen, ema, progress = start_optimisation(cfg, model, state, acc, "train-recon")

    def checkpoint() -> list[dict[str, Any]]:
        return save_state(ckpt_path, acc, model, ema, opt, sched, progress, cfg,
                          {"generator": gen.get_state(), "torch": torch.get_rng_state()})

    def loss() -> Tensor:
        """One simulated chunk, drawn at random, and the loss of the network on it."""
        c = chunks[int(torch.randint(len(chunks), (1,), generator=gen))]
        value = recon_loss(model(c.y, c.operator), c.target, cfg.loss)
        if not torch.isfinite(value):
            raise FloatingPointError(f"train-recon: the loss is {float(value)} at step {progress.step}; lower --lr")
        return value

    train_steps(acc, model, opt, sched, ema, progress, cfg, loss, checkpoint, f"train-recon {cfg.algo}")
    done = checkpoint()
    acc.wait_for_everyone()
    meta: dict[str, Any] = {}
    if acc.is_main_process:
        net = ema.model.eval()
        scores = validate(net, val)
        training = {"algo": cfg.algo, "problem": cfg.problem, "problem_options": cfg.problem_kwargs(type(problem)),
                    "dataset": cfg.dataset, "dataset_options": cfg.dataset_kwargs(), "steps": progress.step,
                    "command": cfg.command, **scores}
        weights = save_network(out / "model.pt", net, training)
        plot_loss(progress.losses, out / "loss.png", f"{cfg.loss} loss (magnitude, scaled units)")
        if val:
            with torch.no_grad():
                c = val[0]
                k = min(4, c.y.shape[0])
                grid = torch.cat([c.operator.adjoint(c.y)[:k], net(c.y, c.operator)[:k], c.target[:k]])
            save_grid(grid, out / "val.png", f"rows: zero-filled A^H y | {cfg.algo} | target ({cfg.dataset}, val)")
        meta = {**training, "network": net_config, "batch_size": cfg.batch_size, "lr": cfg.lr, "warmup": cfg.warmup,
                "ema_decay": cfg.ema, "loss": cfg.loss, "n_training_images": n_train,
                "seed": cfg.seed, "processes": acc.num_processes, "device": str(acc.device),
                "final_loss": final_loss(progress.losses), "wall_seconds": round(done[-1]["cumulative_wall_seconds"], 1),
                "parameters": n_params, "weights_bytes": weights.stat().st_size, "weights": "model.pt",
                "load_with": f"--algo {cfg.algo} algorithm.path={weights}", "legs": done,
                "config": plain_config(cfg), "torch": torch.__version__}
        (out / "metadata.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        if not math.isfinite(meta["final_loss"]):
            raise FloatingPointError("train-recon: the final loss is not finite")
    return meta
