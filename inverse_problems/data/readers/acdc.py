"""`acdc`: the ACDC cardiac cine MRI (Bernard et al., TMI 37:2514 (2018)) as 2-D+t sequences from end-diastole to
end-systole, for the `interp4d` problem.

Layout as released: `patientNNN/Info.cfg` (lines `ED: 1`, `ES: 12`, 1-based frame numbers) beside
`patientNNN_4d.nii.gz` (X, Y, Z, T), anywhere under `root`. An item is one short-axis slice z of one patient: T =
`frames` frames picked evenly between ED and ES (frame numbers ED + k (ES - ED) / (T - 1), halves up; offsets from
ED recorded as the item's `times`, so an interpolator sees the true spacing), each centre-cropped, resized to
`size` and min-max normalised per frame (UVI-Net's preprocessing, Kim et al., CVPR 2024). Splits: `uvinet` (default)
is UVI-Net's, patients 1-90 train and 91-100 test, with 81-90 as val (a part of train, for tuning); `folders` is
the release's own, `training/` and `testing/` (no val). The slices of a patient form one volume (`patient`).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from inverse_problems.data.base import READ_ERRORS, DataError, ImageDataset
from inverse_problems.data.phantoms.sequences import SequenceItem
from inverse_problems.data.readers.fastmri import parse_slices
from inverse_problems.data.readers.nifti import resize_square

SPLIT_MODES = ("uvinet", "folders")
UVINET = {"train": range(1, 91), "val": range(81, 91), "test": range(91, 101)}


def read_info(path: Path) -> dict[str, str]:
    """`key: value` lines of an ACDC Info.cfg."""
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def pick_frames(ed: int, es: int, frames: int) -> list[int]:
    """T distinct 0-based frame indices evenly from ED to ES (1-based in Info.cfg), both ends included."""
    if es - ed + 1 < frames:
        raise ValueError(f"ED..ES holds {es - ed + 1} frames, fewer than the {frames} asked")
    return [math.floor(ed - 1 + k * (es - ed) / (frames - 1) + 0.5) for k in range(frames)]  # halves round up


def minmax_frames(x: torch.Tensor) -> torch.Tensor:
    """(T, H, W) -> each frame mapped by its own min and max to [0, 1]."""
    lo = x.flatten(1).min(1).values.view(-1, 1, 1)
    hi = x.flatten(1).max(1).values.view(-1, 1, 1)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


class ACDCDataset(ImageDataset):
    """ACDC cines ED -> ES, one item per (patient, slice): (T, size, size) on [0, 1] (see the module)."""

    def __init__(self, root: str | None = None, split: str = "test", size: int = 128, frames: int = 12,
                 slices: str | int = "all", split_mode: str = "uvinet") -> None:
        self.split = self.check_split(split)
        if split_mode not in SPLIT_MODES:
            raise ValueError(f"unknown split_mode {split_mode!r}; choose one of {', '.join(SPLIT_MODES)}")
        if root is None or not Path(root).is_dir():
            raise FileNotFoundError(f"acdc: dataset.root={root!r} is not a folder; point it at the ACDC release (the "
                                    f"folder holding patientNNN/Info.cfg and patientNNN_4d.nii.gz)")
        if frames < 2:
            raise ValueError(f"frames must be >= 2, got {frames}")
        self.size, self.channels, self.frames = (size, size), frames, frames
        patients = []
        for info in sorted(Path(root).rglob("Info.cfg")):
            m = re.fullmatch(r"patient(\d+)", info.parent.name)
            if m is None:
                continue
            n = int(m.group(1))
            if split_mode == "uvinet" and n not in UVINET[split]:
                continue
            if split_mode == "folders":
                if split == "val":
                    raise ValueError("split_mode=folders has no val split (the release has training/ and testing/)")
                if ("training" if split == "train" else "testing") not in info.parts:
                    continue
            patients.append(info.parent)
        if not patients:
            raise FileNotFoundError(f"acdc: no patientNNN/Info.cfg of the {split} split ({split_mode}) under {root!r}")
        self.patients = patients
        self.index: list[tuple[int, int]] = []
        for j, p in enumerate(patients):
            try:
                depth = int(nib.load(str(self._cine(p))).shape[2])
            except (*READ_ERRORS, DataError, ValueError, IndexError) as exc:
                raise DataError(f"{p}: cannot read its cine ({type(exc).__name__}: {exc})", p) from exc
            self.index += [(j, z) for z in parse_slices(slices, depth)]

    @staticmethod
    def _cine(patient: Path) -> Path:
        path = patient / f"{patient.name}_4d.nii.gz"
        if not path.exists():
            alt = patient / f"{patient.name}_4d.nii"
            if not alt.exists():
                raise DataError(f"{patient}: no {patient.name}_4d.nii.gz beside Info.cfg", patient)
            path = alt
        return path

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> SequenceItem:
        self.check_index(i)
        j, z = self.index[i]
        patient = self.patients[j]
        item_id = f"{patient.name}-s{z:02d}"
        info = read_info(patient / "Info.cfg")
        try:
            ed, es = int(info["ED"]), int(info["ES"])
            picked = pick_frames(ed, es, self.frames)
        except (KeyError, ValueError) as exc:
            raise DataError(f"{patient / 'Info.cfg'}: cannot pick {self.frames} frames from ED to ES ({exc}); choose "
                            f"fewer (dataset.frames=...)", patient, item_id) from exc
        path = self._cine(patient)
        try:
            data = np.asarray(nib.load(str(path)).dataobj[:, :, z, :], dtype=np.float64)
        except (*READ_ERRORS, ValueError) as exc:
            raise DataError(f"{path}: slice {z} cannot be read ({type(exc).__name__}: {exc})", path, item_id) from exc
        if max(picked) >= data.shape[-1]:
            raise DataError(f"{path}: Info.cfg's ES = {es} is beyond the cine's {data.shape[-1]} frames", path,
                            item_id)
        seq = torch.stack([resize_square(torch.from_numpy(data[..., t]).float(), self.size[0]) for t in picked])
        return {"id": item_id, "image": minmax_frames(seq).float(), "patient": patient.name, "slice": z,
                "volume": patient.name, "times": torch.tensor([t - picked[0] for t in picked], dtype=torch.float32)}
