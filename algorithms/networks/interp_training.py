"""`bench train-interp`: UVI-Net's unsupervised training of `uvi-lite` on end frames only (Kim et al., CVPR 2024).

Data: the first n_images sequences of a registered 4-D dataset's train split, measured by the `interp4d` problem as
the benchmark measures them (per-sample generators from (seed, item id)); only the two end frames of each are kept
(UVI-Net never sees an intermediate frame). Each step draws batch_size pairs and the cycle's virtual times from the
loop's generator; the loss is algorithms.networks.uvi.uvi_loss, plus aux_weight * the auxiliary losses (--aux
rot,mae: rotation prediction, pixel MAE on the end frames; TTT4MII's joint pre-training, L_main + lambda L_aux).
Adam with warm-up, clipping at 1, EMA weights and resumable checkpoints: the training core of
priors/training/common.py (shared with train-prior and train-recon). At the end, the validation PSNR over the
missing frames of the EMA network and of linear interpolation on n_val val sequences. Output: OUT/model.pt
(+ model.json) for `algorithm.path`, OUT/checkpoint/state.pt, OUT/loss.png, OUT/metadata.json.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from algorithms.classical.interpolation import InterpLinear
from algorithms.networks.interp_training_config import RESUMABLE, InterpTrainConfig, check_config
from algorithms.networks.uvi import UviLite, aux_loss, build_interp_network, interpolate_sequence, save_interp_network, uvi_loss
from inverse_problems.operators.random import SampleGenerators
from priors.training.common import (checkpoint_path, final_loss, plot_loss, start_process,
                                    save_state, start_optimisation, train_steps)
from priors.training.config import plain_config


def measured(problem: Any, dataset: Any, n: int, seed: int) -> list[Any]:
    """The first n items of `dataset` measured by `problem` one at a time: [(items, ProblemInstance)]."""
    out = []
    for i in range(min(n, len(dataset))):
        item = dataset[i]
        out.append((item, problem.instance([item], "cpu", SampleGenerators.seeded(seed, [item["id"]]))))
    if not out:
        raise ValueError("the dataset is empty; check its options")
    return out


def end_frames(problem: Any, dataset: Any, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """(i0, i1) (n, 1, H, W): the measured first and last frames of n training sequences (nothing in between)."""
    ys = torch.cat([inst.y for _, inst in measured(problem, dataset, n, seed)])
    return ys[:, :1].float(), ys[:, -1:].float()


@torch.no_grad()
def validate(net: UviLite, problem: Any, dataset: Any, n: int, seed: int) -> dict[str, float]:
    """Mean PSNR (dB, peak 1) over the missing frames of the network and of interp-linear on n val sequences."""
    if dataset is None or n < 1:
        return {}
    net_psnr, lin_psnr = [], []
    for item, inst in measured(problem, dataset, n, seed):
        target = item["image"][None] / inst.scale.view(-1, 1, 1, 1)
        miss = ~inst.operator.keep[0]
        for out, acc in ((interpolate_sequence(net, inst.y, inst.operator), net_psnr),
                         (InterpLinear().run(inst.y, inst.operator, None, None), lin_psnr)):
            mse = (out[0, miss] - target[0, miss]).pow(2).flatten(1).mean(1)
            acc.extend((10 * torch.log10(1 / mse.clamp_min(1e-20))).tolist())
    return {"val_psnr_db": sum(net_psnr) / len(net_psnr), "val_psnr_linear_db": sum(lin_psnr) / len(lin_psnr),
            "n_val": n}


def train(cfg: InterpTrainConfig, dataset: Any, problem: Any, val_dataset: Any = None) -> dict[str, Any]:
    """Train (or resume) uvi-lite on the end frames of `dataset`; validate on `val_dataset` (module docstring)."""
    check_config(cfg)
    out = Path(cfg.out)
    ckpt_path = checkpoint_path(out)
    state, acc = start_process(cfg, InterpTrainConfig, RESUMABLE)
    start_step = int(state["step"]) if state is not None else 0
    i0, i1 = end_frames(problem, dataset, cfg.n_images, cfg.seed) if start_step < cfg.steps else (None, None)
    net_config = cfg.network_config()
    model = build_interp_network(net_config)
    n_params = sum(p.numel() for p in model.parameters())
    model, opt, sched, gen, ema, progress = start_optimisation(cfg, model, state, acc, "train-interp")
    aux = cfg.aux_tasks()

    def checkpoint() -> list[dict[str, Any]]:
        return save_state(ckpt_path, acc, model, ema, opt, sched, progress, cfg,
                          {"generator": gen.get_state(), "torch": torch.get_rng_state()})

    def loss() -> Tensor:
        """A batch of end-frame pairs drawn at random; UVI-Net's loss (+ lambda * the auxiliary losses)."""
        net = acc.unwrap_model(model)
        idx = torch.randint(len(i0), (cfg.batch_size,), generator=gen)
        a, b = net.pad(i0[idx].to(acc.device))[0], net.pad(i1[idx].to(acc.device))[0]
        value = uvi_loss(net, a, b, gen, cfg.cycle, cfg.diff)
        if aux:
            value = value + cfg.aux_weight * aux_loss(net, torch.cat([a, b]), aux, gen, cfg.mask_ratio)
        if not torch.isfinite(value):
            raise FloatingPointError(f"train-interp: the loss is {float(value)} at step {progress.step}; lower --lr")
        return value

    train_steps(acc, model, opt, sched, ema, progress, cfg, loss, checkpoint, "train-interp uvi-lite")
    done = checkpoint()
    acc.wait_for_everyone()
    meta: dict[str, Any] = {}
    if acc.is_main_process:
        net = ema.model.eval()
        scores = validate(net, problem, val_dataset, cfg.n_val, cfg.seed)
        training = {"algo": "uvi-lite", "problem": "interp4d", "problem_options": cfg.problem_kwargs(),
                    "dataset": cfg.dataset, "dataset_options": cfg.dataset_kwargs(), "steps": progress.step,
                    "aux": list(aux), "command": cfg.command, **scores}
        weights = save_interp_network(out / "model.pt", net, training)
        plot_loss(progress.losses, out / "loss.png", "UVI-Net loss" + (f" + {cfg.aux_weight} x aux" if aux else ""))
        meta = {**training, "network": net_config, "batch_size": cfg.batch_size, "lr": cfg.lr, "warmup": cfg.warmup,
                "ema_decay": cfg.ema, "n_training_sequences": cfg.n_images, "seed": cfg.seed,
                "device": str(acc.device), "final_loss": final_loss(progress.losses),
                "wall_seconds": round(done[-1]["cumulative_wall_seconds"], 1), "parameters": n_params,
                "weights_bytes": weights.stat().st_size, "load_with": f"--algo uvi-lite algorithm.path={weights}",
                "legs": done, "config": plain_config(cfg), "torch": torch.__version__}
        (out / "metadata.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        if not math.isfinite(meta["final_loss"]):
            raise FloatingPointError("train-interp: the final loss is not finite")
    return meta
