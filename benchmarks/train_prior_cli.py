"""`bench train-prior`: the command line of priors.training.loop.

Only the argparse definition lives here. The choices, defaults and resumable options it shows come from
priors.training.config (TrainConfig and the presets), which imports no torch; the training loop (torch, diffusers,
accelerate) is imported when the verb runs, so `bench --help` does not import torch. Every option defaults to "not
given", so that `--resume` can tell the options of this leg from the checkpoint's stored configuration.
"""
from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import MISSING, fields, replace
from typing import Any

from priors.training import config as training_config


def config_defaults(cls: type) -> dict[str, Any]:
    """A configuration dataclass's literal defaults, {field: default} (fields with a default factory are left out)."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def parse_dataset_options(items: list[str]) -> dict[str, Any]:
    """['channels=2', 'alpha=3.0'] -> {'channels': 2, 'alpha': 3.0} (values parsed as YAML scalars)."""
    import yaml

    opts: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.removeprefix("dataset.")
        if not sep or not key:
            raise ValueError(f"bad dataset option {item!r}: write key=value, e.g. channels=2")
        opts[key] = yaml.safe_load(value)
    return opts


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields this command line sets (options left out are absent, not defaulted)."""
    opts = {k: v for k, v in vars(args).items() if k not in ("func", "verb", "dataset_options", "resume")}
    if opts.pop("no_normalize", False):
        opts["normalize"] = False
    if "channels_mult" in opts:
        try:
            opts["channels_mult"] = tuple(int(m) for m in str(opts["channels_mult"]).split(","))
        except ValueError:
            raise ValueError(f"--channels-mult {opts['channels_mult']!r}: write integers separated by commas, "
                             f"e.g. 1,2,2,4") from None
    if getattr(args, "dataset_options", None):
        opts["dataset_options"] = parse_dataset_options(list(args.dataset_options))
    return opts


def _word(value: Any) -> str:
    """A dataset option value as a key=value word that parse_dataset_options reads back unchanged."""
    import yaml

    text = value if isinstance(value, str) else json.dumps(value)
    return text if yaml.safe_load(text) == value else json.dumps(value)


def command_line(cfg: Any) -> str:
    """The fully spelled-out `bench train-prior` command of a TrainConfig (for the checkpoint and metadata.json)."""
    parts = ["bench", "train-prior"]
    for f in fields(cfg):
        key, value = f.name, getattr(cfg, f.name)
        if key in ("command", "dataset_options", "resume") or value is None:
            continue
        if key == "normalize":
            parts += [] if value else ["--no-normalize"]
        elif isinstance(value, bool):
            parts += ["--" + key.replace("_", "-")] if value else []
        elif key == "channels_mult":
            parts += ["--channels-mult", ",".join(str(m) for m in value)]
        else:
            parts += ["--" + key.replace("_", "-"), str(value)]
    if cfg.resume:
        parts.append("--resume")
    parts += [f"{k}={_word(v)}" for k, v in cfg.dataset_options.items()]
    return " ".join(shlex.quote(p) for p in parts)


POSITIVE = ("size", "steps", "batch_size", "samples", "sample_steps", "n_images", "save_every", "log_every",
            "threads", "base_channels")


def check_options(cfg: Any) -> None:
    """Refuse, before any data is built or any step trained, counts that cannot work (--samples 0 would only fail
    after training, when the samples are drawn, leaving no metadata), naming the option."""
    import math

    for key in POSITIVE:
        v = getattr(cfg, key, None)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"--{key.replace('_', '-')} must be a whole number >= 1, got {v!r}")
    if isinstance(cfg.warmup, bool) or not isinstance(cfg.warmup, int) or cfg.warmup < 0:
        raise ValueError(f"--warmup must be a whole number >= 0, got {cfg.warmup!r}")
    if not (isinstance(cfg.lr, (int, float)) and math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ValueError(f"--lr must be a finite number > 0, got {cfg.lr!r}")
    if not (isinstance(cfg.ema, (int, float)) and 0 <= cfg.ema < 1):
        raise ValueError(f"--ema must lie in [0, 1), got {cfg.ema!r}")


def command(args: argparse.Namespace) -> int:
    """Run `bench train-prior`: resolve the configuration (the checkpoint's on --resume), build the dataset, train."""
    from benchmarks import registry
    from priors.training.common import resume_config
    from priors.training.loop import train

    TrainConfig = training_config.TrainConfig
    options = given_options(args)
    if getattr(args, "resume", False):
        cfg = resume_config(options.get("out", TrainConfig.out), options, TrainConfig, training_config.RESUMABLE)
    else:
        cfg = TrainConfig(**options)
    cfg = replace(cfg, command=command_line(cfg))
    check_options(cfg)
    dataset = registry.build("datasets", cfg.dataset, split="train", **cfg.dataset_kwargs())
    meta = train(cfg, dataset)
    if meta:
        load = meta.get("load_with", f"--prior diffusers prior.path={cfg.out}")
        print(f"trained {meta['parameters']:,} parameters for {meta['steps']} steps in {meta['wall_seconds']:.0f} s "
              f"({len(meta['legs'])} leg(s)); final loss {meta['final_loss']:.4f} -> {cfg.out} (load with {load})")
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `bench train-prior`."""
    c = training_config
    d = config_defaults(c.TrainConfig)

    def default(key: str) -> str:
        return f" (default: {d[key]})" if key in d else ""

    may_change = ", ".join("--" + k.replace("_", "-") for k in c.RESUMABLE)
    q = subparsers.add_parser("train-prior", help="train a diffusion prior (DDPM recipe: diffusers UNet2DModel; EDM "
                                                  "recipe: EDMPrecond network) on a dataset",
                              argument_default=argparse.SUPPRESS)
    q.add_argument("--dataset", help="registered dataset (`bench list datasets`)" + default("dataset"))
    q.add_argument("--size", type=int, help="image size H = W" + default("size"))
    q.add_argument("--steps", type=int, help="optimiser steps in total (a resumed run continues to it)" + default("steps"))
    q.add_argument("--batch-size", type=int, help="images per step" + default("batch_size"))
    q.add_argument("--lr", type=float, help="AdamW learning rate" + default("lr"))
    q.add_argument("--warmup", type=int, help="linear learning-rate warm-up steps" + default("warmup"))
    q.add_argument("--ema", type=float, help="EMA decay of the saved weights" + default("ema"))
    q.add_argument("--recipe", choices=list(c.RECIPES),
                   help="ddpm: diffusers UNet2DModel, DDPM loss on the VP-linear schedule (OUT/unet, OUT/scheduler); "
                        "edm: Karras et al. 2022 (EDMPrecond, log-normal sigma, lambda(sigma) weighting), written as "
                        "OUT/model.pt + OUT/model.json for --prior edm" + default("recipe"))
    q.add_argument("--arch", choices=list(c.ARCHS),
                   help="EDM network (--recipe edm): songunet (DDPM++) or dhariwalunet (ADM)" + default("arch"))
    q.add_argument("--sigma-data", type=float,
                   help="EDM's sigma_data (--recipe edm; default: the RMS of the normalised training pixels)")
    q.add_argument("--dropout", type=float, help="dropout in the EDM network (--recipe edm)" + default("dropout"))
    q.add_argument("--model", choices=list(c.PRESETS),
                   help="network size preset (diffusers widths for ddpm, EDM widths for edm; see docs/priors.md)" + default("model"))
    q.add_argument("--channels-mult", help="per-level width multipliers, e.g. 1,2,2,4 (overrides the preset)")
    q.add_argument("--base-channels", type=int, help="width of the first level (with --channels-mult)")
    q.add_argument("--prediction", choices=list(c.PREDICTIONS),
                   help="network output (--recipe ddpm)" + default("prediction"))
    q.add_argument("--out", help="output directory" + default("out"))
    q.add_argument("--resume", action="store_true",
                   help="continue OUT/checkpoint/state.pt with the configuration stored in it; only " + may_change
                        + " may change (any other option given must equal the checkpoint's)")
    q.add_argument("--save-every", type=int, help="checkpoint every N steps (0: only at the end)" + default("save_every"))
    q.add_argument("--seed", type=int, help="seed of the training noise and batches" + default("seed"))
    q.add_argument("--mixed-precision", choices=list(c.MIXED_PRECISION), help="autocast" + default("mixed_precision"))
    q.add_argument("--n-images", type=int, help="training images drawn from the dataset, kept in memory"
                                                + default("n_images"))
    q.add_argument("--scale-aug", type=float, help="random intensity scale U(1-a, 1+a); 0 disables" + default("scale_aug"))
    q.add_argument("--no-normalize", action="store_true", help="do not scale images to a magnitude 99th percentile of 1")
    q.add_argument("--samples", type=int, help="unconditional samples in samples.png" + default("samples"))
    q.add_argument("--sample-steps", type=int, help="EDM Heun steps for the samples" + default("sample_steps"))
    q.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    q.add_argument("--threads", type=int, help="CPU threads for torch (1 is fastest on a busy shared CPU)")
    q.add_argument("--log-every", type=int, help="steps per loss shown on the progress bar" + default("log_every"))
    q.add_argument("--cache", help="a .pt file holding the training images (written on first use, then read)")
    q.add_argument("--init", help="fine-tune: start from the network and EMA weights of another run (its OUT, or its "
                                  "checkpoint/state.pt), with a new optimiser, step 0 and this run's data and options; "
                                  "the network options must be the ones it was trained with")
    q.add_argument("dataset_options", nargs="*", default=[],
                   help="dataset options key=value, e.g. channels=2 length=4096")
    q.set_defaults(func=command)
