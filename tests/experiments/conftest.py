"""The lab scripts' tests (benchmarks/experiments: table drivers and speed studies, not the product): every test in
this folder carries the `experiments` marker. They run by default; `-m "not slow and not experiments"` leaves
them out (a command-line -m replaces the default `-m 'not slow'` of pyproject's addopts)."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection
def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.experiments)
