"""Undersampling masks: realised acceleration, ACS, determinism, variable density, Poisson spacing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inverse_problems.operators.masks import MASK_TYPES, ONE_D, acs_region, make_mask, realised_acceleration

CASES = ([(k, (64, 64), r) for k in ONE_D for r in (2, 3, 4, 6, 8)]
         + [(k, (256, 256), r) for k in ONE_D for r in (2, 4, 8, 12)]
         + [(k, (64, 64), r) for k in ("poisson2d", "vd2d") for r in (2, 4, 8, 16, 32, 50)]
         + [("vd2d", (128, 96), 50), ("poisson2d", (48, 64), 10)])


@pytest.mark.parametrize("kind,shape,accel", CASES)
def test_realised_acceleration_within_5_percent(kind: str, shape: tuple[int, int], accel: float) -> None:
    for seed in (0, 1):
        mask = make_mask(kind, shape, accel, center_fraction=0.08, seed=seed)
        assert mask.shape == shape and mask.dtype == torch.float32
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert abs(realised_acceleration(mask) / accel - 1) < 0.05
        if kind in ONE_D:  # whole columns
            assert torch.equal(mask, mask[:1].expand_as(mask))


def test_realised_acceleration_definition() -> None:
    mask = torch.zeros(8, 8)
    mask[:, :2] = 1
    assert realised_acceleration(mask) == 4.0
    with pytest.raises(ValueError, match="no k-space sample"):
        realised_acceleration(torch.zeros(4, 4))


@pytest.mark.parametrize("kind", MASK_TYPES)
def test_acs_is_fully_sampled_and_centred(kind: str) -> None:
    mask = make_mask(kind, (64, 64), 4, center_fraction=0.125, seed=3)
    rows, cols = acs_region(mask)
    assert bool(mask[rows, cols].all())
    assert rows.start <= 32 < rows.stop and cols.start <= 32 < cols.stop
    # fastMRI: round(0.125 * 64) = 8 columns starting at (64 - 8 + 1) // 2 = 28 are always acquired
    assert bool(mask[:, 28:36].all()) if kind in ONE_D else bool(mask[28:36, 28:36].all())
    if kind in ONE_D:
        assert (rows.start, rows.stop) == (0, 64)
        assert cols.stop - cols.start >= 8


@pytest.mark.parametrize("kind", MASK_TYPES)
def test_seeded(kind: str) -> None:
    a = make_mask(kind, (64, 64), 4, seed=7)
    assert torch.equal(a, make_mask(kind, (64, 64), 4, seed=7))
    assert not torch.equal(a, make_mask(kind, (64, 64), 4, seed=8))


def test_equispaced_spacing() -> None:
    mask = make_mask("equispaced", (32, 256), 8, center_fraction=0.04, seed=0)
    cols = np.flatnonzero(mask[0].numpy())
    outside = cols[(cols < 123) | (cols >= 133)]  # outside the 10-column ACS
    gaps = np.diff(outside)
    assert gaps.max() - gaps[gaps < 20].min() <= 11  # even spacing up to the skipped ACS block


def test_variable_density_prefers_the_centre() -> None:
    def mean_distance(kind: str) -> float:
        d = []
        for seed in range(5):
            m = make_mask(kind, (128, 128), 8, center_fraction=0.04, seed=seed)
            iy, ix = torch.nonzero(m, as_tuple=True)
            iy = iy * 0 + 64 if kind in ONE_D else iy  # 1-D masks: distance of the column to the DC column
            d.append(torch.sqrt((iy - 64.0) ** 2 + (ix - 64.0) ** 2).mean())
        return float(torch.stack(d).mean())

    assert mean_distance("gaussian1d") < 0.8 * mean_distance("random")
    uniform = float(torch.sqrt((torch.arange(128.0)[:, None] - 64) ** 2 + (torch.arange(128.0) - 64) ** 2).mean())
    assert mean_distance("vd2d") < 0.75 * uniform and mean_distance("poisson2d") < 0.9 * uniform


def test_poisson_disc_spacing() -> None:
    """Poisson-disc samples keep a minimum distance; i.i.d. variable-density samples do not."""
    def min_gap(kind: str) -> float:
        m = make_mask(kind, (64, 64), 16, center_fraction=0.08, seed=0)
        m[30:35, 30:35] = 0  # drop the ACS block
        p = torch.nonzero(m).float()
        d = torch.cdist(p, p) + torch.eye(len(p)) * 1e9
        return float(d.min())

    assert min_gap("poisson2d") >= 2.0
    assert min_gap("vd2d") <= 1.5


def test_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="lower center_fraction"):
        make_mask("random", (64, 64), 50, center_fraction=0.08)
    with pytest.raises(ValueError, match="lower center_fraction"):
        make_mask("poisson2d", (32, 32), 50, center_fraction=0.25)
    with pytest.raises(ValueError, match="unknown mask 'radial'"):
        make_mask("radial", (32, 32), 4)
    with pytest.raises(ValueError, match="acceleration must be >= 1"):
        make_mask("vd2d", (32, 32), 0.5)
    with pytest.raises(ValueError, match="DC sample"):
        acs_region(torch.zeros(8, 8))
