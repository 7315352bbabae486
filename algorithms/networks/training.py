"""`bench train-recon`: supervised training of the end-to-end networks (`unet`, `varnet`) on simulated data.

Data: the first n_images items of a registered dataset's train split, measured by a registered problem exactly as
the benchmark measures them (problem.instance with per-sample generators seeded from (seed, item id): the noise,
mask and ESPIRiT maps the benchmark would give these items), in the problem's scaled units (y / s, the target
x / s, s from the measurements). The pairs are simulated once, in chunks of --batch-size, and kept in memory; each
step draws one chunk. Loss (on magnitudes, as the benchmark scores them):

    l1:  mean | |f(y; A)| - |x / s| |          mse: mean ( |f(y; A)| - |x / s| )^2

(fastMRI's U-Net baseline trains with L1, Zbontar et al. 2018.) Adam with linear warm-up, gradient clipping at 1,
EMA weights (priors.training.loop.EMA), checkpoints every --save-every steps that --resume continues (the stored
configuration; only RESUMABLE options may change), a progress bar, a loss curve, and at the end the validation
PSNR of the EMA network against the zero-filled image on n_val items of the val split. Output (the run-directory
conventions of train-prior): OUT/model.pt (+ model.json) for `algorithm.path`, OUT/checkpoint/state.pt,
OUT/loss.png, OUT/val.png, OUT/metadata.json. The command line lives in benchmarks/train_recon_cli.py.
"""
from __future__ import annotations

import inspect
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from algorithms.networks.models import ARCHS, ReconNet, build_network, save_network
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.problems.base import Problem
from inverse_problems.operators.complex import magnitude
from inverse_problems.operators.random import SampleGenerators
from priors.training.loop import (EMA, checkpoint_path, plain_config, plot_loss,
                             optimiser_step, resume_state, save_grid)

LOSSES = ("l1", "mse")
# options a resumed leg may change; every other option shapes the network, the data or the optimisation
RESUMABLE = ("steps", "save_every", "log_every", "threads", "cpu")


@dataclass
class ReconTrainConfig:
    """Options of `bench train-recon` (see `bench train-recon --help`)."""

    algo: str = "unet"
    problem: str = "cs_mri"
    problem_options: dict[str, Any] = field(default_factory=dict)
    dataset: str = "phantom-brain-t2"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    size: int = 64
    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 50
    ema: float = 0.995
    chans: int = 16
    pools: int = 3
    cascades: int = 4
    loss: str = "l1"
    n_images: int = 512
    n_val: int = 16
    out: str = "runs/train-recon"
    resume: bool = False
    save_every: int = 250
    seed: int = 0
    cpu: bool = False
    threads: int | None = None
    log_every: int = 10
    command: str = ""

    def dataset_kwargs(self) -> dict[str, Any]:
        """The dataset's options: dataset_options, with size defaulting to `size`."""
        return {"size": self.size, **self.dataset_options}

    def problem_kwargs(self, problem_cls: Any = None) -> dict[str, Any]:
        """The problem's options: problem_options, with size defaulting to `size` where the problem takes one."""
        takes_size = problem_cls is None or "size" in inspect.signature(problem_cls).parameters
        return {**({"size": self.size} if takes_size else {}), **self.problem_options}

    def network_config(self, channels: int) -> dict[str, Any]:
        """The network's constructor arguments (algorithms.networks.models.build_network)."""
        if self.algo == "unet":
            return {"arch": "unet", "channels": channels, "chans": self.chans, "pools": self.pools}
        return {"arch": "varnet", "channels": channels, "cascades": self.cascades, "chans": self.chans,
                "pools": self.pools}


def check_config(cfg: ReconTrainConfig) -> None:
    """Refuse options that cannot train, naming the option and the fix."""
    if cfg.algo not in ARCHS:
        raise ValueError(f"unknown --algo {cfg.algo!r}; choose one of {', '.join(ARCHS)}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"unknown --loss {cfg.loss!r}; choose one of {', '.join(LOSSES)}")
    for name in ("steps", "batch_size", "n_images", "chans", "pools", "cascades"):
        if int(getattr(cfg, name)) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.n_val < 0 or cfg.lr <= 0 or not 0 <= cfg.ema < 1:
        raise ValueError(f"need --n-val >= 0, --lr > 0 and 0 <= --ema < 1; got {cfg.n_val}, {cfg.lr}, {cfg.ema}")


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
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    check_config(cfg)
    out = Path(cfg.out)
    ckpt_path = checkpoint_path(out)
    state = resume_state(cfg, ReconTrainConfig, RESUMABLE)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    acc = Accelerator(cpu=cfg.cpu)
    torch.manual_seed(cfg.seed + acc.process_index)
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
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + acc.process_index)
    ema = EMA(model, cfg.ema)
    step, losses, wall, legs = 0, [], 0.0, []
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["lr_scheduler"])
        step, losses, wall, legs = int(state["step"]), list(state["losses"]), float(state["wall_seconds"]), list(state["legs"])
        gen.set_state(state["rng"]["generator"])
        torch.set_rng_state(state["rng"]["torch"])
        print(f"train-recon: resuming {out} at step {step} of {cfg.steps} with the checkpoint's configuration",
              file=sys.stderr)
    leg = {"command": cfg.command, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "from_step": step}
    model, opt = acc.prepare(model, opt)
    ema.model.to(acc.device)
    t0 = time.time()

    def legs_so_far() -> list[dict[str, Any]]:
        now = time.time() - t0
        return legs + [{**leg, "to_step": step, "wall_seconds": round(now, 3), "cumulative_wall_seconds": round(wall + now, 3)}]

    def checkpoint() -> list[dict[str, Any]]:
        done = legs_so_far()
        if acc.is_main_process:
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save({"model": acc.unwrap_model(model).state_dict(), "ema": ema.state_dict(),
                        "optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict(), "step": step,
                        "losses": losses, "wall_seconds": done[-1]["cumulative_wall_seconds"],
                        "rng": {"generator": gen.get_state(), "torch": torch.get_rng_state()},
                        "config": plain_config(cfg), "legs": done}, tmp)
            tmp.replace(ckpt_path)
        return done

    bar = tqdm(total=cfg.steps, initial=step, desc=f"train-recon {cfg.algo}", disable=not acc.is_local_main_process)
    model.train()
    while step < cfg.steps:
        c = chunks[int(torch.randint(len(chunks), (1,), generator=gen))]
        loss = recon_loss(model(c.y, c.operator), c.target, cfg.loss)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train-recon: the loss is {float(loss)} at step {step}; lower --lr")
        losses.append(optimiser_step(acc, model, loss, opt, sched, ema))
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0:
            bar.set_postfix(loss=f"{sum(losses[-cfg.log_every:]) / cfg.log_every:.4f}")
        if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
            checkpoint()
    bar.close()
    done = checkpoint()
    acc.wait_for_everyone()
    meta: dict[str, Any] = {}
    if acc.is_main_process:
        net = ema.model.eval()
        scores = validate(net, val)
        tail = losses[-min(100, len(losses)):]
        training = {"algo": cfg.algo, "problem": cfg.problem, "problem_options": cfg.problem_kwargs(type(problem)),
                    "dataset": cfg.dataset, "dataset_options": cfg.dataset_kwargs(), "steps": step,
                    "command": cfg.command, **scores}
        weights = save_network(out / "model.pt", net, training)
        plot_loss(losses, out / "loss.png", f"{cfg.loss} loss (magnitude, scaled units)")
        if val:
            with torch.no_grad():
                c = val[0]
                k = min(4, c.y.shape[0])
                grid = torch.cat([c.operator.adjoint(c.y)[:k], net(c.y, c.operator)[:k], c.target[:k]])
            save_grid(grid, out / "val.png", f"rows: zero-filled A^H y | {cfg.algo} | target ({cfg.dataset}, val)")
        meta = {**training, "network": net_config, "batch_size": cfg.batch_size, "lr": cfg.lr, "warmup": cfg.warmup,
                "ema_decay": cfg.ema, "loss": cfg.loss, "n_training_images": n_train,
                "seed": cfg.seed, "processes": acc.num_processes, "device": str(acc.device),
                "final_loss": sum(tail) / len(tail), "wall_seconds": round(done[-1]["cumulative_wall_seconds"], 1),
                "parameters": n_params, "weights_bytes": weights.stat().st_size, "weights": "model.pt",
                "load_with": f"--algo {cfg.algo} algorithm.path={weights}", "legs": done,
                "config": plain_config(cfg), "torch": torch.__version__}
        (out / "metadata.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        if not math.isfinite(meta["final_loss"]):
            raise FloatingPointError("train-recon: the final loss is not finite")
    return meta
