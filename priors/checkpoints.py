"""Reading the field's checkpoint files: torch dicts with `ema` / `net` / `model` / `state_dict`, or a bare state dict.

Files are read with `torch.load(weights_only=True)`, so no code inside them runs; a pickle that holds
modules (an EDM `network-snapshot-*.pkl`) is refused with the converter that turns it into a state dict.
Loading is strict: a key set that does not match the architecture is an error naming the missing,
unexpected and wrongly shaped keys.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from priors.diffusers_prior import check_finite_weights

CONTAINER_KEYS = ("ema", "net", "model", "state_dict")
PICKLE_HINT = ("convert it once with `python benchmarks/experiments/convert_edm_pickle.py --edm-src EDM_REPO {path} "
               "OUT.pt` (it unpickles with your EDM source on the path and writes a state dict and OUT.json)")


def read_state_dict(path: str | os.PathLike, key: str | None = None) -> dict[str, Tensor]:
    """The state dict in a checkpoint file: `key` if given, else the first of ema, net, model, state_dict
    that the dict holds, else the dict itself when all its values are tensors."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist; pass prior.path=FILE (a .pt/.pth torch checkpoint)")
    try:
        with warnings.catch_warnings():  # the weights-only reader notes any pickle protocol it was not written with
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError (zip), EOFError ...
        if p.suffix == ".pkl" or "persistence" in str(exc) or "dnnlib" in str(exc) or "GLOBAL" in str(exc):
            raise ValueError(f"{p}: holds pickled modules, not tensors ({type(exc).__name__}); "
                             + PICKLE_HINT.format(path=p)) from exc
        raise ValueError(f"{p}: cannot read the checkpoint ({type(exc).__name__}: {exc}); the file is corrupt or "
                         f"not a torch checkpoint: re-copy it") from exc
    if not isinstance(obj, Mapping):
        raise ValueError(f"{p}: holds a {type(obj).__name__}, not a dict of tensors; save `model.state_dict()`")
    if key is not None:
        if key not in obj:
            raise KeyError(f"{p}: has no entry {key!r}; its entries are {sorted(map(str, obj))[:12]}")
        obj = obj[key]
    else:
        for name in CONTAINER_KEYS:
            if isinstance(obj.get(name), Mapping):
                obj = obj[name]
                break
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{p}: entries {bad[:5]} are not tensors; the checkpoint is a training snapshot without a "
                         f"state dict under any of {CONTAINER_KEYS}: pass prior.key=NAME naming the entry that holds it")
    return {str(k): v for k, v in obj.items()}


def strip_prefix(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Drop `prefix` from every key when all keys carry it (DataParallel's `module.`)."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def key_mismatch(module: nn.Module, state: Mapping[str, Tensor]) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, wrong shape 'key: file (a, b) vs model (c, d)') of a state dict against a module."""
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {want[k]}" for k in sorted(set(want) & set(state))
              if tuple(state[k].shape) != want[k]]
    return missing, unexpected, shapes


def load_strict(module: nn.Module, state: Mapping[str, Tensor], source: Any, hint: str) -> None:
    """module.load_state_dict(state, strict=True), or an error naming what does not match and `hint`."""
    missing, unexpected, shapes = key_mismatch(module, state)
    if missing or unexpected or shapes:
        def few(xs: list[str]) -> str:
            return ", ".join(xs[:6]) + (f" (+{len(xs) - 6} more)" if len(xs) > 6 else "")

        parts = [f"{len(missing)} missing key(s): {few(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected key(s): {few(unexpected)}" if unexpected else "",
                 f"{len(shapes)} wrongly shaped: {few(shapes)}" if shapes else ""]
        raise ValueError(f"{source}: the weights do not fit the architecture ({'; '.join(p for p in parts if p)}); "
                         f"{hint}")
    module.load_state_dict(state, strict=True)
    check_finite_weights(module, source)


def config_beside(path: str | os.PathLike) -> Path | None:
    """`<stem>.json` or `config.json` next to a weights file, if one exists."""
    p = Path(path).expanduser()
    for cand in (p.with_suffix(".json"), p.parent / "config.json"):
        if cand.is_file():
            return cand
    return None


def read_json_config(source: str | os.PathLike) -> dict[str, Any]:
    """A JSON object of constructor arguments (its `source` entry, a provenance note, dropped)."""
    source = Path(source).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"network config {source} does not exist")
    try:
        cfg = json.loads(source.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        raise ValueError(f"{source}: must hold a JSON object of constructor arguments, got {type(cfg).__name__}")
    return {k: v for k, v in cfg.items() if k != "source"}
