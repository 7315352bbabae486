"""Reading the field's checkpoint files: torch dicts with `ema` / `net` / `model` / `state_dict`, or a bare state dict.

Files are read with `torch.load(weights_only=True)`, so no code inside them runs; a pickle that holds
modules (an EDM `network-snapshot-*.pkl`, a whole pickled model) is refused, and the message asks for a state
dict: no message of the suite advises unpickling a file (that runs whatever code the file holds).
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
PICKLE_HINT = ("the suite reads tensors only and never unpickles a file (unpickling runs whatever code the file "
               "holds). Ask the file's provider for a state dict, or make one where the model was trained: "
               "torch.save({'ema': model.state_dict()}, 'OUT.pt'), with the constructor arguments in OUT.json")
# EDM's own snapshots: the converter exists for a file whose origin the user has verified; it refuses to unpickle
# unless told so explicitly (its --trust-pickle flag), so naming it here recommends nothing that runs code
EDM_PICKLE_HINT = (PICKLE_HINT + ". For an official EDM snapshot whose origin you have verified (its sha256 against "
                   "the publisher's), benchmarks/experiments/convert_edm_pickle.py --help explains a one-time "
                   "conversion; it unpickles nothing unless you state that you trust the file")


def read_state_dict(path: str | os.PathLike, key: str | None = None, pickle_hint: str = PICKLE_HINT
                    ) -> dict[str, Tensor]:
    """The state dict in a checkpoint file: `key` if given, else the first of ema, net, model, state_dict
    that the dict holds, else the dict itself when all its values are tensors. A file of pickled objects is
    refused with `pickle_hint` (which must not advise unpickling it)."""
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
                             + pickle_hint) from exc
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


def check_architecture(cfg: Mapping[str, Any], where: Any, positive: tuple[str, ...] = (),
                       non_negative: tuple[str, ...] = (), positive_lists: tuple[str, ...] = ()) -> None:
    """Refuse architecture fields that cannot describe a network (a resolution of -64, zero channels), naming the
    field and the file, before a network is built from them: such a network would only ever be reported as a
    checkpoint with hundreds of missing keys."""
    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for key in positive:
        if key in cfg and not (whole(cfg[key]) and cfg[key] >= 1):
            raise ValueError(f"{where}: {key} is {cfg[key]!r}; it must be a whole number >= 1 (fix the config json, "
                             f"or pass the matching prior.preset)")
    for key in non_negative:
        if key in cfg and cfg[key] is not None and not (whole(cfg[key]) and cfg[key] >= 0):
            raise ValueError(f"{where}: {key} is {cfg[key]!r}; it must be a whole number >= 0 (fix the config json)")
    for key in positive_lists:
        v = cfg.get(key)
        if v is not None and not (isinstance(v, (list, tuple)) and v and all(whole(x) and x >= 1 for x in v)):
            raise ValueError(f"{where}: {key} is {v!r}; it must be a non-empty list of whole numbers >= 1 (fix the "
                             f"config json)")


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
