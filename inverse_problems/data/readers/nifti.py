"""NIfTI volumes (.nii, .nii.gz) as 2-D slices: magnitude images with zero phase, resized to size.

Each volume is a 3-D array (a 4-D one with a singleton 4th axis is accepted); slices are taken along
`axis`, centre-cropped to a square, resized to size x size with antialiased bilinear interpolation,
stored as (2, size, size) = (|values|, 0) and scaled so the 99th percentile of the magnitude is 1 (as
the phantoms). Headers are read when the dataset is built; voxel data only when an item is read.
A volume is a patient: items carry `patient` (the file's stem) and `slice` (the index along `axis`).
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from inverse_problems.data.base import (FLOAT32_SAFE, READ_ERRORS, DataError, ImageDataset, Item, check_allocation,
                                        check_magnitude, check_slice_count)
from inverse_problems.data.readers.fastmri import MAX_SLICE_GB, center_crop, check_resolution, open_files, parse_slices, split_folder
from inverse_problems.data.phantoms.datasets import normalise_p99


class NiftiVolume:
    """One NIfTI file's header, validated on open: a 3-D shape, a slice along `axis` no larger than
    `max_slice_gb` GiB (as float32), and (uncompressed) a file long enough for its declared data.
    Raises DataError naming the file."""

    def __init__(self, path: Path, axis: int = 2, max_slice_gb: float = MAX_SLICE_GB) -> None:
        self.path = path
        try:
            img = nib.load(str(path))
        except Exception as exc:  # nibabel raises several types for unreadable files
            raise DataError(f"{path}: cannot read as NIfTI ({type(exc).__name__}: {exc}); re-copy or remove it",
                            path) from exc
        shape = tuple(int(s) for s in img.shape)
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise DataError(f"{path}: volume has shape {shape} (rank {len(shape)}); expected a 3-D volume (X, Y, Z) "
                            f"(or 4-D with one time point)", path)
        self.shape: tuple[int, int, int] = shape  # type: ignore[assignment]
        dtype = np.dtype(img.get_data_dtype())
        if dtype.kind not in "biufc":
            kind = "colour (RGB) values" if dtype.names else dtype.kind
            raise DataError(f"{path}: voxels are of type {dtype} ({kind}); expected one grey-level (or complex) "
                            f"value per voxel, as MR magnitude volumes are: convert the file to a scalar volume, or "
                            f"remove it", path)
        itemsize = dtype.itemsize
        check_slice_count(shape[axis], f"{path}: the volume along axis {axis}", path)
        plane = tuple(n for a, n in enumerate(shape) if a != axis)
        check_allocation(plane, max(itemsize, 8), max_slice_gb, f"{path}: one slice along axis {axis}")
        if not path.name.endswith(".gz"):
            offset = int(img.dataobj.offset)
            need = offset + itemsize * int(np.prod(shape))
            have = path.stat().st_size
            if have < need:
                raise DataError(f"{path}: the file has {have} bytes but its header declares {need} (shape {shape}, "
                                f"{img.get_data_dtype()}); it is truncated: re-copy or remove it", path)


def resize_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """(H, W) real -> (size, size): centre-crop to a square, then antialiased bilinear resize."""
    m = min(image.shape)
    sq = center_crop(image, (m, m))
    if m == size:
        return sq.clone()
    return F.interpolate(sq[None, None], size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)[0, 0]


class NiftiDataset(ImageDataset):
    """Folder of NIfTI volumes: 2-D slices along an axis, magnitude with zero phase, resized to size.

    A file that cannot be opened is one item that raises its DataError when read (a failed sample); a
    slice smaller than `size` is refused (never upsampled); `max_slice_gb` bounds a declared slice.
    """

    def __init__(self, root: str | None = None, split: str = "test", size: int = 64, axis: int = 2,
                 slices: str | int = "middle", max_slice_gb: float = MAX_SLICE_GB) -> None:
        self.split = self.check_split(split)
        if isinstance(axis, bool) or axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2 (the slicing axis of a 3-D volume), got {axis!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"dataset.size must be a positive integer, got {size!r}")
        self.folder = split_folder(root, split, prefixes=("",), kind="nifti")
        paths = sorted(p for p in self.folder.iterdir() if p.name.endswith((".nii", ".nii.gz")))
        if not paths:
            raise FileNotFoundError(f"nifti: no .nii or .nii.gz files in {str(self.folder)!r}; point dataset.root at "
                                    f"a folder of NIfTI volumes")
        self.paths = paths
        self.axis = axis
        self.volumes = open_files(paths, lambda p: NiftiVolume(p, axis, max_slice_gb), "nifti")
        self.index = [(j, s) for j, v in enumerate(self.volumes)
                      for s in ([None] if isinstance(v, DataError) else parse_slices(slices, v.shape[axis]))]
        self.size = (size, size)
        self.channels = 2

    def __len__(self) -> int:
        return len(self.index)

    def patient_of(self, i: int) -> str:
        """The patient of item i: its volume (the file's stem), without reading it."""
        self.check_index(i)
        return self.paths[self.index[i][0]].name.removesuffix(".gz").removesuffix(".nii")

    def __getitem__(self, i: int) -> Item:
        self.check_index(i)
        j, s = self.index[i]
        path = self.paths[j]
        stem = path.name.removesuffix(".gz").removesuffix(".nii")
        vol = self.volumes[j]
        if isinstance(vol, DataError):
            raise DataError(str(vol), path, stem)
        item_id = f"{stem}-a{self.axis}-s{s:03d}"
        plane = tuple(n for a, n in enumerate(vol.shape) if a != self.axis)
        check_resolution(path, plane, self.size[0], f"slice {s} along axis {self.axis}")
        try:
            proxy = nib.load(str(path)).dataobj
            sl = [slice(None)] * len(proxy.shape)
            sl[self.axis] = s
            data = np.asarray(proxy[tuple(sl)])
            data = np.abs(data) if np.iscomplexobj(data) else data.astype(np.float64)
        except (*READ_ERRORS, ValueError) as exc:  # truncated gzip: EOFError; corrupt: zlib.error / OSError
            raise DataError(f"{path}: slice {s} along axis {self.axis} cannot be read ({type(exc).__name__}: {exc}); "
                            f"the file is truncated or corrupt: re-copy or remove it", path, item_id) from exc
        data = data.reshape(data.shape[:2])  # drop a singleton time axis
        if not np.isfinite(data).all():
            raise DataError(f"{path}: slice {s} along axis {self.axis} contains NaN or Inf values; expected finite "
                            f"intensities (fix or remove the file)", path, item_id)
        check_magnitude(float(np.abs(data).max()), FLOAT32_SAFE, f"{path}: slice {s} along axis {self.axis}", path,
                        item_id)
        data = data.astype(np.float32)
        if not data.any():
            raise DataError(f"{path}: slice {s} along axis {self.axis} is all zero (no signal); choose other slices "
                            f"(dataset.slices=...) or remove the file", path, item_id)
        mag = resize_square(torch.from_numpy(np.abs(data)), self.size[0])
        image = torch.stack([mag, torch.zeros_like(mag)])
        try:
            image = normalise_p99(image)
        except ValueError as exc:
            raise DataError(f"{path}: slice {s} along axis {self.axis}: {exc}", path, item_id) from exc
        return {"id": item_id, "image": image, "patient": stem, "slice": s}
