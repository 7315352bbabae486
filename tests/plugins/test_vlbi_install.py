"""The VLBI plugin as an outside distribution: built and installed with pip (offline, no dependencies) into a
directory of its own, it registers problem `blackhole`, dataset `synthetic-eht` and prior `eht-rings-64` through
the entry points, lists them as a plugin's and runs `bench run --problem blackhole` with DPS and DAPS+TDA; without
it, the core lists no black-hole problem."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from tests.helpers.cli import REPO, bench

PLUGIN = REPO / "plugins" / "vlbi"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """pip install --no-deps --no-build-isolation --no-index --target SITE of a copy of plugins/vlbi (a build in
    place would leave build/ and egg-info in the tree); skipped with pip's reason where that is not possible."""
    root = tmp_path_factory.mktemp("vlbi")
    src = root / "src"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = root / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
           "--target", str(site), str(src)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot install the VLBI plugin offline here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot install the VLBI plugin offline here (pip install --no-deps --no-build-isolation "
                    f"failed; setuptools missing?): {done.stderr.strip()[-400:]}")
    return site


def test_the_core_declares_no_black_hole_problem():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    assert all("blackhole" not in group and "vlbi" not in " ".join(group.values()) for group in declared.values())
    try:
        metadata.distribution("medtta-bench-vlbi")
    except metadata.PackageNotFoundError:  # this environment has no plugin: nothing lists it
        assert "blackhole" not in bench("list", "problems").stdout


def test_the_installed_plugin_lists_and_runs(installed, tmp_path):
    listed = bench("list", "problems", plugin=installed).stdout
    line = next(s for s in listed.splitlines() if s.strip().startswith("blackhole"))
    assert "[plugin: medtta-bench-vlbi]" in line
    assert "[plugin: medtta-bench-vlbi]" in bench("list", "datasets", plugin=installed).stdout
    small = ["--n", "1", "problem.step_min=60"]  # dataset, prior and DAPS/TDA options: the plugin's problem yaml
    bench("run", "--problem", "blackhole", "--algo", "dps", *small, "--out", str(tmp_path / "dps"),
          "algorithm.n_steps=4", plugin=installed)
    bench("run", "--problem", "blackhole", "--algo", "daps+tda", *small, "--out", str(tmp_path / "daps"),
          "algorithm.n_steps=3", "algorithm.ode_steps=1", "algorithm.langevin_steps=2", "problem.amp_weight=1",
          plugin=installed)
    for run in ("dps", "daps"):
        cfg = (tmp_path / run / "config.yaml").read_text()
        assert "dataset: synthetic-eht" in cfg and "prior: eht-rings-64" in cfg
        rows = [json.loads(s) for s in (tmp_path / run / "samples.jsonl").read_text().splitlines()]
        assert [r["status"] for r in rows] == ["ok"]
        metrics = rows[0]["problem_metrics"]
        assert {"psnr_aligned", "psnr_blur10", "psnr_blur15", "psnr_blur20", "chi2_cp", "chi2_lcamp"} <= set(metrics)
        assert rows[0]["problem_n_cphase"] > 0
    with pytest.raises(AssertionError, match="non-linear"):
        bench("run", "--problem", "blackhole", "--algo", "ddrm", *small, "--out", str(tmp_path / "ddrm"),
              plugin=installed)
