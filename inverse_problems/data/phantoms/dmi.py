"""Dynamic deuterium metabolic imaging (DMI) phantoms: metabolite maps with kinetics after [6,6'-2H2]glucose.

A subject is a brain slice of the suite's phantom (inverse_problems.data.phantoms.procedural: CSF, grey and white matter,
ventricles) with, at probability `tumour_prob`, one tumour (a deformed ellipse in the parenchyma, tissue class
"lesion"). Each tissue's concentration (mM) of metabolite m at time t (minutes after the oral dose) is

    water(t) = W0 (1 + a_w (1 - exp(-t / tau_w)))   (natural-abundance HDO, ~10 mM x water content, rising slowly)
    glc(t)   = G   (1 - exp(-t / tau_glc))          (rising and saturating)
    glx(t)   = X   (1 - exp(-t / tau_glx))          (slower)
    lac(t)   = L   (1 - exp(-t / tau_lac))          (tumour: larger L, shorter tau: Warburg effect)

with steady-state values near those reported for human DMI at 4 T (De Feyter et al., Sci. Adv. 4:eaat7314
(2018): Glc ~ 3 mM, Glx ~ 3 mM in grey matter, Lac ~ 1.5 mM in the tumour) times (1 +- `jitter`) per subject
and tissue, time constants times (1 +- `tau_jitter`); tissue maps are area averages of a fine label grid, so
partial volumes mix the tissues' curves. Skull, scalp and background carry no signal.

Frames k = 0..n_frames-1 of a subject sit at t_k = 180 (k + 1) / n_frames min. Each frame carries the physics
the `mrsi` problem simulates with: a smooth B0 map (a random quadratic, peak |B0| uniform in [0.5, 1] x
`b0_max_ppm`; fixed per subject), a global frequency drift drift_hz(t) = r t / 180 + 0.1 r_max sin(2 pi t / 90 +
psi) (|r| uniform in [0.5, 1] x `drift_max_hz` = r_max, random sign: every subject drifts), an extra linewidth
uniform in [0, `linewidth_max_hz`], a zero-order phase uniform in +-`phase_max_rad` and a noise multiplier
1 + `snr_drift` sin(2 pi t / 180 + psi') (SNR fluctuating over the scan). Everything comes from generators
seeded by (seed, split, subject), so an item is the same on every machine, and train, val and test hold different
subjects.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from inverse_problems.data.base import ImageDataset, Item

from inverse_problems.operators.random import item_seed
from inverse_problems.operators.mrsi import METABOLITES
from inverse_problems.data.phantoms.procedural import BRAIN_TISSUES, _Draws, _ellipse, _grid, _poly2, brain_labels

TISSUE = {t.name: i for i, t in enumerate(BRAIN_TISSUES)}
SCAN_MINUTES = 180.0
DEFAULT_SUBJECTS = {"train": 256, "val": 8, "test": 8}


@dataclass(frozen=True)
class Kinetics:
    """Steady-state concentrations (mM) and time constants (min) of one tissue: water W0, a_w, tau_w; Glc, Glx,
    Lac amplitudes and time constants."""

    water: float
    glc: float
    glx: float
    lac: float
    tau_glc: float = 25.0
    tau_glx: float = 60.0
    tau_lac: float = 60.0
    water_rise: float = 0.3
    tau_water: float = 120.0

    def curves(self, t: Tensor) -> Tensor:
        """(4, T) concentrations at times t (min): water, Glc, Glx, Lac."""
        sat = lambda tau: 1 - torch.exp(-t / tau)  # noqa: E731
        return torch.stack([self.water * (1 + self.water_rise * sat(self.tau_water)), self.glc * sat(self.tau_glc),
                            self.glx * sat(self.tau_glx), self.lac * sat(self.tau_lac)])


# water: 10 mM x the tissue's water content (phantoms.BRAIN_TISSUES pd); zero outside the brain
KINETICS: dict[str, Kinetics] = {
    "csf": Kinetics(10.0, 2.0, 0.0, 0.0),
    "ventricle": Kinetics(10.0, 2.0, 0.0, 0.0),
    "grey_matter": Kinetics(8.2, 3.0, 3.0, 0.4),
    "white_matter": Kinetics(7.0, 2.5, 2.0, 0.3),
    "lesion": Kinetics(8.0, 3.0, 1.0, 1.5, tau_lac=30.0),  # tumour
}


def frame_times(n_frames: int) -> Tensor:
    """t_k = 180 (k + 1) / n_frames minutes, k = 0..n_frames-1."""
    return SCAN_MINUTES * (torch.arange(n_frames, dtype=torch.float32) + 1) / n_frames


def add_tumour(labels: Tensor, d: _Draws) -> Tensor:
    """Paint one tumour (a rotated ellipse, semi-axes 0.06-0.125 of the field of view, centred in the
    parenchyma) as the 'lesion' class over grey and white matter."""
    n = labels.shape[0]
    X, Y = _grid(n)
    phi, r = d(0, 2 * math.pi), d(0.1, 0.4)
    e = _ellipse(X, Y, r * math.cos(phi), r * math.sin(phi), d(0.12, 0.25), d(0.12, 0.25), d(0, math.pi))
    tissue = (labels == TISSUE["grey_matter"]) | (labels == TISSUE["white_matter"])
    out = labels.clone()
    out[(e < 1) & tissue] = TISSUE["lesion"]
    return out


class DMIItem(Item, total=False):
    """A DMI frame: the common item keys (`patient` is the subject) and the frame's acquisition facts."""

    subject: int
    frame: int
    time_min: float  # the frame's time in minutes (frame_times)
    b0_ppm: Tensor  # (H, W) the subject's field map
    drift_hz: float
    linewidth_hz: float
    phase_rad: float
    noise_scale: float
    roi_tumour: Tensor  # (H, W) bool regions of interest (MRSIProblem's per-region metrics)
    roi_gm: Tensor
    roi_wm: Tensor


class PhantomDMI(ImageDataset):
    """DMI phantoms: item i = (subject i // n_frames, frame i % n_frames), frames of a subject in time order.

    Items: {"id", "image": (4, size, size) maps in mM (water, Glc, Glx, Lac), "subject", "frame", "time_min",
    "patient" (the subject: one stream), "b0_ppm" (size, size), "drift_hz", "linewidth_hz", "phase_rad",
    "noise_scale", "roi_tumour" / "roi_gm" / "roi_wm" ((size, size) bool: pixels at least half that tissue)}.
    Options: `tumour_lac_scale` and `tumour_tau_scale` multiply the tumour's Lac amplitude and Lac time
    constant (tumour kinetics unseen in training); see the module for the rest.
    """

    def __init__(self, split: str = "test", size: int = 32, subjects: int | None = None, n_frames: int = 8,
                 seed: int = 0, oversample: int = 4, tumour_prob: float = 0.75, jitter: float = 0.1,
                 tau_jitter: float = 0.2, b0_max_ppm: float = 0.1, drift_max_hz: float = 2.0,
                 linewidth_max_hz: float = 2.0, phase_max_rad: float = 0.2, snr_drift: float = 0.3,
                 tumour_lac_scale: float = 1.0, tumour_tau_scale: float = 1.0) -> None:
        self.split = self.check_split(split)
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"size must be an int >= 8, got {size!r}")
        if not isinstance(n_frames, int) or n_frames < 1:
            raise ValueError(f"n_frames must be an int >= 1, got {n_frames!r}")
        if not 0 <= snr_drift < 1:
            raise ValueError(f"snr_drift must be in [0, 1) (the noise multiplier 1 + snr_drift sin(.) stays > 0), "
                             f"got {snr_drift}")
        if min(b0_max_ppm, drift_max_hz, linewidth_max_hz, phase_max_rad, jitter, tau_jitter) < 0:
            raise ValueError("b0_max_ppm, drift_max_hz, linewidth_max_hz, phase_max_rad, jitter and tau_jitter must "
                             "be >= 0")
        if tumour_lac_scale < 0 or tumour_tau_scale <= 0:
            raise ValueError(f"tumour_lac_scale >= 0 and tumour_tau_scale > 0 needed, got {tumour_lac_scale} and "
                             f"{tumour_tau_scale}")
        self.size = (size, size)
        self.channels = len(METABOLITES)
        self.subjects = DEFAULT_SUBJECTS[split] if subjects is None else int(subjects)
        self.n_frames, self.seed, self.oversample = n_frames, seed, oversample
        self.tumour_prob, self.jitter, self.tau_jitter = tumour_prob, jitter, tau_jitter
        self.b0_max_ppm, self.drift_max_hz, self.linewidth_max_hz = b0_max_ppm, drift_max_hz, linewidth_max_hz
        self.phase_max_rad, self.snr_drift = phase_max_rad, snr_drift
        self.tumour_lac_scale, self.tumour_tau_scale = tumour_lac_scale, tumour_tau_scale
        self.times = frame_times(n_frames)

    def __len__(self) -> int:
        return self.subjects * self.n_frames

    def _seed(self, *tag: object) -> torch.Generator:
        return torch.Generator().manual_seed(item_seed("dmi", self.seed, self.split, *tag))

    def subject(self, s: int) -> dict[str, Tensor]:
        """Subject s: 'curves' (4, T, H, W) maps at every frame, 'fractions' (tissues, H, W), 'b0_ppm' (H, W) and
        the drift law ('drift_hz' (T,)) and noise multipliers ('noise_scale' (T,))."""
        return _subject(self, s)

    def __getitem__(self, i: int) -> DMIItem:
        self.check_index(i)
        s, k = divmod(i, self.n_frames)
        sub = self.subject(s)
        f = _Draws(self._seed("frame", s, k), 2)
        frac = sub["fractions"]
        return {"id": f"dmi-{self.split}-s{s:04d}-f{k:02d}", "image": sub["curves"][:, k].clone(),
                "subject": s, "frame": k, "patient": f"dmi-{self.split}-s{s:04d}", "time_min": float(self.times[k]),
                "b0_ppm": sub["b0_ppm"], "drift_hz": float(sub["drift_hz"][k]),
                "linewidth_hz": f(0, self.linewidth_max_hz), "phase_rad": f(-self.phase_max_rad, self.phase_max_rad),
                "noise_scale": float(sub["noise_scale"][k]),
                "roi_tumour": frac[TISSUE["lesion"]] >= 0.5, "roi_gm": frac[TISSUE["grey_matter"]] >= 0.5,
                "roi_wm": frac[TISSUE["white_matter"]] >= 0.5}


def _subject_key(ds: PhantomDMI) -> tuple:
    return (ds.split, ds.size, ds.n_frames, ds.seed, ds.oversample, ds.tumour_prob, ds.jitter, ds.tau_jitter,
            ds.b0_max_ppm, ds.drift_max_hz, ds.snr_drift, ds.tumour_lac_scale, ds.tumour_tau_scale)


def _subject(ds: PhantomDMI, s: int) -> dict[str, Tensor]:
    return _render(_subject_key(ds), s)


@lru_cache(maxsize=8)
def _render(key: tuple, s: int) -> dict[str, Tensor]:
    """One subject's maps over all frames (cached: a subject's frames are read one after another)."""
    (split, size, n_frames, seed, oversample, tumour_prob, jitter, tau_jitter, b0_max_ppm, drift_max_hz, snr_drift,
     lac_scale, tau_scale) = key
    g = torch.Generator().manual_seed(item_seed("dmi", seed, split, "subject", s))
    n = size[0] * oversample
    labels = brain_labels(n, _Draws(g, 256), lesion_prob=0.0)
    d = _Draws(g, 128)
    has_tumour = d() < tumour_prob
    if has_tumour:  # from a generator of its own, so the later draws do not depend on it
        labels = add_tumour(labels, _Draws(torch.Generator().manual_seed(item_seed("dmi", seed, split, "tumour", s)),
                                           8))
    fractions = F.avg_pool2d(F.one_hot(labels, len(BRAIN_TISSUES)).permute(2, 0, 1).float()[None], oversample)[0]
    times = frame_times(n_frames)
    maps = torch.zeros((len(METABOLITES), n_frames, *size))
    for name, kin in KINETICS.items():
        amp = lambda v: v * (1 + jitter * d(-1, 1))  # noqa: E731
        tau = lambda v: v * (1 + tau_jitter * d(-1, 1))  # noqa: E731
        k = Kinetics(amp(kin.water), amp(kin.glc), amp(kin.glx), amp(kin.lac), tau(kin.tau_glc), tau(kin.tau_glx),
                     tau(kin.tau_lac), kin.water_rise, tau(kin.tau_water))
        if name == "lesion":
            k = Kinetics(k.water, k.glc, k.glx, k.lac * lac_scale, k.tau_glc, k.tau_glx, k.tau_lac * tau_scale,
                         k.water_rise, k.tau_water)
        maps += k.curves(times)[:, :, None, None] * fractions[TISSUE[name]][None, None]
    field = _poly2(size[0], [0.0] + [d(-1, 1) for _ in range(5)])
    b0 = field / field.abs().max().clamp_min(1e-12) * b0_max_ppm * d(0.5, 1.0)
    rate = drift_max_hz * d(0.5, 1.0) * (1.0 if d() < 0.5 else -1.0)
    psi, psi2 = d(0, 2 * math.pi), d(0, 2 * math.pi)
    drift = rate * times / SCAN_MINUTES + 0.1 * drift_max_hz * torch.sin(2 * math.pi * times / 90 + psi)
    noise_scale = 1 + snr_drift * torch.sin(2 * math.pi * times / SCAN_MINUTES + psi2)
    return {"curves": maps.float(), "fractions": fractions, "b0_ppm": b0.float(), "drift_hz": drift,
            "noise_scale": noise_scale, "has_tumour": torch.tensor(has_tumour)}
