"""guided-diffusion (ADM) checkpoints as priors: the epsilon network of the DPS / DDRM / DAPS FFHQ and ImageNet models.

The network predicts epsilon from x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps on the 1000-step linear
DDPM schedule (betas 1e-4..0.02); with learned variance it outputs 2C channels and the first C are epsilon.
It is wrapped into the EDM denoiser exactly like the diffusers prior (priors/diffusers_prior.py):
x_vp = x / sqrt(1 + sigma^2), t = sigma_to_t(sigma), D(x, sigma) = x - sigma eps_hat.

The architecture comes from `preset`, from `config` (a json of guided-diffusion's create_model flags:
image_size, num_channels, num_res_blocks, attention_resolutions "32,16,8", learn_sigma, ...), from a
json beside the weights, or, when none is given, from the preset whose key set and shapes the weights fit.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from priors.nets.adm import UNetModel, unet_from_flags
from priors.checkpoints import (check_architecture, config_beside, key_mismatch, load_strict, read_json_config,
                               read_state_dict, strip_prefix)
from priors.diffusers_prior import DiffusersPrior

# DPS configs/model_config.yaml (ffhq_10m.pt, also used by DAPS) and imagenet_model_config.yaml (guided-diffusion's
# 256x256_diffusion_uncond.pt, also used by DDRM and DAPS)
PRESETS: dict[str, dict[str, Any]] = {
    "ffhq256-dps": dict(image_size=256, num_channels=128, num_res_blocks=1, channel_mult="", learn_sigma=True,
                        class_cond=False, attention_resolutions="16", num_heads=4, num_head_channels=64,
                        num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0, resblock_updown=True,
                        use_new_attention_order=False),
    "imagenet256-uncond": dict(image_size=256, num_channels=256, num_res_blocks=2, channel_mult="", learn_sigma=True,
                               class_cond=False, attention_resolutions="32,16,8", num_heads=4, num_head_channels=64,
                               num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0, resblock_updown=True,
                               use_new_attention_order=False),
}
LINEAR_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear",
                   "prediction_type": "epsilon"}


def build_unet(flags: dict[str, Any], where: Any = "ADM config") -> UNetModel:
    check_architecture(flags, where, positive=("image_size", "num_channels", "num_res_blocks"))
    try:
        return unet_from_flags(**flags)
    except TypeError as exc:
        raise ValueError(f"{where}: not guided-diffusion model flags ({exc}); give image_size, num_channels, "
                         f"num_res_blocks, attention_resolutions, learn_sigma ...") from exc


def preset_of(state: dict[str, Tensor]) -> str | None:
    """The preset whose network has exactly this state dict's keys and shapes (built on the meta device)."""
    for name, flags in PRESETS.items():
        with torch.device("meta"):
            net = build_unet(flags)
        if not any(key_mismatch(net, state)):
            return name
    return None


def load_unet(path: str, preset: str | None = None, config: str | None = None, key: str | None = None) -> UNetModel:
    """The checkpoint's UNetModel, architecture from preset / config / json beside / the matching preset."""
    # DataParallel's `module.`; InverseBench's ffhq256.pt wraps the UNet in its VPPrecond (`model.`)
    state = strip_prefix(strip_prefix(read_state_dict(path, key), "module."), "model.")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown ADM preset {preset!r}; choose one of {', '.join(PRESETS)} or give prior.config=FILE.json")
    source = config if config is not None else (None if preset is not None else config_beside(path))
    if preset is None and source is None:
        preset = preset_of(state)
        if preset is None:
            raise ValueError(f"{path}: the weights fit none of the ADM presets ({', '.join(PRESETS)}) and there is no "
                             f"config json beside them; pass prior.config=FILE.json with guided-diffusion's model flags "
                             f"(image_size, num_channels, num_res_blocks, attention_resolutions, learn_sigma, ...)")
    flags = copy.deepcopy(PRESETS[preset]) if preset is not None else read_json_config(source)
    unet = build_unet(flags, source or preset)
    load_strict(unet, state, path, "the architecture (prior.preset / prior.config) does not match these weights")
    return unet.eval().requires_grad_(False)


class ADMPrior(DiffusersPrior):
    """A guided-diffusion UNetModel checkpoint (epsilon, learned or fixed variance, linear 1000-step schedule) as D(x, sigma).

    `path`: a torch state dict (e.g. DPS's ffhq_10m.pt) or a dict holding one under ema / model / state_dict
    (InverseBench's ffhq256.pt: its VPPrecond's `model.` prefix is dropped);
    `preset` (ffhq256-dps, imagenet256-uncond) or `config` (json of create_model flags) names the
    architecture, else a json beside the weights, else the preset the weights fit. Images are in [-1, 1].
    A class-conditional network (class_cond) needs `class_label`, the class every call is conditioned on.
    """

    def __init__(self, path: str | None = None, preset: str | None = None, config: str | None = None,
                 key: str | None = None, class_label: int | None = None, unet: nn.Module | None = None,
                 compile: bool = False) -> None:
        if unet is None:
            if path is None:
                raise ValueError("the ADM prior needs prior.path=FILE (a guided-diffusion checkpoint, e.g. ffhq_10m.pt)")
            unet = load_unet(path, preset, config, key)
        classes = getattr(unet, "num_classes", None)
        if classes is None and class_label is not None:
            raise ValueError("the network is unconditional: drop prior.class_label")
        if classes is not None and (class_label is None or not 0 <= class_label < classes):
            raise ValueError(f"the network is class-conditional ({classes} classes): pass prior.class_label=K with "
                             f"0 <= K < {classes}" + ("" if class_label is None else f", got {class_label}"))
        super().__init__(unet=unet, scheduler_config=LINEAR_SCHEDULE, compile=compile)
        self.class_label = class_label
        self.resolution = (int(unet.image_size), int(unet.image_size))
        self.source = None if path is None else str(path)

    def model_output(self, x_vp: Tensor, t: Tensor) -> Tensor:
        """epsilon: the first C of the network's C (fixed variance) or 2C (learned variance) channels."""
        if self.class_label is None:
            return super().model_output(x_vp, t)[:, : self.channels]
        dtype = next(self.unet.parameters()).dtype
        y = torch.full((x_vp.shape[0],), self.class_label, dtype=torch.long, device=x_vp.device)
        return self.network(self.unet, x_vp.to(dtype), t, y)[:, : self.channels].to(x_vp.dtype)
