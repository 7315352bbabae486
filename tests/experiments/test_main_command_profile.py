"""benchmarks/experiments/main_command_profile.py: a part's time is its owner's cumulative time, found by file and
function name, and a missing owner counts zero."""
from __future__ import annotations

import cProfile
import pstats
import time

from benchmarks.experiments.main_command_profile import PARTS, cumulative


def _inner() -> None:
    time.sleep(0.02)


def _owner() -> None:
    for _ in range(3):
        _inner()


def test_cumulative_finds_the_owner_and_counts_its_calls():
    prof = cProfile.Profile()
    prof.enable()
    _owner()
    _owner()
    prof.disable()
    stats = pstats.Stats(prof)
    seconds, calls = cumulative(stats, "tests/experiments/test_main_command_profile.py", "_owner")
    inner, inner_calls = cumulative(stats, "tests/experiments/test_main_command_profile.py", "_inner")
    assert calls == 2 and inner_calls == 6
    assert seconds >= inner >= 0.1 and seconds < 2.0
    assert cumulative(stats, "no/such/file.py", "_owner") == (0.0, 0)


def test_every_part_names_a_function_of_the_repository():
    from benchmarks.experiments.timed_runs import REPO

    for label, (suffix, name) in PARTS.items():
        text = (REPO / suffix).read_text()
        assert name == "<module>" or f"def {name}(" in text, label
