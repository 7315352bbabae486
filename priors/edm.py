"""EDM and InverseBench checkpoints as priors: the preconditioned network already is D(x, sigma).

An EDM network (Karras et al. 2022) computes D(x, sigma) = c_skip x + c_out F(c_in x, c_noise) for
x = x0 + sigma eps, the suite's convention (priors/base.py), so the prior calls it as is.

The architecture comes from (first that applies) `preset` (PRESETS), `config` (a json file), or a
json beside the weights (`<weights stem>.json`, as written by benchmarks/experiments/convert_edm_pickle.py,
or `config.json`). A config is EDM's constructor arguments of the preconditioner plus `class_name`
(VPPrecond, VEPrecond or EDMPrecond; a dotted path such as training.networks.EDMPrecond or an
InverseBench `_target_` also works). Weights: a torch file holding `ema`, `net` (InverseBench) or a
bare state dict, loaded with strict=True.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from priors.backends import OnnxNetwork, check_backend
from priors.base import Prior, sigma_like
from priors.checkpoints import (EDM_PICKLE_HINT, check_architecture, config_beside, load_strict, read_json_config,
                               read_state_dict, strip_prefix)
from priors.nets.edm import PRECONDITIONERS

_INVERSEBENCH_MRI = dict(class_name="EDMPrecond", img_resolution=320, img_channels=2, label_dim=0,
                         model_type="DhariwalUNet", model_channels=128, channel_mult=[1, 1, 1, 2, 2],
                         attn_resolutions=[16], num_blocks=1, dropout=0.0)
_DDPMPP = dict(model_type="SongUNet", embedding_type="positional", encoder_type="standard", decoder_type="standard",
               channel_mult_noise=1, resample_filter=[1, 1], model_channels=128)
_NCSNPP = dict(model_type="SongUNet", embedding_type="fourier", encoder_type="residual", decoder_type="standard",
               channel_mult_noise=2, resample_filter=[1, 3, 3, 1], model_channels=128)

# InverseBench configs/pretrain/mri-{knee,brain}-mvue.yaml; EDM's released edm-*-uncond-{vp,ve}.pkl (train.py options
# of the README's table: --arch ddpmpp|ncsnpp, --cres, --dropout, --augment (augment_dim 9)).
PRESETS: dict[str, dict[str, Any]] = {
    "inversebench-mri-knee": _INVERSEBENCH_MRI,
    "inversebench-mri-brain": _INVERSEBENCH_MRI,
    "edm-ffhq64": dict(class_name="EDMPrecond", img_resolution=64, img_channels=3, **_DDPMPP,
                       channel_mult=[1, 2, 2, 2], augment_dim=9, dropout=0.05),
    "edm-ffhq64-ve": dict(class_name="EDMPrecond", img_resolution=64, img_channels=3, **_NCSNPP,
                          channel_mult=[1, 2, 2, 2], augment_dim=9, dropout=0.05),
    "edm-afhqv2-64": dict(class_name="EDMPrecond", img_resolution=64, img_channels=3, **_DDPMPP,
                          channel_mult=[1, 2, 2, 2], augment_dim=9, dropout=0.25),
    "edm-afhqv2-64-ve": dict(class_name="EDMPrecond", img_resolution=64, img_channels=3, **_NCSNPP,
                             channel_mult=[1, 2, 2, 2], augment_dim=9, dropout=0.25),
    "edm-cifar10": dict(class_name="EDMPrecond", img_resolution=32, img_channels=3, **_DDPMPP,
                        channel_mult=[2, 2, 2], augment_dim=9, dropout=0.13),
    "edm-cifar10-ve": dict(class_name="EDMPrecond", img_resolution=32, img_channels=3, **_NCSNPP,
                           channel_mult=[2, 2, 2], augment_dim=9, dropout=0.13),
}
# EDM's sampler range, for preconditioners that declare none (EDMPrecond: [0, inf))
DEFAULT_SIGMA_RANGE = (0.002, 80.0)


def network_config(path: str | os.PathLike | None = None, preset: str | None = None,
                   config: str | os.PathLike | None = None) -> dict[str, Any]:
    """The preconditioner's constructor arguments plus `class_name`, from a preset, a json, or the json beside `path`."""
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown EDM preset {preset!r}; choose one of {', '.join(PRESETS)} or give "
                             f"prior.config=FILE.json")
        return copy.deepcopy(PRESETS[preset])
    source = Path(config).expanduser() if config is not None else (config_beside(path) if path is not None else None)
    if source is None:
        beside = "" if path is None else f" (no {Path(path).with_suffix('.json').name} or config.json beside {path})"
        raise ValueError(f"the EDM prior needs the network's architecture{beside}: pass prior.preset=NAME (one of "
                         f"{', '.join(PRESETS)}) or prior.config=FILE.json")
    cfg = read_json_config(source)
    if "_target_" in cfg:
        cfg["class_name"] = cfg.pop("_target_")
    return cfg


def build_network(config: dict[str, Any], where: Any = "EDM config") -> nn.Module:
    """The preconditioner a config describes (class_name VPPrecond, VEPrecond or EDMPrecond)."""
    kw = dict(config)
    name = str(kw.pop("class_name", "")).rsplit(".", 1)[-1]
    if name not in PRECONDITIONERS:
        raise ValueError(f"{where}: class_name {name or '(missing)'!r} is not an EDM preconditioner; use one of "
                         f"{', '.join(PRECONDITIONERS)}")
    check_architecture(kw, where, positive=("img_resolution", "img_channels", "model_channels", "num_blocks"),
                       non_negative=("label_dim", "augment_dim"), positive_lists=("channel_mult",))
    try:
        return PRECONDITIONERS[name](**kw)
    except TypeError as exc:
        raise ValueError(f"{where}: {name} does not take these options ({exc})") from exc


def load_network(path: str | os.PathLike, config: dict[str, Any], key: str | None = None,
                 where: Any = None) -> nn.Module:
    """Build the network and load the checkpoint's state dict into it with strict=True.

    A state dict of the bare UNet (keys without the preconditioner's `model.` prefix) is accepted too.
    """
    net = build_network(config, where or path)
    state = strip_prefix(read_state_dict(path, key, EDM_PICKLE_HINT), "module.")
    if state and not any(k.startswith("model.") for k in state):
        state = {f"model.{k}": v for k, v in state.items()}
    load_strict(net, state, path, "the architecture (prior.preset / prior.config) does not match these weights: "
                                  "check the preset's resolution, channels and channel_mult")
    return net.eval().requires_grad_(False)


class EDMPrior(Prior):
    """An EDM / InverseBench preconditioned network (VP, VE or EDM; SongUNet or DhariwalUNet) as the denoiser D(x, sigma).

    `path`: a torch checkpoint (`ema`, `net` or a bare state dict; EDM pickles via
    benchmarks/experiments/convert_edm_pickle.py); `preset` or `config` (json) names the architecture, else the
    json beside the weights. `key` picks the entry of the checkpoint dict; `class_label` conditions a
    class-conditional network on one class (the reference passes zeros when none is given). `compile`:
    torch.compile the network (Prior.compile_network). `backend`: `torch` (eager) or `onnxruntime` (its forward
    calls through an exported ONNX graph on ONNX Runtime's CPU provider, float32; calls that need gradients stay on
    PyTorch: priors/backends.py).
    """

    network_attr = "net"

    def __init__(self, path: str | None = None, preset: str | None = None, config: str | None = None,
                 key: str | None = None, class_label: int | None = None, net: nn.Module | None = None,
                 compile: bool = False, backend: str = "torch") -> None:
        super().__init__()
        check_backend(backend)
        if backend != "torch" and compile:
            raise ValueError(f"prior.compile=true compiles the PyTorch network; it does not combine with "
                             f"prior.backend={backend} (drop one of them)")
        if net is None:
            if path is None:
                raise ValueError("the EDM prior needs prior.path=FILE (a .pt checkpoint with `ema`/`net` or a state "
                                 "dict) and prior.preset=NAME or a config json beside it")
            net = load_network(path, network_config(path, preset, config), key)
        self.net = net
        self.channels = int(net.img_channels)
        self.resolution = (int(net.img_resolution), int(net.img_resolution))
        lo, hi = float(getattr(net, "sigma_min", 0.0)), float(getattr(net, "sigma_max", float("inf")))
        self.sigma_min = lo if lo > 0 else DEFAULT_SIGMA_RANGE[0]
        self.sigma_max = hi if hi < float("inf") else DEFAULT_SIGMA_RANGE[1]
        if class_label is not None and not 0 <= class_label < int(net.label_dim):
            raise ValueError(f"class_label={class_label} but the network has {net.label_dim} classes"
                             + (" (it is unconditional: drop prior.class_label)" if not net.label_dim else ""))
        self.class_label = class_label
        self.source = None if path is None else str(path)
        self.backend = backend
        self._onnx = OnnxNetwork(class_label) if backend == "onnxruntime" else None
        if compile:
            self.compile_network()

    def set_execution(self, precision: str = "fp32", memory_format: str = "contiguous") -> "EDMPrior":
        """Prior.set_execution; the onnxruntime backend runs float32 only."""
        if self._onnx is not None and precision != "fp32":
            raise ValueError(f"prior.backend=onnxruntime runs the network in float32; run.precision={precision} needs "
                             f"prior.backend=torch")
        super().set_execution(precision, memory_format)
        return self

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        s = sigma_like(sigma, x)
        if self._onnx is not None and self._onnx.usable(self.net, x, s):
            return self._onnx(self.net, x, s)
        labels = None
        if self.class_label is not None:
            labels = torch.zeros(x.shape[0], int(self.net.label_dim), device=x.device)
            labels[:, self.class_label] = 1
        return self.network(self.net, x, s, class_labels=labels)
