"""The shipped prior `eht-rings-64`: a tiny EDM network trained by `bench train-prior` on the crescent/m-ring family
of `synthetic-eht` (64x64, peak-1 units), in medtta_vlbi/weights/eht-rings-64 (model.pt, model.json,
metadata.json with the exact command, steps and wall time)."""
from __future__ import annotations

from pathlib import Path

from priors import EDMPrior, shipped_edm

WEIGHTS = Path(__file__).resolve().parent / "weights" / "eht-rings-64"
TRAIN_COMMAND = ("bench train-prior --recipe edm --model tiny --dataset synthetic-eht --size 64 --steps 1400 "
                 "--batch-size 8 --lr 1e-3 --warmup 100 --ema 0.995 --n-images 2048 --seed 0 --threads 1 --cpu "
                 "--samples 8 --sample-steps 18 --save-every 400 --out {path} morphology=rings, stopped after 400 steps and "
                 "finished with: bench train-prior --resume --out {path} --steps 400 --threads 1 --cpu --samples 8 --sample-steps 18")


def eht_rings_64(device: str | None = None, path: str | None = None, compile: bool = False) -> EDMPrior:
    """Shipped diffusion prior of the VLBI plugin: 64x64 crescents and m-rings (EDM SongUNet, tiny); `path`: another
    weights folder with model.pt and model.json."""
    return shipped_edm(Path(path) if path else WEIGHTS, TRAIN_COMMAND, device, compile)
