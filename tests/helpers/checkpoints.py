"""Reference fixtures and tiny checkpoints of the EDM and ADM priors' tests (tests/priors/test_edm.py, test_adm.py):
the reference scripts' seeded fill of a network's weights (so no weights need committing), the golden numbers, and
a tiny guided-diffusion checkpoint as DPS ships one (a bare state dict with its create_model flags beside it)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# create_model flags of test_adm's tiny learned-variance net, for checkpoints with a config json beside them
ADM_TINY_FLAGS = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", learn_sigma=True,
                      attention_resolutions="8", num_heads=2, use_scale_shift_norm=True, resblock_updown=True)


def fill_like_reference(net: torch.nn.Module, seed: int = 1234) -> None:
    """Every state-dict tensor but `resample_filter`, in sorted-name order, from manual_seed(seed): randn / sqrt(fan_in)
    (>= 2-d, fan_in = numel of one output slice) or randn * 0.5 (1-d), as the EDM and ADM reference scripts did."""
    g = torch.Generator().manual_seed(seed)
    sd = net.state_dict()
    for name in sorted(sd):
        if name.endswith("resample_filter"):
            continue
        t = sd[name]
        scale = 1 / math.sqrt(max(1, t[0].numel())) if t.ndim >= 2 else 0.5
        t.copy_(torch.randn(t.shape, generator=g) * scale)


def load_golden(filename: str) -> dict[str, torch.Tensor]:
    """A committed reference fixture (tests/fixtures/*.npz) as tensors by name."""
    with np.load(FIXTURES / filename) as data:
        return {k: torch.from_numpy(data[k]) for k in data.files}


def tiny_checkpoint(tmp_path: Path, form: str = "bare") -> tuple[Path, torch.nn.Module]:
    """The tiny ADM UNet (ADM_TINY_FLAGS), filled like the reference, saved as `form`: bare (DPS), ema or
    inversebench ({'ema': {'model.<key>': ...}}), with its flags json beside it; (path, network)."""
    from priors.adm import build_unet

    net = build_unet(ADM_TINY_FLAGS).eval()
    fill_like_reference(net)
    sd = net.state_dict()
    path = tmp_path / f"{form}.pt"
    obj = {"ema": sd} if form == "ema" else {"ema": {f"model.{k}": v for k, v in sd.items()}, "step": 1} \
        if form == "inversebench" else sd
    torch.save(obj, path)
    path.with_suffix(".json").write_text(json.dumps({**ADM_TINY_FLAGS, "model_path": str(path)}))
    return path, net
