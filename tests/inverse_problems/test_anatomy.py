"""Anatomical phantoms from the Colin27 tissue model (inverse_problems/data/phantoms/anatomy.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inverse_problems.data.phantoms.anatomy import (ANATOMY_TISSUES, MODEL_PATH, AnatomyBrainFLAIR, AnatomyBrainT1, AnatomyBrainT2,
                                      AnatomyDataset, load_model, make_anatomy_phantom, slab_ranges)
from inverse_problems.data.phantoms.procedural import get_contrast

PLAIN = dict(bias=0.0, phase=0.0, jitter=0.0, lesion_prob=0.0)  # magnitude = sum_k fraction_k * signal_k exactly


def test_stored_maps_are_small_fuzzy_and_licensed():
    assert MODEL_PATH.stat().st_size < 5e6
    with np.load(MODEL_PATH) as d:
        m = d["memberships"]
        assert m.dtype == np.uint8 and m.ndim == 4 and m.shape[0] == len(ANATOMY_TISSUES) - 1
        total = m.astype(np.int32).sum(0)
    assert total.max() <= 255                      # memberships sum to <= 1
    assert (total > 250).mean() > 0.2              # a head, not an empty file
    model = load_model()
    assert model.memberships.shape[1] == len(model.z_mm) and model.pixel_mm > 0
    assert "BSD-3-clause" in (MODEL_PATH.parent / "anatomy_colin27.LICENSE").read_text()


def test_items_are_deterministic_normalised_and_shaped():
    ds = AnatomyBrainT2("train", size=32, length=3)
    a, b = ds[1], ds[1]
    assert a["id"] == "anatomy-t2-train-00001"
    assert torch.equal(a["image"], b["image"])
    assert a["image"].shape == (2, 32, 32) and a["image"].dtype == torch.float32
    mag = a["image"].pow(2).sum(0).sqrt()
    assert torch.quantile(mag.flatten(), 0.99).item() == pytest.approx(1.0, abs=1e-5)
    assert not torch.equal(ds[0]["image"], ds[1]["image"])
    assert a["image"][1].abs().max() > 0.05          # the smooth background phase is there
    with pytest.raises(IndexError):
        ds[3]


def test_contrasts_share_the_subject():
    t1, t2 = AnatomyBrainT1("val", size=32), AnatomyBrainT2("val", size=32)
    p1, p2 = t1.render(4), t2.render(4)
    assert p1.z == p2.z
    assert torch.equal(p1.memberships, p2.memberships)
    assert not torch.allclose(p1.image, p2.image)


def test_splits_are_disjoint_by_slab_and_seed():
    n = load_model().memberships.shape[1]
    ranges = {s: slab_ranges(s, n) for s in ("train", "val", "test")}
    for s in ranges:
        for t in ranges:
            if s < t:
                for lo, hi in ranges[s]:
                    for lo2, hi2 in ranges[t]:
                        assert hi + 2 <= lo2 or hi2 + 2 <= lo  # >= 2 stored slices (4 mm) apart
    for split in ("train", "val", "test"):
        ds = AnatomyBrainT2(split, size=16, length=4)
        for i in range(4):
            z = ds.render(i).z
            assert any(lo <= z <= hi for lo, hi in ranges[split])
    a, b = AnatomyBrainT2("val", size=16)[0]["image"], AnatomyBrainT2("test", size=16)[0]["image"]
    assert not torch.allclose(a, b)


def test_magnitude_is_the_partial_volume_sum_of_tissue_signals():
    for contrast in ("t1", "t2", "flair", "pd", "t2star"):
        ph = make_anatomy_phantom(contrast, 32, 3, **PLAIN)
        t = ANATOMY_TISSUES
        s = get_contrast(contrast).signal(*(torch.tensor([getattr(x, k) for x in t]) for k in ("pd", "t1", "t2", "t2star")))
        expected = torch.einsum("k,khw->hw", s, ph.fractions())
        assert torch.allclose(ph.image[0], expected, atol=1e-5) and ph.image[1].abs().max() == 0


def _means(contrast: str) -> dict[str, float]:
    """Mean magnitude over nearly pure pixels (fraction > 0.8) of CSF, GM and WM, over a few slices."""
    sums = {k: [0.0, 0] for k in ("csf", "grey_matter", "white_matter")}
    for seed in range(3):
        ph = make_anatomy_phantom(contrast, 64, seed, z_ranges=[(14.0, 20.0)], **PLAIN)
        f = ph.fractions()
        for j, t in enumerate(ANATOMY_TISSUES[:3]):
            pure = f[j] > 0.8
            sums[t.name][0] += float(ph.image[0][pure].sum())
            sums[t.name][1] += int(pure.sum())
    assert all(n > 0 for _, n in sums.values())
    return {k: v / n for k, (v, n) in sums.items()}


def test_contrast_ordering():
    t2, t1, flair = _means("t2"), _means("t1"), _means("flair")
    assert t2["csf"] > t2["grey_matter"] > t2["white_matter"]       # CSF bright on T2w
    assert t1["white_matter"] > t1["grey_matter"] > t1["csf"]       # WM brighter than GM, CSF dark on T1w
    assert flair["csf"] < 0.3 * min(flair["grey_matter"], flair["white_matter"])  # CSF nulled on FLAIR


def test_lesions_are_carved_out_of_white_matter():
    without = make_anatomy_phantom("flair", 32, 5, lesion_prob=0.0)
    with_ = make_anatomy_phantom("flair", 32, 5, lesion_prob=1.0)
    lesion = with_.memberships[-1]
    assert lesion.sum() > 0 and without.memberships[-1].sum() == 0
    assert torch.allclose(with_.memberships.sum(0), without.memberships.sum(0), atol=1e-5)
    assert (lesion <= without.memberships[2] + 1e-6).all()


def test_deformations_vary_and_can_be_switched_off():
    rigid = dict(rotation_deg=0.0, scale=0.0, shift=0.0, warp=0.0, **PLAIN)
    a = make_anatomy_phantom("t2", 32, 1, z_ranges=[(10.0, 10.0)], **rigid)
    b = make_anatomy_phantom("t2", 32, 2, z_ranges=[(10.0, 10.0)], **rigid)
    assert torch.allclose(a.image, b.image)                          # same slice, no deformation: same image
    c = make_anatomy_phantom("t2", 32, 2, z_ranges=[(10.0, 10.0)], **PLAIN)
    assert not torch.allclose(a.image, c.image)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="unknown contrast"):
        AnatomyDataset("t3")
    with pytest.raises(ValueError, match="unknown split"):
        AnatomyBrainFLAIR("dev")
    with pytest.raises(ValueError, match="size"):
        AnatomyBrainT2(size=4)


def test_training_mixture():
    from inverse_problems.data.phantoms.anatomy import AnatomyBrainMix, randomised_contrast

    ds = AnatomyBrainMix("train", size=16, length=24, contrasts=("t2", "flair"), procedural=0.5, sequence_spread=0.3)
    ids = [ds[i]["id"] for i in range(len(ds))]
    assert {i.split("-")[1] for i in ids} == {"phantom", "anatomy"}
    assert {i.split("-")[2] for i in ids} == {"t2", "flair"}
    assert torch.equal(ds[5]["image"], ds[5]["image"]) and ds[5]["image"].shape == (2, 16, 16)
    only = AnatomyBrainMix("train", size=16, length=8, procedural=0.0)
    assert all(only[i]["id"].startswith("mix-anatomy-t2") for i in range(8))
    con = randomised_contrast("flair", torch.tensor([1.0, 0.0, 0.5, 0.5]), 0.5)
    assert con.tr == pytest.approx(9000 * np.exp(0.5)) and con.te == pytest.approx(100 * np.exp(-0.5))
    assert con.ti is None                                              # TI still nulls CSF at the new TR
    with pytest.raises(ValueError, match="contrasts"):
        AnatomyBrainMix(contrasts=("t3",))


def test_training_mixture_lowres_share():
    """`lowres` re-acquires a share of the items on a coarser matrix (antialiased down, bilinear up, as real-brain
    resizes its slices); lowres=0 leaves every item as it was, and the phantom drawn is the same either way."""
    import torch.nn.functional as F

    from inverse_problems.data.phantoms.anatomy import AnatomyBrainMix, lower_resolution

    base = AnatomyBrainMix("train", size=32, length=12, contrasts=("t2", "t1"))
    zero = AnatomyBrainMix("train", size=32, length=12, contrasts=("t2", "t1"), lowres=0.0)
    low = AnatomyBrainMix("train", size=32, length=12, contrasts=("t2", "t1"), lowres=1.0, lowres_matrix=(0.5, 0.5))
    half = AnatomyBrainMix("train", size=32, length=40, contrasts=("t2", "t1"), lowres=0.5)
    for i in range(12):
        assert torch.equal(base[i]["image"], zero[i]["image"]) and base[i]["id"] == zero[i]["id"]
        assert low[i]["id"] == base[i]["id"] + "-matrix16"
        # the same phantom, on a 16 x 16 matrix: nothing above the coarse grid's Nyquist frequency is left
        k_full = torch.fft.fftshift(torch.fft.fft2(torch.complex(*base[i]["image"])), dim=(-2, -1)).abs()
        k_low = torch.fft.fftshift(torch.fft.fft2(torch.complex(*low[i]["image"])), dim=(-2, -1)).abs()
        outer = torch.ones(32, 32, dtype=torch.bool)
        outer[8:24, 8:24] = False
        share = lambda k: float(k[outer].pow(2).sum() / k.pow(2).sum())  # noqa: E731
        assert share(k_low) < 0.5 * share(k_full), i
    tagged = sum("-matrix" in half[i]["id"] for i in range(40))
    assert 10 <= tagged <= 30
    x = torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(lower_resolution(x, 16), x)
    small = F.interpolate(x[None], size=(8, 8), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(lower_resolution(x, 8), F.interpolate(small, size=(16, 16), mode="bilinear",
                                                                align_corners=False)[0])
    with pytest.raises(ValueError, match="lowres"):
        AnatomyBrainMix(lowres=1.5)
    with pytest.raises(ValueError, match="lowres_matrix"):
        AnatomyBrainMix(lowres=0.5, lowres_matrix=(0.8, 0.2))
