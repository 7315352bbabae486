"""`4dlung`: respiratory-gated 4-D CT (the TCIA 4D-Lung collection, Hugo et al., Med. Phys. 44:762 (2017)) as
2-D+t sequences over the breathing phases, for the `interp4d` problem.

Layout: one folder per patient under `root`, holding one NIfTI volume per breathing phase (UVI-Net's preprocessed
files, or any conversion), named with the phase's number last (`phase_0.nii.gz`, `ct_50.nii.gz`: sorted by it).
The frames are the phases `first`..`last` of that order (UVI-Net and TTT4MII: 0 to 5, end-inhale to end-exhale, T =
6). An item is one slice along `axis` (1: coronal for volumes stored (x, y, z) in LPS/RAS order) of one patient:
values windowed to `hu_window` and mapped to [0, 1] (for files already on [0, 1], hu_window=[0, 1]), centre-cropped
and resized to `size`. Patients are split by name order: the last `test_patients` are test, the `val_patients`
before them val, the rest train. A patient folder without NIfTI files but with DICOM series (the TCIA layout: one CT
series per phase, at any depth) is read through the optional pydicom (inverse_problems.data.readers.dicom_phases).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np
import torch

from inverse_problems.data.base import READ_ERRORS, DataError, ImageDataset
from inverse_problems.data.phantoms.sequences import SequenceItem
from inverse_problems.data.readers.dicom_phases import dicom_files, phase_series, read_volume, series_shape
from inverse_problems.data.readers.fastmri import parse_slices
from inverse_problems.data.readers.nifti import resize_square


def nifti_files(folder: Path) -> list[Path]:
    return [q for q in folder.iterdir() if q.name.endswith((".nii", ".nii.gz"))]


def phase_number(path: Path) -> int:
    """The last integer in a file's name without its extension (`phase_5.nii.gz` -> 5)."""
    found = re.findall(r"\d+", path.name.removesuffix(".gz").removesuffix(".nii"))
    if not found:
        raise DataError(f"{path}: no phase number in the file's name (expected e.g. phase_0.nii.gz)", path)
    return int(found[-1])


class Lung4DDataset(ImageDataset):
    """4-D CT patients (a folder of phase volumes each), one item per (patient, slice): (T, size, size) on [0, 1]."""

    def __init__(self, root: str | None = None, split: str = "test", size: int = 128, first: int = 0, last: int = 5,
                 axis: int = 1, slices: str | int = "middle", hu_window: Sequence[float] = (-1000.0, 500.0),
                 test_patients: int = 2, val_patients: int = 0) -> None:
        self.split = self.check_split(split)
        if root is None or not Path(root).is_dir():
            raise FileNotFoundError(f"4dlung: dataset.root={root!r} is not a folder; point it at a folder of patient "
                                    f"folders, each holding one NIfTI volume per breathing phase")
        if not 0 <= first < last or axis not in (0, 1, 2):
            raise ValueError(f"need 0 <= first < last and axis in 0, 1, 2; got first={first}, last={last}, axis={axis}")
        lo, hi = (float(v) for v in hu_window)
        if not hi > lo:
            raise ValueError(f"hu_window must be [lo, hi] with lo < hi, got {tuple(hu_window)}")
        self.hu_window, self.axis = (lo, hi), axis
        self.frames = last - first + 1
        self.size, self.channels = (size, size), self.frames
        folders = sorted(p for p in Path(root).iterdir() if p.is_dir() and (nifti_files(p) or dicom_files(p)))
        n_test, n_val = min(test_patients, len(folders)), val_patients
        cut_test, cut_val = len(folders) - n_test, max(0, len(folders) - n_test - n_val)
        chosen = {"train": folders[:cut_val], "val": folders[cut_val:cut_test], "test": folders[cut_test:]}[split]
        if not chosen:
            raise FileNotFoundError(f"4dlung: no patient folders of the {split} split under {root!r} ({len(folders)} "
                                    f"found; test_patients={test_patients}, val_patients={val_patients})")
        # (name, the phases first..last: a NIfTI file or a DICOM series' files each)
        self.patients: list[tuple[str, list[Path] | list[list[Path]]]] = []
        self.index: list[tuple[int, int]] = []
        self._cached: tuple[int, list[np.ndarray]] | None = None  # the last DICOM patient's volumes
        for folder in chosen:
            nifti = nifti_files(folder)
            phases = sorted(nifti, key=phase_number) if nifti else phase_series(folder)
            if len(phases) <= last:
                raise DataError(f"{folder}: {len(phases)} phase volumes, but phases {first}..{last} are asked "
                                f"(dataset.first/last)", folder)
            phases = phases[first:last + 1]
            try:
                depth = int(nib.load(str(phases[0])).shape[axis]) if nifti else series_shape(phases[0])[axis]
            except (*READ_ERRORS, ValueError, IndexError) as exc:
                raise DataError(f"{folder}: cannot read its first phase ({type(exc).__name__}: {exc})", folder) from exc
            self.index += [(len(self.patients), s) for s in parse_slices(slices, depth)]
            self.patients.append((folder.name, phases))

    def _slices(self, j: int, s: int, item_id: str) -> list[torch.Tensor]:
        """Slice s along the axis of each phase of patient j."""
        name, phases = self.patients[j]
        sl: list[slice | int] = [slice(None)] * 3
        sl[self.axis] = s
        if phases and isinstance(phases[0], list):  # DICOM series: whole volumes, the last patient's kept
            if self._cached is None or self._cached[0] != j:
                self._cached = (j, [read_volume(files) for files in phases])  # type: ignore[arg-type]
            return [torch.from_numpy(v[tuple(sl)]).float() for v in self._cached[1]]
        frames = []
        for path in phases:
            try:
                proxy = nib.load(str(path)).dataobj
                frames.append(torch.from_numpy(np.asarray(proxy[tuple(sl)], dtype=np.float64)).float())
            except (*READ_ERRORS, ValueError, IndexError) as exc:
                raise DataError(f"{path}: slice {s} along axis {self.axis} cannot be read ({type(exc).__name__}: "
                                f"{exc})", path, item_id) from exc
        return frames

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> SequenceItem:
        self.check_index(i)
        j, s = self.index[i]
        name = self.patients[j][0]
        item_id = f"{name}-a{self.axis}-s{s:03d}"
        frames = self._slices(j, s, item_id)
        if len({tuple(f.shape) for f in frames}) != 1:
            raise DataError(f"{name}: the phase volumes' slices differ in shape ({[tuple(f.shape) for f in frames]})",
                            None, item_id)
        lo, hi = self.hu_window
        seq = torch.stack([resize_square(((f - lo) / (hi - lo)).clamp(0, 1), self.size[0]) for f in frames])
        return {"id": item_id, "image": seq.clamp(0, 1), "patient": name, "slice": s, "volume": name}
