"""The options of `bench train-prior`: TrainConfig, the network presets and the choices it accepts.

This module imports no torch (nor anything heavy): the command line (benchmarks/train_prior_cli.py) imports it to
show the defaults, presets and resumable options in `bench train-prior --help`. It also holds the helpers every
training command uses on a stored configuration (a checkpoint's `config`, a plain dict): `plain_config`,
`config_from_plain` and `resume_conflicts`, shared with `bench train-recon`
(algorithms/networks/training_config.py).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # block_out_channels, layers per block, which levels carry self-attention
    "tiny": {"block_out_channels": (16, 32), "layers_per_block": 1, "attention": (False, False)},
    "compact": {"block_out_channels": (16, 32, 64, 128), "layers_per_block": 1, "attention": (False, False, False, True)},
    "small": {"block_out_channels": (32, 64, 64, 128), "layers_per_block": 1, "attention": (False, False, False, True)},
    "medium": {"block_out_channels": (32, 64, 128, 128), "layers_per_block": 2, "attention": (False, False, True, True)},
    "base": {"block_out_channels": (64, 128, 256, 256), "layers_per_block": 2, "attention": (False, False, True, True)},
}
PREDICTIONS = ("epsilon", "sample", "v_prediction")
RECIPES = ("ddpm", "edm")
ARCHS = ("songunet", "dhariwalunet")
MIXED_PRECISION = ("no", "fp16", "bf16")
# the same preset names for --recipe edm: EDM network widths (model_channels, channel_mult), residual blocks per
# resolution and the resolutions carrying self-attention
EDM_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"model_channels": 16, "channel_mult": (1, 2), "num_blocks": 1, "attn_resolutions": ()},
    "compact": {"model_channels": 32, "channel_mult": (1, 2, 2), "num_blocks": 1, "attn_resolutions": ()},
    "small": {"model_channels": 32, "channel_mult": (1, 2, 2), "num_blocks": 1, "attn_resolutions": (16,)},
    "medium": {"model_channels": 64, "channel_mult": (1, 2, 2), "num_blocks": 2, "attn_resolutions": (16,)},
    "base": {"model_channels": 128, "channel_mult": (1, 2, 2, 2), "num_blocks": 2, "attn_resolutions": (16,)},
}


@dataclass
class TrainConfig:
    """Options of `bench train-prior` (see `bench train-prior --help`)."""

    dataset: str = "phantom-brain-t2"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    size: int = 64
    steps: int = 2000
    batch_size: int = 32
    lr: float = 2e-4
    warmup: int = 100
    ema: float = 0.999
    model: str = "small"
    channels_mult: tuple[int, ...] | None = None
    base_channels: int | None = None
    prediction: str = "epsilon"
    recipe: str = "ddpm"
    arch: str = "songunet"
    sigma_data: float | None = None
    dropout: float = 0.0
    out: str = "runs/train-prior"
    resume: bool = False
    save_every: int = 500
    seed: int = 0
    mixed_precision: str = "no"
    n_images: int = 2048
    scale_aug: float = 0.25
    normalize: bool = True
    samples: int = 16
    sample_steps: int = 18
    cpu: bool = False
    cache: str | None = None
    threads: int | None = None
    log_every: int = 10
    init: str | None = None
    command: str = ""

    def dataset_kwargs(self) -> dict[str, Any]:
        """The options the train split is built with: dataset_options, with size defaulting to `size`."""
        return {"size": self.size, **self.dataset_options}


# options a resumed leg may change (how long, how often to save or log, the samples drawn at the end, where it runs);
# every other option shapes the network, the data or the optimisation and must equal the checkpoint's
RESUMABLE = ("steps", "save_every", "log_every", "samples", "sample_steps", "threads", "cpu", "mixed_precision", "cache")
BOOKKEEPING = ("out", "resume", "command")  # per leg, never compared


def check_config(cfg: TrainConfig) -> None:
    """Refuse options that cannot train, or that the chosen recipe does not use or does not know, naming them."""
    if cfg.prediction not in PREDICTIONS:
        raise ValueError(f"unknown --prediction {cfg.prediction!r}; choose one of {', '.join(PREDICTIONS)}")
    if cfg.mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"unknown --mixed-precision {cfg.mixed_precision!r}; choose no, fp16 or bf16")
    check_recipe(cfg)
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise ValueError(f"--steps and --batch-size must be positive, got {cfg.steps} and {cfg.batch_size}")


def check_recipe(cfg: TrainConfig) -> None:
    """Refuse options that the chosen recipe does not use or does not know, naming them."""
    if cfg.recipe not in RECIPES:
        raise ValueError(f"unknown --recipe {cfg.recipe!r}; choose one of {', '.join(RECIPES)}")
    if cfg.recipe == "ddpm":
        unused = [name for name, value, default in (("--arch", cfg.arch, "songunet"), ("--sigma-data", cfg.sigma_data, None),
                                                    ("--dropout", cfg.dropout, 0.0)) if value != default]
        if unused:
            raise ValueError(f"{', '.join(unused)} apply to --recipe edm only; drop them or pass --recipe edm")
        return
    if cfg.arch not in ARCHS:
        raise ValueError(f"unknown --arch {cfg.arch!r}; choose one of {', '.join(ARCHS)}")
    if cfg.prediction != "epsilon":
        raise ValueError(f"--prediction {cfg.prediction} applies to --recipe ddpm only (EDM's network predicts through "
                         f"its preconditioning); drop it")
    if cfg.model not in EDM_PRESETS:
        raise ValueError(f"unknown model preset {cfg.model!r}; choose one of {', '.join(EDM_PRESETS)}")
    if cfg.sigma_data is not None and not cfg.sigma_data > 0:
        raise ValueError(f"--sigma-data must be positive, got {cfg.sigma_data}")
    if not 0 <= cfg.dropout < 1:
        raise ValueError(f"--dropout must lie in [0, 1), got {cfg.dropout}")


def option_name(key: str) -> str:
    """A configuration field as the command line spells it (--batch-size, --no-normalize, dataset key=value)."""
    return {"normalize": "--no-normalize", "dataset_options": "the dataset options (key=value)",
            "problem_options": "the problem options (problem.key=value)"}.get(
        key, "--" + key.replace("_", "-"))


def plain_config(cfg: Any) -> dict[str, Any]:
    """cfg (a configuration dataclass) as JSON-plain values (tuples become lists), as stored in the checkpoint and
    metadata.json: a state file holds no pickled class, so a module that moves does not orphan it."""
    return json.loads(json.dumps(asdict(cfg), default=str))


def config_from_plain(stored: dict[str, Any], cls: type = TrainConfig) -> Any:
    """The configuration (a `cls` dataclass, TrainConfig by default) a checkpoint stored; fields it lacks take their
    defaults, unknown keys are an error."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(stored) - known)
    if unknown:
        raise ValueError(f"the checkpoint's configuration has options this version does not know: {', '.join(unknown)}; "
                         f"resume it with the version that wrote it, or start a new --out")
    values = dict(stored)
    if values.get("channels_mult") is not None:
        values["channels_mult"] = tuple(values["channels_mult"])
    return cls(**values)


def resume_conflicts(stored: Any, cfg: Any, resumable: tuple[str, ...] = RESUMABLE) -> list[str]:
    """Each option outside `resumable` whose value in cfg differs from the checkpoint's, as
    "--option: <old> in the checkpoint, <new> now"."""
    old, new = plain_config(stored), plain_config(cfg)
    return [f"{option_name(k)}: {old[k]!r} in the checkpoint, {new[k]!r} now" for k in old
            if k not in resumable + BOOKKEEPING and old[k] != new[k]]
