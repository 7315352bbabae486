"""A CLI that starts fast (issue 15): `bench --help` and `bench list` import no heavy library, and `bench list`
still describes every registered component (read from sources with ast, not by importing them)."""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap

import pytest

from benchmarks import registry
from tests.helpers import REPO, bench

HEAVY = ("torch", "hydra", "omegaconf", "diffusers", "matplotlib", "piq", "accelerate", "scipy",
         "medtta_test_plugin")
PROBE = textwrap.dedent("""\
    import contextlib, io, json, sys
    from benchmarks.cli import main
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            code = main(sys.argv[1:])
    except SystemExit as exc:  # --help exits 0
        code = exc.code
    print(json.dumps({"code": code, "stdout": out.getvalue(), "modules": sorted(sys.modules)}))
""")


def probe(*argv: str, extra_path: str | None = None) -> dict:
    """Run `bench ARGV` in a fresh interpreter; its exit code, output and the modules it imported."""
    path = [str(REPO)] + ([extra_path] if extra_path else []) + [os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


HELP_PROBES = [["--help"], ["list"], ["train-prior", "--help"], ["train-recon", "--help"], ["run", "--help"],
               ["rescore", "--help"], ["verify", "--help"], ["submit", "--help"]]


@pytest.mark.parametrize("argv", HELP_PROBES)
def test_help_and_list_import_no_heavy_library(argv, plugin_path):
    got = probe(*argv, extra_path=str(plugin_path))
    assert got["code"] == 0
    loaded = [m for m in HEAVY if m in got["modules"]]
    assert loaded == [], f"`bench {' '.join(argv)}` imported {loaded}"
    if argv == ["list"]:  # the plugin is listed from its source, with its docstring, without importing it
        assert "half" in got["stdout"] and "Test plugin prior: D(x, sigma) = gain * x." in got["stdout"]


def test_list_describes_every_registered_component_as_its_docstring_does():
    listed = bench("list").stdout.splitlines()
    for group in registry.GROUPS:
        for name in registry.names(group):
            doc = (inspect.getdoc(registry.load(group, name)) or "").strip()
            first = doc.splitlines()[0] if doc else ""
            assert registry.describe(group, name) == first, (group, name)
            assert any(line.split()[:1] == [name] and line.rstrip().endswith(first) for line in listed), (group, name)
        assert registry.listing(group) == [(n, registry.describe(group, n), registry.distribution(group, n))
                                           for n in registry.names(group)]
    from benchmarks.config import load_shift, shift_names, shift_source_model, shift_source_prior  # hydra's reader

    for shift in shift_names():
        node = load_shift(shift)
        models = {f: m for f in ("unet", "varnet") if (m := shift_source_model(shift, f))}
        prior = shift_source_prior(shift)
        line = f"  {shift:<22} {node.get('description', '')}" + (
            "; networks' source model: " + ", ".join(f"{f} {m}" for f, m in models.items()) if models else "") + (
            f"; diffusion prior: {prior}" if prior else "")
        assert line in listed


def test_docstrings_and_sources_are_found_without_importing(tmp_path, monkeypatch):
    pkg = tmp_path / "lazy_pkg_probe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('the package was imported')\n")
    (pkg / "mod.py").write_text(textwrap.dedent('''\
        """Module."""
        class A:
            """First line of A.

            More."""
        def f():
            """f's line."""
        B = A
        class C(A):
            pass
        '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry.module_source("lazy_pkg_probe.mod") == pkg / "mod.py"
    assert registry.source_docstring("lazy_pkg_probe.mod:A") == "First line of A.\n\nMore."
    assert registry.source_docstring("lazy_pkg_probe.mod:f") == "f's line."
    # an assignment or an inherited docstring is not readable from the source: describe() imports those
    assert registry.source_docstring("lazy_pkg_probe.mod:B") is None
    assert registry.source_docstring("lazy_pkg_probe.mod:C") is None
    assert registry.module_source("lazy_pkg_probe.missing") is None and registry.module_source("no_such_pkg.x") is None
    assert "lazy_pkg_probe" not in sys.modules


def test_sources_are_found_through_any_finder_without_importing(tmp_path, monkeypatch):
    """An editable install serves packages through a meta-path finder, not from sys.path: found all the same."""
    import importlib.util

    root = tmp_path / "elsewhere" / "lazy_meta_probe"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("raise RuntimeError('the package was imported')\n")
    (root / "sub.py").write_text('def g():\n    """g from a finder."""\n')

    class Finder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name != "lazy_meta_probe":
                return None
            return importlib.util.spec_from_file_location(name, root / "__init__.py",
                                                          submodule_search_locations=[str(root)])

    monkeypatch.setattr(sys, "meta_path", [Finder, *sys.meta_path])
    assert registry.source_docstring("lazy_meta_probe.sub:g") == "g from a finder."
    assert "lazy_meta_probe" not in sys.modules


def test_train_parsers_show_the_torch_free_config_modules():
    """The train-prior / train-recon parsers take their choices and defaults from the config modules they import
    (priors.training.config, algorithms.networks.training_config), not from parsing training source."""
    from dataclasses import MISSING, fields

    from algorithms.networks import training_config as rc
    from benchmarks.cli import parser
    from priors.training import config as pc

    sub = next(a for a in parser()._actions if a.dest == "verb").choices
    for verb, module, cls in (("train-prior", pc, pc.TrainConfig), ("train-recon", rc, rc.ReconTrainConfig)):
        actions = {a.dest: a for a in sub[verb]._actions}
        for f in fields(cls):
            if f.default is not MISSING and f.default is not None and not isinstance(f.default, bool) and f.name in actions:
                assert f"(default: {f.default})" in actions[f.name].help, (verb, f.name)
        assert all("--" + k.replace("_", "-") in actions["resume"].help for k in module.RESUMABLE), verb
    prior = {a.dest: a for a in sub["train-prior"]._actions}
    assert prior["model"].choices == list(pc.PRESETS) and prior["prediction"].choices == list(pc.PREDICTIONS)
    assert prior["recipe"].choices == list(pc.RECIPES) and prior["arch"].choices == list(pc.ARCHS)
    recon = {a.dest: a for a in sub["train-recon"]._actions}
    assert recon["algo"].choices == list(rc.ARCHS) and recon["loss"].choices == list(rc.LOSSES)


def test_every_verb_is_in_the_docs_verb_table_and_its_help_test():
    from benchmarks.cli import parser

    verbs = next(a for a in parser()._actions if a.dest == "verb").choices
    table = (REPO / "docs" / "cli.md").read_text(encoding="utf-8").split("\n\n")[1]
    assert [v for v in verbs if f"`bench {v}" not in table] == []
    probed = {argv[0] for argv in HELP_PROBES if argv[0] != "--help"}
    assert {"rescore", "verify", "submit"} <= probed
