"""`bench train-prior`: train a diffusion prior on a registered dataset, with the DDPM or EDM recipe.

Recipe `ddpm` (the default) trains a diffusers UNet2DModel. Objective (Ho et al. 2020): t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps on
the VP-linear schedule (betas 1e-4..0.02, T = 1000), loss = ||f(x_t, t) - target||^2 with target eps,
x0 or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (Salimans & Ho 2022). The result is a plain diffusers
directory (unet/ + scheduler/) that `priors.diffusers_prior.DiffusersPrior` loads as an EDM denoiser.

Recipe `edm` (Karras et al. 2022, Table 1 and Sec. 5) trains an EDMPrecond network (priors/nets/edm.py,
SongUNet = DDPM++ or DhariwalUNet = ADM): D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) with
c_skip = s_d^2 / (sigma^2 + s_d^2), c_out = sigma s_d / sqrt(sigma^2 + s_d^2), c_in = 1 / sqrt(sigma^2 + s_d^2),
c_noise = ln(sigma) / 4; ln sigma ~ N(P_mean = -1.2, P_std = 1.2); loss = lambda(sigma) ||D(x0 + sigma n) - x0||^2
with lambda(sigma) = (sigma^2 + s_d^2) / (sigma s_d)^2. s_d (sigma_data) is --sigma-data, else the root mean
square of the (normalised) training pixels, the second moment EDM's derivation of c_skip and c_out uses. The
result is OUT/model.pt ({"ema": state dict}) with OUT/model.json (EDMPrecond's arguments), which the `edm`
prior (priors/edm.py) loads: `--prior edm prior.path=OUT/model.pt`.

Images are normalised like the benchmark normalises its inputs (magnitude 99th percentile = 1) and,
by default, randomly rescaled by U(0.75, 1.25): at test time each image is divided by a factor
estimated from undersampled measurements, which is off by roughly that much.
Runs on one CPU, one GPU or many GPUs (`accelerate launch -m benchmarks.cli train-prior ...`), with
EMA weights, resumable checkpoints, a loss curve and a grid of PF-ODE samples from the EMA model.
A checkpoint stores its TrainConfig; a resumed leg reuses it, and only the options in RESUMABLE may change.
The command line lives in the harness (benchmarks/train_prior_cli.py), which builds the dataset and passes it in.
"""
from __future__ import annotations

import copy
import json
import math
import pickle
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from priors.schedules import vp_alphas_cumprod

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
# the same preset names for --recipe edm: EDM network widths (model_channels, channel_mult), residual blocks per
# resolution and the resolutions carrying self-attention
EDM_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"model_channels": 16, "channel_mult": (1, 2), "num_blocks": 1, "attn_resolutions": ()},
    "compact": {"model_channels": 32, "channel_mult": (1, 2, 2), "num_blocks": 1, "attn_resolutions": ()},
    "small": {"model_channels": 32, "channel_mult": (1, 2, 2), "num_blocks": 1, "attn_resolutions": (16,)},
    "medium": {"model_channels": 64, "channel_mult": (1, 2, 2), "num_blocks": 2, "attn_resolutions": (16,)},
    "base": {"model_channels": 128, "channel_mult": (1, 2, 2, 2), "num_blocks": 2, "attn_resolutions": (16,)},
}
EDM_P_MEAN, EDM_P_STD = -1.2, 1.2  # Karras et al. 2022, Table 1: ln sigma ~ N(P_mean, P_std^2)


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
    command: str = ""

    def dataset_kwargs(self) -> dict[str, Any]:
        """The options the train split is built with: dataset_options, with size defaulting to `size`."""
        return {"size": self.size, **self.dataset_options}


# options a resumed leg may change (how long, how often to save or log, the samples drawn at the end, where it runs);
# every other option shapes the network, the data or the optimisation and must equal the checkpoint's
RESUMABLE = ("steps", "save_every", "log_every", "samples", "sample_steps", "threads", "cpu", "mixed_precision", "cache")
BOOKKEEPING = ("out", "resume", "command")  # per leg, never compared


def option_name(key: str) -> str:
    """A TrainConfig field as `bench train-prior` spells it (--batch-size, --no-normalize, dataset key=value)."""
    return {"normalize": "--no-normalize", "dataset_options": "the dataset options (key=value)",
            "problem_options": "the problem options (problem.key=value)"}.get(
        key, "--" + key.replace("_", "-"))


def plain_config(cfg: TrainConfig) -> dict[str, Any]:
    """cfg as JSON-plain values (tuples become lists), as stored in the checkpoint and metadata.json."""
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


def checkpoint_path(out: str | Path) -> Path:
    return Path(out) / "checkpoint" / "state.pt"


def resume_state(cfg: Any, cls: type = TrainConfig, resumable: tuple[str, ...] = RESUMABLE) -> dict[str, Any] | None:
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


def resume_config(out: str | Path, options: dict[str, Any], cls: type = TrainConfig,
                  resumable: tuple[str, ...] = RESUMABLE) -> Any:
    """The configuration of a resumed leg: the checkpoint's, with this leg's `options` (the ones given) applied.

    A given option outside RESUMABLE that differs from the checkpoint's value is an error naming it; the
    RESUMABLE ones (e.g. steps) take the new value.
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


def build_unet(channels: int, size: int, model: str = "small", channels_mult: tuple[int, ...] | None = None,
               base_channels: int | None = None) -> nn.Module:
    """A diffusers UNet2DModel from a preset, optionally with base_channels * channels_mult widths."""
    from diffusers import UNet2DModel

    if model not in PRESETS:
        raise ValueError(f"unknown model preset {model!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[model]
    widths = tuple(preset["block_out_channels"])
    attention = tuple(preset["attention"])
    if channels_mult is not None or base_channels is not None:
        mult = channels_mult or tuple(w // widths[0] for w in widths)
        base = base_channels or widths[0]
        widths = tuple(int(base * m) for m in mult)
        attention = tuple(i == len(widths) - 1 for i in range(len(widths)))
    if size % (2 ** (len(widths) - 1)):
        raise ValueError(f"--size {size} is not divisible by 2^{len(widths) - 1} (the UNet's {len(widths)} levels)")
    groups = math.gcd(*widths, 32 if widths[0] >= 32 else max(1, widths[0] // 2))
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    return UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=widths,
                       layers_per_block=preset["layers_per_block"], down_block_types=down, up_block_types=up,
                       norm_num_groups=groups, attention_head_dim=8)


def scheduler_config(prediction: str) -> dict[str, Any]:
    """DDPM VP-linear schedule (betas 1e-4..0.02, T = 1000) with the chosen prediction type."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown --prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}")
    return {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear",
            "prediction_type": prediction, "clip_sample": False, "variance_type": "fixed_small"}


def normalise(x: Tensor) -> Tensor:
    """Divide each image by the 99th percentile of its magnitude (as the benchmark's measurement scale)."""
    mag = x.norm(dim=1) if x.shape[1] == 2 else x.abs().squeeze(1) if x.shape[1] == 1 else x.abs().amax(1)
    q = torch.quantile(mag.flatten(1).float(), 0.99, dim=1).clamp_min(1e-8)
    return x / q.view(-1, 1, 1, 1)


def diffusion_loss(model: nn.Module, x0: Tensor, abar: Tensor, prediction: str, generator: torch.Generator) -> Tensor:
    """DDPM loss at uniformly drawn t for the prediction type (mean squared error, per element)."""
    b = x0.shape[0]
    t = torch.randint(0, len(abar), (b,), generator=generator, device=generator.device).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device)
    a = abar.to(x0.device, torch.float32)[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    target = {"epsilon": eps, "sample": x0}.get(prediction)
    if target is None:
        target = a.sqrt() * eps - (1 - a).sqrt() * x0
    out = model(x_t, t).sample
    return torch.mean((out.float() - target) ** 2)


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


def edm_network_config(cfg: TrainConfig, channels: int, sigma_data: float) -> dict[str, Any]:
    """EDMPrecond's constructor arguments plus class_name (the json priors/edm.py reads) for cfg's preset and arch.

    SongUNet is configured as EDM's DDPM++ (positional embedding, standard encoder/decoder, box resampling);
    --channels-mult / --base-channels override the preset's channel_mult / model_channels.
    """
    preset = EDM_PRESETS[cfg.model]
    mult = list(cfg.channels_mult or preset["channel_mult"])
    if cfg.size % (2 ** (len(mult) - 1)):
        raise ValueError(f"--size {cfg.size} is not divisible by 2^{len(mult) - 1} (the network's {len(mult)} levels)")
    net: dict[str, Any] = {"class_name": "EDMPrecond", "img_resolution": cfg.size, "img_channels": channels,
                           "label_dim": 0, "sigma_data": float(sigma_data),
                           "model_type": {"songunet": "SongUNet", "dhariwalunet": "DhariwalUNet"}[cfg.arch],
                           "model_channels": int(cfg.base_channels or preset["model_channels"]), "channel_mult": mult,
                           "num_blocks": preset["num_blocks"], "attn_resolutions": list(preset["attn_resolutions"]),
                           "dropout": cfg.dropout}
    if cfg.arch == "songunet":
        net.update(embedding_type="positional", encoder_type="standard", decoder_type="standard",
                   channel_mult_noise=1, resample_filter=[1, 1])
    return net


def measured_sigma_data(images: Tensor) -> float:
    """Root mean square of the training pixels, sqrt(E[x^2]) (EDM's sigma_data for data that need not be centred)."""
    return float(images.double().pow(2).mean().sqrt())


def edm_sigmas(n: int, generator: torch.Generator, p_mean: float = EDM_P_MEAN, p_std: float = EDM_P_STD) -> Tensor:
    """n noise levels with ln sigma ~ N(p_mean, p_std^2) (Karras et al. 2022, Table 1)."""
    return (torch.randn(n, generator=generator, device=generator.device) * p_std + p_mean).exp()


def edm_loss_weight(sigma: Tensor, sigma_data: float) -> Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (Karras et al. 2022, Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(net: nn.Module, x0: Tensor, sigma_data: float, generator: torch.Generator) -> Tensor:
    """EDM loss lambda(sigma) |D(x0 + sigma n; sigma) - x0|^2 at log-normal sigma (mean over batch and elements)."""
    sigma = edm_sigmas(x0.shape[0], generator).to(x0.device).view(-1, 1, 1, 1)
    noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device)
    denoised = net(x0 + sigma * noise, sigma)
    return torch.mean(edm_loss_weight(sigma, sigma_data) * (denoised.float() - x0) ** 2)


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


def load_training_images(cfg: TrainConfig, dataset: Any) -> Tensor:
    """The first n_images of `dataset` (the train split of cfg.dataset), (N, C, H, W), normalised if asked."""
    n = min(cfg.n_images, len(dataset))
    if n < 1:
        raise ValueError(f"dataset {cfg.dataset!r} (train split) is empty; check its options {cfg.dataset_kwargs()}")
    cache = Path(cfg.cache) if cfg.cache else None
    if cache is not None and cache.exists():
        x = load_checkpoint(cache, "delete it (it is rewritten from the dataset) or pass another --cache")
        if not isinstance(x, Tensor) or x.ndim != 4:
            raise ValueError(f"{cache}: not an image cache (expected an (N, C, H, W) tensor); delete it or pass another "
                             f"--cache")
        x = x[:n].float()
    else:
        from tqdm.auto import tqdm

        x = torch.stack([dataset[i]["image"] for i in tqdm(range(n), desc=f"loading {cfg.dataset}", leave=False)]).float()
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(x, cache)
    if tuple(x.shape[-2:]) != (cfg.size, cfg.size):
        raise ValueError(f"dataset {cfg.dataset!r} yields {tuple(x.shape[-2:])} images but --size is {cfg.size}; "
                         f"pass --size {x.shape[-1]} or a matching dataset option (size=...)")
    if cfg.normalize:
        x = normalise(x)
    return x


def load_checkpoint(path: Path, fix: str = "start without --resume or from another --out") -> Any:
    """A checkpoint (or cache) read with torch.load(weights_only=True): tensors and plain values only.

    Anything else (a pickled object, which could run code on load) is refused, naming the file and `fix`.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: refused to load: it holds objects other than tensors and plain values, which "
                         f"could run code (torch.load weights_only=True); use a file written by "
                         f"`bench train-prior`, or {fix} ({str(exc).splitlines()[0]})") from exc
    except (OSError, EOFError, RuntimeError) as exc:
        raise ValueError(f"{path}: cannot read it ({type(exc).__name__}: {exc}); it is truncated or corrupt: "
                         f"{fix}") from exc


def save_edm_model(directory: Path, net: nn.Module, config: dict[str, Any]) -> Path:
    """Write directory/model.pt ({"ema": state dict}) and directory/model.json (the architecture), as priors/edm.py reads."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / "model.pt"
    torch.save({"ema": net.state_dict()}, weights)
    weights.with_suffix(".json").write_text(json.dumps(config, indent=2) + "\n")
    return weights


def save_model(directory: Path, unet: nn.Module, prediction: str) -> None:
    from priors.diffusers_prior import save_scheduler_config

    directory.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(directory / "unet", safe_serialization=True)
    save_scheduler_config(directory, scheduler_config(prediction))


def plot_loss(losses: list[float], path: Path, label: str = "DDPM loss") -> None:
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
    ax.set_yscale("log")
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

    from inverse_problems.operators.complex import magnitude

    mag = magnitude(images.detach().float().cpu())[:, 0]
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


def sample_grid(unet: nn.Module, prediction: str | None, n: int, steps: int, seed: int, path: Path) -> Tensor:
    """PF-ODE (EDM Heun) samples of a model (a diffusers UNet, or an EDM preconditioner when prediction is None),
    saved as a PNG grid; returns them."""
    from priors.sampling import sample_prior

    if prediction is None:
        from priors.edm import EDMPrior

        prior = EDMPrior(net=unet).eval()
    else:
        from priors.diffusers_prior import DiffusersPrior

        prior = DiffusersPrior(unet=unet, scheduler_config=scheduler_config(prediction)).eval()
    dev = next(unet.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = sample_prior(prior, n, steps=steps, generator=gen, device=dev)
    save_grid(x, path, f"{n} PF-ODE samples (Heun, {steps} steps)")
    return x


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


def train(cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
    """Train (or resume) on `dataset` (the train split of cfg.dataset, built by the caller with
    cfg.dataset_kwargs()) and write the diffusers directory, checkpoint, loss curve, samples and metadata.

    With cfg.resume the checkpoint's stored configuration must agree with cfg outside RESUMABLE (see
    resume_config, which builds such a cfg); each leg (its command, steps, wall time) is appended to the
    checkpoint's and metadata.json's `legs`.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    if cfg.prediction not in PREDICTIONS:
        raise ValueError(f"unknown --prediction {cfg.prediction!r}; choose one of {', '.join(PREDICTIONS)}")
    if cfg.mixed_precision not in ("no", "fp16", "bf16"):
        raise ValueError(f"unknown --mixed-precision {cfg.mixed_precision!r}; choose no, fp16 or bf16")
    check_recipe(cfg)
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise ValueError(f"--steps and --batch-size must be positive, got {cfg.steps} and {cfg.batch_size}")
    out = Path(cfg.out)
    ckpt_path = checkpoint_path(out)
    state = resume_state(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # on a shared CPU, 1 thread avoids OpenMP oversubscription
    acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.cpu)
    set_seed(cfg.seed + acc.process_index)
    images = load_training_images(cfg, dataset)
    channels = images.shape[1]
    edm = cfg.recipe == "edm"
    net_config: dict[str, Any] = {}
    sigma_data = 0.0
    if edm:
        from priors.edm import build_network

        sigma_data = (cfg.sigma_data if cfg.sigma_data is not None else
                      float(state["sigma_data"]) if state is not None and "sigma_data" in state else
                      measured_sigma_data(images))
        net_config = edm_network_config(cfg, channels, sigma_data)
        model = build_network(net_config, "--recipe edm")
    else:
        model = build_unet(channels, cfg.size, cfg.model, cfg.channels_mult, cfg.base_channels)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
    abar = vp_alphas_cumprod().float()
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + acc.process_index)
    ema = EMA(model, cfg.ema)
    step, losses, wall, legs = 0, [], 0.0, []
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["lr_scheduler"])
        step, losses, wall = int(state["step"]), list(state["losses"]), float(state["wall_seconds"])
        legs = list(state.get("legs") or [{  # a checkpoint written before legs were recorded: its legs as one
            "command": state.get("config", {}).get("command", ""), "from_step": 0, "to_step": step,
            "wall_seconds": wall, "cumulative_wall_seconds": wall}])
        rng_file = ckpt_path.parent / f"rng_rank{acc.process_index}.pt"
        rng = load_checkpoint(rng_file) if rng_file.exists() else state["rng"].get(acc.process_index)
        if rng is not None:
            gen.set_state(rng["generator"])
            torch.set_rng_state(rng["torch"])
        print(f"train-prior: resuming {out} at step {step} of {cfg.steps} with the checkpoint's configuration",
              file=sys.stderr)
    leg = {"command": cfg.command, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "from_step": step}
    model, opt = acc.prepare(model, opt)
    ema.model.to(acc.device)
    images = images.to(acc.device)

    written: dict[str, Any] = {}

    def checkpoint() -> None:
        written["legs"] = legs_so_far()
        rng = {acc.process_index: {"generator": gen.get_state(), "torch": torch.get_rng_state()}}
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        if acc.num_processes > 1:  # every process keeps its own random stream
            torch.save(rng[acc.process_index], ckpt_path.parent / f"rng_rank{acc.process_index}.pt")
        if acc.is_main_process:
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save({"model": acc.unwrap_model(model).state_dict(), "ema": ema.state_dict(),
                        "optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict(), "step": step,
                        "losses": losses, "wall_seconds": written["legs"][-1]["cumulative_wall_seconds"], "rng": rng,
                        "config": plain_config(cfg), "legs": written["legs"],
                        **({"sigma_data": sigma_data} if edm else {})}, tmp)  # plain values only
            tmp.replace(ckpt_path)

    def legs_so_far() -> list[dict[str, Any]]:
        """The earlier legs and this one up to now (a killed leg keeps what its last checkpoint saved)."""
        now = time.time() - t0
        return legs + [{**leg, "to_step": step, "wall_seconds": round(now, 3),
                        "cumulative_wall_seconds": round(wall + now, 3)}]

    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc="train-prior", disable=not acc.is_local_main_process)
    model.train()
    while step < cfg.steps:
        idx = torch.randint(0, images.shape[0], (cfg.batch_size,), generator=gen).to(acc.device)
        x0 = images[idx]
        if cfg.scale_aug > 0:
            s = 1 + cfg.scale_aug * (2 * torch.rand(cfg.batch_size, generator=gen) - 1)
            x0 = x0 * s.to(acc.device).view(-1, 1, 1, 1)
        with acc.autocast():
            loss = (edm_loss(model, x0, sigma_data, gen) if edm else
                    diffusion_loss(model, x0, abar, cfg.prediction, gen))
        losses.append(optimiser_step(acc, model, loss, opt, sched, ema))
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0:
            bar.set_postfix(loss=f"{sum(losses[-cfg.log_every:]) / cfg.log_every:.4f}")
        if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
            checkpoint()
    bar.close()
    checkpoint()
    acc.wait_for_everyone()
    meta: dict[str, Any] = {}
    if acc.is_main_process:
        ema_model = ema.model.eval()
        if edm:
            weights = save_edm_model(out, ema_model, net_config)
        else:
            save_model(out, ema_model, cfg.prediction)
            weights = out / "unet" / "diffusion_pytorch_model.safetensors"
        plot_loss(losses, out / "loss.png", "EDM loss" if edm else "DDPM loss")
        sample_grid(ema_model, None if edm else cfg.prediction, cfg.samples, cfg.sample_steps, cfg.seed,
                    out / "samples.png")
        tail = losses[-min(100, len(losses)):]
        meta = {
            "dataset": cfg.dataset, "dataset_options": cfg.dataset_kwargs(), "size": cfg.size, "channels": channels,
            "steps": step, "batch_size": cfg.batch_size, "lr": cfg.lr, "ema_decay": cfg.ema,
            "recipe": cfg.recipe, "model": cfg.model,
            **({"arch": cfg.arch, "network": net_config, "sigma_data": sigma_data,
                "sigma_data_source": "--sigma-data" if cfg.sigma_data is not None else "RMS of the training pixels",
                "noise_distribution": f"ln sigma ~ N({EDM_P_MEAN}, {EDM_P_STD}^2)",
                "loss_weight": "(sigma^2 + sigma_data^2) / (sigma sigma_data)^2", "weights": "model.pt",
                "load_with": f"--prior edm prior.path={out / 'model.pt'}"} if edm else
               {"prediction_type": cfg.prediction, "block_out_channels": list(ema_model.config.block_out_channels),
                "schedule": "DDPM VP-linear betas 1e-4..0.02, T=1000"}),
            "n_training_images": int(images.shape[0]), "normalize": "magnitude 99th percentile = 1" if cfg.normalize else None,
            "scale_augmentation": [1 - cfg.scale_aug, 1 + cfg.scale_aug], "seed": cfg.seed,
            "mixed_precision": cfg.mixed_precision, "processes": acc.num_processes, "device": str(acc.device),
            "final_loss": sum(tail) / len(tail), "wall_seconds": round(written["legs"][-1]["cumulative_wall_seconds"], 1),
            "parameters": n_params, "weights_bytes": weights.stat().st_size, "command": cfg.command,
            "legs": written["legs"], "config": plain_config(cfg),
            "torch": torch.__version__, "diffusers": __import__("diffusers").__version__,
        }
        (out / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
