"""The options of `bench train-interp`: InterpTrainConfig, its auxiliary tasks and resumable options (no torch here:
the command line, benchmarks/train_interp_cli.py, imports it for `--help`). The training is
algorithms/networks/interp_training.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AUX = ("rot", "mae")  # auxiliary heads trained jointly (TTT4MII: L_main + lambda L_aux)
RESUMABLE = ("steps", "save_every", "log_every", "threads", "cpu")


@dataclass
class InterpTrainConfig:
    """Options of `bench train-interp` (see `bench train-interp --help`)."""

    dataset: str = "phantom-cardiac-4d"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    problem_options: dict[str, Any] = field(default_factory=dict)
    size: int = 32
    frames: int = 12
    steps: int = 600
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 20
    ema: float = 0.99
    flow_chans: int = 8
    flow_levels: int = 2
    feature_widths: str = "4,8,16"
    refine_chans: int = 8
    cycle: float = 1.0
    diff: float = 1.0
    aux: str = ""
    aux_weight: float = 0.1
    mask_ratio: float = 0.75
    n_images: int = 64
    n_val: int = 8
    out: str = "runs/train-interp"
    resume: bool = False
    save_every: int = 100
    seed: int = 0
    cpu: bool = False
    threads: int | None = None
    log_every: int = 10
    command: str = ""

    def aux_tasks(self) -> tuple[str, ...]:
        """--aux 'rot,mae' -> ('rot', 'mae')."""
        return tuple(a.strip() for a in self.aux.split(",") if a.strip())

    def dataset_kwargs(self) -> dict[str, Any]:
        return {"size": self.size, "frames": self.frames, **self.dataset_options}

    def problem_kwargs(self) -> dict[str, Any]:
        return {"size": self.size, "frames": self.frames, **self.problem_options}

    def network_config(self) -> dict[str, Any]:
        """UviLite's constructor arguments (algorithms.networks.uvi.build_interp_network)."""
        return {"arch": "uvi-lite", "flow_chans": self.flow_chans, "flow_levels": self.flow_levels,
                "feature_widths": [int(w) for w in str(self.feature_widths).split(",")],
                "refine_chans": self.refine_chans, "aux": list(self.aux_tasks())}


def check_config(cfg: InterpTrainConfig) -> None:
    """Refuse options that cannot train, naming the option."""
    bad = set(cfg.aux_tasks()) - set(AUX)
    if bad:
        raise ValueError(f"unknown --aux {sorted(bad)}; choose from {', '.join(AUX)} (comma-separated)")
    for name in ("steps", "batch_size", "n_images", "flow_chans", "flow_levels", "refine_chans"):
        if int(getattr(cfg, name)) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.lr <= 0 or not 0 <= cfg.ema < 1 or not 0 < cfg.mask_ratio < 1 or cfg.n_val < 0:
        raise ValueError(f"need --lr > 0, 0 <= --ema < 1, 0 < --mask-ratio < 1, --n-val >= 0; got {cfg.lr}, "
                         f"{cfg.ema}, {cfg.mask_ratio}, {cfg.n_val}")
