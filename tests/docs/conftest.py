"""The docs-command tests: a cached entry-point scan while they run, and a report of what they ran at the end."""
from __future__ import annotations

import sys

import pytest

from tests.docs.commands import blocks

RAN: dict[str, int] = {"fast": 0, "slow": 0}
FAILED: list[str] = []


@pytest.fixture(autouse=True, scope="package")
def entry_points_scanned_once_per_path(source_tree_registered):
    """The session's source-tree registration (tests/conftest.py) rebuilds the entry-point list, reading every installed
    distribution's METADATA, at each registry look-up (about 0.5 s of CPU each, dozens per `bench run`); the
    documented commands look up the registry hundreds of times, so here that list is kept per `sys.path`, as the
    registry itself keeps its scan."""
    from benchmarks import registry

    scan = registry._installed_entry_points
    cache: dict[tuple[str, ...], object] = {}

    def once_per_path():
        key = tuple(sys.path)
        if key not in cache:
            cache[key] = scan()
        return cache[key]

    registry._installed_entry_points = once_per_path
    yield
    registry._installed_entry_points = scan


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RAN["fast"] and not RAN["slow"] and not FAILED:
        return
    commands = [c for b in blocks() for c in b.commands]
    skipped = [c for c in commands if c.kind == "skip"]
    terminalreporter.write_sep("-", "documented shell commands (tests/docs/test_commands.py)")
    terminalreporter.write_line(
        f"{len(commands)} commands in {len(blocks())} blocks: ran {RAN['fast']} in the default suite, ran "
        f"{RAN['slow']} under -m slow, {len(skipped)} not run, each with its reason (of all: "
        f"{sum(c.kind == 'fast' for c in commands)} fast, {sum(c.kind == 'slow' for c in commands)} slow)")
    for c in FAILED:
        terminalreporter.write_line(f"failed: {c}")
