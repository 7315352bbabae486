"""Shared fixtures: the source tree's entry points registered, a tiny plugin distribution; helpers live in tests/helpers."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import PLUGIN_CODE, PLUGIN_ENTRY_POINTS, source_entry_points
from tests.helpers import REPO, bench  # noqa: F401  (re-exported: tests written before tests/helpers import them here)

torch.set_num_threads(1)


def register_source_tree() -> None:
    """The registry sees this source tree's entry points (pyproject.toml) as the project's own, whatever the installed
    distribution's dist-info says: a checkout that moved or added a component is tested without a reinstall. Done
    when pytest starts (pytest_configure), before collection, so that tests parametrised by the registry see them."""
    from importlib import metadata

    from benchmarks import registry

    if getattr(registry._installed_entry_points, "source_tree", False):
        return
    scan = registry._installed_entry_points
    own = metadata.distribution("medtta-bench")
    declared = [metadata.EntryPoint(name, value, f"medtta_bench.{group}")._for(own)
                for group, eps in source_entry_points().items() for name, value in eps.items()]

    seen: list = [None, None]  # (the installed scan, the entry points made of it): one merge per scan

    def with_source_tree() -> metadata.EntryPoints:
        found = scan()
        if seen[0] is not found:  # (ep.dist.name reads a METADATA file: only this project's groups are asked)
            others = [ep for group in found.groups if group.startswith("medtta_bench.")
                      for ep in found.select(group=group) if getattr(ep.dist, "name", None) != own.name]
            seen[:] = [found, metadata.EntryPoints(others + declared)]
        return seen[1]

    with_source_tree.source_tree = True
    with_source_tree.installed = scan
    registry._installed_entry_points = with_source_tree


def pytest_configure(config):
    register_source_tree()


def pytest_unconfigure(config):
    from benchmarks import registry

    registry._installed_entry_points = getattr(registry._installed_entry_points, "installed",
                                               registry._installed_entry_points)


@pytest.fixture(autouse=True, scope="session")
def source_tree_registered():
    """The source tree's entry points are registered (from pytest_configure on) for the whole session."""
    register_source_tree()
    yield


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory) -> Path:
    """A real plugin distribution (package + dist-info with entry points) on a path of its own."""
    root = tmp_path_factory.mktemp("plugin_site")
    (root / "medtta_test_plugin").mkdir()
    (root / "medtta_test_plugin" / "__init__.py").write_text(PLUGIN_CODE)
    dist = root / "medtta_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: medtta-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(PLUGIN_ENTRY_POINTS)
    (dist / "RECORD").write_text("")
    return root
