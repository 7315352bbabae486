"""`bench train-interp`: the command line of algorithms.networks.interp_training (uvi-lite, UVI-Net's unsupervised
training on end frames). Only argparse here; the options come from algorithms.networks.interp_training_config (no
torch), the training is imported when the verb runs. Options default to "not given" so that `--resume` can tell
this leg's options from the checkpoint's (as train-recon)."""
from __future__ import annotations

import argparse
from dataclasses import replace

from algorithms.networks import interp_training_config as c
from benchmarks.train_prior_cli import config_defaults
from benchmarks.train_recon_cli import command_line, given_options


def command(args: argparse.Namespace) -> int:
    """Run `bench train-interp`: resolve the configuration (the checkpoint's on --resume), build data and problem,
    train."""
    from algorithms.networks.interp_training import train
    from benchmarks import registry
    from priors.training.common import resume_config

    options = given_options(args)
    if getattr(args, "resume", False):
        cfg = resume_config(options.get("out", c.InterpTrainConfig.out), options, c.InterpTrainConfig, c.RESUMABLE)
    else:
        cfg = c.InterpTrainConfig(**options)
    cfg = replace(cfg, command=command_line(cfg, "train-interp"))
    c.check_config(cfg)
    problem = registry.build("problems", "interp4d", **cfg.problem_kwargs())
    dataset = registry.build("datasets", cfg.dataset, split="train", **cfg.dataset_kwargs())
    val = registry.build("datasets", cfg.dataset, split="val", **cfg.dataset_kwargs()) if cfg.n_val > 0 else None
    meta = train(cfg, dataset, problem, val)
    if meta:
        scores = (f"; val PSNR (missing frames) {meta['val_psnr_db']:.2f} dB vs interp-linear "
                  f"{meta['val_psnr_linear_db']:.2f} dB" if "val_psnr_db" in meta else "")
        print(f"trained {meta['parameters']:,} parameters for {meta['steps']} steps in {meta['wall_seconds']:.0f} s; "
              f"final loss {meta['final_loss']:.4f}{scores} -> {cfg.out} (load with {meta['load_with']})")
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `bench train-interp`."""
    d = config_defaults(c.InterpTrainConfig)

    def default(key: str) -> str:
        return f" (default: {d[key]})" if key in d else ""

    q = subparsers.add_parser("train-interp", help="train the uvi-lite frame interpolator (UVI-Net's recipe) on the "
                                                   "end frames of a 4-D dataset", argument_default=argparse.SUPPRESS)
    q.add_argument("--dataset", help="registered 4-D dataset, train split" + default("dataset"))
    q.add_argument("--size", type=int, help="frame size H = W (dataset and problem)" + default("size"))
    q.add_argument("--frames", type=int, help="frames per sequence T (dataset and problem)" + default("frames"))
    q.add_argument("--steps", type=int, help="optimiser steps in total (a resumed run continues to it)" + default("steps"))
    q.add_argument("--batch-size", type=int, help="end-frame pairs per step" + default("batch_size"))
    q.add_argument("--lr", type=float, help="Adam learning rate" + default("lr"))
    q.add_argument("--warmup", type=int, help="linear learning-rate warm-up steps" + default("warmup"))
    q.add_argument("--ema", type=float, help="EMA decay of the saved weights" + default("ema"))
    q.add_argument("--flow-chans", type=int, help="flow U-Net width" + default("flow_chans"))
    q.add_argument("--flow-levels", type=int, help="flow U-Net downsamplings" + default("flow_levels"))
    q.add_argument("--feature-widths", help="feature extractor widths per scale, comma-separated"
                                            + default("feature_widths"))
    q.add_argument("--refine-chans", type=int, help="refinement U-Net width" + default("refine_chans"))
    q.add_argument("--cycle", type=float, help="weight of the cycle loss" + default("cycle"))
    q.add_argument("--diff", type=float, help="weight of the refinement residual's L1" + default("diff"))
    q.add_argument("--aux", help="auxiliary heads trained jointly: rot, mae or rot,mae (empty: none)" + default("aux"))
    q.add_argument("--aux-weight", type=float, help="lambda in L_main + lambda L_aux" + default("aux_weight"))
    q.add_argument("--mask-ratio", type=float, help="MAE mask ratio (the paper: 0.8)" + default("mask_ratio"))
    q.add_argument("--n-images", type=int, help="training sequences (only their end frames are kept)"
                                            + default("n_images"))
    q.add_argument("--n-val", type=int, help="val sequences for the final PSNR against interp-linear" + default("n_val"))
    q.add_argument("--out", help="output directory" + default("out"))
    q.add_argument("--resume", action="store_true", help="continue OUT/checkpoint/state.pt with its configuration; "
                   "only " + ", ".join("--" + k.replace("_", "-") for k in c.RESUMABLE) + " may change")
    q.add_argument("--save-every", type=int, help="checkpoint every N steps (0: only at the end)" + default("save_every"))
    q.add_argument("--seed", type=int, help="seed of the simulation, batch order and cycle times" + default("seed"))
    q.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    q.add_argument("--threads", type=int, help="CPU threads for torch (1 is fastest on a busy shared CPU)")
    q.add_argument("--log-every", type=int, help="steps per loss shown on the progress bar" + default("log_every"))
    q.add_argument("train_options", nargs="*", default=[], metavar="KEY=VALUE",
                   help="problem.key=value and dataset.key=value options")
    q.set_defaults(func=command)
