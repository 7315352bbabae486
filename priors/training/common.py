"""The training core that `bench train-prior` (priors.training.loop) and `bench train-recon`
(algorithms.networks.training) share: EMA weights, the optimiser step, the step loop with its progress bar, the
resumable state file (OUT/checkpoint/state.pt) and its checks, the legs record, the loss curve and image grids.

The state file holds tensors and plain values only (the configuration as a plain dict, see
priors.training.config.plain_config), is read with torch.load(weights_only=True), and is written atomically.
Its keys: model, ema ({model, updates, decay}), optimizer, lr_scheduler, step, losses, wall_seconds, rng, config,
legs, and whatever a loop adds (train-prior's EDM recipe: sigma_data). The `rng` entry is the loop's own:
train-prior keeps {process index: {generator, torch}} (plus rng_rank<i>.pt files on several processes),
train-recon {generator, torch}.
"""
from __future__ import annotations

import copy
import math
import pickle
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from priors.training.config import config_from_plain, option_name, plain_config, resume_conflicts


class EMA:
    """Exponential moving average of parameters, decay ramped as min(decay, (1 + n) / (10 + n))."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for pe, p in zip(self.model.parameters(), model.parameters()):
            pe.lerp_(p.detach().to(pe.dtype), 1 - d)
        for be, b in zip(self.model.buffers(), model.buffers()):
            be.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


def load_checkpoint(path: Path, fix: str = "start without --resume or from another --out") -> Any:
    """A checkpoint (or cache) read with torch.load(weights_only=True): tensors and plain values only.

    Anything else (a pickled object, which could run code on load) is refused, naming the file and `fix`.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: refused to load: it holds objects other than tensors and plain values, which "
                         f"could run code (torch.load weights_only=True); use a file written by "
                         f"`bench train-prior` or `bench train-recon`, or {fix} ({str(exc).splitlines()[0]})") from exc
    except (OSError, EOFError, RuntimeError) as exc:
        raise ValueError(f"{path}: cannot read it ({type(exc).__name__}: {exc}); it is truncated or corrupt: "
                         f"{fix}") from exc


def checkpoint_path(out: str | Path) -> Path:
    """Where a training run in `out` keeps its resumable state."""
    return Path(out) / "checkpoint" / "state.pt"


def resume_state(cfg: Any, cls: type, resumable: tuple[str, ...]) -> dict[str, Any] | None:
    """The checkpoint in cfg.out when cfg.resume (None otherwise), after the checks every training command makes:
    --resume needs a checkpoint and a checkpoint needs --resume; only `resumable` options may differ from the stored
    configuration (a `cls`); --steps may not fall below the checkpoint's step."""
    out = Path(cfg.out)
    ckpt_path = checkpoint_path(out)
    if cfg.resume and not ckpt_path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}; start without --resume")
    if ckpt_path.exists() and not cfg.resume:
        raise ValueError(f"{out} already holds a training checkpoint ({ckpt_path}); pass --resume to continue "
                         f"it or choose another --out")
    if not cfg.resume:
        return None
    state = load_checkpoint(ckpt_path)
    if "config" in state:  # checkpoints written before the configuration was stored have none to compare
        conflicts = resume_conflicts(config_from_plain(state["config"], cls), cfg, resumable)
        if conflicts:
            raise ValueError(f"--resume: these options differ from the checkpoint's: {'; '.join(conflicts)}; "
                             f"only {', '.join(option_name(k) for k in resumable)} may change on resume")
    if int(state["step"]) > cfg.steps:
        raise ValueError(f"--resume: the checkpoint is at step {int(state['step'])}, past --steps {cfg.steps} "
                         f"(the total to reach); pass --steps {int(state['step'])} or more")
    return state


def resume_config(out: str | Path, options: dict[str, Any], cls: type, resumable: tuple[str, ...]) -> Any:
    """The configuration (a `cls`) of a resumed leg: the checkpoint's, with this leg's `options` (the ones given)
    applied.

    A given option outside `resumable` that differs from the checkpoint's value is an error naming it; the
    resumable ones (e.g. steps) take the new value.
    """
    path = checkpoint_path(out)
    if not path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}; start without --resume")
    state = load_checkpoint(path)
    if "config" not in state:
        raise ValueError(f"{path}: the checkpoint stores no configuration (written before train-prior stored it); "
                         f"start a new --out")
    stored = config_from_plain(state["config"], cls)
    cfg = replace(stored, **{**options, "out": str(out), "resume": True})
    conflicts = resume_conflicts(stored, cfg, resumable)
    if conflicts:
        raise ValueError(f"--resume reuses the checkpoint's configuration, and these options differ from it: "
                         f"{'; '.join(conflicts)}. Drop them (or give the checkpoint's values), or start a new --out; "
                         f"a resumed leg may change only {', '.join(option_name(k) for k in resumable)}")
    return cfg


@dataclass
class Progress:
    """Where a training run stands: the step, every step's loss, and its legs (one per command that trained it).

    `legs` are the earlier legs, `wall` their cumulative wall seconds; this leg (its command, start and first step)
    is `leg`, timed from `t0` (start_clock)."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    wall: float = 0.0
    legs: list[dict[str, Any]] = field(default_factory=list)
    leg: dict[str, Any] = field(default_factory=dict)
    t0: float = field(default_factory=time.time)

    @classmethod
    def begin(cls, command: str, state: dict[str, Any] | None = None) -> Progress:
        """A new leg of `command`, from scratch or from a checkpoint's `state`."""
        step, losses, wall, legs = 0, [], 0.0, []
        if state is not None:
            step, losses, wall = int(state["step"]), list(state["losses"]), float(state["wall_seconds"])
            legs = list(state.get("legs") or [{  # a checkpoint written before legs were recorded: its legs as one
                "command": state.get("config", {}).get("command", ""), "from_step": 0, "to_step": step,
                "wall_seconds": wall, "cumulative_wall_seconds": wall}])
        leg = {"command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "from_step": step}
        return cls(step, losses, wall, legs, leg)

    def start_clock(self) -> None:
        self.t0 = time.time()

    def legs_so_far(self) -> list[dict[str, Any]]:
        """The earlier legs and this one up to now (a killed leg keeps what its last checkpoint saved)."""
        now = time.time() - self.t0
        return self.legs + [{**self.leg, "to_step": self.step, "wall_seconds": round(now, 3),
                             "cumulative_wall_seconds": round(self.wall + now, 3)}]


def warmup_schedule(opt: torch.optim.Optimizer, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate ramped linearly over the first `warmup` steps, then constant."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, warmup)))


def init_state(init: str | Path) -> dict[str, Any]:
    """The checkpoint a fine-tuning run starts from (`--init`): another run's OUT (its checkpoint/state.pt) or a
    state.pt itself."""
    path = Path(init)
    path = checkpoint_path(path) if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"--init {init}: no training checkpoint there (need a training run's OUT, holding "
                                f"checkpoint/state.pt, or the state.pt itself)")
    return load_checkpoint(path, fix="pass --init a checkpoint written by bench train-prior")


def load_init(init: dict[str, Any], model: nn.Module, ema: EMA, source: str) -> None:
    """A fine-tuning start: the network and EMA weights of `init` (its optimiser, schedule and step are not taken:
    the new run counts its own steps). A network of another shape is refused, naming the difference."""
    try:
        model.load_state_dict(init["model"])
        ema.load_state_dict(init["ema"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0:3]
        raise ValueError(f"--init {source}: its network differs from this run's ({' '.join(first)}); give the "
                         f"network options it was trained with (its metadata.json `command`)") from None


def restore(state: dict[str, Any], model: nn.Module, ema: EMA, opt: torch.optim.Optimizer, sched: Any) -> None:
    """Load a checkpoint's network, EMA, optimiser and schedule (the random state is the loop's own)."""
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["lr_scheduler"])


def save_state(path: Path, acc: Any, model: nn.Module, ema: EMA, opt: torch.optim.Optimizer, sched: Any,
               progress: Progress, cfg: Any, rng: Any, **extra: Any) -> list[dict[str, Any]]:
    """Write the state file (on the main process; atomically, a .tmp renamed over it); returns the legs it records."""
    legs = progress.legs_so_far()
    if acc.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"model": acc.unwrap_model(model).state_dict(), "ema": ema.state_dict(),
                    "optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict(), "step": progress.step,
                    "losses": progress.losses, "wall_seconds": legs[-1]["cumulative_wall_seconds"], "rng": rng,
                    "config": plain_config(cfg), "legs": legs, **extra}, tmp)  # plain values only
        tmp.replace(path)
    return legs


def start_process(cfg: Any, cls: type, resumable: tuple[str, ...]) -> tuple[dict[str, Any] | None, Any]:
    """(the checkpoint to resume or None, the accelerate Accelerator): the checks of `resume_state`, cfg.threads
    torch threads, the CPU when cfg.cpu, torch seeded from cfg.seed and the process index."""
    from accelerate import Accelerator

    state = resume_state(cfg, cls, resumable)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    acc = Accelerator(cpu=cfg.cpu)
    torch.manual_seed(cfg.seed + acc.process_index)
    return state, acc


def start_optimisation(cfg: Any, model: nn.Module, state: dict[str, Any] | None, acc: Any, verb: str
                       ) -> tuple[nn.Module, torch.optim.Optimizer, Any, torch.Generator, EMA, "Progress"]:
    """Adam (cfg.lr) with cfg.warmup steps of warm-up, the loop's generator (seeded from cfg.seed and the process),
    EMA weights (cfg.ema) and the progress record; on a resumed `state`, all of them (and torch's random state) as
    the checkpoint left them. Then the model and optimiser prepared by `acc`, the EMA copy on its device and the
    progress clock started: (model, opt, sched, gen, ema, progress). The network training commands (train-recon,
    train-interp) start so."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = warmup_schedule(opt, cfg.warmup)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + acc.process_index)
    ema = EMA(model, cfg.ema)
    progress = Progress.begin(cfg.command, state)
    if state is not None:
        restore(state, model, ema, opt, sched)
        gen.set_state(state["rng"]["generator"])
        torch.set_rng_state(state["rng"]["torch"])
        print(f"{verb}: resuming {cfg.out} at step {progress.step} of {cfg.steps} with the checkpoint's "
              f"configuration", file=sys.stderr)
    model, opt = acc.prepare(model, opt)
    ema.model.to(acc.device)
    progress.start_clock()
    return model, opt, sched, gen, ema, progress


def optimiser_step(acc: Any, model: nn.Module, loss: Tensor, opt: torch.optim.Optimizer, sched: Any, ema: EMA) -> float:
    """One step: backward through `acc` (accelerate), clip the gradient norm at 1, optimiser and schedule step, EMA
    update; returns the loss averaged over processes."""
    acc.backward(loss)
    if acc.sync_gradients:
        acc.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    ema.update(acc.unwrap_model(model))
    return float(acc.gather(loss.detach().view(1)).mean())


def train_steps(acc: Any, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, ema: EMA, progress: Progress,
                cfg: Any, loss: Callable[[], Tensor], checkpoint: Callable[[], Any], desc: str) -> None:
    """Step from progress.step to cfg.steps: `loss()` gives each step's loss (drawing its batch and noise from the
    loop's generator), then one optimiser step; a progress bar shows the mean loss of every cfg.log_every steps, and
    `checkpoint()` runs every cfg.save_every steps before the last (the caller saves the last)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=progress.step, desc=desc, disable=not acc.is_local_main_process)
    model.train()
    while progress.step < cfg.steps:
        progress.losses.append(optimiser_step(acc, model, loss(), opt, sched, ema))
        progress.step += 1
        bar.update(1)
        if progress.step % cfg.log_every == 0:
            bar.set_postfix(loss=f"{sum(progress.losses[-cfg.log_every:]) / cfg.log_every:.4f}")
        if cfg.save_every and progress.step % cfg.save_every == 0 and progress.step < cfg.steps:
            checkpoint()
    bar.close()


def final_loss(losses: list[float]) -> float:
    """The mean loss of the last 100 steps (of all, if fewer), as metadata.json reports it."""
    tail = losses[-min(100, len(losses)):]
    return sum(tail) / len(tail)


def plot_loss(losses: list[float], path: Path, label: str = "DDPM loss") -> None:
    """The loss curve (per step, and its running mean) on a log axis (linear where a loss is <= 0: NCC terms), as a
    PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(losses, lw=0.5, alpha=0.4, label="batch")
    if len(losses) >= 20:
        k = max(10, len(losses) // 50)
        kernel = torch.ones(k) / k
        smooth = torch.nn.functional.conv1d(torch.tensor(losses).view(1, 1, -1), kernel.view(1, 1, -1)).flatten()
        ax.plot(range(k - 1, len(losses)), smooth.tolist(), lw=1.5, label=f"mean of {k}")
    ax.set_yscale("log" if losses and min(losses) > 0 else "linear")
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_grid(images: Tensor, path: Path, title: str = "") -> None:
    """A grid of magnitude images (C = 2: modulus; C = 1: the image), each scaled to [0, max]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = images.detach().float().cpu()
    mag = torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2) if x.shape[1] == 2 else x[:, 0]  # priors/ imports no inverse_problems
    n = mag.shape[0]
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + (0.3 if title else 0)), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(mag[k].numpy(), cmap="gray", vmin=0, vmax=max(float(mag[k].max()), 1e-8))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
