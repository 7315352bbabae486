"""The quality-per-second study's reach time (benchmarks/experiments/quality_per_second.py): linear interpolation
on the curve ordered by seconds, the first point when it is already there, None when no budget reaches the target;
and the summary's headline ratio on fixed curves (the reference curve, l1-wavelet, is no candidate for it)."""
import pytest

from benchmarks.experiments.quality_per_second import reach_time, summarise


def test_reach_time_interpolates_between_the_bracketing_budgets():
    curve = [(8.0, 26.0), (1.0, 20.0), (2.0, 24.0)]  # unordered on purpose
    assert reach_time(curve, 22.0) == pytest.approx(1.5)
    assert reach_time(curve, 25.0) == pytest.approx(5.0)
    assert reach_time(curve, 24.0) == pytest.approx(2.0)


def test_reach_time_first_point_and_never_reached():
    curve = [(1.0, 20.0), (2.0, 24.0)]
    assert reach_time(curve, 19.0) == 1.0
    assert reach_time(curve, 24.5) is None
    assert reach_time([], 10.0) is None


def test_reach_time_takes_the_first_crossing_of_a_curve_that_falls_back():
    assert reach_time([(1.0, 20.0), (2.0, 25.0), (4.0, 21.0), (8.0, 26.0)], 22.0) == pytest.approx(1.4)


def test_summary_headline_ratio():
    def rows(*pts):
        return [{"cpu_s_per_sample": t, "psnr": p, "nfe": round(10 * t)} for t, p in pts]
    curves = {"suite:l1-wavelet": rows((0.1, 25.0)), "suite:fast": rows((0.5, 20.0), (1.0, 24.0)),
              "suite:slow": rows((1.0, 20.0), (10.0, 22.0)), "deepinv:a": rows((1.0, 21.0), (4.0, 23.0)),
              "deepinv:b": rows((2.0, 22.0))}
    s = summarise(curves, 21.0)
    assert s["deepinv_best"] == {"method": "deepinv:a", "psnr": 23.0, "cpu_s_per_sample": 4.0}
    assert s["reach"]["suite:fast"]["to_deepinv_best_psnr_cpu_s"] == pytest.approx(0.875)
    assert s["reach"]["suite:slow"]["to_deepinv_best_psnr_cpu_s"] is None
    assert s["reach"]["suite:slow"]["to_l1_wavelet_psnr_cpu_s"] == pytest.approx(5.5)
    h = s["headline"]
    assert h["suite_fastest_to_deepinv_best"] == "suite:fast"
    assert h["ratio"] == pytest.approx(0.875 / 4.0) and h["goal_met"] and not h["at_cheapest_budget"]
    assert s["reach"]["suite:l1-wavelet"]["to_deepinv_best_psnr_cpu_s"] == 0.1  # the reference is no candidate
    assert (h["nfe"], h["deepinv_nfe"]) == (pytest.approx(8.75), 40)
