"""`phantom-cardiac-4d`: a short-axis cine from end-diastole (frame 0) to end-systole (frame T-1).

Anatomy (reference = ED coordinates): body with subcutaneous fat, lungs, liver, the left ventricle (blood pool of
radius r_i, myocardium out to r_o, two papillary muscles in the pool), the right ventricle (a crescent against the
septum). Per subject: sizes, position, ejection fraction EF ~ U(ef_range), torsion and drift.

Motion, with phase m(t) = (1 - cos(pi t)) / 2 (t = k / (T-1)), as one backward map X = phi_t(x) (composition):
1. drift: x - m d w_h(x), d a small translation of the heart region (w_h ~ 1 on the heart, 0 far away);
2. torsion about the LV centre c by -m theta w_t(rho): a radius-dependent rotation (area-preserving);
3. LV contraction: r_i(m) = r_i sqrt(1 - EF m) (2-D blood-pool area EF at ES). Inside the pool the map scales by
   r_i / r_i(m); from the endocardium outward R^2 = rho^2 + r_i^2 - r_i(m)^2 (incompressible: the myocardial area
   pi (r_o^2 - r_i^2) is conserved exactly), blended to the identity beyond r_o(m) + 0.25;
4. RV free wall: pushed toward the septum, zero on the LV.
Intensities: `contrast` "bssfp" (bright blood and fat, dark myocardium, darker lung) or "ct" (contrast-enhanced CT,
windowed: myocardium and liver near blood, fat dark) times (1 +- 5 %) per subject and tissue, times
(1 + `texture` T(X)) with T a tissue-fixed random field; a smooth receive bias (1 + `bias` (linear + bilinear) in
scanner coordinates), Rician noise of std `noise` (relative to the blood signal), min-max over the sequence.
Labels (ACDC's codes): 0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity (papillary muscles included).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from inverse_problems.data.phantoms.sequences import (SequenceDataset, SequenceItem, Texture, grid, minmax,
                                                      render_sequence, rician, smooth_profile, smoothstep, uniform)

CONTRASTS = {  # background, fat, muscle (body), lung, blood, myocardium, liver
    "bssfp": dict(background=0.0, fat=0.85, muscle=0.40, lung=0.06, blood=0.95, myocardium=0.28, liver=0.20),
    "ct": dict(background=0.0, fat=0.22, muscle=0.55, lung=0.02, blood=0.80, myocardium=0.55, liver=0.60),
}
RV, MYO, LV = 1, 2, 3
FOV = 0.6  # the field of view, [-FOV, FOV]^2 of the body's coordinates: a crop around the heart (ACDC's are 128 x 128)


class CardiacSubject:
    """One subject's anatomy, motion and intensities (all drawn from `g`)."""

    def __init__(self, g: torch.Generator, ef_range: Sequence[float], torsion_deg: float, drift: float,
                 contrast: str, texture: float = 0.08) -> None:
        u = lambda lo=0.0, hi=1.0: uniform(g, lo, hi)  # noqa: E731
        self.body = (u(0.82, 0.90), u(0.62, 0.70), u(0.03, 0.06))  # semi-axes, fat thickness
        self.c = (0.12 + u(-0.04, 0.04), -0.02 + u(-0.04, 0.04))
        self.r_i = u(0.13, 0.17)
        self.r_o = self.r_i + u(0.06, 0.08)
        self.ef = u(float(ef_range[0]), float(ef_range[1]))
        self.torsion = math.radians(torsion_deg) * u(0.6, 1.0)
        a = u(0, 2 * math.pi)
        self.drift = (drift * u(0.5, 1.0) * math.cos(a), drift * u(0.5, 1.0) * math.sin(a))
        self.rv_c = (self.c[0] - self.r_o - u(0.04, 0.06), self.c[1] + u(0.0, 0.04))
        self.rv_ab = (u(0.10, 0.13), u(0.16, 0.20))
        self.rv_k = u(0.2, 0.3)
        base = u(-0.5, 0.5)
        self.papillary = [(base + da, 0.72 * self.r_i, u(0.02, 0.03)) for da in (-1.0, 1.2)]
        self.lungs = [(u(0.45, 0.52), u(-0.12, -0.02), u(0.22, 0.27), u(0.38, 0.45)),
                      (u(-0.52, -0.45), u(-0.15, -0.05), u(0.24, 0.28), u(0.40, 0.46))]
        self.liver = (u(-0.40, -0.30), u(0.35, 0.45), u(0.35, 0.42), u(0.22, 0.28))
        self.values = {k: v * u(0.95, 1.05) for k, v in CONTRASTS[contrast].items()}
        self.texture, self.texture_amp = Texture(g, f_lo=3.0, f_hi=10.0), texture
        self.bias = (u(-1, 1), u(-1, 1), u(-1, 1))

    def radii(self, m: float) -> tuple[float, float]:
        """(r_i(m), r_o(m)): the endocardial radius at phase m and the epicardial one of equal myocardial area."""
        ri = self.r_i * math.sqrt(1 - self.ef * m)
        return ri, math.sqrt(ri**2 + self.r_o**2 - self.r_i**2)

    def backward(self, t: float, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        m = smooth_profile(t, "systole")
        cx, cy = self.c
        # 1. drift of the heart region
        rho = torch.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        w_h = 1 / (1 + (rho / (self.r_o + 0.25)) ** 8)
        x, y = x - m * self.drift[0] * w_h, y - m * self.drift[1] * w_h
        # 2. torsion (a rotation by a radius-dependent angle: area-preserving)
        dx, dy = x - cx, y - cy
        rho = torch.sqrt(dx**2 + dy**2)
        th = -m * self.torsion / (1 + (rho / (self.r_o + 0.05)) ** 8)
        dx, dy = torch.cos(th) * dx - torch.sin(th) * dy, torch.sin(th) * dx + torch.cos(th) * dy
        # 3. LV contraction, incompressible from the endocardium out
        ri, ro = self.radii(m)
        rho = torch.sqrt(dx**2 + dy**2).clamp_min(1e-12)
        inc = torch.sqrt(rho**2 + self.r_i**2 - ri**2)
        blend = 1 - smoothstep((rho - ro) / 0.25)
        r_ref = torch.where(rho < ri, rho * self.r_i / ri, rho + (inc - rho) * blend)
        x, y = cx + dx * r_ref / rho, cy + dy * r_ref / rho
        # 4. RV free wall toward the septum (zero on the LV: its myocardial area is untouched)
        px, py = cx - self.r_o, cy
        rho = torch.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        e = torch.sqrt(((x - self.rv_c[0]) / (self.rv_ab[0] + 0.1)) ** 2 + ((y - self.rv_c[1]) / (self.rv_ab[1] + 0.1)) ** 2)
        w = smoothstep((rho - self.r_o) / 0.04) * (1 - smoothstep(e - 0.5))
        return x + m * self.rv_k * w * (x - px), y + m * self.rv_k * w * (y - py)

    def tissue(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        v = self.values
        a, b, fat = self.body
        e_body = torch.sqrt((x / a) ** 2 + (y / b) ** 2)
        signal = torch.full_like(x, v["background"])
        labels = torch.zeros(x.shape, dtype=torch.uint8)
        signal = torch.where(e_body < 1, torch.full_like(x, v["fat"]), signal)
        signal = torch.where(e_body < 1 - fat / b, torch.full_like(x, v["muscle"]), signal)
        for lx, ly, la, lb in self.lungs:
            signal = torch.where(((x - lx) / la) ** 2 + ((y - ly) / lb) ** 2 < 1, torch.full_like(x, v["lung"]), signal)
        lx, ly, la, lb = self.liver
        inside_liver = (((x - lx) / la) ** 2 + ((y - ly) / lb) ** 2 < 1) & (e_body < 1 - fat / b - 0.02)
        signal = torch.where(inside_liver, torch.full_like(x, v["liver"]), signal)
        cx, cy = self.c
        rho = torch.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        phi = torch.atan2(y - cy, x - cx)
        e_rv = torch.sqrt(((x - self.rv_c[0]) / self.rv_ab[0]) ** 2 + ((y - self.rv_c[1]) / self.rv_ab[1]) ** 2)
        rv_wall = (e_rv < 1 + 0.015 / self.rv_ab[0]) & (rho >= self.r_o)
        rv_blood = (e_rv < 1) & (rho >= self.r_o + 0.015)
        signal = torch.where(rv_wall, torch.full_like(x, v["myocardium"]), signal)
        signal = torch.where(rv_blood, torch.full_like(x, v["blood"]), signal)
        labels[rv_blood] = RV
        myo = (rho >= self.r_i) & (rho < self.r_o)
        pool = rho < self.r_i
        papillary = torch.zeros_like(pool)
        for ang, r, rad in self.papillary:
            papillary |= (x - cx - r * math.cos(ang)) ** 2 + (y - cy - r * math.sin(ang)) ** 2 < rad**2
        signal = torch.where(myo | (pool & papillary), torch.full_like(x, v["myocardium"]), signal)
        signal = torch.where(pool & ~papillary, torch.full_like(x, v["blood"]), signal)
        labels[myo] = MYO
        labels[pool] = LV
        signal = signal * (1 + self.texture_amp * self.texture(x, y))
        return {"signal": signal, "myocardium": myo.double(), "labels": labels}


class PhantomCardiac4D(SequenceDataset):
    """Short-axis cardiac cines ED -> ES (see the module): `frames` (T) frames of `size`^2 on [0, 1]; options for
    the shifts: `ef_range` (motion), `contrast` ("bssfp" | "ct"), `noise`, `frames`."""

    name = "phantom-cardiac-4d"

    def __init__(self, split: str = "test", size: int = 64, frames: int = 12, subjects: int | None = None,
                 seed: int = 0, ef_range: Sequence[float] = (0.45, 0.70), torsion_deg: float = 8.0,
                 drift: float = 0.03, contrast: str = "bssfp", texture: float = 0.08, bias: float = 0.15,
                 noise: float = 0.02, oversample: int = 2) -> None:
        super().__init__(split, size, frames, subjects, seed, oversample)
        if contrast not in CONTRASTS:
            raise ValueError(f"unknown contrast {contrast!r}; choose one of {', '.join(CONTRASTS)}")
        lo, hi = (float(v) for v in ef_range)
        if not 0 < lo <= hi < 1:
            raise ValueError(f"ef_range must be 0 < lo <= hi < 1, got {tuple(ef_range)}")
        self.ef_range, self.torsion_deg, self.drift, self.contrast = (lo, hi), torsion_deg, drift, contrast
        self.texture, self.bias, self.noise = texture, bias, noise

    def subject(self, i: int) -> CardiacSubject:
        return CardiacSubject(self.generator(i), self.ef_range, self.torsion_deg, self.drift, self.contrast,
                              self.texture)

    def render(self, i: int) -> dict[str, Tensor]:
        s = self.subject(i)
        r = render_sequence(s.tissue, s.backward, self.frames, self.size[0], self.oversample, FOV)
        x, y = grid(self.size[0])
        b = s.bias
        field = 1 + self.bias * (b[0] * x + b[1] * y + b[2] * x * y) / 2
        signal = r["signal"] * field
        if self.noise > 0:
            signal = rician(signal, self.noise * s.values["blood"], self.generator(i, "noise"))
        r["image"] = minmax(signal)
        return r

    def __getitem__(self, i: int) -> SequenceItem:
        item = super().__getitem__(i)
        item["ejection_fraction"] = float(self.subject(i).ef)
        return item
