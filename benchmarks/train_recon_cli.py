"""`bench train-recon`: the command line of algorithms.networks.training (supervised U-Net / VarNet training).

Only the argparse definition lives here. The choices, defaults and resumable options it shows come from
algorithms.networks.training_config (ReconTrainConfig), which imports no torch; the training (torch, accelerate) is
imported when the verb runs, so `bench --help` does not import torch. Every option defaults to "not given", so that
`--resume` can tell the options of this leg from the checkpoint's stored configuration (as `bench train-prior`).
"""
from __future__ import annotations

import argparse
import shlex
from dataclasses import fields, replace
from typing import Any

from algorithms.networks import training_config
from benchmarks.train_prior_cli import _word, config_defaults, parse_dataset_options


def split_options(items: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """['problem.acceleration=2', 'dataset.length=64'] -> (problem options, dataset options); a bare key=value is a
    dataset option (as in train-prior)."""
    problem, dataset = [], []
    for item in items:
        (problem if item.startswith("problem.") else dataset).append(item.removeprefix("problem."))
    return parse_dataset_options(problem), parse_dataset_options(dataset)


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ReconTrainConfig fields this command line sets (options left out are absent, not defaulted)."""
    opts = {k: v for k, v in vars(args).items() if k not in ("func", "verb", "train_options", "resume")}
    problem, dataset = split_options(list(getattr(args, "train_options", []) or []))
    if problem:
        opts["problem_options"] = problem
    if dataset:
        opts["dataset_options"] = dataset
    return opts


def command_line(cfg: Any, verb: str = "train-recon") -> str:
    """The fully spelled-out `bench VERB` command of a training config (for metadata.json)."""
    parts = ["bench", verb]
    for f in fields(cfg):
        key, value = f.name, getattr(cfg, f.name)
        if key in ("command", "dataset_options", "problem_options", "resume") or value is None:
            continue
        if isinstance(value, bool):
            parts += ["--" + key.replace("_", "-")] if value else []
        else:
            parts += ["--" + key.replace("_", "-"), str(value)]
    if cfg.resume:
        parts.append("--resume")
    parts += [f"problem.{k}={_word(v)}" for k, v in cfg.problem_options.items()]
    parts += [f"dataset.{k}={_word(v)}" for k, v in cfg.dataset_options.items()]
    return " ".join(shlex.quote(p) for p in parts)


def command(args: argparse.Namespace) -> int:
    """Run `bench train-recon`: resolve the configuration (the checkpoint's on --resume), build data and problem, train."""
    from algorithms.networks.training import train
    from benchmarks import registry
    from priors.training.common import resume_config

    ReconTrainConfig = training_config.ReconTrainConfig
    options = given_options(args)
    if getattr(args, "resume", False):
        cfg = resume_config(options.get("out", ReconTrainConfig.out), options, ReconTrainConfig,
                            training_config.RESUMABLE)
    else:
        cfg = ReconTrainConfig(**options)
    cfg = replace(cfg, command=command_line(cfg))
    training_config.check_config(cfg)
    problem = registry.build("problems", cfg.problem, **cfg.problem_kwargs(registry.load("problems", cfg.problem)))
    dataset = registry.build("datasets", cfg.dataset, split="train", **cfg.dataset_kwargs())
    val = registry.build("datasets", cfg.dataset, split="val", **cfg.dataset_kwargs()) if cfg.n_val > 0 else None
    meta = train(cfg, dataset, problem, val)
    if meta:
        scores = (f"; val PSNR {meta['val_psnr_db']:.2f} dB vs zero-filled {meta['val_psnr_zero_filled_db']:.2f} dB"
                  if "val_psnr_db" in meta else "")
        print(f"trained {meta['parameters']:,} parameters for {meta['steps']} steps in {meta['wall_seconds']:.0f} s; "
              f"final loss {meta['final_loss']:.4f}{scores} -> {cfg.out} (load with {meta['load_with']})")
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `bench train-recon`."""
    c = training_config
    d = config_defaults(c.ReconTrainConfig)

    def default(key: str) -> str:
        return f" (default: {d[key]})" if key in d else ""

    q = subparsers.add_parser("train-recon", help="train an end-to-end reconstruction network (unet, varnet) "
                                                  "supervised on a problem's simulated measurements of a dataset",
                              argument_default=argparse.SUPPRESS)
    q.add_argument("--algo", choices=list(c.ARCHS), help="network" + default("algo"))
    q.add_argument("--problem", help="registered problem measuring the images (`bench list problems`)" + default("problem"))
    q.add_argument("--dataset", help="registered dataset, train split (`bench list datasets`)" + default("dataset"))
    q.add_argument("--size", type=int, help="image size H = W (dataset and problem)" + default("size"))
    q.add_argument("--steps", type=int, help="optimiser steps in total (a resumed run continues to it)" + default("steps"))
    q.add_argument("--batch-size", type=int, help="images per step (and per simulated chunk)" + default("batch_size"))
    q.add_argument("--lr", type=float, help="Adam learning rate" + default("lr"))
    q.add_argument("--warmup", type=int, help="linear learning-rate warm-up steps" + default("warmup"))
    q.add_argument("--ema", type=float, help="EMA decay of the saved weights" + default("ema"))
    q.add_argument("--chans", type=int, help="U-Net width of the first level (VarNet: of each cascade's U-Net)"
                                             + default("chans"))
    q.add_argument("--pools", type=int, help="U-Net pooling levels" + default("pools"))
    q.add_argument("--cascades", type=int, help="VarNet cascades (--algo varnet)" + default("cascades"))
    q.add_argument("--loss", choices=list(c.LOSSES), help="loss on magnitudes" + default("loss"))
    q.add_argument("--n-images", type=int, help="training images simulated once and kept in memory" + default("n_images"))
    q.add_argument("--n-val", type=int, help="val-split images for the final PSNR against zero-filled" + default("n_val"))
    q.add_argument("--out", help="output directory" + default("out"))
    q.add_argument("--resume", action="store_true",
                   help="continue OUT/checkpoint/state.pt with the configuration stored in it; only "
                        + ", ".join("--" + k.replace("_", "-") for k in c.RESUMABLE) + " may change")
    q.add_argument("--save-every", type=int, help="checkpoint every N steps (0: only at the end)" + default("save_every"))
    q.add_argument("--seed", type=int, help="seed of the simulated noise and the batch order" + default("seed"))
    q.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    q.add_argument("--threads", type=int, help="CPU threads for torch (1 is fastest on a busy shared CPU)")
    q.add_argument("--log-every", type=int, help="steps per loss shown on the progress bar" + default("log_every"))
    q.add_argument("train_options", nargs="*", default=[], metavar="KEY=VALUE",
                   help="problem.key=value (problem options, e.g. problem.acceleration=2) and dataset.key=value "
                        "(dataset options, e.g. dataset.length=64)")
    q.set_defaults(func=command)
