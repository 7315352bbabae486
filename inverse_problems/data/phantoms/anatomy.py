"""Anatomical brain phantoms: a fuzzy tissue model of a real brain rendered at any contrast.

BrainWeb's idea (Collins et al., IEEE TMI 17:463 (1998); Kwan et al., IEEE TMI 18:1085 (1999)): a
voxel holds the fraction m_k of each tissue k, and its signal is the partial-volume sum
S = sum_k m_k S_k(PD_k, T1_k, T2_k, T2*_k) of the tissues' signals under a sequence. The model
here is the suite's own segmentation of the Colin27 T1 brain (`benchmarks/experiments/make_anatomy.py`):
memberships of CSF, grey matter, white matter, skull, muscle/skin and fat on 56 axial slices (2 mm
apart, 160 x 160 pixels of 1.4 mm), uint8-quantised in `inverse_problems/data/anatomy_colin27.npz`
(licence: BSD-3-clause, `anatomy_colin27.LICENSE` beside it).

A phantom takes a continuous slice position (linear interpolation between stored slices), a random
in-plane similarity transform (rotation, scale, shift) and a smooth elastic warp, MS-like lesions
carved out of white matter, per-subject tissue jitter, the signal equations of `phantoms.Contrast`,
area downsampling from `oversample` x the target size, and the receive bias and smooth background
phase of `phantoms.make_phantom`. One torch.Generator fixes everything; the anatomy draws come
before (and do not depend on) the contrast, so one seed gives the same subject in every contrast.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from inverse_problems.data.base import ImageDataset, Item

from inverse_problems.operators.random import item_seed
from inverse_problems.data.phantoms.datasets import DEFAULT_LENGTH, normalise_p99
from inverse_problems.data.phantoms.procedural import (BRAIN_TISSUES, CONTRASTS, KNEE_TISSUES, Contrast, Tissue, _Draws,
                                       _grid, get_contrast, make_phantom, receive)

MODEL_PATH = Path(__file__).resolve().parents[1] / "assets" / "anatomy_colin27.npz"
_BY_NAME = {t.name: t for t in BRAIN_TISSUES + KNEE_TISSUES}
# the stored classes in order, then the lesion (carved out of white matter at render time)
ANATOMY_TISSUES: tuple[Tissue, ...] = tuple(_BY_NAME[n] for n in (
    "csf", "grey_matter", "white_matter", "skull", "muscle", "fat", "lesion"))
N_DRAWS = 96
SLAB = 4  # stored slices per slab (8 mm)


@dataclass(frozen=True)
class TissueModel:
    """Fuzzy memberships (K, Z, H, W) float32 in [0, 1] (sum over K <= 1), class names, z in mm."""

    memberships: Tensor
    classes: tuple[str, ...]
    z_mm: tuple[float, ...]
    pixel_mm: float


@lru_cache(maxsize=2)
def load_model(path: str | Path = MODEL_PATH) -> TissueModel:
    """The stored tissue model; a missing file names the script that makes it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"anatomical tissue model {path} is missing; it ships with the package (reinstall "
                                "it) or is rebuilt by `python benchmarks/experiments/make_anatomy.py` "
                                "(needs `apt-get install mricron-data`)")
    with np.load(path) as d:
        m = torch.from_numpy(d["memberships"].astype(np.float32) / 255.0)
        classes = tuple(str(c) for c in d["classes"])
        z = tuple(float(v) for v in d["z_mm"])
        pixel = float(d["pixel_mm"])
    expected = tuple(t.name for t in ANATOMY_TISSUES[:-1])
    if classes != expected:
        raise ValueError(f"{path}: classes {classes}, expected {expected}; rebuild it with make_anatomy.py")
    return TissueModel(m, classes, z, pixel)


def slab_ranges(split: str, n_slices: int, slab: int = SLAB) -> list[tuple[float, float]]:
    """Continuous slice-index ranges [lo, hi] a split draws from.

    Slab j holds stored slices [slab j, slab (j + 1)); slab j is val if j % 5 == 2, test if
    j % 5 == 4, train otherwise. A split samples [slab j + 0.5, slab (j + 1) - 1.5], so samples of
    different splits are >= 2 stored slices (4 mm) apart.
    """
    owner = {2: "val", 4: "test"}
    out = [(slab * j + 0.5, slab * (j + 1) - 1.5) for j in range(n_slices // slab)
           if owner.get(j % 5, "train") == split]
    if not out:
        raise ValueError(f"no slab of {n_slices} slices belongs to split {split!r}")
    return out


@dataclass
class AnatomyPhantom:
    """A rendered phantom: `image` (2, size, size) float32; `memberships` (K + 1, n, n) on the fine grid
    (the stored classes, then the lesion); `z` the slice position in stored-slice units."""

    image: Tensor
    memberships: Tensor
    oversample: int
    z: float

    def fractions(self) -> Tensor:
        """Area fraction of each tissue per output pixel, (K + 1, size, size)."""
        return F.avg_pool2d(self.memberships[None], self.oversample)[0]


def _slice(model: TissueModel, z: float) -> Tensor:
    """Memberships at continuous slice index z: linear interpolation between stored slices."""
    z0 = min(int(math.floor(z)), model.memberships.shape[1] - 2)
    f = z - z0
    return (1 - f) * model.memberships[:, z0] + f * model.memberships[:, z0 + 1]


def _lesions(wm: Tensor, d: _Draws, lesion_prob: float, max_lesions: int) -> Tensor:
    """MS-like lesions: soft ellipses (edge width ~ 1/8 of the radius) times the white-matter membership."""
    X, Y = _grid(wm.shape[-1])
    blob = torch.zeros_like(wm)
    n = 1 + int(d() * max_lesions) if d() < lesion_prob else 0
    for j in range(max_lesions):  # fixed draws per slot
        cx, cy, a, b, ang = d(-0.5, 0.5), d(-0.6, 0.6), d(0.02, 0.05), d(0.03, 0.09), d(0, math.pi)
        if j < n:
            c, s = math.cos(ang), math.sin(ang)
            u, v = c * (X - cx) + s * (Y - cy), -s * (X - cx) + c * (Y - cy)
            rho = torch.sqrt((u / a) ** 2 + (v / b) ** 2)
            blob = torch.maximum(blob, torch.sigmoid(8.0 * (1.0 - rho)))
    return blob * wm


def make_anatomy_phantom(contrast: str | Contrast = "t2", size: int = 64,
                         generator: torch.Generator | int | None = None,
                         z_ranges: list[tuple[float, float]] | None = None, oversample: int = 2,
                         jitter: float = 0.05, bias: float = 0.1, phase: float = 1.0, lesion_prob: float = 0.5,
                         max_lesions: int = 6, rotation_deg: float = 15.0, scale: float = 0.08, shift: float = 0.04,
                         warp: float = 0.03, model: TissueModel | None = None) -> AnatomyPhantom:
    """One anatomical phantom slice as a complex image (2, size, size) float32 (not normalised).

    Output pixel p (in [-1, 1]^2) samples the model at A^-1 p + t + w(p): A a rotation by
    U(-rotation_deg, rotation_deg) and scaling by 1 + U(-scale, scale) per axis, t ~ U(-shift, shift)^2,
    w a smooth elastic warp (bicubic upsampling of a 5 x 5 grid of N(0, warp^2) displacements).
    Slice z is uniform over `z_ranges` (all stored slices if None).
    """
    if size < 4 or oversample < 1:
        raise ValueError(f"size must be >= 4 and oversample >= 1, got size={size}, oversample={oversample}")
    con = get_contrast(contrast)
    model = load_model() if model is None else model
    if isinstance(generator, int) or generator is None:
        generator = torch.Generator().manual_seed(0 if generator is None else int(generator))
    n_slices = model.memberships.shape[1]
    ranges = [(0.0, n_slices - 1.0)] if z_ranges is None else z_ranges
    d = _Draws(generator, N_DRAWS)
    total = sum(hi - lo for lo, hi in ranges)
    u = d() * total
    for lo, hi in ranges:
        z = lo + u
        if u <= hi - lo:
            break
        u -= hi - lo
    z = min(max(z, 0.0), n_slices - 1.0)
    ang = math.radians(d(-rotation_deg, rotation_deg))
    sx, sy = 1 + d(-scale, scale), 1 + d(-scale, scale)
    tx, ty = d(-shift, shift), d(-shift, shift)
    n = size * oversample
    X, Y = _grid(n)
    c, s = math.cos(ang), math.sin(ang)
    gx = (c * X + s * Y) / sx + tx
    gy = (-s * X + c * Y) / sy + ty
    coarse = warp * torch.randn(1, 2, 5, 5, generator=generator)
    w = F.interpolate(coarse, size=(n, n), mode="bicubic", align_corners=True)[0]
    grid = torch.stack([gx + w[0], gy + w[1]], -1)[None]
    maps = F.grid_sample(_slice(model, z)[None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0].clamp_min(0)
    lesion = _lesions(maps[2], d, lesion_prob, max_lesions)
    maps = torch.cat([maps, lesion[None]])
    maps[2] = maps[2] - lesion
    d.i = N_DRAWS - 4 * len(ANATOMY_TISSUES)  # tissue jitter: the last draws of the block
    params = {key: torch.tensor([getattr(t, key) * (1 + jitter * d(-1, 1)) for t in ANATOMY_TISSUES])
              for key in ("pd", "t1", "t2", "t2star")}
    signal = con.signal(params["pd"], params["t1"], params["t2"], params["t2star"])
    image = receive(torch.einsum("k,khw->hw", signal, maps), size, oversample, generator, bias, phase)
    return AnatomyPhantom(image=image, memberships=maps, oversample=oversample, z=z)


class AnatomyDataset(ImageDataset):
    """Anatomical brain phantoms (Colin27 tissue model) of any contrast (t1, t2, pd, flair, t2star).

    Item i of a split is `make_anatomy_phantom(contrast, size, Generator(item_seed("anatomy", seed,
    split, i)), slab_ranges(split))`, scaled so the 99th percentile of its magnitude is 1. Splits are
    disjoint twice: by slab (slice ranges >= 4 mm apart, see `slab_ranges`) and by deformation seed
    (the split is part of the seed). The seed omits the contrast: AnatomyBrainT1[i] and
    AnatomyBrainT2[i] are the same subject in two contrasts.
    """

    def __init__(self, contrast: str = "t2", split: str = "test", size: int = 64, length: int | None = None,
                 seed: int = 0, oversample: int = 2, jitter: float = 0.05, bias: float = 0.1, phase: float = 1.0,
                 lesion_prob: float = 0.5, rotation_deg: float = 15.0, scale: float = 0.08, shift: float = 0.04,
                 warp: float = 0.03) -> None:
        if contrast not in CONTRASTS:
            raise ValueError(f"unknown contrast {contrast!r}; choose one of {sorted(CONTRASTS)}")
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"size must be an int >= 8, got {size!r}")
        self.split = self.check_split(split)
        self.contrast = contrast
        self.size = (size, size)
        self.channels = 2
        self.length = DEFAULT_LENGTH[split] if length is None else int(length)
        if self.length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.seed = seed
        self.model = load_model()
        self.z_ranges = slab_ranges(split, self.model.memberships.shape[1])
        self.options = dict(oversample=oversample, jitter=jitter, bias=bias, phase=phase, lesion_prob=lesion_prob,
                            rotation_deg=rotation_deg, scale=scale, shift=shift, warp=warp)

    def __len__(self) -> int:
        return self.length

    def render(self, i: int) -> AnatomyPhantom:
        """Item i's phantom before normalisation (image, memberships, slice position)."""
        self.check_index(i)
        g = torch.Generator().manual_seed(item_seed("anatomy", self.seed, self.split, i))
        return make_anatomy_phantom(self.contrast, self.size[0], g, self.z_ranges, model=self.model, **self.options)

    def __getitem__(self, i: int) -> Item:
        return {"id": f"anatomy-{self.contrast}-{self.split}-{i:05d}", "image": normalise_p99(self.render(i).image)}


class _AnatomyBrain(AnatomyDataset):
    CONTRAST = "t2"

    def __init__(self, split: str = "test", size: int = 64, length: int | None = None, seed: int = 0,
                 oversample: int = 2, jitter: float = 0.05, bias: float = 0.1, phase: float = 1.0,
                 lesion_prob: float = 0.5, rotation_deg: float = 15.0, scale: float = 0.08, shift: float = 0.04,
                 warp: float = 0.03) -> None:
        super().__init__(self.CONTRAST, split, size, length, seed, oversample, jitter, bias, phase, lesion_prob,
                         rotation_deg, scale, shift, warp)


class AnatomyBrainT2(_AnatomyBrain):
    """Anatomical brain phantom, T2-weighted spin echo (TR 4000 / TE 100 ms, 3 T)."""

    CONTRAST = "t2"


class AnatomyBrainT1(_AnatomyBrain):
    """Anatomical brain phantom, T1-weighted spin echo (TR 500 / TE 10 ms, 3 T)."""

    CONTRAST = "t1"


class AnatomyBrainFLAIR(_AnatomyBrain):
    """Anatomical brain phantom, FLAIR (inversion recovery TR 9000 / TE 100 ms, TI nulling CSF, 3 T)."""

    CONTRAST = "flair"


def randomised_contrast(contrast: str | Contrast, u: Tensor, spread: float) -> Contrast:
    """`contrast` with TR, TE (and TI of an IR with a fixed TI, flip of a GRE) each scaled by exp(spread (2 u_k - 1)),
    u: 4 uniforms in [0, 1). spread = 0 returns it unchanged (domain randomisation of the sequence)."""
    con = get_contrast(contrast)
    if spread <= 0:
        return con
    f = [math.exp(spread * (2 * float(v) - 1)) for v in u[:4]]
    return replace(con, name=f"{con.name}~", tr=con.tr * f[0], te=con.te * f[1],
                   ti=None if con.ti is None else con.ti * f[2], flip_deg=min(90.0, con.flip_deg * f[3]))


def lower_resolution(image: Tensor, matrix: int) -> Tensor:
    """`image` (C, n, n) as if acquired on a matrix x matrix grid and resized back to n x n: antialiased area
    downsampling, then bilinear upsampling (the resize `real-brain` applies to its slices). matrix >= n: unchanged."""
    n = image.shape[-1]
    if matrix >= n:
        return image
    small = F.interpolate(image[None], size=(matrix, matrix), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=(n, n), mode="bilinear", align_corners=False)[0]


class AnatomyBrainMix(ImageDataset):
    """Training mixture: anatomical and (a share `procedural` of) procedural brain phantoms, contrasts drawn per item.

    Item i draws, from Generator(item_seed("anatomy-mix", seed, split, i)): procedural or anatomical
    (probability `procedural`), a contrast uniformly from `contrasts`, its sequence randomised by
    `randomised_contrast(spread=sequence_spread)`, then the phantom. Anatomical items keep the
    slab split of AnatomyDataset; p99 magnitude = 1. A share `lowres` of the items (drawn after the phantom, so
    `lowres=0` leaves every item as it was) is acquired on a coarser matrix, uniform in `lowres_matrix` (a fraction
    of `size`), and resized back (`lower_resolution`): the smooth low-resolution slices real data also holds.
    """

    def __init__(self, split: str = "train", size: int = 64, length: int | None = None, seed: int = 0,
                 contrasts: tuple[str, ...] = ("t2",), procedural: float = 0.25, sequence_spread: float = 0.0,
                 lesion_prob: float = 0.5, lowres: float = 0.0,
                 lowres_matrix: tuple[float, float] = (0.375, 0.875)) -> None:
        self.split = self.check_split(split)
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"size must be an int >= 8, got {size!r}")
        contrasts = (contrasts,) if isinstance(contrasts, str) else tuple(contrasts)
        bad = [c for c in contrasts if c not in CONTRASTS]
        if bad or not contrasts:
            raise ValueError(f"contrasts {list(contrasts)}: choose a non-empty list from {sorted(CONTRASTS)}")
        if not 0.0 <= procedural <= 1.0 or sequence_spread < 0:
            raise ValueError(f"procedural must be in [0, 1] and sequence_spread >= 0, got {procedural}, {sequence_spread}")
        lo, hi = (float(v) for v in lowres_matrix)
        if not 0.0 <= lowres <= 1.0 or not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"lowres (a share of the items) must be in [0, 1] and lowres_matrix a range (lo, hi) with "
                             f"0 < lo <= hi <= 1 (fractions of size), got {lowres} and {tuple(lowres_matrix)}")
        self.lowres, self.lowres_matrix = float(lowres), (lo, hi)
        self.size, self.channels, self.seed = (size, size), 2, seed
        self.length = DEFAULT_LENGTH[split] if length is None else int(length)
        self.contrasts, self.procedural, self.spread, self.lesion_prob = contrasts, procedural, sequence_spread, lesion_prob
        self.model = load_model()
        self.z_ranges = slab_ranges(split, self.model.memberships.shape[1])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Item:
        self.check_index(i)
        g = torch.Generator().manual_seed(item_seed("anatomy-mix", self.seed, self.split, i))
        u = torch.rand(6, generator=g, dtype=torch.float64)
        name = self.contrasts[min(int(u[1] * len(self.contrasts)), len(self.contrasts) - 1)]
        con = randomised_contrast(name, u[2:], self.spread)
        if u[0] < self.procedural:
            image, kind = make_phantom("brain", con, self.size[0], g, lesion_prob=self.lesion_prob).image, "phantom"
        else:
            image = make_anatomy_phantom(con, self.size[0], g, self.z_ranges, lesion_prob=self.lesion_prob,
                                         model=self.model).image
            kind = "anatomy"
        tag = ""
        if self.lowres > 0:
            u_low, u_matrix = torch.rand(2, generator=g, dtype=torch.float64).tolist()
            if u_low < self.lowres:
                lo, hi = self.lowres_matrix
                matrix = max(int(round(self.size[0] * (lo + (hi - lo) * u_matrix))), 4)
                image, tag = lower_resolution(image, matrix), f"-matrix{matrix}"
        return {"id": f"mix-{kind}-{name}-{self.split}-{i:05d}{tag}", "image": normalise_p99(image)}
