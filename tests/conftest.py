"""Shared fixtures: a tiny plugin distribution and a CLI runner."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def source_entry_points() -> dict[str, dict[str, str]]:
    """The entry points this source tree's pyproject.toml declares, {group: {name: "module:attr"}}."""
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    return {g.removeprefix("medtta_bench."): dict(eps) for g, eps in declared.items() if g.startswith("medtta_bench.")}


@pytest.fixture(autouse=True, scope="session")
def source_tree_registered():
    """The registry sees this source tree's entry points (pyproject.toml) as the suite's own, whatever the installed
    distribution's dist-info says: a checkout that moved or added a component is tested without a reinstall."""
    from importlib import metadata

    from benchmarks import registry

    scan = registry._installed_entry_points
    own = metadata.distribution("medtta-bench")
    declared = [metadata.EntryPoint(name, value, f"medtta_bench.{group}")._for(own)
                for group, eps in source_entry_points().items() for name, value in eps.items()]

    def with_source_tree() -> metadata.EntryPoints:
        found = scan()
        others = [ep for group in found.groups for ep in found.select(group=group)
                  if getattr(ep.dist, "name", None) != own.name]
        return metadata.EntryPoints(others + declared)

    registry._installed_entry_points = with_source_tree
    yield
    registry._installed_entry_points = scan

PLUGIN_CODE = '''
"""A third-party plugin used by the tests: a prior and an algorithm."""
import time

import torch
from priors.base import Prior
from algorithms.base import Algorithm


class HalfPrior(Prior):
    """Test plugin prior: D(x, sigma) = gain * x."""

    def __init__(self, gain: float = 0.5, channels: int = 1):
        super().__init__()
        self.gain = gain
        self.channels = channels

    def denoise(self, x, sigma):
        return self.gain * x


class DenoiseAdjoint(Algorithm):
    """Test plugin algorithm: one denoiser call on A^H y (optionally slow, for kill tests)."""

    def __init__(self, sigma: float = 0.1, delay: float = 0.0):
        super().__init__()
        self.sigma = sigma
        self.delay = delay

    def run(self, y, operator, prior, generator, callback=None):
        time.sleep(self.delay)
        return self.denoise(prior, operator.adjoint(y), self.sigma)
'''


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory) -> Path:
    """A real plugin distribution (package + dist-info with entry points) on a path of its own."""
    root = tmp_path_factory.mktemp("plugin_site")
    (root / "medtta_test_plugin").mkdir()
    (root / "medtta_test_plugin" / "__init__.py").write_text(PLUGIN_CODE)
    dist = root / "medtta_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: medtta-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [medtta_bench.priors]
        half = medtta_test_plugin:HalfPrior

        [medtta_bench.algorithms]
        denoise-adjoint = medtta_test_plugin:DenoiseAdjoint
        """))
    (dist / "RECORD").write_text("")
    return root


def bench(*args: str, plugin: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the `bench` CLI in this process (with the test plugin importable if asked); capture its output."""
    import contextlib
    import io

    from benchmarks.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = list(sys.path)
    if plugin is not None:
        sys.path.insert(0, str(plugin))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        sys.path[:] = saved
    res = subprocess.CompletedProcess(["bench", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"bench {' '.join(args)} failed ({code}):\n{res.stdout}\n{res.stderr}")
    return res


# the entry points issue 13 (MRSI) adds to pyproject.toml, by group
MRSI_ENTRY_POINTS = {
    "algorithms": {"mrsi-lowrank": "algorithms.classical.mrsi:MRSILowRank", "mrsi-tv": "algorithms.classical.mrsi:MRSITV"},
    "priors": {"phantom-dmi-32": "priors.shipped:phantom_dmi_32"},
}


@pytest.fixture(scope="session")
def mrsi_entry_points(tmp_path_factory) -> Path | None:
    """The path to put on sys.path so that issue 13's algorithms and prior are registered: None once the installed
    distribution declares them (pyproject.toml), else a tiny dist-info declaring the same entry points."""
    return entry_point_stand_in(tmp_path_factory, "mrsi", MRSI_ENTRY_POINTS)


def entry_point_stand_in(tmp_path_factory, name: str, groups: dict[str, dict[str, str]]) -> Path | None:
    """None when the installed distribution already declares every entry point of `groups` ({group: {name:
    "module:attr"}}), else the root of a tiny dist-info `medtta-<name>-entry-points` declaring them, to put on
    sys.path (or PYTHONPATH) so that the registry finds them."""
    from benchmarks import registry

    if all(set(eps) <= set(registry.names(group)) for group, eps in groups.items()):
        return None
    root = tmp_path_factory.mktemp(f"{name}_entry_points")
    dist = root / f"medtta_{name}_entry_points-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: medtta-{name}-entry-points\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("".join(
        f"[medtta_bench.{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
        for group, eps in groups.items()))
    (dist / "RECORD").write_text("")
    return root
