"""A real-anatomy test set of subjects other than Colin27, from MR images that Python packages ship.

Sources (found inside the installed packages; nothing is downloaded):
- `dipy-t1-coronal`: dipy's `data/files/t1_coronal_slice.npy`, a skull-stripped T1-weighted coronal
  brain slice, 256 x 256 (dipy: BSD-3-clause);
- `dipy-b0`: dipy's `data/files/S0_10slices.nii.gz`, ten axial b = 0 (T2-weighted EPI) brain slices,
  128 x 128 at 2 mm (dipy: BSD-3-clause);
- `pydicom-mr-small`: pydicom's test file `MR_small.dcm`, a 64 x 64 MR slice downsized from the NEMA
  WG04 'MR1_UNC' set (pydicom: MIT; its test-files README states no restriction on their use).
Split 'val' (model selection and tuning only; never the test slices) takes other volumes dipy ships:
- `dipy-piesno`: `data/files/test_piesno.nii.gz`, diffusion-weighted axial brain slices, 96 x 96 x 14 at 1 mm;
  slices 2-11;
- `dipy-aniso`: `data/files/aniso_vox.nii.gz`, an axial b = 0 brain volume, 58 x 58 x 24 at 4 x 4 x 5 mm;
  slices 8-19 (dipy does not document its subject; it may be the subject of `dipy-b0` at another resolution).

Each item is the magnitude with zero phase, centre-cropped to a square, resized with antialiasing
to `size` and scaled so the 99th percentile of its magnitude is 1. The 'test' split is a held-out set never
used for training or tuning; there is no 'train' split.
"""
from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from inverse_problems.data.base import SPLITS, DataError, ImageDataset, Item, MissingPackage
from inverse_problems.data.phantoms.datasets import normalise_p99

INSTALL = "pip install dipy pydicom (or pip install 'medtta-bench[realdata]')"
SOURCES: dict[str, str] = {"dipy-t1-coronal": "dipy", "dipy-b0": "dipy", "pydicom-mr-small": "pydicom"}
VAL_SOURCES: dict[str, str] = {"dipy-piesno": "dipy", "dipy-aniso": "dipy"}
VAL_SLICES: dict[str, range] = {"dipy-piesno": range(2, 12), "dipy-aniso": range(8, 20)}


def _package_dir(package: str, source: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise MissingPackage(f"real-brain source {source!r} ships with the package {package!r}, which is not installed; "
                          f"{INSTALL}, or choose sources from {sorted(SOURCES)}")
    return Path(spec.origin).parent


def _dipy_file(name: str, source: str) -> Path:
    path = _package_dir("dipy", source) / "data" / "files" / name
    if not path.is_file():
        raise DataError(f"real-brain source {source!r}: {path} is missing from the installed dipy; reinstall it "
                        f"({INSTALL})", path=path)
    return path


def load_source(source: str) -> list[np.ndarray]:
    """The 2-D magnitude slices (float64, display orientation) of one source."""
    if source == "dipy-t1-coronal":
        return [np.asarray(np.load(_dipy_file("t1_coronal_slice.npy", source)), np.float64)]
    if source == "dipy-b0":
        import nibabel as nib
        vol = np.asarray(nib.load(_dipy_file("S0_10slices.nii.gz", source)).dataobj, np.float64)
        vol = vol.reshape(vol.shape[0], vol.shape[1], -1)
        return [np.rot90(vol[:, :, k]).copy() for k in range(vol.shape[2])]  # anterior up
    if source == "pydicom-mr-small":
        _package_dir("pydicom", source)
        import pydicom
        from pydicom.data import get_testdata_file
        path = get_testdata_file("MR_small.dcm")
        if path is None:
            raise DataError(f"real-brain source {source!r}: pydicom's test file MR_small.dcm is missing; reinstall "
                            f"pydicom ({INSTALL})")
        return [np.asarray(pydicom.dcmread(path).pixel_array, np.float64)]
    if source in VAL_SOURCES:
        import nibabel as nib
        name = {"dipy-piesno": "test_piesno.nii.gz", "dipy-aniso": "aniso_vox.nii.gz"}[source]
        vol = np.asarray(nib.load(_dipy_file(name, source)).dataobj, np.float64)
        return [np.rot90(vol[:, :, k]).copy() for k in VAL_SLICES[source]]  # anterior up
    raise ValueError(f"unknown real-brain source {source!r}; choose from {sorted(SOURCES)} (test) or "
                     f"{sorted(VAL_SOURCES)} (val)")


def to_item_image(slice2d: np.ndarray, size: int) -> Tensor:
    """Magnitude, zero phase, centre crop to square, antialiased resize to size x size, p99 = 1: (2, size, size)."""
    mag = torch.from_numpy(np.abs(slice2d)).float()
    h, w = mag.shape
    n = min(h, w)
    top, left = (h - n) // 2, (w - n) // 2
    sq = mag[top:top + n, left:left + n]
    small = F.interpolate(sq[None, None], size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)[0, 0].clamp_min(0)
    return normalise_p99(torch.stack([small, torch.zeros_like(small)]))


class RealBrainDataset(ImageDataset):
    """Real MR slices shipped by dipy and pydicom (see the module docstring): 'test' (12 slices of other subjects)
    and 'val' (22 slices of two other dipy volumes, for model selection and tuning); no 'train' split."""

    def __init__(self, split: str = "test", size: int = 64, sources: tuple[str, ...] | list[str] | None = None,
                 length: int | None = None) -> None:
        if split not in ("test", "val"):
            if split not in SPLITS:
                raise ValueError(f"unknown split {split!r}; real-brain has splits 'val' and 'test'")
            raise ValueError(f"real-brain has no {split!r} split: it is a held-out set of real slices, never used "
                             "for training; train on anatomy-brain-* or phantom-brain-* (their 'train' split), select "
                             "and tune on real-brain's 'val' split and test on its 'test' split")
        known = SOURCES if split == "test" else VAL_SOURCES
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"size must be an int >= 8, got {size!r}")
        self.split = split
        self.size = (size, size)
        self.channels = 2
        self.sources = tuple(known) if sources is None else tuple(sources)
        unknown = [s for s in self.sources if s not in known]
        if unknown or not self.sources:
            raise ValueError(f"unknown real-brain sources {unknown} for split {split!r}; choose a non-empty subset of "
                             f"{sorted(known)}")
        missing = sorted({known[s] for s in self.sources if importlib.util.find_spec(known[s]) is None})
        if missing:
            raise MissingPackage(f"real-brain needs {' and '.join(missing)} (its images ship inside the package); "
                              f"{INSTALL}, or pass sources= a subset of {sorted(known)} whose package is installed")
        per_source = [[(s, k, a) for k, a in enumerate(load_source(s))] for s in self.sources]
        # test: source by source; val: the sources interleaved, so the first few items span both volumes
        self.slices = ([x for group in per_source for x in group] if split == "test" else
                       [x for group in itertools.zip_longest(*per_source) for x in group if x is not None])
        self.length = len(self.slices) if length is None else min(int(length), len(self.slices))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Item:
        self.check_index(i)
        source, k, array = self.slices[i]
        return {"id": f"real-{source}-{k:02d}", "image": to_item_image(array, self.size[0])}
