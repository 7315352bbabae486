"""NIfTI volumes (.nii, .nii.gz) as 2-D slices: magnitude images with zero phase, resized to size.

Each volume is a 3-D array (a 4-D one with a singleton 4th axis is accepted); slices are taken along
`axis`, centre-cropped to a square, resized to size x size with antialiased bilinear interpolation,
stored as (2, size, size) = (|values|, 0) and scaled so the 99th percentile of the magnitude is 1 (as
the phantoms). Headers are read when the dataset is built; voxel data only when an item is read.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from inverse_problems.datasets import ImageDataset
from inverse_problems.fastmri import center_crop, parse_slices, split_folder
from inverse_problems.phantom_datasets import normalise_p99


def _volume_shape(path: Path) -> tuple[int, int, int]:
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise ValueError(f"{path}: cannot read as NIfTI ({exc})") from exc
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ValueError(f"{path}: volume has shape {shape} (rank {len(shape)}); expected a 3-D volume (X, Y, Z) "
                         f"(or 4-D with one time point)")
    return shape  # type: ignore[return-value]


def resize_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """(H, W) real -> (size, size): centre-crop to a square, then antialiased bilinear resize."""
    m = min(image.shape)
    sq = center_crop(image, (m, m))
    if m == size:
        return sq.clone()
    return F.interpolate(sq[None, None], size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)[0, 0]


class NiftiDataset(ImageDataset):
    """Folder of NIfTI volumes: 2-D slices along an axis, magnitude with zero phase, resized to size."""

    def __init__(self, root: str | None = None, split: str = "test", size: int = 64, axis: int = 2,
                 slices: str | int = "middle") -> None:
        self.split = self.check_split(split)
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2 (the slicing axis of a 3-D volume), got {axis!r}")
        self.folder = split_folder(root, split, prefixes=("",), kind="nifti")
        paths = sorted(p for p in self.folder.iterdir() if p.name.endswith((".nii", ".nii.gz")))
        if not paths:
            raise FileNotFoundError(f"nifti: no .nii or .nii.gz files in {str(self.folder)!r}; point dataset.root at "
                                    f"a folder of NIfTI volumes")
        self.paths = paths
        self.axis = axis
        self.index = [(j, s) for j, p in enumerate(paths) for s in parse_slices(slices, _volume_shape(p)[axis])]
        self.size = (size, size)
        self.channels = 2

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, object]:
        self.check_index(i)
        j, s = self.index[i]
        path = self.paths[j]
        proxy = nib.load(str(path)).dataobj
        sl = [slice(None)] * len(proxy.shape)
        sl[self.axis] = s
        data = np.asarray(proxy[tuple(sl)], dtype=np.float32)
        data = data.reshape(data.shape[:2])  # drop a singleton time axis
        if not np.isfinite(data).all():
            raise ValueError(f"{path}: slice {s} along axis {self.axis} contains NaN or Inf values; expected finite "
                             f"intensities")
        mag = resize_square(torch.from_numpy(np.abs(data)), self.size[0])
        image = torch.stack([mag, torch.zeros_like(mag)])
        stem = path.name.removesuffix(".gz").removesuffix(".nii")
        return {"id": f"{stem}-a{self.axis}-s{s:03d}", "image": normalise_p99(image)}
