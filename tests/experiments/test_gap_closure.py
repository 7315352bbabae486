"""The gap-closure script's ratio: (adapted - unadapted) / (oracle - unadapted), and no ratio without a gap."""
from __future__ import annotations

import pytest

from benchmarks.experiments.gap_closure import closure, markdown


def test_closure_is_the_share_of_the_gap_won_back():
    assert closure(28.0, 20.0, 26.0) == pytest.approx(0.75)
    assert closure(28.0, 20.0, 19.0) == pytest.approx(-0.125)  # adaptation that hurts is negative


@pytest.mark.parametrize("unadapted", [28.0, 30.5])
def test_no_gap_gives_no_ratio(unadapted):
    # the shifted setting is as good as or better than the oracle: a ratio would be meaningless (its sign flips)
    assert closure(28.0, unadapted, 30.7) is None
    row = {"shift": "s", "kind": "data", "adapter": "a", "psnr": {"oracle": 28.0, "unadapted": unadapted,
                                                                  "adapted": 30.7}, "gap_closure": None}
    assert "n/a (no gap)" in markdown([row])
