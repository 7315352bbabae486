"""`bench train-prior`: train a diffusion prior on a registered dataset, with the DDPM or EDM recipe.

Recipe `ddpm` (the default) trains a diffusers UNet2DModel with DDPM's loss (priors/training/losses.py) on the
VP-linear schedule, predicting eps, x0 or v. The result is a plain diffusers directory (unet/ + scheduler/) that
`priors.diffusers_prior.DiffusersPrior` loads as an EDM denoiser.

Recipe `edm` (Karras et al. 2022, Table 1 and Sec. 5) trains an EDMPrecond network (priors/nets/edm.py,
SongUNet = DDPM++ or DhariwalUNet = ADM): D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) with
c_skip = s_d^2 / (sigma^2 + s_d^2), c_out = sigma s_d / sqrt(sigma^2 + s_d^2), c_in = 1 / sqrt(sigma^2 + s_d^2),
c_noise = ln(sigma) / 4, with EDM's loss (priors/training/losses.py). s_d (sigma_data) is --sigma-data, else the
root mean square of the (normalised) training pixels, the second moment EDM's derivation of c_skip and c_out uses.
The result is OUT/model.pt ({"ema": state dict}) with OUT/model.json (EDMPrecond's arguments), which the `edm`
prior (priors/edm.py) loads: `--prior edm prior.path=OUT/model.pt`.

Images are normalised like the benchmark normalises its inputs (magnitude 99th percentile = 1) and,
by default, randomly rescaled by U(0.75, 1.25): at test time each image is divided by a factor
estimated from undersampled measurements, which is off by roughly that much.
Runs on one CPU, one GPU or many GPUs (`accelerate launch -m benchmarks.cli train-prior ...`), with
EMA weights, resumable checkpoints, a loss curve and a grid of PF-ODE samples from the EMA model; the training
core (EMA, the step loop, the state file and its resume checks, plots) is priors/training/common.py, shared with
`bench train-recon`. The options are TrainConfig (priors/training/config.py, importable without torch); a
checkpoint stores them as a plain dict, a resumed leg reuses them, and only the options in RESUMABLE may change.
The command line lives in the harness (benchmarks/train_prior_cli.py), which builds the dataset and passes it in.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from priors.schedules import vp_alphas_cumprod
from priors.training.common import (EMA, Progress, checkpoint_path, final_loss, init_state, load_checkpoint, load_init,
                                    plot_loss, restore, resume_state, save_grid, save_state, train_steps,
                                    warmup_schedule)
from priors.training.config import (EDM_PRESETS, PREDICTIONS, PRESETS, RESUMABLE, TrainConfig, check_config,
                                    plain_config)
from priors.training.losses import EDM_P_MEAN, EDM_P_STD, diffusion_loss, edm_loss, measured_sigma_data


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


def train(cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
    """Train (or resume) on `dataset` (the train split of cfg.dataset, built by the caller with
    cfg.dataset_kwargs()) and write the diffusers directory, checkpoint, loss curve, samples and metadata.

    With cfg.resume the checkpoint's stored configuration must agree with cfg outside RESUMABLE (see
    common.resume_config, which builds such a cfg); each leg (its command, steps, wall time) is appended to the
    checkpoint's and metadata.json's `legs`.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    check_config(cfg)
    out = Path(cfg.out)
    ckpt_path = checkpoint_path(out)
    state = resume_state(cfg, TrainConfig, RESUMABLE)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # on a shared CPU, 1 thread avoids OpenMP oversubscription
    acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.cpu)
    set_seed(cfg.seed + acc.process_index)
    images = load_training_images(cfg, dataset)
    channels = images.shape[1]
    edm = cfg.recipe == "edm"
    init = init_state(cfg.init) if cfg.init and state is None else None  # a fine-tuning start (a resume has its own)
    # the step of the weights a fine-tuning run started from, kept in its checkpoint for the legs that resume it
    init_step = int(init["step"]) if init is not None else state.get("init_step") if state is not None else None
    if init_step is None and state is not None and cfg.init and (out / "metadata.json").exists():
        init_step = (json.loads((out / "metadata.json").read_text()).get("init") or {}).get("step")  # older checkpoints
    net_config: dict[str, Any] = {}
    sigma_data = 0.0
    if edm:
        from priors.edm import build_network

        stored = state if state is not None else init  # the preconditioning the weights were trained with
        sigma_data = (cfg.sigma_data if cfg.sigma_data is not None else
                      float(stored["sigma_data"]) if stored is not None and "sigma_data" in stored else
                      measured_sigma_data(images))
        net_config = edm_network_config(cfg, channels, sigma_data)
        model = build_network(net_config, "--recipe edm")
    else:
        model = build_unet(channels, cfg.size, cfg.model, cfg.channels_mult, cfg.base_channels)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = warmup_schedule(opt, cfg.warmup)
    abar = vp_alphas_cumprod().float()
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + acc.process_index)
    ema = EMA(model, cfg.ema)
    progress = Progress.begin(cfg.command, state)
    if state is not None:
        restore(state, model, ema, opt, sched)
        rng_file = ckpt_path.parent / f"rng_rank{acc.process_index}.pt"
        rng = load_checkpoint(rng_file) if rng_file.exists() else state["rng"].get(acc.process_index)
        if rng is not None:
            gen.set_state(rng["generator"])
            torch.set_rng_state(rng["torch"])
        print(f"train-prior: resuming {out} at step {progress.step} of {cfg.steps} with the checkpoint's "
              f"configuration", file=sys.stderr)
    elif init is not None:
        load_init(init, model, ema, cfg.init)
        print(f"train-prior: starting from the weights of {cfg.init} (its step {int(init['step'])}), with a new "
              f"optimiser and this run's data and options", file=sys.stderr)
    model, opt = acc.prepare(model, opt)
    ema.model.to(acc.device)
    images = images.to(acc.device)

    def checkpoint() -> list[dict[str, Any]]:
        rng = {acc.process_index: {"generator": gen.get_state(), "torch": torch.get_rng_state()}}
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        if acc.num_processes > 1:  # every process keeps its own random stream
            torch.save(rng[acc.process_index], ckpt_path.parent / f"rng_rank{acc.process_index}.pt")
        return save_state(ckpt_path, acc, model, ema, opt, sched, progress, cfg, rng,
                          **({"sigma_data": sigma_data} if edm else {}),
                          **({"init_step": init_step} if init_step is not None else {}))

    def loss() -> Tensor:
        """A batch drawn from the images, intensity-rescaled, and the recipe's loss on it."""
        idx = torch.randint(0, images.shape[0], (cfg.batch_size,), generator=gen).to(acc.device)
        x0 = images[idx]
        if cfg.scale_aug > 0:
            s = 1 + cfg.scale_aug * (2 * torch.rand(cfg.batch_size, generator=gen) - 1)
            x0 = x0 * s.to(acc.device).view(-1, 1, 1, 1)
        with acc.autocast():
            return (edm_loss(model, x0, sigma_data, gen) if edm else
                    diffusion_loss(model, x0, abar, cfg.prediction, gen))

    progress.start_clock()
    train_steps(acc, model, opt, sched, ema, progress, cfg, loss, checkpoint, "train-prior")
    legs = checkpoint()
    acc.wait_for_everyone()
    meta: dict[str, Any] = {}
    if acc.is_main_process:
        ema_model = ema.model.eval()
        if edm:
            weights = save_edm_model(out, ema_model, net_config)
        else:
            save_model(out, ema_model, cfg.prediction)
            weights = out / "unet" / "diffusion_pytorch_model.safetensors"
        plot_loss(progress.losses, out / "loss.png", "EDM loss" if edm else "DDPM loss")
        sample_grid(ema_model, None if edm else cfg.prediction, cfg.samples, cfg.sample_steps, cfg.seed,
                    out / "samples.png")
        meta = {
            "dataset": cfg.dataset, "dataset_options": cfg.dataset_kwargs(), "size": cfg.size, "channels": channels,
            "steps": progress.step, "batch_size": cfg.batch_size, "lr": cfg.lr, "ema_decay": cfg.ema,
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
            "final_loss": final_loss(progress.losses), "wall_seconds": round(legs[-1]["cumulative_wall_seconds"], 1),
            "parameters": n_params, "weights_bytes": weights.stat().st_size, "command": cfg.command,
            "legs": legs, "config": plain_config(cfg),
            **({"init": {"from": cfg.init, "step": init_step}} if cfg.init else {}),
            "torch": torch.__version__, "diffusers": __import__("diffusers").__version__,
        }
        (out / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
