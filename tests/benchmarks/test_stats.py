"""Paired statistics (benchmarks.stats) against scipy on fixed data, and the shared-rank rule."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from benchmarks import stats

DATA = [24.1, 25.3, 23.9, 26.0, 24.8, 25.1, 23.5, 24.9]


def test_bootstrap_interval_is_scipys_bca_with_the_same_seed():
    got = stats.bootstrap_interval(DATA, seed=3)
    ref = sps.bootstrap((np.array(DATA),), np.mean, confidence_level=0.95, n_resamples=9999, method="BCa",
                        random_state=np.random.default_rng(3)).confidence_interval
    assert got.mean == pytest.approx(np.mean(DATA))
    assert (got.low, got.high) == (pytest.approx(ref.low, abs=0), pytest.approx(ref.high, abs=0))
    assert got.low < got.mean < got.high
    assert stats.bootstrap_interval(DATA, seed=3) == got  # seeded: the same interval every time


def test_degenerate_samples():
    assert stats.bootstrap_interval([2.0]).low is None
    flat = stats.bootstrap_interval([1.5, 1.5, 1.5])
    assert (flat.low, flat.high) == (1.5, 1.5)
    with pytest.raises(ValueError):
        stats.bootstrap_interval([])


def test_wilcoxon_is_scipys():
    a = np.array(DATA)
    b = a - np.array([0.3, 0.5, -0.1, 0.6, 0.2, 0.4, 0.1, 0.35])
    assert stats.wilcoxon_p(a - b) == pytest.approx(sps.wilcoxon(a - b).pvalue, abs=0)
    assert stats.wilcoxon_p([0.0, 0.0, 0.0]) == 1.0
    assert stats.wilcoxon_p([0.4]) is None


def test_paired_difference_and_unpaired_rows():
    a = {f"s{i}": v for i, v in enumerate(DATA)}
    b = {k: v - 0.5 for k, v in a.items()}
    p = stats.paired(a, b)
    assert p.diff.mean == pytest.approx(0.5)
    assert p.diff.low == pytest.approx(0.5) and p.diff.high == pytest.approx(0.5)  # constant difference
    assert stats.paired(a, {**b, "extra": 1.0}) is None  # other sample ids: no pairing
    assert stats.paired({}, {}) is None


def test_shared_ranks():
    rng = np.random.default_rng(0)
    base = rng.normal(25, 1.5, 16)  # samples vary far more than the methods
    ids = [f"s{i}" for i in range(16)]
    rows = {
        "best": dict(zip(ids, base + 1.0)),
        "tied": dict(zip(ids, base + 1.0 + rng.normal(0, 0.05, 16))),  # indistinguishable from best
        "worse": dict(zip(ids, base)),                                  # 1 dB below both, every sample
        "worst": dict(zip(ids, base - 2.0)),
    }
    ranks = stats.shared_ranks(rows)
    assert ranks == {"best": 1, "tied": 1, "worse": 3, "worst": 4}
    # lower is better (NMSE-like): the order flips
    assert stats.shared_ranks(rows, higher_is_better=False)["worst"] == 1
    # a row on other sample ids cannot be paired with the best: no rank
    rows["elsewhere"] = {"x1": 0.0, "x2": 0.1}
    assert stats.shared_ranks(rows)["elsewhere"] is None


def test_ties_are_judged_against_the_best_by_the_paired_interval():
    """Rank 1 goes to every row whose paired 95 % interval against the best includes 0 (checked here with scipy's own
    bootstrap of the differences), and to no other; the next group starts at 1 + the rows ranked above it."""
    rng = np.random.default_rng(1)
    ids = [f"s{i}" for i in range(12)]
    base = rng.normal(24, 2.0, 12)
    rows = {"a": dict(zip(ids, base + 0.6)), "b": dict(zip(ids, base + 0.5 + rng.normal(0, 0.4, 12))),
            "c": dict(zip(ids, base + rng.normal(0, 0.05, 12)))}
    rows["d"] = {i: v + 0.2 * (-1) ** k for k, (i, v) in enumerate(rows["c"].items())}  # c, give or take 0.2 dB
    ranks = stats.shared_ranks(rows)
    for name in "bcd":
        d = np.array([rows["a"][i] - rows[name][i] for i in ids])
        ci = sps.bootstrap((d,), np.mean, confidence_level=0.95, n_resamples=9999, method="BCa",
                           random_state=np.random.default_rng(0)).confidence_interval
        assert (ranks[name] == 1) == (ci.low <= 0 <= ci.high), name
    assert ranks["a"] == 1 and ranks["c"] == ranks["d"] == 1 + sum(r == 1 for r in ranks.values())


def test_samples_for_half_width():
    assert stats.samples_for(1.0, 0.5) == 16  # (1.96 * 1 / 0.5)^2 = 15.4
    assert stats.samples_for(0.0) == 2
