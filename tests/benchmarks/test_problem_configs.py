"""configs/problem/<name>.yaml: a problem's choices (default dataset and prior, solver and adapter options) live
there, not on its class or its operator; a problem without one (a plugin's) names its dataset and prior per run."""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from benchmarks import config, registry
from benchmarks.config import (ConfigError, Selection, component_defaults, compose_config, options, problem_choices,
                               problem_options)
from configs import CONFIG_DIR
from tests.conftest import bench, source_entry_points


# problems that ship no packaged prior: a run names one
NO_DEFAULT_PRIOR: set[str] = set()


def test_every_built_in_problem_has_a_yaml_whose_names_are_registered():
    for problem in source_entry_points()["problems"]:
        chosen = problem_choices(problem)
        assert chosen.path is not None, f"configs/problem/{problem}.yaml is missing"
        registry.load("datasets", chosen.dataset)
        if problem in NO_DEFAULT_PRIOR:
            assert chosen.prior is None, f"{problem} has a default prior now: take it off NO_DEFAULT_PRIOR"
        else:
            registry.load("priors", chosen.prior)
        for group in ("algorithms", "adapters"):
            for name in getattr(chosen, group):
                registry.load(group, name)
                problem_options(problem, group, name)  # every option is one the component takes
    assert {p.stem for p in (CONFIG_DIR / "problem").glob("*.yaml")} <= set(source_entry_points()["problems"])


def test_problem_yaml_defaults_reach_a_run(tmp_path):
    cfg = compose_config(Selection("cs_mri", "daps", ["tda"]))
    assert (cfg.names.dataset, cfg.names.prior) == ("phantom-brain-t2", "brain-64")
    assert options(cfg, "adapters")["tda"]["param_lr_scale"] == {"coil_correction": 0.1}
    user = compose_config(Selection("cs_mri", "daps", ["tda"]), ["adapters.tda.param_lr_scale.coil_correction=0.5",
                                                                 "adapters.tda.param_lr_scale.phase=2.0"])
    assert options(user, "adapters")["tda"]["param_lr_scale"] == {"coil_correction": 0.5, "phase": 2.0}
    assert options(compose_config(Selection("cs_mri", "daps", ["tda-net"])), "adapters")["tda-net"] == \
        component_defaults("adapters", "tda-net")  # declared for `tda` only
    assert options(compose_config(Selection("lowfield", "daps", ["tda"])), "adapters")["tda"]["param_sigma_max"] == \
        {"fwhm": math.inf, "noise_std": math.inf}
    mrsi = options(compose_config(Selection("mrsi", "daps", ["tda"])), "adapters")["tda"]
    assert mrsi["param_lr_scale"] == {"drift": 20.0, "linewidth": 20.0}
    inpainting = compose_config(Selection("inpainting", "dps", [])).names
    assert (inpainting.dataset, inpainting.prior) == ("grf", "gaussian")
    # a run on a dataset nobody named: the problem's yaml's
    out = tmp_path / "run"
    bench("run", "--problem", "inpainting", "--algo", "zero-filled", "--n", "1", "--out", str(out), "--quiet")
    assert OmegaConf.load(out / "config.yaml").names.dataset == "grf"
    assert json.loads((out / "samples.jsonl").read_text().splitlines()[0])["status"] == "ok"


def test_problem_yaml_choices_reach_the_adapter():
    """cs_mri's coil-map correction steps at a tenth of TDA's lr: TDA owns the scale, the problem's yaml sets it."""
    from benchmarks.build import build_components

    cfg = compose_config(Selection("cs_mri", "zero-filled", ["tda"]), ["problem.size=32", "dataset.size=32"])
    tda = build_components(cfg, torch.device("cpu")).adapters[0]
    assert tda.param_lr_scale == {"coil_correction": 0.1}
    assert math.isclose(tda.step_of("coil_correction"), 0.1 * tda.lr) and tda.step_of("phase") == tda.lr
    assert tda.lr == 0.02 and tda.sigma_max == 1.0  # TDA()'s own defaults are the run's


def test_a_sweep_gives_each_problem_its_own_adapter_options(tmp_path):
    out = tmp_path / "sweep"
    bench("run", "-m", "--problem", "cs_mri,lowfield", "--algo", "zero-filled+tda", "--n", "1", "--quiet",
          "--out", str(out), "problem.size=32", "dataset.size=32")
    tda = {OmegaConf.load(job / "config.yaml").names.problem: OmegaConf.load(job / "config.yaml").adapters.tda
           for job in sorted(out.iterdir()) if job.name.isdigit()}
    assert tda["cs_mri"].param_lr_scale == {"coil_correction": 0.1} and tda["cs_mri"].param_sigma_max == {}
    assert tda["lowfield"].param_lr_scale == {} and tda["lowfield"].param_sigma_max.fwhm == math.inf


def test_a_bad_problem_yaml_is_refused(tmp_path, monkeypatch):
    (tmp_path / "problem").mkdir()
    monkeypatch.setattr(config, "CONFIG_DIR", tmp_path)
    (tmp_path / "problem" / "inpainting.yaml").write_text("dataset: grf\nkeep: 0.3\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) keep; a problem's yaml takes dataset, prior"):
        problem_choices("inpainting")
    (tmp_path / "problem" / "inpainting.yaml").write_text("adapters: {tda: {param_lr_scal: {x: 1.0}}}\n")
    with pytest.raises(ConfigError, match=r"problem 'inpainting' declares options for adapter 'tda' with "
                                          r"param_lr_scal, which 'tda' does not take"):
        problem_options("inpainting", "adapters", "tda")


PLUGIN = '''
"""A third-party problem plugin without a configs/problem yaml."""
from inverse_problems.base import Problem  # noqa: F401  (the plugin API)
from inverse_problems.problems.inpainting import InpaintingProblem


class PlugInpaint(InpaintingProblem):
    """Test plugin problem: inpainting, no choices anywhere."""


class LegacyInpaint(InpaintingProblem):
    """Test plugin problem: declares its defaults the old way, on the class."""

    default_dataset = "grf"
    default_prior = "gaussian"
'''


@pytest.fixture(scope="module")
def problem_plugin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("problem_plugin")
    (root / "medtta_problem_plugin.py").write_text(PLUGIN)
    dist = root / "medtta_problem_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: medtta-problem-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [medtta_bench.problems]
        plug-inpaint = medtta_problem_plugin:PlugInpaint
        plug-legacy = medtta_problem_plugin:LegacyInpaint
        """))
    (dist / "RECORD").write_text("")
    return root


def test_a_plugin_problem_without_a_yaml_names_its_dataset_and_prior(problem_plugin, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(problem_plugin))
    assert problem_choices("plug-inpaint").path is None
    with pytest.raises(ConfigError, match=r"problem 'plug-inpaint' has no default dataset \(no "
                                          r"configs/problem/plug-inpaint.yaml\); pass --dataset NAME"):
        compose_config(Selection("plug-inpaint", "zero-filled", []))
    with pytest.raises(ConfigError, match=r"algorithm 'dps' needs a prior and problem 'plug-inpaint' has no default "
                                          r"prior .*; pass --prior NAME"):
        compose_config(Selection("plug-inpaint", "dps", [], dataset="grf"))
    # the old class attributes are not read, and the error says so
    with pytest.raises(ConfigError, match=r"its class declares default_dataset = 'grf', default_prior = 'gaussian', "
                                          r"which the harness no longer reads\); pass --dataset NAME"):
        compose_config(Selection("plug-legacy", "zero-filled", []))
    cfg = compose_config(Selection("plug-inpaint", "dps", [], prior="gaussian", dataset="grf"))
    assert (cfg.names.dataset, cfg.names.prior) == ("grf", "gaussian")
    assert options(cfg, "algorithm") == component_defaults("algorithms", "dps")  # no choices: the solver's defaults
    out = tmp_path / "run"
    bench("run", "--problem", "plug-inpaint", "--dataset", "grf", "--algo", "zero-filled", "--n", "1", "--quiet",
          "--out", str(out), plugin=problem_plugin)
    assert OmegaConf.load(out / "config.yaml").names.dataset == "grf"
    bad = bench("run", "--problem", "plug-inpaint", "--algo", "zero-filled", "--n", "1", "--quiet",
                "--out", str(tmp_path / "bad"), plugin=problem_plugin, check=False)
    assert bad.returncode != 0 and "pass --dataset NAME" in bad.stderr


def test_a_plugin_problem_brings_its_choices_in_its_package(tmp_path, monkeypatch):
    """A plugin's problem has no configs/problem yaml here: its package's configs/problem/<name>.yaml is read instead
    (found without importing the package), with the same checks."""
    from importlib import metadata

    from benchmarks import config, registry

    pkg = tmp_path / "fakeplug"
    (pkg / "configs" / "problem").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "configs" / "problem" / "fakeprob.yaml").write_text(
        "dataset: fake-data\nprior: fake-prior\nalgorithms:\n  daps: {budget: 0.1k}\n")
    ep = metadata.EntryPoint("fakeprob", "fakeplug.problem:FakeProblem", "medtta_bench.problems")
    real = registry.entry_points
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: {**real(group), "fakeprob": ep} if group == "problems" else real(group))
    monkeypatch.syspath_prepend(str(tmp_path))
    chosen = config.problem_choices("fakeprob")
    assert (chosen.dataset, chosen.prior, chosen.algorithms) == ("fake-data", "fake-prior", {"daps": {"budget": "0.1k"}})
    assert chosen.path == str(pkg / "configs" / "problem" / "fakeprob.yaml")
    (pkg / "configs" / "problem" / "fakeprob.yaml").write_text("dataset: fake-data\nlr: 1\n")
    with pytest.raises(config.ConfigError, match=r"fakeprob.yaml: unknown key\(s\) lr"):
        config.problem_choices("fakeprob")
