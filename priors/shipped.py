"""The prior that ships with the project: `phantom-brain-64`.

A small diffusers UNet2DModel (v-prediction, DDPM VP-linear schedule) trained by `bench train-prior`
on 64x64 complex (2-channel) T2-weighted brain phantoms (dataset `phantom-brain-t2`), stored as
package data in priors/weights/phantom-brain-64 (safetensors). metadata.json there records the exact
training command, wall time, parameter count and final loss.
"""
from __future__ import annotations

from pathlib import Path

import torch

from priors.diffusers_prior import DiffusersPrior

WEIGHTS = Path(__file__).resolve().parent / "weights" / "phantom-brain-64"
TRAIN_COMMAND = ("bench train-prior --dataset phantom-brain-t2 --size 64 --steps 2400 --batch-size 16 --lr 5e-4 "
                 "--ema 0.995 --model compact --prediction v_prediction --n-images 512 --seed 0 --threads 1 "
                 "--out {path}")


def phantom_brain_64(device: str | None = None, path: str | None = None, compile: bool = False) -> DiffusersPrior:
    """Shipped diffusion prior: 64x64 complex T2w brain phantoms (diffusers UNet, v-prediction); `compile`:
    torch.compile its UNet."""
    where = Path(path) if path else WEIGHTS
    if not (where / "unet" / "config.json").exists() or not (where / "scheduler" / "scheduler_config.json").exists():
        raise FileNotFoundError(f"the shipped prior's weights are missing at {where} (need unet/ and scheduler/); "
                                f"recreate them with `{TRAIN_COMMAND.format(path=where)}`")
    prior = DiffusersPrior(path=str(where), compile=compile)
    if device is not None:
        prior = prior.to(torch.device(device))
    return prior.eval()
