"""Synthetic horizon-scale sources (dataset `synthetic-eht`): parametric crescents, m-rings, disks and doubles.

Images are 64x64 (by default) on a field of view of `fov_uas` microarcseconds, non-negative, one channel, with
peak 1 (the units InverseBench uses: the operator turns them into Jy with its `pixel_jy`). Every parameter is
drawn from a generator seeded by (seed, split, index), so an item is the same whatever the order of access.

- crescent (Kamruddin & Dexter 2013): a disk of radius r minus a smaller disk of radius r_in shifted by d toward
  the position angle, blurred by a Gaussian of the ring's width;
- m-ring (Johnson et al. 2020): a thin ring of radius r with brightness 1 + sum_k a_k cos(k (theta - phi_k)),
  k = 1..m, convolved with a Gaussian of width w;
- disk: a uniform disk (smoothed edge) with a mild linear brightness gradient;
- double: two elliptical Gaussian components of random separation, flux ratio and orientation.

`morphology` chooses the family: `rings` (crescents and m-rings, the prior's training family, the default),
`disks`, `doubles` (shifts to shapes the prior never saw), one of the single names, or `all`.
"""
from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor
from torch.utils.data import Dataset

from inverse_problems.base import Item

FAMILIES: dict[str, tuple[str, ...]] = {
    "rings": ("crescent", "mring"), "disks": ("disk",), "doubles": ("double",),
    "crescent": ("crescent",), "mring": ("mring",), "disk": ("disk",), "double": ("double",),
    "all": ("crescent", "mring", "disk", "double"),
}
SPLITS = ("train", "val", "test")


class SourceItem(Item, total=False):
    """A synthetic source: `id`, `image` (1, H, W) and its `morphology` (crescent, mring, disk or double)."""

    morphology: str


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


def _grid(size: int, fov_uas: float) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates (x east-left, y north-up) in microarcseconds, each (size, size)."""
    pix = fov_uas / size
    c = (torch.arange(size, dtype=torch.float64) - (size - 1) / 2) * pix
    y, x = torch.meshgrid(-c, -c, indexing="ij")
    return x, y


def _gauss_blur(img: Tensor, fwhm_px: float) -> Tensor:
    """Separable Gaussian blur of a (H, W) image, FWHM in pixels (sigma = FWHM / 2.355)."""
    s = max(fwhm_px / 2.3548, 1e-3)
    r = max(1, int(math.ceil(3 * s)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=img.dtype) / s) ** 2)
    k = (k / k.sum()).view(1, 1, -1)
    out = torch.nn.functional.conv1d(torch.nn.functional.pad(img[:, None, :], (r, r), mode="replicate"), k)[:, 0]
    out = torch.nn.functional.conv1d(torch.nn.functional.pad(out.T[:, None, :], (r, r), mode="replicate"), k)[:, 0].T
    return out


def crescent(x: Tensor, y: Tensor, g: torch.Generator, pix: float) -> Tensor:
    """Disk(r) minus disk(r_in) offset by d along position angle phi; blurred by the ring width."""
    u = torch.rand(5, generator=g, dtype=torch.float64)
    r = 15 + 10 * u[0]                      # outer radius, microarcseconds (M87*: ring diameter ~ 40 uas)
    r_in = r * (0.55 + 0.3 * u[1])
    d = (r - r_in) * (0.2 + 0.75 * u[2])    # asymmetry
    phi = 2 * math.pi * u[3]
    dx, dy = d * math.sin(phi), d * math.cos(phi)
    img = ((x**2 + y**2) <= r**2).double() - (((x - dx) ** 2 + (y - dy) ** 2) <= r_in**2).double()
    return _gauss_blur(img.clamp_min(0), (3 + 5 * float(u[4])) / pix)


def mring(x: Tensor, y: Tensor, g: torch.Generator, pix: float) -> Tensor:
    """Thin ring with azimuthal modes 1..m (amplitudes a_k, phases phi_k), convolved with a Gaussian of width w."""
    u = torch.rand(8, generator=g, dtype=torch.float64)
    r = 15 + 10 * u[0]
    w = 3 + 7 * u[1]
    m = 1 + int(u[2] * 2.999)
    theta = torch.atan2(x, y)
    bright = torch.ones_like(x)
    amp = 0.8 * u[3]
    for k in range(1, m + 1):
        bright = bright + amp / k * torch.cos(k * (theta - 2 * math.pi * u[3 + k]))
    rho = (x**2 + y**2).sqrt()
    ring = torch.exp(-0.5 * ((rho - r) / (w / 2.3548)) ** 2) * bright.clamp_min(0)
    return ring


def disk(x: Tensor, y: Tensor, g: torch.Generator, pix: float) -> Tensor:
    """Uniform disk of radius r (edge smoothed over a few microarcseconds) with a linear brightness gradient."""
    u = torch.rand(4, generator=g, dtype=torch.float64)
    r = 10 + 15 * u[0]
    phi = 2 * math.pi * u[1]
    grad = 1 + 0.5 * u[2] * (x * math.sin(phi) + y * math.cos(phi)) / r
    img = ((x**2 + y**2) <= r**2).double() * grad
    return _gauss_blur(img, (2 + 4 * float(u[3])) / pix)


def double(x: Tensor, y: Tensor, g: torch.Generator, pix: float) -> Tensor:
    """Two elliptical Gaussians: separation s, flux ratio q, major-axis FWHM, axis ratio and orientations."""
    u = torch.rand(8, generator=g, dtype=torch.float64)
    s = 15 + 30 * u[0]
    phi = 2 * math.pi * u[1]
    q = 0.3 + 0.7 * u[2]
    out = torch.zeros_like(x)
    for j, (sign, flux) in enumerate(((1.0, 1.0), (-1.0, q))):
        cx, cy = sign * s / 2 * math.sin(phi), sign * s / 2 * math.cos(phi)
        fw = 6 + 10 * float(u[3 + j])
        ratio = 0.4 + 0.6 * float(u[5 + j])
        pa = 2 * math.pi * float(u[7])
        dx, dy = x - cx, y - cy
        a = dx * math.cos(pa) - dy * math.sin(pa)
        b = dx * math.sin(pa) + dy * math.cos(pa)
        sa, sb = fw / 2.3548, ratio * fw / 2.3548
        out = out + flux * torch.exp(-0.5 * ((a / sa) ** 2 + (b / sb) ** 2))
    return out


SHAPES = {"crescent": crescent, "mring": mring, "disk": disk, "double": double}


def source_image(kind: str, g: torch.Generator, size: int = 64, fov_uas: float = 160.0,
                 jitter_uas: float = 5.0) -> Tensor:
    """One (1, size, size) float32 source of the given kind, centre jittered by up to `jitter_uas`, peak 1."""
    x, y = _grid(size, fov_uas)
    off = (torch.rand(2, generator=g, dtype=torch.float64) * 2 - 1) * jitter_uas
    img = SHAPES[kind](x - off[0], y - off[1], g, fov_uas / size).clamp_min(0)
    return (img / img.max().clamp_min(1e-12)).float()[None]


class SyntheticEHT(Dataset):
    """Parametric horizon-scale sources (crescents, m-rings, disks, doubles) as {"id", "image": (1, H, W)}."""

    channels = 1

    def __init__(self, split: str = "test", size: int = 64, morphology: str = "rings", fov_uas: float = 160.0,
                 length: int | None = None, seed: int = 0) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        if morphology not in FAMILIES:
            raise ValueError(f"unknown morphology {morphology!r}; choose one of {sorted(FAMILIES)}")
        self.split, self.morphology, self.fov_uas, self.seed = split, morphology, float(fov_uas), seed
        self.size = (size, size)
        self.length = length if length is not None else {"train": 8192, "val": 64, "test": 256}[split]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> SourceItem:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        g = torch.Generator().manual_seed(_seed("synthetic-eht", self.seed, self.split, self.morphology, i))
        kinds = FAMILIES[self.morphology]
        kind = kinds[int(torch.randint(len(kinds), (1,), generator=g))]
        image = source_image(kind, g, self.size[0], self.fov_uas)
        return {"id": f"eht-{self.morphology}-{self.split}-{i:05d}", "image": image, "morphology": kind}
