"""The 4-D phantoms: deterministic per seed, ED/ES (inhale/exhale) at the ends, the myocardial area conserved, the
exact displacement reproducing every frame from frame 0, and the shift options doing what they say."""
from __future__ import annotations

import pytest
import torch

from inverse_problems.data.phantoms.cardiac4d import FOV, LV, MYO, PhantomCardiac4D
from inverse_problems.data.phantoms.lung4d import PhantomLung4D
from inverse_problems.data.phantoms.sequences import render_sequence
from inverse_problems.operators.warp import warp

torch.set_num_threads(1)


@pytest.mark.parametrize("cls", [PhantomCardiac4D, PhantomLung4D])
def test_deterministic_and_distinct(cls) -> None:
    a, b = cls(size=24, frames=5, subjects=3), cls(size=24, frames=5, subjects=3)
    assert torch.equal(a[1]["image"], b[1]["image"]) and torch.equal(a[1]["displacement"], b[1]["displacement"])
    assert not torch.equal(a[0]["image"], a[1]["image"])
    assert not torch.equal(a[0]["image"], cls(size=24, frames=5, subjects=3, seed=1)[0]["image"])
    assert not torch.equal(a[0]["image"], cls(split="train", size=24, frames=5)[0]["image"])
    item = a[2]
    assert item["image"].shape == (5, 24, 24) and item["displacement"].shape == (5, 2, 24, 24)
    assert float(item["image"].min()) >= 0 and float(item["image"].max()) <= 1
    assert float(item["displacement"][0].abs().max()) < 1e-9  # frame 0 is the reference (up to round-off)


def test_cardiac_ed_es_and_myocardial_area() -> None:
    """Frame 0 is end-diastole (largest LV cavity), the last end-systole (smallest, 1 - EF of ED's area); the
    myocardial area stays within 2 % over the cycle (measured on a 4x oversampled 64 px rendering)."""
    ds = PhantomCardiac4D(size=32, frames=8, subjects=3)
    for i in range(3):
        s = ds.subject(i)
        r = render_sequence(s.tissue, s.backward, 8, 64, 4, FOV)
        myo = r["myocardium"].sum(dim=(1, 2))
        assert float((myo / myo[0] - 1).abs().max()) < 0.02
        cavity = (r["labels"] == LV).double().sum(dim=(1, 2))
        assert int(cavity.argmax()) == 0 and int(cavity.argmin()) == 7
        assert float(1 - cavity[-1] / cavity[0]) == pytest.approx(s.ef, abs=0.03)
        assert bool((cavity[1:] <= cavity[:-1] + 1).all())  # contracting throughout systole
        assert 0.45 <= ds[i]["ejection_fraction"] <= 0.70
    labels = ds[0]["labels"]
    assert {0, 1, MYO, LV} <= set(labels.unique().tolist())


def test_lung_inhale_to_exhale() -> None:
    """The lungs are largest at end-inhale (frame 0) and shrink monotonically to end-exhale; the diaphragm rises."""
    ds = PhantomLung4D(size=48, frames=6, subjects=2, noise_hu=0.0)
    for i in range(2):
        lung = (ds[i]["labels"] > 0).double().sum(dim=(1, 2))
        assert int(lung.argmax()) == 0 and float(lung[-1]) < 0.95 * float(lung[0])
        assert bool((lung[1:] <= lung[:-1] + 2).all())  # up to a pixel's label flip at the flat end of the cycle
        dy = ds[i]["displacement"][:, 1]  # backward y displacement: positive where tissue rose
        assert float(dy[-1].max()) > 2.0 and bool((dy[-1] >= -1e-9).all())


@pytest.mark.parametrize("cls", [PhantomCardiac4D, PhantomLung4D])
def test_true_displacement_reproduces_the_frames(cls) -> None:
    """frame_t(p) = frame_0(p + u_t(p)): warping frame 0 by the exact field reproduces frame t to a fraction of the
    frames' own difference (bilinear sampling and partial volumes are what remains), where p + u_t(p) is in view."""
    ds = cls(size=64, frames=6, subjects=1, **({"noise": 0.0} if cls is PhantomCardiac4D else {"noise_hu": 0.0}))
    item = ds[0]
    x, u = item["image"].double(), item["displacement"].double()
    warped = warp(x[:1].expand(6, 1, 64, 64).contiguous(), u)[:, 0]
    xs = torch.arange(64, dtype=torch.float64)
    inside = ((xs.view(1, 1, 64) + u[:, 0]).clamp(0, 63) == xs.view(1, 1, 64) + u[:, 0]) & \
             ((xs.view(1, 64, 1) + u[:, 1]).clamp(0, 63) == xs.view(1, 64, 1) + u[:, 1])
    for t in range(2, 6):  # frame 1 has barely moved (both motions start slowly)
        m = inside[t]
        err = float((warped[t] - x[t])[m].abs().mean())
        moved = float((x[0] - x[t])[m].abs().mean())
        assert moved > 0.005 and err < 0.4 * moved, (t, err, moved)


def test_shift_options() -> None:
    """Motion (EF range, breathing amplitude), contrast and noise options change the data as named."""
    low = PhantomCardiac4D(size=16, frames=4, subjects=4, ef_range=(0.20, 0.35))
    assert all(0.20 <= low[i]["ejection_fraction"] <= 0.35 for i in range(4))
    base, ct = PhantomCardiac4D(size=32, frames=4, subjects=1), PhantomCardiac4D(size=32, frames=4, subjects=1,
                                                                                contrast="ct")
    assert not torch.equal(base[0]["image"], ct[0]["image"])
    assert torch.equal(base[0]["displacement"], ct[0]["displacement"])  # same subject, same motion
    calm, deep = PhantomLung4D(size=32, frames=4, subjects=1), PhantomLung4D(size=32, frames=4, subjects=1,
                                                                            amplitude=2.5)
    assert float(deep[0]["displacement"].abs().max()) == pytest.approx(
        2.5 * float(calm[0]["displacement"].abs().max()), rel=0.05)
    with pytest.raises(ValueError, match="contrast"):
        PhantomCardiac4D(contrast="pet")
    with pytest.raises(ValueError, match="ef_range"):
        PhantomCardiac4D(ef_range=(0.7, 0.2))
