"""`bench run -m` is hydra's own multirun: one sweep directory of numbered run directories, any launcher."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers import bench

TINY = ["--problem", "inpainting", "--n", "2", "--batch-size", "2", "--quiet"]


def _psnr(job: Path) -> float:
    return json.loads((job / "summary.json").read_text())["metrics"]["psnr"]["mean"]


def _jobs(out: Path) -> list[str]:
    return sorted(d.name for d in out.iterdir() if d.is_dir() and not d.name.startswith("."))


def _board(tmp_path: Path, sweep: Path) -> list[dict]:
    bench("leaderboard", str(sweep), "-o", str(tmp_path / "board.json"))
    return json.loads((tmp_path / "board.json").read_text())["entries"]


def test_basic_launcher_one_sweep_directory(tmp_path):
    out = tmp_path / "sweep"
    bench("run", *TINY, "--algo", "zero-filled", "--out", str(out), "-m", "hydra/launcher=basic",
          "problem.keep=0.3,0.8")
    assert _jobs(out) == ["0", "1"] and (out / "multirun.yaml").exists()
    multirun = OmegaConf.load(out / "multirun.yaml")
    assert multirun.hydra.sweep.dir == str(out) and "problem.keep=0.3,0.8" in multirun.hydra.overrides.task
    assert _psnr(out / "1") > _psnr(out / "0")  # more observed pixels, better zero-filled
    # a job's run directory is exactly the single run's
    single = tmp_path / "single"
    bench("run", *TINY, "--algo", "zero-filled", "--out", str(single), "problem.keep=0.3")
    assert OmegaConf.load(out / "0" / "config.yaml") == OmegaConf.load(single / "config.yaml")
    assert _psnr(out / "0") == _psnr(single)
    assert len(_board(tmp_path, out)) == 2


def test_joblib_launcher_sweeps_the_algorithm_choice(tmp_path):
    out = tmp_path / "sweep"
    bench("run", *TINY, "--algo", "zero-filled,cg-sense", "--out", str(out), "-m", "hydra/launcher=joblib",
          "hydra.launcher.n_jobs=2")
    assert _jobs(out) == ["0", "1"] and (out / "multirun.yaml").exists()
    algos = [OmegaConf.load(out / j / "config.yaml").names.algorithm for j in ("0", "1")]
    assert algos == ["zero-filled", "cg-sense"]
    assert OmegaConf.load(out / "1" / "config.yaml").algorithm.n_iter == 10  # cg-sense's options came along
    assert sorted(e["algorithm"] for e in _board(tmp_path, out)) == ["cg-sense", "zero-filled"]


def test_submitit_local_launcher(tmp_path):
    out = tmp_path / "sweep"
    bench("run", *TINY, "--algo", "zero-filled,cg-sense", "--out", str(out), "-m",
          "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10")
    assert _jobs(out) == ["0", "1"] and (out / "multirun.yaml").exists()
    logs = list((out / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2  # each job ran in a process of its own, started by submitit
    assert "cg-sense on inpainting" in "".join(p.read_text() for p in logs)
    assert len(_board(tmp_path, out)) == 2


@pytest.mark.slow
def test_issue_acceptance_submitit_cs_mri(tmp_path):
    """The issue's command: four jobs through submitit, four leaderboard rows."""
    out = tmp_path / "sweep"
    bench("run", "-m", "hydra/launcher=submitit_local", "--problem", "cs_mri", "--algo", "cg-sense,l1-wavelet",
          "problem.acceleration=4,8", "--n", "2", "--quiet", "--out", str(out))
    assert _jobs(out) == ["0", "1", "2", "3"]
    rows = _board(tmp_path, out)
    assert sorted((e["algorithm"], e["problem_info"]["acceleration"]) for e in rows) == [
        ("cg-sense", 4.0), ("cg-sense", 8.0), ("l1-wavelet", 4.0), ("l1-wavelet", 8.0)]


def test_hydra_keys_reach_hydra_and_resume(tmp_path):
    out = tmp_path / "via-hydra"
    bench("run", *TINY, "--algo", "zero-filled", "-m", f"hydra.sweep.dir={out}", "hydra.sweep.subdir=job${hydra.job.num}",
          "run.seed=1,2")
    assert _jobs(out) == ["job0", "job1"]
    lines = (out / "job0" / "samples.jsonl").read_text()
    again = bench("run", *TINY, "--algo", "zero-filled", "-m", f"hydra.sweep.dir={out}",
                  "hydra.sweep.subdir=job${hydra.job.num}", "run.seed=1,2", check=False)
    assert again.returncode == 2 and "--resume" in again.stderr  # a finished job is never run twice
    bench("run", *TINY, "--algo", "zero-filled", "-m", f"hydra.sweep.dir={out}",
          "hydra.sweep.subdir=job${hydra.job.num}", "run.seed=1,2", "--resume")
    assert (out / "job0" / "samples.jsonl").read_text() == lines  # nothing redone or duplicated


@pytest.mark.parametrize("args,message", [
    (["--algo", "zero-filled,cg-sense"], "a comma list is a sweep; add -m"),
    (["-m", "--algo", "zero-filled,cg-sense+tda"], "same adapters"),
    (["-m", "--algo", "zero-filled", "--out", "A", "hydra.sweep.dir=B"], "disagree"),
    (["-m", "--algo", "zero-filled", "problem.keepp=0.3,0.5"], "problem.keepp"),
    (["-m", "--algo", "zero-filled", "hydra/launcher=nope"], "hydra/launcher"),
])
def test_sweep_errors_name_the_problem(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a sweep without --out goes to runs/sweep-...: here, never the working tree (issue 26)
    res = bench("run", "--problem", "inpainting", "--n", "1", "--quiet", *args, check=False)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_slurm_example_composes_and_builds_an_sbatch_script(tmp_path, monkeypatch):
    """Without SLURM: the shipped launcher config composes, and submitit accepts its parameters and writes the
    sbatch script as hydra-submitit-launcher would (SlurmLauncher.launch's parameter mapping)."""
    import submitit
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    from benchmarks.sweep import PRIMARY, SweepSpec, store_configs

    store_configs(SweepSpec(["cs_mri"], ["cg-sense"], [], tmp_path / "sweep"))
    GlobalHydra.instance().clear()
    try:
        hydra = Hydra.create_main_hydra2(task_name="bench", config_search_path=create_config_search_path(None))
        cfg = hydra.compose_config(config_name=PRIMARY, run_mode=RunMode.MULTIRUN, with_log_configuration=False,
                                   overrides=["hydra/launcher=slurm_example", "hydra.launcher.partition=research",
                                              "hydra.launcher.gpus_per_node=2", "hydra.launcher.tasks_per_node=2"])
        launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    finally:
        GlobalHydra.instance().clear()
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["max_num_timeout"] == 3
    fake = tmp_path / "bin"  # submitit's SlurmExecutor checks that `srun` exists
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{__import__('os').environ['PATH']}")
    launcher.pop("_target_")
    executor = submitit.AutoExecutor(cluster="slurm", folder=launcher.pop("submitit_folder"),
                                     slurm_max_num_timeout=launcher.pop("max_num_timeout"),
                                     slurm_python=launcher.pop("python"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in launcher.items()})
    script = executor._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in ("#SBATCH --partition=research", "#SBATCH --gpus-per-node=2", "#SBATCH --ntasks-per-node=2",
                 "#SBATCH --time=240", "#SBATCH --mem=32GB", "#SBATCH --cpus-per-task=8"):
        assert line in script, script


@pytest.mark.slow
def test_submitit_tasks_shard_one_job(tmp_path):
    """hydra.launcher.tasks_per_node=2: the job's samples are sharded over its two tasks and merged by rank 0."""
    out = tmp_path / "sweep"
    bench("run", "--problem", "inpainting", "--algo", "zero-filled", "--n", "4", "--batch-size", "1", "--quiet",
          "--out", str(out), "-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2")
    rank1 = [json.loads(x)["index"] for x in (out / "0" / "samples.rank1.jsonl").read_text().splitlines()]
    assert sorted(rank1) == [1, 3]
    assert json.loads((out / "0" / "summary.json").read_text())["n_ok"] == 4


def test_config_store_on_stable_hydra(monkeypatch):
    """hydra-core 1.3.x (the base install's) has no `replace=` on ConfigStore.store: the suite must not pass it."""
    from hydra.core.config_store import ConfigStore

    from benchmarks import config

    calls = []

    def store_13(self, name, node, group=None, package=None, provider=None):  # hydra 1.3.8's signature
        calls.append((group, name))

    monkeypatch.setattr(ConfigStore, "store", store_13)
    config.store_node(name="x", node={"a": 1}, group="algorithm")
    config._store("algorithms", "cg-sense", "cg-sense")
    assert calls == [("algorithm", "x"), ("algorithm", "cg-sense")]


def test_missing_hydra_plugin_says_what_to_install(monkeypatch):
    import importlib.util

    from benchmarks.config import ConfigError
    from benchmarks.sweep import check_plugins

    def no_plugins(name, *a, **k):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib.util, "find_spec", no_plugins)
    for override in ("hydra/sweeper=optuna", "hydra/launcher=joblib", "hydra/launcher=submitit_local"):
        with pytest.raises(ConfigError, match=r"pip install -e '\.\[sweep\]'"):
            check_plugins([override])
    check_plugins(["hydra/launcher=basic", "algorithm.lam=1"])  # hydra's own: nothing to install
