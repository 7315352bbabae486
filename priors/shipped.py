"""The priors that ship with the project: `brain-64` (the MRI default), `knee-64` (the knee source-domain prior),
`phantom-brain-64` (the former MRI default), `phantom-dmi-32` (the MRSI default) and `cardiac-seq-32` (the `interp4d`
default).

- `brain-64`: an EDM-preconditioned SongUNet (Karras et al., NeurIPS 2022: log-normal sigma sampling,
  loss weight (sigma^2 + sigma_data^2)/(sigma sigma_data)^2, EMA) trained by `bench train-prior --recipe edm`
  on 64x64 complex anatomical brain phantoms of mixed contrast (dataset `anatomy-brain-mix`, derived from
  Colin27) for 10000 steps, then fine-tuned (`--init`) 5000 steps on the same mixture with 30 % of the items
  re-acquired on a coarser matrix (`lowres=0.3`), stored in priors/weights/brain-64 (model.pt: EMA weights;
  model.json: architecture).
- `knee-64`: brain-64's network and recipe trained on 64x64 complex procedural knee PD phantoms (dataset
  `phantom-knee-pd`), in priors/weights/knee-64: the diffusion solvers' source-domain prior under D2SA's knee PD ->
  brain T2 shift (configs/sources.yaml), as the knee-PD networks are the end-to-end rows'.
- `phantom-brain-64`: a small diffusers UNet2DModel (v-prediction, DDPM VP-linear schedule) trained on
  procedural T2-weighted brain phantoms (dataset `phantom-brain-t2`), in priors/weights/phantom-brain-64.
- `phantom-dmi-32`: a small EDM network (DDPM++ SongUNet) trained by `bench train-prior --recipe edm` on 32x32
  4-channel metabolite maps (water, Glc, Glx, Lac) of the dynamic deuterium phantoms (dataset `phantom-dmi`), in
  priors/weights/phantom-dmi-32 (model.pt + model.json).
- `cardiac-seq-32`: a small EDM network (DDPM++ SongUNet, 0.31 M parameters) trained by `bench train-prior --recipe edm`
  on 32x32 cardiac short-axis phantom sequences with their 12 frames as channels (dataset `phantom-cardiac-4d`), in
  priors/weights/cardiac-seq-32: the `interp4d` default (temporal inpainting by the diffusion solvers).
metadata.json beside each records the exact training command(s), wall time, parameter count and final loss.
"""
from __future__ import annotations

from pathlib import Path

import torch

from priors.diffusers_prior import DiffusersPrior
from priors.domain import SourceDomain
from priors.edm import EDMPrior

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
    prior.source_domain = SourceDomain.read(where / "metadata.json")
    if device is not None:
        prior = prior.to(torch.device(device))
    return prior.eval()


BRAIN_64 = Path(__file__).resolve().parent / "weights" / "brain-64"
BRAIN_64_COMMAND = ("bench train-prior --recipe edm --arch songunet --model small --base-channels 16 --channels-mult 1,2,2,4 "
                    "--dataset anatomy-brain-mix --size 64 --batch-size 16 --lr 5e-4 --warmup 200 --ema 0.999 "
                    "--n-images 5000 --seed 0 --threads 1 'contrasts=[t2,t2,t1,pd,flair]' procedural=0.25 "
                    "sequence_spread=0.2 --steps 10000 --out BASE, then the same with --init BASE --seed 1 lowres=0.3 "
                    "--steps 5000 --out {path} (see {path}/metadata.json for the legs run)")


KNEE_64 = Path(__file__).resolve().parent / "weights" / "knee-64"
KNEE_64_COMMAND = ("bench train-prior --recipe edm --arch songunet --model small --base-channels 16 --channels-mult 1,2,2,4 "
                   "--dataset phantom-knee-pd --size 64 --batch-size 16 --lr 5e-4 --warmup 200 --ema 0.999 "
                   "--n-images 5000 --scale-aug 0.25 --seed 0 --threads 1 --steps N --out {path} (see "
                   "{path}/metadata.json for the legs run)")


def knee_64(device: str | None = None, path: str | None = None, compile: bool = False,
            backend: str = "torch") -> EDMPrior:
    """Shipped knee prior: 64x64 complex knee PD phantoms (EDM SongUNet, brain-64's recipe), the source-domain prior
    of D2SA's knee -> brain shift; `compile`: torch.compile its network; `backend`: torch | onnxruntime (EDMPrior)."""
    return shipped_edm(Path(path) if path else KNEE_64, KNEE_64_COMMAND + " and copy its model.pt, model.json and "
                       "metadata.json there", device, compile, backend)


def shipped_edm(where: Path, command: str, device: str | None, compile: bool, backend: str = "torch") -> EDMPrior:
    """An EDM network shipped as where/model.pt + model.json with its training domain from where/metadata.json;
    missing files name the command that makes them (`{path}` in it: where). Part of the plugin API (re-exported by
    the package `priors`) for plugins that ship weights."""
    if not (where / "model.pt").exists() or not (where / "model.json").exists():
        raise FileNotFoundError(f"the shipped prior's weights are missing at {where} (need model.pt and model.json); "
                                f"recreate them with `{command.format(path=where)}`")
    prior = EDMPrior(path=str(where / "model.pt"), compile=compile, backend=backend)
    prior.source_domain = SourceDomain.read(where / "metadata.json")
    if device is not None:
        prior = prior.to(torch.device(device))
    return prior.eval()


def brain_64(device: str | None = None, path: str | None = None, compile: bool = False,
             backend: str = "torch") -> EDMPrior:
    """Shipped default prior: 64x64 complex anatomical brain phantoms of mixed contrast (EDM SongUNet); `compile`:
    torch.compile its network; `backend`: torch | onnxruntime (EDMPrior)."""
    return shipped_edm(Path(path) if path else BRAIN_64, BRAIN_64_COMMAND + " and copy its model.pt, model.json and "
                       "metadata.json there", device, compile, backend)


DMI_WEIGHTS = Path(__file__).resolve().parent / "weights" / "phantom-dmi-32"
DMI_TRAIN_COMMAND = ("bench train-prior --recipe edm --model compact --dataset phantom-dmi --size 32 --steps 1000 "
                     "--batch-size 16 --lr 5e-4 --ema 0.995 --n-images 2048 --seed 0 --threads 1 --cpu --out {path}")


def phantom_dmi_32(device: str | None = None, path: str | None = None, compile: bool = False,
                   backend: str = "torch") -> EDMPrior:
    """Shipped diffusion prior: 32x32 4-channel DMI metabolite maps (water, Glc, Glx, Lac; EDM DDPM++ network);
    `compile`: torch.compile its network; `backend`: torch | onnxruntime (EDMPrior)."""
    return shipped_edm(Path(path) if path else DMI_WEIGHTS, DMI_TRAIN_COMMAND, device, compile, backend)


CARDIAC_SEQ = Path(__file__).resolve().parent / "weights" / "cardiac-seq-32"
CARDIAC_SEQ_COMMAND = ("bench train-prior --recipe edm --model tiny --base-channels 16 --channels-mult 1,2,2 "
                       "--dataset phantom-cardiac-4d --size 32 --steps 8000 --batch-size 16 --lr 5e-4 --warmup 100 "
                       "--ema 0.995 --n-images 256 --scale-aug 0.5 --threads 1 --cpu --seed 0 --save-every 500 "
                       "--out {path} size=32 frames=12")


def cardiac_seq_32(device: str | None = None, path: str | None = None, compile: bool = False,
                   backend: str = "torch") -> EDMPrior:
    """Shipped sequence prior: 32x32 cardiac short-axis phantom sequences, 12 frames as channels (EDM SongUNet);
    `compile`: torch.compile its network; `backend`: torch | onnxruntime (EDMPrior)."""
    return shipped_edm(Path(path) if path else CARDIAC_SEQ, CARDIAC_SEQ_COMMAND, device, compile, backend)
