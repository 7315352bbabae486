"""A fingerprint of a prior's (or any module's) weights: recorded with each run so the leaderboard never merges two
checkpoints, and the key of a network's exported ONNX graph (priors/backends.py).

    prior_fingerprint(prior) = "sha256:" + sha256( class path,
                                                   for each parameter and buffer, by name: name, dtype, shape, bytes,
                                                   the prior's plain attributes (numbers, strings, tuples) )

Parameters and buffers (persistent or not: a diffusers prior's `alphas_cumprod` changes every number) are
hashed after moving them to the CPU, so the fingerprint does not depend on the device. A prior without any
tensor (an analytic prior with closed-form options) is fingerprinted by its class and attributes alone.
Attributes that only say where the weights came from (`source`, `path`) or which runtime computes the same
outputs (`backend`) are left out: the same weights copied elsewhere keep their fingerprint.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import nn

IGNORED_ATTRS = frozenset({"source", "path", "training", "backend"})  # where the weights came from; train/eval mode;
# the runtime that computes the same outputs (priors/backends.py)
SCALAR = (bool, int, float, str, type(None))


def _plain(value: Any) -> bool:
    if isinstance(value, SCALAR):
        return True
    return isinstance(value, (tuple, list)) and all(_plain(v) for v in value)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def prior_fingerprint(prior: nn.Module) -> str:
    """sha256 over the prior's class, tensors (name, dtype, shape, bytes) and plain attributes; see the module doc."""
    h = hashlib.sha256()
    cls = type(prior)
    h.update(f"class {cls.__module__}.{cls.__qualname__}\n".encode())
    tensors = dict(prior.named_parameters())
    tensors.update({k: v for k, v in prior.named_buffers() if k not in tensors})
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"tensor {name} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(_tensor_bytes(t))
    attrs = {}
    for mod_name, mod in prior.named_modules():
        for k, v in vars(mod).items():
            if not k.startswith("_") and k not in IGNORED_ATTRS and _plain(v):
                attrs[f"{mod_name}.{k}" if mod_name else k] = v
    h.update(json.dumps(attrs, sort_keys=True, default=str).encode())
    return "sha256:" + h.hexdigest()
