"""The harness end to end: plugins, run directories, errors (issue: foundation)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import registry
from benchmarks.config import ConfigError, Selection, compose_config, parse_algo
from tests.helpers import bench

TINY = ["--problem", "inpainting", "--n", "4", "--batch-size", "2", "--quiet"]


def test_plugin_is_listed_and_used(plugin_path, tmp_path):
    listed = bench("list", "priors", plugin=plugin_path).stdout
    assert "half" in listed and "[plugin: medtta-test-plugin]" in listed
    assert "gaussian" in listed  # the built-ins stay beside it
    run = tmp_path / "plugin-run"
    bench("run", *TINY, "--algo", "denoise-adjoint", "--prior", "half", "--out", str(run), "prior.gain=0.25",
          "algorithm.sigma=0.5", plugin=plugin_path)
    base = tmp_path / "zf-run"
    bench("run", *TINY, "--algo", "zero-filled", "--out", str(base))
    cfg = (run / "config.yaml").read_text()
    assert "prior: half" in cfg and "gain: 0.25" in cfg
    for i in range(4):
        got = np.load(run / f"reconstructions/{i:06d}.npy")
        ref = np.load(base / f"reconstructions/{i:06d}.npy")
        np.testing.assert_allclose(got, 0.25 * ref, rtol=1e-5, atol=1e-7)  # the plugin prior really ran
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [r["nfe"] for r in rows] == [1, 1, 1, 1]


def test_plugin_on_the_old_import_paths_registers_and_runs(plugin_path, tmp_path):
    """The test plugin is written as the README's example is (priors.base, algorithms.base, inverse_problems.base):
    its problem is listed beside the built-ins and runs through `bench run` with a built-in algorithm and with its own
    algorithm and prior."""
    from tests.helpers import PLUGIN_CODE

    for line in ("from priors.base import Prior", "from algorithms.base import Algorithm",
                 "from inverse_problems.base import ForwardOperator, Problem, ProblemInstance"):
        assert line in PLUGIN_CODE
    listed = bench("list", "problems", plugin=plugin_path).stdout
    assert "attenuation" in listed and "Test plugin problem" in listed and "cs_mri" in listed
    small = ["--problem", "attenuation", "--dataset", "grf", "dataset.size=16", "--n", "2", "--quiet"]
    zf, own = tmp_path / "zf", tmp_path / "own"
    bench("run", *small, "--algo", "zero-filled", "--out", str(zf), plugin=plugin_path)
    bench("run", *small, "--algo", "denoise-adjoint", "--prior", "half", "--out", str(own), "problem.gain=0.25",
          plugin=plugin_path)
    for run in (zf, own):
        rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
        assert [r["status"] for r in rows] == ["ok", "ok"], rows
    assert "problem: attenuation" in (own / "config.yaml").read_text() and "gain: 0.25" in (own / "config.yaml").read_text()


def test_run_directory_contents(tmp_path):
    out = tmp_path / "run"
    res = bench("run", *TINY, "--algo", "zero-filled", "--out", str(out), "--seed", "3")
    assert "psnr" in res.stdout and "samples: 4 ok" in res.stdout
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    for r in rows:
        for key in ("id", "psnr", "ssim", "nmse", "ncc", "lpips", "data_misfit", "seconds", "nfe", "peak_memory_mb",
                    "status"):
            assert key in r
        assert r["status"] == "ok" and np.isfinite(r["psnr"])
        assert np.load(out / r["reconstruction"]).shape == (1, 32, 32)
    env = json.loads((out / "environment.json").read_text())
    assert env["packages"]["torch"] and env["torch_threads"] >= 1 and "git_revision" in env
    assert env["thread_choice"]["threads"] == env["torch_threads"]
    summary = json.loads((out / "summary.json").read_text())
    cost = [json.loads(line) for line in (out / "cost.jsonl").read_text().splitlines()]
    # start-up CPU is counted by a process's first run only: in this in-process CLI an earlier test's run may have it
    assert len(cost) == 1 and cost[0]["cpu_seconds"] > 0 and cost[0]["startup_cpu_seconds"] >= 0
    assert summary["cost"]["cpu_seconds"] == pytest.approx(cost[0]["cpu_seconds"] + cost[0]["startup_cpu_seconds"],
                                                           abs=0.01)
    assert summary["n_ok"] == 4
    assert summary["metrics"]["psnr"]["mean"] == pytest.approx(np.mean([r["psnr"] for r in rows]))
    # same seed, same numbers
    again = tmp_path / "again"
    bench("run", *TINY, "--algo", "zero-filled", "--out", str(again), "--seed", "3")
    rows2 = [json.loads(line) for line in (again / "samples.jsonl").read_text().splitlines()]
    assert [r["psnr"] for r in rows] == [r["psnr"] for r in rows2]
    report = bench("report", str(out)).stdout
    assert "psnr" in report and (out / "figures" / "samples.png").exists()


def test_parse_algo():
    assert parse_algo("daps+tda+air") == ("daps", ["tda", "air"])
    with pytest.raises(ConfigError, match="ALGORITHM"):
        parse_algo("daps+")


def test_multirun_sweep(tmp_path):
    out = tmp_path / "sweep"
    bench("run", *TINY, "--algo", "zero-filled", "--out", str(out), "-m", "problem.keep=0.3,0.8")
    psnr = [json.loads((out / str(j) / "summary.json").read_text())["metrics"]["psnr"]["mean"] for j in (0, 1)]
    assert psnr[1] > psnr[0]  # more observed pixels, better zero-filled


@pytest.mark.parametrize("args,message", [
    (["--problem", "nope", "--algo", "zero-filled"], "unknown problem 'nope'; valid problems: .*inpainting"),
    (["--problem", "inpainting", "--algo", "nope"], "unknown algorithm 'nope'; valid algorithms: .*zero-filled"),
    (["--problem", "inpainting", "--algo", "zero-filled+nope"], "unknown adapter 'nope'; valid adapters"),
    (["--problem", "inpainting", "--algo", "zero-filled", "--dataset", "nope"], "unknown dataset 'nope'; valid datasets: .*grf"),
    (["--problem", "inpainting", "--algo", "zero-filled", "--shift", "nope"], "unknown shift 'nope'"),
    (["--problem", "inpainting", "--algo", "zero-filled", "--shift", "operator"], "defined for problem 'cs_mri'"),
    (["--problem", "inpainting", "--algo", "zero-filled", "problem.keepp=0.3"], "problem.keepp"),
    (["--problem", "inpainting", "--algo", "zero-filled", "+problem.keepp=0.3"], "takes no option 'keepp'; its options are: .*keep"),
    (["--problem", "inpainting", "--algo", "zero-filled", "--device", "cuda:7"], "no such CUDA device"),
    (["--problem", "inpainting", "--algo", "zero-filled", "problem.size=16"], r"shape \(1, 32, 32\).*\(1, 16, 16\)"),
])
def test_cli_errors_name_the_problem(args, message, tmp_path):
    res = bench("run", *args, "--out", str(tmp_path / "r"), "--quiet", check=False)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    import re
    assert re.search(message, res.stderr), res.stderr


def test_prior_problem_mismatch_refused_before_compute(plugin_path, tmp_path):
    out = tmp_path / "r"
    res = bench("run", *TINY, "--algo", "denoise-adjoint", "--prior", "half", "prior.channels=2", "--out", str(out),
                plugin=plugin_path, check=False)
    assert res.returncode == 2
    assert "(2, any, any)" in res.stderr and "(1, 32, 32)" in res.stderr
    assert not (out / "samples.jsonl").exists()


def test_existing_run_needs_resume(tmp_path):
    out = tmp_path / "r"
    bench("run", *TINY, "--algo", "zero-filled", "--out", str(out))
    res = bench("run", *TINY, "--algo", "zero-filled", "--out", str(out), check=False)
    assert res.returncode == 2 and "--resume" in res.stderr
    res = bench("run", *TINY, "--algo", "zero-filled", "--out", str(out), "--resume", "problem.keep=0.9", check=False)
    assert res.returncode == 2 and "another configuration" in res.stderr


def test_registry_in_process():
    assert set(registry.GROUPS) == {"problems", "priors", "algorithms", "adapters", "datasets"}
    with pytest.raises(LookupError, match="valid groups"):
        registry.names("nope")
    problem = registry.build("problems", "inpainting", size=16)
    assert problem.image_shape == (1, 16, 16)
    cfg = compose_config(Selection("inpainting", "zero-filled", []), ["problem.size=16"])
    assert cfg.problem.size == 16 and cfg.names.prior is None  # zero-filled uses no prior


def test_multiprocess_shards_and_merges(tmp_path):
    """torchrun (as accelerate launch does on GPUs) shards batches over processes; rank 0 merges."""
    import os
    import subprocess
    import sys

    out = tmp_path / "mp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                          "benchmarks.cli", "--", "run", "--problem", "inpainting", "--algo", "zero-filled", "--n", "6",
                          "--batch-size", "2", "--out", str(out), "--quiet"], capture_output=True, text=True, env=env,
                         timeout=240)
    assert res.returncode == 0, res.stderr
    own = [json.loads(x)["index"] for x in (out / "samples.jsonl").read_text().splitlines()]
    other = [json.loads(x)["index"] for x in (out / "samples.rank1.jsonl").read_text().splitlines()]
    assert sorted(own) == [0, 1, 4, 5] and sorted(other) == [2, 3]
    assert json.loads((out / "summary.json").read_text())["n_ok"] == 6
    single = tmp_path / "single"
    bench("run", "--problem", "inpainting", "--algo", "zero-filled", "--n", "6", "--batch-size", "2", "--out",
          str(single), "--quiet")
    ref = {json.loads(x)["index"]: json.loads(x)["psnr"] for x in (single / "samples.jsonl").read_text().splitlines()}
    got = {json.loads(x)["index"]: json.loads(x)["psnr"] for p in ("samples.jsonl", "samples.rank1.jsonl")
           for x in (out / p).read_text().splitlines()}
    assert got == ref  # sharding does not change any sample's numbers


def test_dict_valued_options_take_new_keys_but_typos_stay_errors():
    cfg = compose_config(Selection("cs_mri", "daps", ["tda"]), ["adapters.tda.param_lr={phase: 0.1}",
                                                                 "adapters.tda.param_lr.coil_correction=0.002"])
    assert cfg.adapters.tda.param_lr.phase == 0.1 and cfg.adapters.tda.param_lr.coil_correction == 0.002
    with pytest.raises(ConfigError, match="adapters.tda.lrr"):
        compose_config(Selection("cs_mri", "daps", ["tda"]), ["adapters.tda.lrr=0.1"])


def test_component_yamls_hold_only_values_that_differ_from_the_constructor():
    """Every configs/<group>/<name>.yaml key is a constructor option (or `search`, or a prior's `dataset_options`)
    whose value differs from the constructor's default, for every registered component that has a yaml."""
    import inspect

    from omegaconf import OmegaConf

    from benchmarks import registry
    from configs import CONFIG_DIR

    checked = 0
    for group, folder in registry.CONFIG_DIR.items():
        if group == "problems":
            continue  # configs/problem holds each problem's choices, not its options (tests/benchmarks/test_problem_configs.py)
        for path in sorted((CONFIG_DIR / folder).glob("*.yaml")):
            assert path.stem in registry.names(group), f"{path} belongs to no registered {group} entry"
            params = inspect.signature(registry.load(group, path.stem)).parameters
            for key, value in (OmegaConf.to_container(OmegaConf.load(path)) or {}).items():
                if key == "search" or (group == "priors" and key == "dataset_options"):
                    continue
                assert key in params, f"{path}: {key!r} is not an option of {group} {path.stem!r}"
                default = params[key].default
                default = list(default) if isinstance(default, tuple) else default
                assert default is inspect.Parameter.empty or default != value, \
                    f"{path}: {key}={value!r} repeats the constructor's default; drop it from the yaml"
                checked += 1
    assert checked > 0
