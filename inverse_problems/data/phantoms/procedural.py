"""Procedural brain and knee phantoms from tissue classes with literature relaxation times (3 T).

A phantom is a tissue label map drawn on a fine grid (`oversample` x the target size) from smooth
random shapes (deformed ellipses, super-ellipses, morphological rims), turned into an MR signal by
a spin-echo, inversion-recovery or gradient-echo signal equation, area-downsampled to the target
size (no aliasing of edges), multiplied by a smooth receive-bias field and a smooth low-order
background phase. Everything random comes from one torch.Generator, so a seed fixes the image.

The anatomy draws do not depend on the contrast: the same generator state gives the same subject
in T1w, T2w, PD and FLAIR (paired contrasts for controlled shifts).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Tissue:
    """Proton density (relative to water) and relaxation times in ms at 3 T."""

    name: str
    pd: float
    t1: float
    t2: float
    t2star: float


# Values at 3 T, rounded. Brain: T1/T2 of WM and GM from Wansapura et al., JMRI 9:531 (1999)
# (WM 832/79.6 ms, GM 1331/110 ms); CSF T1 from Lu et al., JMRI 22:13 (2005) (4163 ms), CSF T2 ~2 s;
# T2* of WM/GM from Peters et al., MRI 25:748 (2007) (53/66 ms); PD (water content) WM 0.70, GM 0.82
# after Neeb et al., NeuroImage 31:1156 (2006). MS-like lesions: longer T1 and T2 than normal WM.
# Knee: cartilage, synovial fluid, marrow and fat from Gold et al., AJR 183:343 (2004) (cartilage
# 1240/37 ms, fluid 3620/767 ms, marrow/fat T1 ~370-380 ms), muscle from Stanisz et al., MRM 54:507
# (2005) (1412/50 ms); cortical bone and menisci/ligaments have sub-ms / ~10 ms T2 (Du et al.,
# JMR 207:304 (2010); Reichert et al., MRI 23:611 (2005)), hence dark on conventional sequences.
BRAIN_TISSUES: tuple[Tissue, ...] = (
    Tissue("background", 0.0, 1000.0, 100.0, 50.0),
    Tissue("fat", 0.90, 380.0, 130.0, 50.0),          # scalp / subcutaneous fat
    Tissue("skull", 0.15, 250.0, 0.5, 0.4),           # cortical bone
    Tissue("csf", 1.00, 4160.0, 2000.0, 1000.0),
    Tissue("grey_matter", 0.82, 1330.0, 110.0, 66.0),
    Tissue("white_matter", 0.70, 830.0, 80.0, 53.0),
    Tissue("ventricle", 1.00, 4160.0, 2000.0, 1000.0),  # CSF in the lateral ventricles
    Tissue("lesion", 0.80, 1400.0, 150.0, 70.0),        # MS-like white-matter lesion
)
KNEE_TISSUES: tuple[Tissue, ...] = (
    Tissue("background", 0.0, 1000.0, 100.0, 50.0),
    Tissue("fat", 0.90, 380.0, 130.0, 50.0),
    Tissue("muscle", 0.75, 1410.0, 50.0, 28.0),
    Tissue("bone_marrow", 0.85, 370.0, 120.0, 10.0),
    Tissue("cortical_bone", 0.15, 250.0, 0.5, 0.4),
    Tissue("cartilage", 0.75, 1240.0, 37.0, 20.0),
    Tissue("fluid", 1.00, 3620.0, 770.0, 300.0),
    Tissue("meniscus_ligament", 0.60, 1000.0, 12.0, 5.0),
)
TISSUES: dict[str, tuple[Tissue, ...]] = {"brain": BRAIN_TISSUES, "knee": KNEE_TISSUES}
CSF_T1_3T = 4160.0


@dataclass(frozen=True)
class Contrast:
    """An acquisition: sequence 'se' (spin echo), 'ir' (inversion recovery SE) or 'gre' (spoiled GRE).

    TR, TE, TI in ms; `ti=None` for 'ir' nulls a tissue of T1 `null_t1` (CSF: FLAIR).
    """

    name: str
    sequence: str
    tr: float
    te: float
    ti: float | None = None
    flip_deg: float = 90.0
    null_t1: float = CSF_T1_3T

    def inversion_time(self) -> float:
        """TI nulling T1 = null_t1: 1 - 2 exp(-TI/T1) + exp(-TR/T1) = 0."""
        if self.ti is not None:
            return self.ti
        return self.null_t1 * math.log(2.0 / (1.0 + math.exp(-self.tr / self.null_t1)))

    def signal(self, pd: Tensor, t1: Tensor, t2: Tensor, t2star: Tensor) -> Tensor:
        """Magnitude signal per tissue.

        SE:  S = PD (1 - e^{-TR/T1}) e^{-TE/T2}
        IR:  S = PD |1 - 2 e^{-TI/T1} + e^{-TR/T1}| e^{-TE/T2}   (magnitude reconstruction)
        GRE: S = PD sin(a) (1 - E1) / (1 - cos(a) E1) e^{-TE/T2*},  E1 = e^{-TR/T1}
        """
        e1 = torch.exp(-self.tr / t1)
        if self.sequence == "se":
            return pd * (1 - e1) * torch.exp(-self.te / t2)
        if self.sequence == "ir":
            ti = self.inversion_time()
            return pd * (1 - 2 * torch.exp(-ti / t1) + e1).abs() * torch.exp(-self.te / t2)
        if self.sequence == "gre":
            a = math.radians(self.flip_deg)
            return pd * math.sin(a) * (1 - e1) / (1 - math.cos(a) * e1) * torch.exp(-self.te / t2star)
        raise ValueError(f"unknown sequence {self.sequence!r}; use 'se', 'ir' or 'gre'")


CONTRASTS: dict[str, Contrast] = {
    "t1": Contrast("t1", "se", tr=500.0, te=10.0),
    "t2": Contrast("t2", "se", tr=4000.0, te=100.0),
    "pd": Contrast("pd", "se", tr=3000.0, te=30.0),
    "flair": Contrast("flair", "ir", tr=9000.0, te=100.0),
    "t2star": Contrast("t2star", "gre", tr=700.0, te=20.0, flip_deg=20.0),
}


def get_contrast(contrast: str | Contrast) -> Contrast:
    if isinstance(contrast, Contrast):
        return contrast
    if contrast not in CONTRASTS:
        raise ValueError(f"unknown contrast {contrast!r}; choose one of {sorted(CONTRASTS)} or pass a Contrast")
    return CONTRASTS[contrast]


class _Draws:
    """A fixed block of uniforms from the generator, consumed in order (fast scalar draws)."""

    def __init__(self, generator: torch.Generator, n: int) -> None:
        self.values = torch.rand(n, generator=generator, dtype=torch.float64).tolist()
        self.i = 0

    def __call__(self, lo: float = 0.0, hi: float = 1.0) -> float:
        if self.i >= len(self.values):
            raise RuntimeError("phantom draw block exhausted; enlarge it")
        v = self.values[self.i]
        self.i += 1
        return lo + (hi - lo) * v


N_ANATOMY_DRAWS = 256
N_ACQUISITION_DRAWS = 32


@lru_cache(maxsize=16)
def _grid(n: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates in [-1, 1]: X along columns, Y along rows (down)."""
    c = (torch.arange(n, dtype=torch.float32) + 0.5) * (2.0 / n) - 1.0
    return c.view(1, n).expand(n, n), c.view(n, 1).expand(n, n)


def _frame(x: Tensor, y: Tensor, cx: float, cy: float, angle: float) -> tuple[Tensor, Tensor]:
    """Coordinates in a frame centred at (cx, cy) and rotated by `angle` (radians)."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - cx, y - cy
    return c * dx + s * dy, -s * dx + c * dy


def _ellipse(x: Tensor, y: Tensor, cx: float, cy: float, a: float, b: float, angle: float = 0.0) -> Tensor:
    """Normalised radius of an ellipse: < 1 inside."""
    xr, yr = _frame(x, y, cx, cy, angle)
    return torch.sqrt((xr / a) ** 2 + (yr / b) ** 2)


def _superellipse(x: Tensor, y: Tensor, cx: float, cy: float, a: float, b: float, p: float) -> Tensor:
    """(|x/a|^p + |y/b|^p)^(1/p): < 1 inside a rounded rectangle for p > 2."""
    return ((((x - cx) / a).abs() ** p) + (((y - cy) / b).abs() ** p)) ** (1.0 / p)


def _harmonics(theta: Tensor, terms: list[tuple[int, float, float]]) -> Tensor:
    """sum_k A_k cos(k theta + phi_k)."""
    out = torch.zeros_like(theta)
    for k, amp, phase in terms:
        out = out + amp * torch.cos(k * theta + phase)
    return out


def _dilate(mask: Tensor, radius_px: int) -> Tensor:
    if radius_px <= 0:
        return mask
    k, r = 2 * radius_px + 1, radius_px  # square structuring element, as two separable passes
    m = F.max_pool2d(mask[None, None].float(), (k, 1), stride=1, padding=(r, 0))
    return F.max_pool2d(m, (1, k), stride=1, padding=(0, r))[0, 0] > 0.5


def _erode(mask: Tensor, radius_px: int) -> Tensor:
    return ~_dilate(~mask, radius_px)


def brain_labels(n: int, d: _Draws, max_lesions: int = 8, lesion_prob: float = 0.5) -> Tensor:
    """Axial brain slice: labels index BRAIN_TISSUES on an n x n grid."""
    X, Y = _grid(n)
    cx, cy, ang = d(-0.03, 0.03), d(-0.03, 0.03), d(-0.15, 0.15)
    a, b = d(0.70, 0.80), d(0.84, 0.92)
    xr, yr = _frame(X, Y, cx, cy, ang)
    u, v = xr / a, yr / b
    theta = torch.atan2(v, u)
    shape = 1 + _harmonics(theta, [(k, d(0, 0.03), d(0, 2 * math.pi)) for k in (2, 3, 4)])
    rho = torch.sqrt(u**2 + v**2) / shape
    s_skull = d(0.91, 0.94)
    s_csf = s_skull - d(0.05, 0.08)
    s_brain = s_csf - d(0.02, 0.04)
    gyri = _harmonics(theta, [(int(6 + 7 * d()), 0.5, d(0, 2 * math.pi)) for _ in range(4)])
    w0, w1 = d(0.78, 0.84), d(0.05, 0.08)
    wm_edge = s_brain * (w0 + w1 * gyri.clamp(-1.5, 1.5))
    sulci = _harmonics(theta, [(int(14 + 9 * d()), 1.0, d(0, 2 * math.pi)) for _ in range(3)])
    labels = torch.zeros(n, n, dtype=torch.long)
    labels[rho < 1] = 1
    labels[rho < s_skull] = 2
    labels[rho < s_csf] = 3
    labels[rho < s_brain] = 4
    labels[(rho < s_brain) & (sulci > 1.6) & (rho > wm_edge + 0.04)] = 3
    wm = rho < wm_edge
    labels[wm] = 5
    for side in (-1.0, 1.0):  # deep grey matter (basal ganglia / thalamus)
        e = _ellipse(xr, yr, side * d(0.12, 0.18), d(0.0, 0.12), d(0.06, 0.09), d(0.09, 0.13), side * d(0, 0.3))
        labels[(e < 1) & wm] = 4
    vs = d(0.7, 1.4)
    for side in (-1.0, 1.0):  # lateral ventricles
        e = _ellipse(xr, yr, side * d(0.05, 0.09), d(-0.14, -0.04), d(0.03, 0.055) * vs, d(0.15, 0.22) * vs,
                     side * d(0.1, 0.35))
        labels[e < 1] = 6
    has_lesions = d() < lesion_prob
    n_lesions = 1 + int(d() * max_lesions) if has_lesions else 0
    for j in range(max_lesions):  # fixed number of draws per slot, so later draws do not shift
        phi, r = d(0, 2 * math.pi), d(0.12, 0.5)
        la, lb, lang = d(0.015, 0.04), d(0.02, 0.07), d(0, math.pi)
        if j < n_lesions:
            e = _ellipse(xr, yr, r * a * math.cos(phi), r * b * math.sin(phi), la, lb, lang)
            labels[(e < 1) & (labels == 5)] = 7
    return labels


def knee_labels(n: int, d: _Draws) -> Tensor:
    """Coronal knee slice: labels index KNEE_TISSUES on an n x n grid."""
    X, Y = _grid(n)
    px = n / 2.0  # pixels per unit length
    xr, yr = _frame(X, Y, d(-0.03, 0.03), d(-0.03, 0.03), d(-0.08, 0.08))
    leg_a = d(0.62, 0.74)
    wob = _harmonics(torch.atan2(yr, xr), [(k, d(0, 0.02), d(0, 2 * math.pi)) for k in (2, 3)])
    leg = _superellipse(xr, yr, 0.0, 0.0, leg_a, 1.4, 2.6) / (1 + wob)
    y0 = d(-0.06, 0.06)  # joint line
    labels = torch.zeros(n, n, dtype=torch.long)
    labels[leg < 1] = 1
    labels[leg < 1 - d(0.06, 0.12)] = 2
    # femur: shaft, metaphysis, two condyles, intercondylar notch
    fw, cw, ca, cb = d(0.18, 0.24), d(0.16, 0.21), d(0.18, 0.22), d(0.15, 0.19)
    ccy = y0 - cb - d(0.03, 0.04)
    femur = ((xr.abs() < fw) & (yr < y0 - 0.1)) | (_ellipse(xr, yr, 0.0, ccy - 0.12, cw + ca * 0.9, 0.22) < 1)
    for side in (-1.0, 1.0):
        femur |= _ellipse(xr, yr, side * cw, ccy, ca, cb) < 1
    femur &= _ellipse(xr, yr, 0.0, y0 - 0.02, d(0.04, 0.07), d(0.10, 0.14)) >= 1
    # tibia: plateau and shaft
    tib_top = y0 + d(0.03, 0.045)
    tib_h = d(0.15, 0.19)
    tibia = (_superellipse(xr, yr, 0.0, tib_top + tib_h, d(0.40, 0.47), tib_h, 4.0) < 1) | (
        (xr.abs() < d(0.17, 0.23)) & (yr > tib_top + tib_h))
    bone = femur | tibia
    joint = (yr > y0 - 0.25) & (yr < y0 + 0.2) & (leg < 1)
    labels[joint & (yr > ccy) & (yr < tib_top) & (xr.abs() < cw + ca)] = 6  # joint-space fluid film
    t_cart = max(1, round(d(0.02, 0.03) * px))
    cart = ((_dilate(femur, t_cart) & ~femur & (yr > ccy)) | (_dilate(tibia, t_cart) & ~tibia & (yr < tib_top + 0.05)))
    cart &= joint & (xr.abs() < cw + ca)
    labels[cart] = 5
    mx = cw + ca * d(0.55, 0.8)
    for side in (-1.0, 1.0):  # menisci: wedges at the joint margins
        men = (_ellipse(xr, yr, side * mx, (ccy + cb + tib_top) / 2, d(0.08, 0.11), d(0.025, 0.04)) < 1)
        labels[men & ~bone & (labels != 5)] = 7
        coll = ((xr - side * (cw + ca + d(0.02, 0.04))).abs() < d(0.01, 0.02)) & ((yr - y0).abs() < d(0.15, 0.25))
        labels[coll & ~bone & (labels == 2)] = 7  # collateral ligaments
    acl = _ellipse(xr, yr, d(-0.03, 0.03), y0 - 0.07, d(0.02, 0.03), d(0.10, 0.13), d(-0.45, -0.2))
    labels[(acl < 1) & ~bone] = 7  # cruciate ligament in the notch
    for _ in range(3):  # joint effusion pockets
        keep = d() < 0.5
        e = _ellipse(xr, yr, d(-0.45, 0.45), y0 + d(-0.04, 0.04), d(0.04, 0.1), d(0.015, 0.035), d(-0.3, 0.3))
        if keep:
            labels[(e < 1) & ((labels == 2) | (labels == 6))] = 6
    t_cort = max(1, round(d(0.02, 0.03) * px))
    labels[bone] = 4
    labels[_erode(bone, t_cort)] = 3
    return labels


ANATOMIES = {"brain": brain_labels, "knee": knee_labels}


def tissue_parameters(anatomy: str, d: _Draws, jitter: float) -> dict[str, Tensor]:
    """Per-tissue PD, T1, T2, T2* of one subject: table values times (1 +- jitter), uniform."""
    tissues = TISSUES[anatomy]
    out = {}
    for key in ("pd", "t1", "t2", "t2star"):
        out[key] = torch.tensor([getattr(t, key) * (1 + jitter * d(-1, 1)) for t in tissues], dtype=torch.float32)
    return out


def _poly2(size: int, coeffs: list[float]) -> Tensor:
    """c0 + c1 x + c2 y + c3 x^2 + c4 x y + c5 y^2 on the pixel-centre grid."""
    X, Y = _grid(size)
    return coeffs[0] + coeffs[1] * X + coeffs[2] * Y + coeffs[3] * X**2 + coeffs[4] * X * Y + coeffs[5] * Y**2


@dataclass
class Phantom:
    """A rendered phantom: `image` (2, H, W) float32 (real, imaginary), `labels` on the fine grid."""

    image: Tensor
    labels: Tensor
    oversample: int

    def fractions(self, n_tissues: int) -> Tensor:
        """Area fraction of each tissue per pixel, (T, H, W)."""
        onehot = F.one_hot(self.labels, n_tissues).permute(2, 0, 1).float()
        return F.avg_pool2d(onehot[None], self.oversample)[0]


def zoom_labels(labels: Tensor, factor: float) -> Tensor:
    """A label map scaled by `factor` about the image centre (nearest neighbour; < 1 shrinks, background fills)."""
    n = labels.shape[-1]
    x, y = _grid(n)
    grid = torch.stack([x / factor, y / factor], dim=-1)[None]
    out = F.grid_sample(labels[None, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out[0, 0].round().to(labels.dtype)


def slice_zoom(position: float) -> float:
    """In-plane scale of the slice at through-plane position z in [-1, 1] of an ellipsoidal subject: sqrt(1 - z^2)."""
    if not -1 < position < 1:
        raise ValueError(f"slice position must lie in (-1, 1), got {position}")
    return math.sqrt(1.0 - position**2)


def make_phantom(anatomy: str = "brain", contrast: str | Contrast = "t2", size: int = 64,
                 generator: torch.Generator | int | None = None, oversample: int = 4, jitter: float = 0.05,
                 bias: float = 0.1, phase: float = 1.0, lesion_prob: float = 0.5, position: float = 0.0) -> Phantom:
    """One phantom slice as a complex image stored as (2, size, size) float32.

    Tissue labels are drawn on a (size*oversample)^2 grid, the signal equation of `contrast` gives
    each tissue's magnitude, area averaging (avg-pool by `oversample`) downsamples it, a receive
    bias exp(bias * p2(x, y)) and a background phase phase * p2'(x, y) (p2: random quadratic
    polynomials, coefficients uniform in [-1, 1], constant phase uniform in [-pi, pi]) are applied.
    `position` z in (-1, 1) is the slice's through-plane position in the subject: the same anatomy draws, scaled
    in-plane by sqrt(1 - z^2) (an ellipsoidal subject's cross-section), the same tissue values and receive fields
    (0: the central slice, the phantom of earlier versions). Not normalised (see PhantomDataset).
    """
    if anatomy not in ANATOMIES:
        raise ValueError(f"unknown anatomy {anatomy!r}; choose one of {sorted(ANATOMIES)}")
    if size < 4 or oversample < 1:
        raise ValueError(f"size must be >= 4 and oversample >= 1, got size={size}, oversample={oversample}")
    con = get_contrast(contrast)
    if isinstance(generator, int) or generator is None:
        generator = torch.Generator().manual_seed(0 if generator is None else int(generator))
    d = _Draws(generator, N_ANATOMY_DRAWS)
    n = size * oversample
    labels = brain_labels(n, d, lesion_prob=lesion_prob) if anatomy == "brain" else knee_labels(n, d)
    if position != 0.0:
        labels = zoom_labels(labels, slice_zoom(position))
    d.i = N_ANATOMY_DRAWS - 48  # tissue jitter uses the last 48 anatomy draws (4 x 8 tissues <= 48)
    params = tissue_parameters(anatomy, d, jitter)
    signal = con.signal(params["pd"], params["t1"], params["t2"], params["t2star"])
    signal[0] = 0.0
    image = receive(signal[labels], size, oversample, generator, bias, phase)
    return Phantom(image=image, labels=labels, oversample=oversample)


def receive(fine: torch.Tensor, size: int, oversample: int, generator: torch.Generator, bias: float,
            phase: float) -> torch.Tensor:
    """The fine-grid magnitude area-averaged to (size, size), times a smooth receive bias exp(bias * p(r)), with a
    smooth background phase (quadratic polynomials p drawn from `generator`): (2, size, size) real/imaginary."""
    mag = F.avg_pool2d(fine[None, None], oversample)[0, 0] if oversample > 1 else fine
    a = _Draws(generator, N_ACQUISITION_DRAWS)
    bias_field = torch.exp(bias * _poly2(size, [0.0] + [a(-1, 1) for _ in range(5)]))
    ph = _poly2(size, [a(-math.pi, math.pi)] + [phase * a(-1, 1) for _ in range(5)]) if phase > 0 else 0.0 * mag
    z = mag * bias_field
    return torch.stack([z * torch.cos(ph), z * torch.sin(ph)]).to(torch.float32)
