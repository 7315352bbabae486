"""A diffusers variance-preserving network wrapped as an EDM denoiser (docs/design.md, "Diffusion parametrisation").

A VP model sees x_vp = sqrt(abar) x0 + sqrt(1 - abar) eps at timestep t. With sigma^2 = (1 - abar) / abar
(Karras et al. 2022, Table 1, "VP"), the EDM variable x = x0 + sigma eps is x_vp * sqrt(1 + sigma^2), so

    x_vp = x / sqrt(1 + sigma^2),   t = sigma_to_t(sigma)  (continuous, log-linear in the table)
    epsilon:      D(x, sigma) = x - sigma * eps_hat
    sample:       D(x, sigma) = x0_hat
    v_prediction: D(x, sigma) = x / (1 + sigma^2) - sigma / sqrt(1 + sigma^2) * v_hat
                  (v = sqrt(abar) eps - sqrt(1 - abar) x0, Salimans & Ho 2022)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from priors.base import Prior, sigma_like
from priors.schedules import sigma_to_t, vp_sigma_table

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
TRAIN_HINT = "bench train-prior --dataset phantom-brain-t2 --size 64 --out {path}"


def alphas_cumprod_from_config(config: dict[str, Any]) -> Tensor:
    """alpha_bar_t of a diffusers scheduler config, float64 (linear / scaled_linear / trained betas computed
    here in double precision; any other schedule through diffusers' DDPMScheduler)."""
    from diffusers import DDPMScheduler

    keep = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    steps = int(keep.get("num_train_timesteps", 1000))
    start, end = float(keep.get("beta_start", 1e-4)), float(keep.get("beta_end", 0.02))
    kind = keep.get("beta_schedule", "linear")
    betas = None
    if keep.get("trained_betas") is not None:
        betas = torch.as_tensor(keep["trained_betas"], dtype=torch.float64)
    elif kind == "linear":
        betas = torch.linspace(start, end, steps, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2
    if betas is not None:
        return torch.cumprod(1 - betas, dim=0)
    sched = DDPMScheduler.from_config(keep)
    return sched.alphas_cumprod.double()


def _local_dir(path: str | os.PathLike) -> bool:
    return Path(path).expanduser().exists()


def _looks_like_hub_id(path: str) -> bool:
    parts = str(path).split("/")
    return len(parts) == 2 and all(parts) and not str(path).startswith((".", "~")) and "\\" not in str(path)


class DiffusersPrior(Prior):
    """A diffusers UNet2DModel (epsilon, sample or v prediction) as an EDM denoiser D(x, sigma).

    Load with `path` (a local diffusers directory, pipeline layout unet/ + scheduler/ or a bare model
    folder with scheduler_config.json, or a hub id from the local cache; `download=True` lets it fetch
    one) and optional `subfolder`; or pass a built `unet` module and `scheduler_config` dict directly.
    Weights that hold NaN or Inf are refused. `compile`: torch.compile the UNet (Prior.compile_network).
    """

    network_attr = "unet"

    def __init__(self, path: str | None = None, subfolder: str | None = None, unet: nn.Module | None = None,
                 scheduler_config: dict[str, Any] | None = None, prediction_type: str | None = None,
                 dtype: str | None = None, download: bool = False, compile: bool = False) -> None:
        super().__init__()
        if unet is None:
            if path is None:
                raise ValueError("DiffusersPrior needs `path` (a diffusers model directory, e.g. prior.path=DIR) "
                                 "or a `unet` module and its `scheduler_config`")
            unet, scheduler_config = load_diffusers(path, subfolder, download)
        if scheduler_config is None:
            raise ValueError("DiffusersPrior needs the scheduler config (betas / alphas_cumprod, prediction_type)")
        self.unet = unet
        self.scheduler_config = {k: v for k, v in dict(scheduler_config).items()}
        self.prediction_type = prediction_type or self.scheduler_config.get("prediction_type", "epsilon")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {self.prediction_type!r}; choose one of {PREDICTION_TYPES}")
        if dtype is not None:
            if not isinstance(getattr(torch, str(dtype), None), torch.dtype):
                raise ValueError(f"unknown dtype {dtype!r}; use a torch dtype name such as float32, float16 or bfloat16")
            self.unet.to(getattr(torch, str(dtype)))
        abar = alphas_cumprod_from_config(self.scheduler_config)
        self.register_buffer("alphas_cumprod", abar, persistent=False)
        table = vp_sigma_table(abar)
        self.sigma_min, self.sigma_max = float(table[0]), float(table[-1])
        cfg = dict(getattr(unet, "config", None) or {})
        self.channels = int(cfg["in_channels"] if "in_channels" in cfg else getattr(unet, "in_channels", 1))
        size = cfg["sample_size"] if "sample_size" in cfg else getattr(unet, "sample_size", None)
        self.resolution = None if size is None else ((int(size), int(size)) if isinstance(size, int)
                                                     else (int(size[0]), int(size[1])))
        self.source = None if path is None else str(path)
        if compile:
            self.compile_network()

    def timestep(self, sigma: Tensor) -> Tensor:
        """The continuous VP timestep t(sigma) (priors.schedules.sigma_to_t on this model's table)."""
        return sigma_to_t(sigma, self.alphas_cumprod)

    def model_output(self, x_vp: Tensor, t: Tensor) -> Tensor:
        dtype = next((p.dtype for p in self.unet.parameters()), x_vp.dtype)
        return self.network(self.unet, x_vp.to(dtype), t).to(x_vp.dtype)

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        s = sigma_like(sigma, x)
        s4 = s.view(-1, 1, 1, 1).to(x.dtype)
        root = torch.sqrt(1 + s4**2)
        out = self.model_output(x / root, self.timestep(s))
        if self.prediction_type == "epsilon":
            return x - s4 * out
        if self.prediction_type == "sample":
            return out
        return x / (1 + s4**2) - (s4 / root) * out

    def save_pretrained(self, directory: str | os.PathLike, safe_serialization: bool = True) -> Path:
        """Write a diffusers pipeline layout: unet/ (safetensors + config), scheduler/, model_index.json."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        if not hasattr(self.unet, "save_pretrained"):
            raise TypeError(f"{type(self.unet).__name__} has no save_pretrained; only diffusers models can be saved")
        self.unet.save_pretrained(out / "unet", safe_serialization=safe_serialization)
        save_scheduler_config(out, self.scheduler_config)
        return out


def save_scheduler_config(directory: Path, config: dict[str, Any]) -> None:
    """scheduler/scheduler_config.json and a model_index.json (a loadable DDPMPipeline directory)."""
    from diffusers import DDPMScheduler

    keep = {k: v for k, v in config.items() if not k.startswith("_")}
    DDPMScheduler.from_config(keep).save_pretrained(directory / "scheduler")
    import diffusers

    index = {"_class_name": "DDPMPipeline", "_diffusers_version": diffusers.__version__,
             "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"]}
    (directory / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def check_finite_weights(module: nn.Module, source: str | os.PathLike) -> None:
    """Refuse a model whose parameters or buffers hold NaN or Inf (a corrupt or diverged checkpoint)."""
    bad = [name for name, t in [*module.named_parameters(), *module.named_buffers()]
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"{source}: {len(bad)} weight tensor(s) contain NaN or Inf (first: {bad[0]}); the "
                         f"checkpoint is corrupt or its training diverged: re-train or re-copy it")


def _load_unet(source: str, subfolder: str | None, where: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """UNet2DModel.from_pretrained with any failure (corrupt weights, bad config) named by file."""
    from diffusers import UNet2DModel

    try:
        unet = UNet2DModel.from_pretrained(source, subfolder=subfolder, **kwargs)
    except Exception as exc:  # safetensors, torch, json and diffusers each raise their own types
        raise ValueError(f"{where}: cannot load the diffusers UNet ({type(exc).__name__}: {exc}); the weights or "
                         f"config.json are corrupt: re-copy or re-train it") from exc
    check_finite_weights(unet, where)
    return unet


def load_diffusers(path: str | os.PathLike, subfolder: str | None = None,
                   download: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """The UNet2DModel and scheduler config at a local directory (or a hub id, from the local cache).

    Local: `subfolder` if given, else unet/ when present (pipeline layout), else the folder itself; the
    scheduler config comes from scheduler/ or the same folder. A path that does not exist is looked up
    as a hub id (owner/name) in the local Hugging Face cache only, unless `download` is set, so an
    offline machine fails at once; the error names the path looked for and how to give one. Weights
    that do not load, or that hold NaN/Inf, are refused naming the file.
    """
    from diffusers import DDPMScheduler

    path = str(path)
    if _local_dir(path):
        root = Path(path).expanduser()
        sub = subfolder if subfolder is not None else ("unet" if (root / "unet").is_dir() else None)
        model_dir = root / sub if sub else root
        if not (model_dir / "config.json").exists():
            raise FileNotFoundError(f"no diffusers model at {model_dir} (config.json missing); make one with "
                                    f"`{TRAIN_HINT.format(path=path)}`")
        weights = next((model_dir / w for w in WEIGHT_FILES if (model_dir / w).exists()), model_dir)
        unet = _load_unet(str(root), sub, weights)
        for cand in (root / "scheduler", root, model_dir):
            if (cand / "scheduler_config.json").exists():
                try:
                    return unet, dict(DDPMScheduler.load_config(str(cand)))
                except Exception as exc:
                    raise ValueError(f"{cand / 'scheduler_config.json'}: cannot read the scheduler config "
                                     f"({type(exc).__name__}: {exc}); re-copy or re-train the model") from exc
        raise FileNotFoundError(f"no scheduler_config.json under {root} (looked in scheduler/ and the folder itself); "
                                f"`{TRAIN_HINT.format(path=path)}` writes one")
    where = Path(path).expanduser().resolve()
    if not _looks_like_hub_id(path):
        raise FileNotFoundError(f"diffusers prior path {path} does not exist (looked for {where}); pass "
                                f"prior.path=DIR (a diffusers model directory), or train one with "
                                f"`{TRAIN_HINT.format(path=path)}`")
    from diffusers import UNet2DModel

    hub = {"local_files_only": not download}
    try:
        try:
            unet = UNet2DModel.from_pretrained(path, subfolder=subfolder if subfolder is not None else "unet", **hub)
            sched_sub = "scheduler" if subfolder is None else None
        except (OSError, EnvironmentError, ValueError):
            unet = UNet2DModel.from_pretrained(path, subfolder=subfolder, **hub)
            sched_sub = None
        try:
            config = DDPMScheduler.load_config(path, subfolder=sched_sub or "scheduler", **hub)
        except (OSError, EnvironmentError):
            config = DDPMScheduler.load_config(path, **hub)
    except Exception as exc:  # huggingface_hub and diffusers raise OSError subclasses, ValueError, HTTP errors
        how = ("" if download else "it is not in the local Hugging Face cache and downloads are off "
               "(prior.download=true allows one); ")
        raise FileNotFoundError(f"diffusers prior {path!r}: no local folder {where} and no hub model {path}: {how}"
                                f"pass prior.path=DIR (a diffusers model directory), or train one with "
                                f"`{TRAIN_HINT.format(path=path)}` ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    check_finite_weights(unet, f"hub model {path}")
    return unet, dict(config)
