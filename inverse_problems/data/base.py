"""Datasets of ground-truth images: items are `Item`s, {"id": str, "image": (C, H, W) float32 tensor, ...}.

Every dataset is deterministic: item i of a split is the same on every machine and every run.
An item that cannot be used (an unreadable or truncated file, NaN/Inf or all-zero data, a size the
data cannot give) raises `DataError`, naming the file, the key and the fix; a runner records it as a
failed sample and goes on (`read_item` turns any read error of an item into one).
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import TypedDict

import torch
from torch import Tensor
from torch.utils.data import Dataset

from inverse_problems.operators.random import item_seed

SPLITS = ("train", "val", "test")
# errors a file reader may raise on a corrupt or truncated file (h5py: OSError; gzip: EOFError, zlib.error)
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
GIB = 2**30


class _ItemKeys(TypedDict):
    id: str  # unique in its dataset and split; seeds the sample's randomness (operators.random.item_seed)
    image: Tensor | None  # (C, H, W) float32 target; None for prospective measured data (no reference)


class Item(_ItemKeys, total=False):
    """One dataset item, as every dataset's `__getitem__` returns it and the harness reads it: `id` and `image`
    always, the other keys where the data has them. A modality may add its own (phantoms.dmi.DMIItem)."""

    patient: str  # subject id: patient-level adapters see all of its slices in one batch
    slice: int  # the slice's index in its volume (or subject)
    volume: str  # the file whose slices form one volume (fastMRI's per-volume metrics, submission files)
    kspace: Tensor  # (coils, H, W) complex64 measured k-space, in the file's units (the measured tier)
    mask: Tensor  # the file's own sampling mask (prospective data)
    maps: Tensor  # (coils, H, W) complex coil sensitivities stored with the data, on the item's grid
    data_scale: float  # the target was divided by it: x data_scale gives the file's units
    target_convention: str | None  # how the target was made (fastmri-rss, sense1-espirit, ...); None: no target


class DataError(ValueError):
    """One item (or file) cannot be used; the message names the file, the key and the fix.

    `path` is the file at fault (or None) and `item_id` the id the item would have had, where known.
    """

    def __init__(self, message: str, path: str | Path | None = None, item_id: str | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.item_id = item_id


def check_allocation(shape: tuple[int, ...], itemsize: int, limit_gb: float, what: str,
                     option: str = "dataset.max_slice_gb") -> None:
    """Refuse, before reading, a declared array whose allocation would exceed `limit_gb` GiB."""
    nbytes = itemsize
    for n in shape:
        nbytes *= int(n)
    if nbytes > limit_gb * GIB:
        raise DataError(f"{what} declares shape {tuple(int(n) for n in shape)}: reading it would allocate "
                        f"{nbytes / GIB:.1f} GiB, above the limit of {limit_gb:g} GiB; the file is corrupt or not "
                        f"what it claims (if it is real, raise {option})")


class MissingPackage(ImportError, RuntimeError):
    """An optional package a dataset needs is not installed; the message says what to install. An ImportError (what
    it is) and a RuntimeError (what the command line reports as a usage error, one line, no traceback)."""


# Magnitudes beyond this cannot go through float32 arithmetic: a square (|x|^2 of a coil combination, a norm)
# overflows above ~1.8e19. A file holding such values is scaled absurdly, whatever it holds.
FLOAT32_SAFE = 1e18


def check_magnitude(largest: float, limit: float, what: str, path: str | Path | None = None,
                    item_id: str | None = None) -> None:
    """Refuse values too large for float32 arithmetic (a file scaled by, say, 1e37), naming the file and the cause,
    rather than letting them overflow into an "empty" or "no signal" verdict later."""
    if largest > limit:
        raise DataError(f"{what} holds magnitudes up to {largest:.3g}, beyond what float32 arithmetic can transform "
                        f"and square (limit {limit:.3g}); the values are scaled absurdly: rescale the file or remove "
                        f"it", path, item_id)


MAX_SLICES = 100_000  # slices one volume file may declare: MR volumes hold tens to a few thousand


def check_slice_count(n: int, what: str, path: str | Path | None = None) -> None:
    """Refuse a file declaring more slices than any MR volume holds, before an index of them is made (a declared
    10^9 slices would be a MemoryError, not a message)."""
    if n > MAX_SLICES:
        raise DataError(f"{what} declares {n} slices, more than any MR volume holds (limit {MAX_SLICES}); the file is "
                        f"corrupt or not what it claims: re-copy or remove it", path)


def check_image(image: object, source: str) -> Tensor:
    """The item's image if it is a finite, non-empty floating tensor; else a DataError naming `source`."""
    if not isinstance(image, Tensor) or not image.is_floating_point():
        kind = type(image).__name__ if not isinstance(image, Tensor) else f"tensor of {image.dtype}"
        raise DataError(f"{source}: 'image' is a {kind}; expected a float tensor (C, H, W)")
    if not bool(torch.isfinite(image).all()):
        bad = int((~torch.isfinite(image)).sum())
        raise DataError(f"{source}: 'image' contains {bad} NaN or Inf value(s); fix or remove the item's file")
    if not bool(image.any()):
        raise DataError(f"{source}: 'image' is all zero (an empty slice or file?); choose other slices or remove it")
    return image


def read_item(dataset: Dataset, i: int) -> Item:
    """dataset[i], checked (finite, non-empty image); a read error of the item becomes a DataError.

    IndexError passes through (the end of a dataset); every other failure to produce a usable item
    (DataError, a corrupt file's OSError/EOFError/zlib.error, a NaN image) is a DataError naming the
    dataset, the index and the cause, so a runner can record the sample as failed and go on.
    """
    name = type(dataset).__name__
    try:
        item = dataset[i]
    except DataError:
        raise
    except READ_ERRORS as exc:
        raise DataError(f"{name} item {i}: cannot read it ({type(exc).__name__}: {exc})") from exc
    if not isinstance(item, dict) or "image" not in item:
        raise DataError(f"{name} item {i}: expected a dict with 'id' and 'image', got {type(item).__name__}")
    check_image(item["image"], f"{name} item {i} ({item.get('id', '?')})")
    return item


class ImageDataset(Dataset):
    """Base class: `channels`, `size` (H, W), `split`; `__getitem__` returns an `Item` ({"id", "image", ...})."""

    channels: int
    size: tuple[int, int]
    split: str

    def check_split(self, split: str) -> str:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        return split

    def check_index(self, i: int) -> int:
        """i itself, or an IndexError naming the dataset's length (ends iteration, refuses negative i)."""
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        return i


class GaussianFieldDataset(ImageDataset):
    """Stationary Gaussian random fields with a power-law spectrum |k|^-alpha (textures for exact tests)."""

    def __init__(self, split: str = "test", size: int = 32, channels: int = 1, alpha: float = 3.0,
                 length: int = 64, seed: int = 0) -> None:
        self.split = self.check_split(split)
        self.size = (size, size)
        self.channels = channels
        self.length = length
        self.seed = seed
        ky = torch.fft.fftfreq(size).view(-1, 1)
        kx = torch.fft.fftfreq(size).view(1, -1)
        k = torch.sqrt(kx**2 + ky**2).clamp_min(1.0 / size)
        amp = k ** (-alpha / 2)
        self.amplitude = amp / amp.pow(2).mean().sqrt()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Item:
        self.check_index(i)
        g = torch.Generator().manual_seed(item_seed("grf", self.seed, self.split, i))
        eps = torch.randn((self.channels, *self.size), generator=g)
        image: Tensor = torch.fft.ifft2(self.amplitude * torch.fft.fft2(eps, norm="ortho"), norm="ortho").real
        return {"id": f"grf-{self.split}-{i:05d}", "image": (0.25 * image).float()}
