"""A folder of PNG / JPEG images as a dataset of RGB (or grey) images in [-1, 1] (the FFHQ / ImageNet priors' range)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inverse_problems.data.base import DataError, ImageDataset, Item

SUFFIXES = (".png", ".jpg", ".jpeg")


class ImagesDataset(ImageDataset):
    """Every .png/.jpg/.jpeg in `root` (or in root/<split> when that folder exists), sorted by name: centre-cropped
    to a square, resized to `size` (PIL bicubic), mapped to [-1, 1] (x / 127.5 - 1), `channels` 3 (RGB) or 1 (L).
    `limit` keeps the first n files."""

    def __init__(self, root: str | None = None, split: str = "test", size: int = 256, channels: int = 3,
                 limit: int | None = None) -> None:
        self.split = self.check_split(split)
        if root is None:
            raise ValueError("the images dataset needs dataset.root=DIR, a folder of .png/.jpg images")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 3 (RGB) or 1 (grey), got {channels}")
        base = Path(root).expanduser()
        if not base.is_dir():
            raise FileNotFoundError(f"images dataset root {base} is not a folder")
        folder = base / split if (base / split).is_dir() else base
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        if limit is not None:
            self.files = self.files[:limit]
        if not self.files:
            raise FileNotFoundError(f"no .png/.jpg/.jpeg images in {folder}")
        self.size, self.channels, self.root = (size, size), channels, folder

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Item:
        from PIL import Image

        path = self.files[self.check_index(i)]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB" if self.channels == 3 else "L")
                w, h = im.size
                s = min(w, h)
                im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
                if s != self.size[0]:
                    im = im.resize(self.size, Image.BICUBIC)
                arr = np.asarray(im, dtype=np.float32)
        except OSError as exc:
            raise DataError(f"cannot read image {path} ({exc}); remove or replace the file", path, path.stem) from exc
        image = torch.from_numpy(arr.copy()).reshape(self.size[0], self.size[1], -1).permute(2, 0, 1)
        return {"id": path.stem, "image": image / 127.5 - 1.0}
