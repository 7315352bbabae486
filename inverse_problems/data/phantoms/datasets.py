"""Registered phantom datasets: any anatomy x contrast, procedural, deterministic, unlimited.

Item i of a split is `make_phantom(anatomy, contrast, size, Generator(item_seed("phantom", anatomy,
seed, split, i)))`, scaled so that the 99th percentile of its magnitude is 1. The seed does not
include the contrast, so BrainT1[i] and BrainT2[i] are the same subject in two contrasts; it does
include the split, so train, val and test hold different subjects.

Patients: with `slices=S > 1` item i is slice k = i mod S of subject j = i // S (the subject's seed is the one
item j has with S = 1), at through-plane position z_k = slab (k + 1/2) / S (centre towards the top): the same anatomy, tissues
and receive fields, scaled in-plane by sqrt(1 - z_k^2) (phantoms.make_phantom). Such items carry `patient`
("<anatomy>-<split>-<j>") and `slice` k; patient-level adapters get all of a patient's slices together.
"""
from __future__ import annotations

import torch
from torch import Tensor

from inverse_problems.data.base import ImageDataset, Item

from inverse_problems.operators.random import item_seed
from inverse_problems.data.phantoms.procedural import ANATOMIES, CONTRASTS, make_phantom

DEFAULT_LENGTH = {"train": 5000, "val": 64, "test": 64}


def normalise_p99(image: Tensor, percentile: float = 0.99) -> Tensor:
    """Scale a (2, H, W) or (1, H, W) image so the `percentile` quantile of its magnitude is 1."""
    mag = image.pow(2).sum(0).sqrt() if image.shape[0] == 2 else image[0].abs()
    q = torch.quantile(mag.flatten().float(), percentile)
    if not torch.isfinite(q) or q <= 0:
        raise ValueError("cannot normalise an image whose 99th-percentile magnitude is zero (an empty image?)")
    return (image / q).to(torch.float32)


class PhantomDataset(ImageDataset):
    """Procedural MR phantoms of any anatomy (brain, knee) and contrast (t1, t2, pd, flair, t2star)."""

    def __init__(self, anatomy: str = "brain", contrast: str = "t2", split: str = "test", size: int = 64,
                 length: int | None = None, seed: int = 0, oversample: int = 4, jitter: float = 0.05,
                 bias: float = 0.1, phase: float = 1.0, lesion_prob: float = 0.5, slices: int = 1,
                 slab: float = 0.6) -> None:
        if anatomy not in ANATOMIES:
            raise ValueError(f"unknown anatomy {anatomy!r}; choose one of {sorted(ANATOMIES)}")
        if contrast not in CONTRASTS:
            raise ValueError(f"unknown contrast {contrast!r}; choose one of {sorted(CONTRASTS)}")
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"size must be an int >= 8, got {size!r}")
        self.split = self.check_split(split)
        self.anatomy, self.contrast = anatomy, contrast
        self.size = (size, size)
        self.channels = 2
        self.length = DEFAULT_LENGTH[split] if length is None else int(length)
        if self.length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.seed = seed
        if isinstance(slices, bool) or not isinstance(slices, int) or slices < 1:
            raise ValueError(f"slices (per subject) must be an int >= 1, got {slices!r}")
        if not 0 <= slab < 1:
            raise ValueError(f"slab (the slices' extent from the subject's centre, a fraction of its radius) must lie "
                             f"in [0, 1), got {slab}")
        self.slices, self.slab = slices, float(slab)
        self.options = dict(oversample=oversample, jitter=jitter, bias=bias, phase=phase, lesion_prob=lesion_prob)

    def __len__(self) -> int:
        return self.length

    def patient_of(self, i: int) -> str:
        """The patient (subject) id of item i, without rendering it."""
        return f"{self.anatomy}-{self.split}-{i // self.slices:05d}" if self.slices > 1 else \
            f"{self.anatomy}-{self.contrast}-{self.split}-{i:05d}"

    def position(self, k: int) -> float:
        """Through-plane position z_k in [0, slab) of slice k of a subject (0 with one slice)."""
        return self.slab * (k + 0.5) / self.slices if self.slices > 1 else 0.0

    def __getitem__(self, i: int) -> Item:
        self.check_index(i)
        subject, k = divmod(i, self.slices)
        g = torch.Generator().manual_seed(item_seed("phantom", self.anatomy, self.seed, self.split, subject))
        ph = make_phantom(self.anatomy, self.contrast, self.size[0], g, position=self.position(k), **self.options)
        if self.slices == 1:
            return {"id": f"{self.anatomy}-{self.contrast}-{self.split}-{i:05d}", "image": normalise_p99(ph.image)}
        return {"id": f"{self.anatomy}-{self.contrast}-{self.split}-{subject:05d}-s{k:02d}",
                "image": normalise_p99(ph.image), "patient": self.patient_of(i), "slice": k}


class BrainPhantomDataset(PhantomDataset):
    """Brain phantoms of the contrast a subclass names in `CONTRAST` (the registered datasets below)."""

    CONTRAST = "t2"

    def __init__(self, split: str = "test", size: int = 64, length: int | None = None, seed: int = 0,
                 oversample: int = 4, jitter: float = 0.05, bias: float = 0.1, phase: float = 1.0,
                 lesion_prob: float = 0.5, slices: int = 1, slab: float = 0.6) -> None:
        super().__init__("brain", self.CONTRAST, split, size, length, seed, oversample, jitter, bias, phase,
                         lesion_prob, slices, slab)


class BrainT2(BrainPhantomDataset):
    """Brain phantom, T2-weighted spin echo (TR 4000 / TE 100 ms, 3 T): the shipped prior's source domain."""

    CONTRAST = "t2"


class BrainT1(BrainPhantomDataset):
    """Brain phantom, T1-weighted spin echo (TR 500 / TE 10 ms, 3 T)."""

    CONTRAST = "t1"


class BrainFLAIR(BrainPhantomDataset):
    """Brain phantom, FLAIR (inversion recovery TR 9000 / TE 100 ms, TI nulling CSF, 3 T)."""

    CONTRAST = "flair"


class KneePD(PhantomDataset):
    """Knee phantom (coronal), proton-density-weighted spin echo (TR 3000 / TE 30 ms, 3 T)."""

    def __init__(self, split: str = "test", size: int = 64, length: int | None = None, seed: int = 0,
                 oversample: int = 4, jitter: float = 0.05, bias: float = 0.1, phase: float = 1.0, slices: int = 1,
                 slab: float = 0.6) -> None:
        super().__init__("knee", "pd", split, size, length, seed, oversample, jitter, bias, phase, slices=slices,
                         slab=slab)
