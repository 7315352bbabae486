"""`phantom-lung-4d`: a coronal 4-D CT slice through half a breathing cycle, end-inhale (frame 0) to end-exhale
(frame T-1), in Hounsfield units windowed to [0, 1].

Anatomy (reference = end-inhale): air outside a torso of soft tissue (40 HU) under subcutaneous fat (-100 HU); two
lungs (-850 HU) whose bases are the diaphragm domes, with a vessel tree (branching segments of Gaussian profile,
+40 HU at the centre line) and one nodule (20 HU); the heart (40 HU) between the lungs on the diaphragm; the liver
(60 HU) under the right dome; the spine (400 HU, vertebral texture) in the midline.

Motion: Lujan's breathing model z(t) = z_0 - b cos^(2n)(pi t / tau) (Lujan et al., Med. Phys. 26:715 (1999)) over
half a period: the diaphragm rises by d(t) = A (1 - cos^(2n)(pi t / 2)), t = k / (T-1), n = `exponent`, A drawn per
subject times `amplitude`. Backward map: Y = y + d(t) w(x, y), X = x (1 + 0.25 d(t) w(x, y)), with w rising from 0
at the apex to 1 at the domes (the lung stretches, the abdomen moves whole), 0 outside the rib cage and on the spine
(the chest wall and spine stay). Tissue texture (+-`texture` HU) moves with the tissue; Gaussian noise of `noise_hu`
in scanner coordinates; HU windowed to `hu_window` and mapped to [0, 1].
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from inverse_problems.data.phantoms.sequences import (SequenceDataset, Texture, render_sequence, smooth_profile,
                                                      smoothstep, uniform)

HU = dict(air=-1000.0, fat=-100.0, soft=40.0, lung=-850.0, vessel=40.0, nodule=20.0, heart=40.0, liver=60.0,
          bone=400.0)
LUNG, NODULE = 1, 2  # labels: 0 elsewhere, 1 lung, 2 nodule


def _segment_distance(x: Tensor, y: Tensor, seg: Tensor) -> Tensor:
    """(S, *x.shape) distance of each point to each segment (x0, y0, x1, y1) of seg (S, 4)."""
    x0, y0, x1, y1 = (seg[:, k].view(-1, *([1] * x.ndim)) for k in range(4))
    dx, dy = x1 - x0, y1 - y0
    s = (((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy).clamp_min(1e-12)).clamp(0, 1)
    return torch.sqrt((x - x0 - s * dx) ** 2 + (y - y0 - s * dy) ** 2)


class LungSubject:
    """One subject's anatomy and breathing (all drawn from `g`)."""

    def __init__(self, g: torch.Generator, amplitude: float, exponent: int) -> None:
        u = lambda lo=0.0, hi=1.0: uniform(g, lo, hi)  # noqa: E731
        self.torso = (u(0.80, 0.88), u(0.95, 1.05))
        self.fat = u(0.03, 0.05)
        self.dome = [(-0.38 + u(-0.03, 0.03), u(0.22, 0.28), u(0.34, 0.40)),  # right lung (image left): x, y, width
                     (0.38 + u(-0.03, 0.03), u(0.28, 0.34), u(0.30, 0.36))]
        self.lungs = [(d[0], u(-0.20, -0.15), u(0.26, 0.30), u(0.55, 0.62)) for d in self.dome]  # x, y, a, b
        self.heart = (u(0.02, 0.10), u(0.12, 0.18), u(0.22, 0.27), u(0.17, 0.21))
        self.amp = amplitude * u(0.08, 0.14)
        self.exponent = exponent
        segs = []
        for side in (-1, 1):
            hilum = (side * 0.14, -0.05)
            for _ in range(7):  # a trunk from the hilum outward (ang from the lateral direction), two branches
                ang, r = u(-1.3, 1.3), u(0.25, 0.45)
                end = (hilum[0] + side * r * math.cos(ang), hilum[1] + r * math.sin(ang))
                segs.append((*hilum, *end, u(0.012, 0.018)))
                mid = (0.5 * (hilum[0] + end[0]), 0.5 * (hilum[1] + end[1]))
                for _ in range(2):
                    b_ang, rb = ang + u(-0.8, 0.8), u(0.10, 0.22)
                    segs.append((*mid, mid[0] + side * rb * math.cos(b_ang), mid[1] + rb * math.sin(b_ang),
                                 u(0.006, 0.010)))
        self.vessels = torch.tensor(segs, dtype=torch.float64)
        k = int(u(0, 2))
        lx, ly, la, lb = self.lungs[k]
        self.nodule = (lx + u(-0.4, 0.4) * la, ly + u(-0.5, 0.3) * lb, u(0.03, 0.05))
        self.texture = Texture(g, f_lo=4.0, f_hi=14.0)

    def diaphragm(self, x: Tensor) -> Tensor:
        """The domes' height y(x) (rows point down: a dome is a minimum of y), the lower of the two per x."""
        heights = [dy + 0.25 * ((x - dx) / w) ** 2 for dx, dy, w in self.dome]
        return torch.where(x < 0, heights[0], heights[1])

    def backward(self, t: float, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        d = self.amp * smooth_profile(t, "breathing", self.exponent)
        w_y = smoothstep((y + 0.75) / 0.9)
        w_x = 1 - smoothstep((x.abs() - 0.62) / 0.12)
        w = w_y * w_x * (1 - torch.exp(-((x / 0.09) ** 4)) * (y < self.heart[1] - self.heart[3]).double())
        return x * (1 + 0.25 * d * w), y + d * w

    def tissue(self, x: Tensor, y: Tensor, texture: float) -> dict[str, Tensor]:
        a, b = self.torso
        torso = ((x / a).abs() ** 3 + ((y - 0.05) / b).abs() ** 3) ** (1 / 3)
        hu = torch.full_like(x, HU["air"])
        hu = torch.where(torso < 1, torch.full_like(x, HU["fat"]), hu)
        inner = torso < 1 - self.fat
        hu = torch.where(inner, HU["soft"] + texture * self.texture(x, y), hu)
        dia = self.diaphragm(x)
        liver = inner & (y > dia) & (x < 0.15)
        hu = torch.where(liver, HU["liver"] + 0.5 * texture * self.texture(y, x), hu)
        lung = torch.zeros_like(inner)
        for lx, ly, la, lb in self.lungs:
            lung |= (((x - lx) / la) ** 2 + ((y - ly) / lb) ** 2 < 1) & (y < dia)
        xl, yl = x[lung], y[lung]  # the vessel tree where it shows: in the lungs
        vessel = torch.exp(-0.5 * (_segment_distance(xl, yl, self.vessels[:, :4]) / self.vessels[:, 4:5]) ** 2)
        hu[lung] = HU["lung"] + 0.3 * texture * self.texture(xl, yl) + (HU["vessel"] - HU["lung"]) * vessel.amax(0)
        nx, ny, nr = self.nodule
        nodule = lung & ((x - nx) ** 2 + (y - ny) ** 2 < nr**2)
        hu = torch.where(nodule, torch.full_like(x, HU["nodule"]), hu)
        spine = inner & (x.abs() < 0.07) & ~lung
        vertebra = HU["bone"] + 150 * torch.cos(2 * math.pi * y / 0.16)
        hu = torch.where(spine, vertebra, hu)
        hx, hy, ha, hb = self.heart
        heart = inner & (((x - hx) / ha) ** 2 + ((y - hy) / hb) ** 2 < 1) & (y < dia + 0.02)
        hu = torch.where(heart, HU["heart"] + 0.5 * texture * self.texture(x, y), hu)
        labels = torch.zeros(x.shape, dtype=torch.uint8)
        labels[lung & ~heart] = LUNG
        labels[nodule & ~heart] = NODULE
        return {"signal": hu, "labels": labels}


class PhantomLung4D(SequenceDataset):
    """Coronal 4-D CT slices end-inhale -> end-exhale (see the module): `frames` (T) frames of `size`^2 on [0, 1];
    options for the shifts: `amplitude` (breathing amplitude factor), `noise_hu`, `frames`."""

    name = "phantom-lung-4d"

    def __init__(self, split: str = "test", size: int = 64, frames: int = 12, subjects: int | None = None,
                 seed: int = 0, amplitude: float = 1.0, exponent: int = 2, texture: float = 30.0,
                 noise_hu: float = 20.0, hu_window: Sequence[float] = (-1000.0, 500.0), oversample: int = 2) -> None:
        super().__init__(split, size, frames, subjects, seed, oversample)
        lo, hi = (float(v) for v in hu_window)
        if not hi > lo or amplitude < 0 or exponent < 1:
            raise ValueError(f"need hu_window lo < hi, amplitude >= 0 and exponent >= 1, got {tuple(hu_window)}, "
                             f"{amplitude}, {exponent}")
        self.amplitude, self.exponent, self.texture = float(amplitude), int(exponent), float(texture)
        self.noise_hu, self.hu_window = float(noise_hu), (lo, hi)

    def subject(self, i: int) -> LungSubject:
        return LungSubject(self.generator(i), self.amplitude, self.exponent)

    def render(self, i: int) -> dict[str, Tensor]:
        s = self.subject(i)
        r = render_sequence(lambda x, y: s.tissue(x, y, self.texture), s.backward, self.frames, self.size[0],
                            self.oversample)
        hu = r["signal"]
        if self.noise_hu > 0:
            hu = hu + self.noise_hu * torch.randn(hu.shape, generator=self.generator(i, "noise"), dtype=hu.dtype)
        lo, hi = self.hu_window
        r["image"] = ((hu - lo) / (hi - lo)).clamp(0, 1)
        return r
