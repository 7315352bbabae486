"""What the 4-D (2-D+t) phantoms share: the grid, tissue-fixed texture, the rendering of a sequence from an analytic
backward map, and the dataset base class.

A phantom is a tissue image f(X) in reference coordinates (frame 0) and, per frame t, a backward map X = phi_t(x)
from scanner coordinates to reference ones: frame t is f(phi_t(x)), so the displacement u_t(x) = phi_t(x) - x is
exact and frame_t(x) = frame_0(x + u_t(x)) (frame 0 is the reference: phi_0 = identity). Tissue texture is a
function of X, so it moves with the tissue and the motion is identifiable; the receive field (bias) and the noise
are in scanner coordinates. Frames are rendered at `oversample` x the grid and averaged (partial volumes).
Coordinates are in [-1, 1]: x along columns, y along rows (down).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from inverse_problems.data.base import ImageDataset, Item
from inverse_problems.operators.random import item_seed

DEFAULT_SUBJECTS = {"train": 256, "val": 8, "test": 8}
# (t in [0, 1], X, Y) -> reference coordinates (X_ref, Y_ref) of the points X, Y at time t
BackwardMap = Callable[[float, Tensor, Tensor], tuple[Tensor, Tensor]]


class SequenceItem(Item, total=False):
    """A 2-D+t item: `image` (T, H, W) on [0, 1] and the exact motion."""

    displacement: Tensor  # (T, 2, H, W) u_t = phi_t(x) - x in pixels (x, y): frame_t(p) = frame_0(p + u_t(p))
    labels: Tensor  # (T, H, W) uint8 tissue labels at the pixel centres (the dataset's own codes)
    ejection_fraction: float  # cardiac: the subject's (2-D, blood-pool area) ejection fraction
    times: Tensor  # (T,) acquisition time of each frame (a real cine's frame numbers); absent: 0, 1, ..., T-1


def grid(n: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates (n, n) in [-1, 1]: X along columns, Y along rows (down)."""
    c = (torch.arange(n, dtype=torch.float64) + 0.5) * (2.0 / n) - 1.0
    return c.view(1, n).expand(n, n), c.view(n, 1).expand(n, n)


def uniform(g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def smoothstep(v: Tensor) -> Tensor:
    """0 below 0, 1 above 1, 3v^2 - 2v^3 between (C^1)."""
    v = v.clamp(0, 1)
    return v * v * (3 - 2 * v)


class Texture:
    """A smooth random field of unit standard deviation, sum of `k` cosines with spatial frequencies |f| in
    [f_lo, f_hi] cycles per unit length, evaluated at any coordinates (tissue-fixed when given reference ones)."""

    def __init__(self, g: torch.Generator, k: int = 16, f_lo: float = 2.0, f_hi: float = 8.0) -> None:
        r = f_lo + (f_hi - f_lo) * torch.rand(k, generator=g, dtype=torch.float64)
        a = 2 * math.pi * torch.rand(k, generator=g, dtype=torch.float64)
        self.fx, self.fy = 2 * math.pi * r * torch.cos(a), 2 * math.pi * r * torch.sin(a)
        self.phase = 2 * math.pi * torch.rand(k, generator=g, dtype=torch.float64)
        self.norm = math.sqrt(2.0 / k)

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        arg = x[..., None] * self.fx + y[..., None] * self.fy + self.phase
        return self.norm * torch.cos(arg).sum(-1)


def smooth_profile(t: Tensor | float, kind: str = "systole", n: int = 2) -> float:
    """The motion's phase m(t) in [0, 1] at normalised time t in [0, 1]: `systole` (1 - cos(pi t)) / 2 (ED at t = 0,
    ES at t = 1); `breathing` 1 - cos^(2n)(pi t / 2) (Lujan et al., Med. Phys. 26:715 (1999): end-inhale at t = 0,
    end-exhale at t = 1)."""
    t = float(t)
    if kind == "systole":
        return 0.5 * (1 - math.cos(math.pi * t))
    return 1 - math.cos(math.pi * t / 2) ** (2 * n)


def render_sequence(tissue: Callable[[Tensor, Tensor], dict[str, Tensor]], backward: BackwardMap, frames: int,
                    size: int, oversample: int, fov: float = 1.0) -> dict[str, Tensor]:
    """Render frames t = 0..T-1 (normalised times t / (T-1)) on the field of view [-fov, fov]^2: `tissue(X_ref,
    Y_ref)` gives {"signal": ..., and any per-point fractions (e.g. a tissue indicator)}, each averaged over the
    oversampled pixel, and "labels", taken at the pixel centres. Returns those (T, H, W) and "displacement"
    (T, 2, H, W) in pixels."""
    fx, fy = (fov * v for v in grid(size * oversample))
    cx, cy = (fov * v for v in grid(size))
    out: dict[str, list[Tensor]] = {}
    for k in range(frames):
        t = k / (frames - 1)
        xr, yr = backward(t, fx, fy)
        for name, v in tissue(xr, yr).items():
            if name == "labels":
                continue
            pooled = F.avg_pool2d(v[None, None].double(), oversample)[0, 0] if oversample > 1 else v.double()
            out.setdefault(name, []).append(pooled)
        xc, yc = backward(t, cx, cy)
        labels = tissue(xc, yc).get("labels")
        if labels is not None:
            out.setdefault("labels", []).append(labels)
        out.setdefault("displacement", []).append(torch.stack([xc - cx, yc - cy]) * size / (2 * fov))
    return {k: torch.stack(v) for k, v in out.items()}


def rician(signal: Tensor, sigma: float, g: torch.Generator) -> Tensor:
    """|S + sigma (n_1 + i n_2)|: a magnitude image's noise (Gudbjartsson & Patz, MRM 34:910 (1995))."""
    n1 = torch.randn(signal.shape, generator=g, dtype=signal.dtype)
    n2 = torch.randn(signal.shape, generator=g, dtype=signal.dtype)
    return torch.sqrt((signal + sigma * n1) ** 2 + (sigma * n2) ** 2)


def minmax(x: Tensor) -> Tensor:
    """(x - min) / (max - min) over the whole sequence (one map for all frames: their intensities stay comparable)."""
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo).clamp_min(1e-12)


class SequenceDataset(ImageDataset):
    """Base of the 4-D phantoms: `subjects` sequences per split (DEFAULT_SUBJECTS), one item per subject, (T, H, W)
    with T = `frames`, each from generators seeded by (name, seed, split, subject): deterministic, and train, val
    and test hold different subjects."""

    name = "sequence"

    def __init__(self, split: str = "test", size: int = 64, frames: int = 12, subjects: int | None = None,
                 seed: int = 0, oversample: int = 2) -> None:
        self.split = self.check_split(split)
        if frames < 2 or size < 4 or oversample < 1:
            raise ValueError(f"need frames >= 2, size >= 4 and oversample >= 1, got {frames}, {size}, {oversample}")
        self.size, self.channels, self.frames = (size, size), frames, frames
        self.subjects = DEFAULT_SUBJECTS[split] if subjects is None else int(subjects)
        self.seed, self.oversample = seed, oversample

    def __len__(self) -> int:
        return self.subjects

    def generator(self, i: int, *tag: object) -> torch.Generator:
        return torch.Generator().manual_seed(item_seed(self.name, self.seed, self.split, i, *tag))

    def render(self, i: int) -> dict[str, Tensor]:
        """{"image": (T, H, W) float64 on [0, 1], "displacement", "labels", ...} of subject i."""
        raise NotImplementedError

    def __getitem__(self, i: int) -> SequenceItem:
        self.check_index(i)
        r = self.render(i)
        pid = f"{self.name}-{self.split}-{i:05d}"
        item: SequenceItem = {"id": pid, "image": r["image"].float(), "patient": pid, "slice": 0,
                              "displacement": r["displacement"].float()}
        if "labels" in r:
            item["labels"] = r["labels"].to(torch.uint8)
        return item
