"""The options of `bench train-recon`: ReconTrainConfig, the networks and losses it accepts, its resumable options.

This module imports no torch (nor anything heavy): the command line (benchmarks/train_recon_cli.py) imports it to
show the defaults and choices in `bench train-recon --help`. The training itself is algorithms/networks/training.py.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

ARCHS = ("unet", "varnet")  # the networks algorithms.networks.models builds (--algo)
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
