"""Procedural phantoms and their datasets: determinism, sizes, signal equations, splits, normalisation."""
from __future__ import annotations

import math

import pytest
import torch

from benchmarks import registry
from inverse_problems.data.phantoms.datasets import BrainFLAIR, BrainT1, BrainT2, KneePD, PhantomDataset
from inverse_problems.data.phantoms.procedural import BRAIN_TISSUES, CONTRASTS, KNEE_TISSUES, Contrast, make_phantom


def mag(image: torch.Tensor) -> torch.Tensor:
    return image.pow(2).sum(0).sqrt()


def tissue_means(anatomy: str, contrast: str, seed: int, size: int = 48, **kw) -> dict[str, float]:
    """Mean magnitude over pixels made of one tissue only (area fraction 1), by tissue name."""
    tissues = BRAIN_TISSUES if anatomy == "brain" else KNEE_TISSUES
    ph = make_phantom(anatomy, contrast, size, seed, **kw)
    frac = ph.fractions(len(tissues))
    m = mag(ph.image)
    out = {}
    for k, t in enumerate(tissues):
        pure = frac[k] > 0.999
        if pure.sum() >= 2:
            out[t.name] = float(m[pure].mean())
    return out


def test_same_seed_same_image_different_seed_differs():
    a = make_phantom("brain", "t2", 32, 7)
    b = make_phantom("brain", "t2", 32, torch.Generator().manual_seed(7))
    c = make_phantom("brain", "t2", 32, 8)
    assert torch.equal(a.image, b.image)
    assert (a.image - c.image).abs().max() > 0.05
    ds = BrainT2(split="test", size=32)
    assert torch.equal(ds[3]["image"], BrainT2(split="test", size=32)[3]["image"])
    assert ds[3]["id"] == "brain-t2-test-00003"


@pytest.mark.parametrize("size", [16, 37, 64])
@pytest.mark.parametrize("anatomy", ["brain", "knee"])
def test_any_size(anatomy: str, size: int):
    ph = make_phantom(anatomy, "pd", size, 1)
    assert ph.image.shape == (2, size, size) and ph.image.dtype == torch.float32
    assert torch.isfinite(ph.image).all()
    m = mag(ph.image)
    assert m.max() > 0 and (m > 0).float().mean() > 0.3  # the object fills a good part of the field of view
    assert m[0, 0] == 0  # background corner is empty


@pytest.mark.parametrize("contrast", ["t1", "t2", "pd", "flair", "t2star"])
def test_pure_tissue_pixels_follow_the_signal_equation(contrast: str):
    """With no jitter, bias or phase, a pixel of one tissue equals its signal equation exactly."""
    con = CONTRASTS[contrast]
    means = tissue_means("brain", contrast, 3, jitter=0.0, bias=0.0, phase=0.0)
    for t in BRAIN_TISSUES[1:]:
        if t.name not in means:
            continue
        ref = float(con.signal(*(torch.tensor(getattr(t, k)) for k in ("pd", "t1", "t2", "t2star"))))
        assert means[t.name] == pytest.approx(ref, rel=1e-5, abs=1e-6), t.name


def test_spin_echo_and_ir_formulas_by_hand():
    se = Contrast("x", "se", tr=500.0, te=10.0)
    s = float(se.signal(torch.tensor(0.7), torch.tensor(830.0), torch.tensor(80.0), torch.tensor(50.0)))
    assert s == pytest.approx(0.7 * (1 - math.exp(-500 / 830)) * math.exp(-10 / 80), rel=1e-6)
    flair = CONTRASTS["flair"]
    ti = flair.inversion_time()
    assert 1 - 2 * math.exp(-ti / 4160) + math.exp(-9000 / 4160) == pytest.approx(0.0, abs=1e-12)
    assert 2000 < ti < 2800  # the usual 3 T FLAIR inversion time


def test_contrast_ordering_brain():
    for seed in range(3):
        t2 = tissue_means("brain", "t2", seed)
        t1 = tissue_means("brain", "t1", seed)
        fl = tissue_means("brain", "flair", seed)
        assert t2["ventricle"] > t2["grey_matter"] > t2["white_matter"]  # CSF bright on T2w
        assert t1["white_matter"] > t1["grey_matter"] > t1["ventricle"]  # CSF dark, WM brighter than GM on T1w
        assert fl["ventricle"] < 0.25 * fl["white_matter"]  # CSF nulled on FLAIR
        assert fl["grey_matter"] > fl["white_matter"]


def test_lesions_bright_on_flair_and_t2_dark_on_t1():
    seed = next(s for s in range(20) if "lesion" in tissue_means("brain", "t2", s, size=64, lesion_prob=1.0))
    kw = dict(size=64, lesion_prob=1.0, bias=0.0)
    fl, t2, t1 = (tissue_means("brain", c, seed, **kw) for c in ("flair", "t2", "t1"))
    assert fl["lesion"] > fl["white_matter"] and t2["lesion"] > t2["white_matter"]
    assert t1["lesion"] < t1["white_matter"]
    no = make_phantom("brain", "t2", 64, seed, lesion_prob=0.0)
    assert not (no.labels == 7).any()


def test_same_subject_across_contrasts():
    a, b = make_phantom("brain", "t1", 32, 5), make_phantom("brain", "flair", 32, 5)
    assert torch.equal(a.labels, b.labels)
    assert not torch.allclose(a.image, b.image)


def test_knee_differs_from_brain():
    knee, brain = make_phantom("knee", "pd", 32, 2), make_phantom("brain", "pd", 32, 2)
    names = lambda ph, tissues: {tissues[k].name for k in ph.labels.unique().tolist()}  # noqa: E731
    kn, br = names(knee, KNEE_TISSUES), names(brain, BRAIN_TISSUES)
    assert {"cartilage", "bone_marrow", "cortical_bone", "meniscus_ligament", "muscle"} <= kn
    assert {"skull", "grey_matter", "white_matter", "ventricle"} <= br
    assert (mag(knee.image) - mag(brain.image)).abs().mean() > 0.05
    pd = tissue_means("knee", "pd", 2, size=128)
    assert pd["fat"] > pd["muscle"] > pd["meniscus_ligament"]  # fat bright, menisci/ligaments dark on PD
    assert pd["fluid"] > pd["cartilage"]  # fluid bright against cartilage


def test_background_phase():
    ph = make_phantom("brain", "t2", 32, 4, phase=1.0)
    assert ph.image[1].abs().max() > 0.01
    flat = make_phantom("brain", "t2", 32, 4, phase=0.0, bias=0.0)
    assert torch.equal(flat.image[1], torch.zeros_like(flat.image[1]))
    assert torch.allclose(mag(make_phantom("brain", "t2", 32, 4, phase=1.0, bias=0.0).image), mag(flat.image),
                          atol=1e-6)  # the phase changes no magnitude


def test_area_downsampling_gives_partial_volumes():
    fine = make_phantom("brain", "t1", 32, 1, oversample=4, jitter=0, bias=0, phase=0)
    point = make_phantom("brain", "t1", 32, 1, oversample=1, jitter=0, bias=0, phase=0)
    values = set(torch.round(mag(point.image).flatten() * 1e5).tolist())
    assert len(values) <= len(BRAIN_TISSUES)  # point sampling: one value per tissue only
    assert len(set(torch.round(mag(fine.image).flatten() * 1e5).tolist())) > 2 * len(BRAIN_TISSUES)


@pytest.mark.parametrize("cls", [BrainT2, BrainT1, BrainFLAIR, KneePD])
def test_normalised_to_p99(cls):
    ds = cls(split="val", size=32, length=3)
    for i in range(3):
        x = ds[i]["image"]
        assert x.shape == (2, 32, 32)
        assert float(torch.quantile(mag(x).flatten(), 0.99)) == pytest.approx(1.0, abs=1e-5)


def test_splits_disjoint_and_lengths():
    assert len(BrainT2("train")) == 5000 and len(BrainT2("val")) == 64 and len(BrainT2("test")) == 64
    imgs = {s: [BrainT2(s, size=16)[i]["image"] for i in range(6)] for s in ("train", "val", "test")}
    for s1, s2 in (("train", "val"), ("train", "test"), ("val", "test")):
        for a in imgs[s1]:
            for b in imgs[s2]:
                assert (a - b).abs().max() > 1e-3
    # other seeds give other subjects
    assert (BrainT2("test", size=16, seed=1)[0]["image"] - imgs["test"][0]).abs().max() > 1e-3


def test_any_combination_and_registry():
    ds = PhantomDataset("knee", "t2", split="train", size=16, length=2)
    assert ds[1]["id"] == "knee-t2-train-00001"
    built = registry.build("datasets", "phantom-knee-pd", split="test", size=16, length=2)
    assert isinstance(built, KneePD) and built[0]["image"].shape == (2, 16, 16)


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="unknown anatomy 'liver'"):
        PhantomDataset("liver")
    with pytest.raises(ValueError, match="unknown contrast 'dwi'"):
        PhantomDataset("brain", "dwi")
    with pytest.raises(ValueError, match="unknown split"):
        BrainT2("training")
    with pytest.raises(IndexError):
        BrainT2("test", length=2)[2]
    with pytest.raises(TypeError, match="its options are"):
        registry.build("datasets", "phantom-brain-t2", split="test", contrast="t1")
