"""Datasets of ground-truth images: items are {"id": str, "image": (C, H, W) float32 tensor}.

Every dataset is deterministic: item i of a split is the same on every machine and every run.
"""
from __future__ import annotations

import hashlib

import torch
from torch import Tensor
from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")


def item_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (not Python's salted hash)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class ImageDataset(Dataset):
    """Base class: `channels`, `size` (H, W), `split`; `__getitem__` returns {"id", "image"}."""

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

    def __getitem__(self, i: int) -> dict[str, object]:
        self.check_index(i)
        g = torch.Generator().manual_seed(item_seed("grf", self.seed, self.split, i))
        eps = torch.randn((self.channels, *self.size), generator=g)
        image: Tensor = torch.fft.ifft2(self.amplitude * torch.fft.fft2(eps, norm="ortho"), norm="ortho").real
        return {"id": f"grf-{self.split}-{i:05d}", "image": (0.25 * image).float()}
