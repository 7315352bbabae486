"""One training core (issue 24, seam 4): prior training and network training share priors.training.common; their
configurations live in torch-free modules the command line imports; state files stay plain and keep resuming."""
from __future__ import annotations

import ast
import json
import os
import pickletools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO

COMMITTED_STATE = REPO / "benchmarks" / "results" / "training" / "brain-64" / "checkpoint" / "state.pt"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return found | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


def test_config_modules_import_no_torch():
    code = ("import sys, priors.training.config, algorithms.networks.training_config; "
            "print(sorted(m for m in ('torch', 'hydra', 'numpy', 'accelerate') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    # the lazily loaded package names still work
    from algorithms import Algorithm
    from priors import Prior

    assert Prior.__module__ == "priors.base" and Algorithm.__module__ == "algorithms.base"


def test_dependencies_point_one_way():
    """priors/training imports neither algorithms, inverse_problems nor the harness; network training takes the core
    from priors.training.common (not sideways from the prior loop); the CLI parses no training source."""
    for path in sorted((REPO / "priors" / "training").glob("*.py")):
        bad = {m for m in imports(path) if m.split(".")[0] in ("algorithms", "inverse_problems", "adaptation",
                                                                 "benchmarks", "hydra", "argparse")}
        assert not bad, (path.name, bad)
    for name in ("config.py",):
        assert not {m for m in imports(REPO / "priors" / "training" / name) if m.split(".")[0] == "torch"}
    assert not {m for m in imports(REPO / "algorithms" / "networks" / "training_config.py")
                if m.split(".")[0] == "torch"}
    network = imports(REPO / "algorithms" / "networks" / "training.py")
    assert "priors.training.common" in network and "priors.training.loop" not in network
    for cli in ("train_prior_cli.py", "train_recon_cli.py"):
        assert "ast" not in imports(REPO / "benchmarks" / cli), cli


def _called(path: Path, function: str | None = None) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if function is not None:
        tree = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    return {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def test_every_training_runs_the_shared_loop():
    """Prior, reconstruction-network and interpolation training all step through train_steps and save_state, and
    resume through resume_state, warmup_schedule and restore (directly, or through the shared start_process and
    start_optimisation, which call them)."""
    common = REPO / "priors" / "training" / "common.py"
    assert {"resume_state"} <= _called(common, "start_process")
    assert {"warmup_schedule", "restore"} <= _called(common, "start_optimisation")
    trio = {"restore", "resume_state", "warmup_schedule"}
    for path in (REPO / "priors" / "training" / "loop.py", REPO / "algorithms" / "networks" / "training.py",
                 REPO / "algorithms" / "networks" / "interp_training.py"):
        called = _called(path)
        assert {"train_steps", "save_state"} <= called, path.name
        assert trio <= called or {"start_process", "start_optimisation"} <= called, path.name


def test_train_steps_logs_checkpoints_and_keeps_the_ema():
    from accelerate import Accelerator

    from priors.training.common import EMA, Progress, train_steps, warmup_schedule

    class Cfg:
        steps, log_every, save_every = 5, 2, 2

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = warmup_schedule(opt, 2)
    ema = EMA(model, 0.9)
    acc = Accelerator(cpu=True)
    model, opt = acc.prepare(model, opt)
    progress, saved = Progress.begin("cmd"), []
    x = torch.randn(8, 3)
    train_steps(acc, model, opt, sched, ema, progress, Cfg, lambda: model(x).pow(2).mean(),
                lambda: saved.append(progress.step), "test")
    assert progress.step == 5 and len(progress.losses) == 5 and saved == [2, 4] and ema.updates == 5
    assert progress.losses[-1] < progress.losses[0]
    legs = progress.legs_so_far()
    assert [(leg["command"], leg["from_step"], leg["to_step"]) for leg in legs] == [("cmd", 0, 5)]


def test_a_state_without_legs_resumes_as_one_leg():
    from priors.training.common import Progress

    state = {"step": 7, "losses": [1.0] * 7, "wall_seconds": 3.5, "config": {"command": "bench train-prior x"}}
    progress = Progress.begin("bench train-prior y", state)
    assert progress.step == 7 and progress.wall == 3.5 and progress.leg["from_step"] == 7
    assert progress.legs == [{"command": "bench train-prior x", "from_step": 0, "to_step": 7, "wall_seconds": 3.5,
                              "cumulative_wall_seconds": 3.5}]


@pytest.mark.skipif(not COMMITTED_STATE.exists(), reason="the committed training state is not in this checkout")
def test_the_committed_training_state_still_resumes(tmp_path):
    """The committed brain-64 state (plain values only, the configuration a dict) passes the resume checks of this
    version: its configuration loads as a TrainConfig and a leg to one more step is accepted."""
    import zipfile

    from priors.training.common import Progress, resume_config, resume_state
    from priors.training.config import RESUMABLE, TrainConfig

    with zipfile.ZipFile(COMMITTED_STATE) as z:  # no class is pickled by module path: a moved module orphans nothing
        pickles = [z.read(n) for n in z.namelist() if n.endswith(".pkl")]
    classes = {str(arg).split()[0].split(".")[0] for data in pickles for op, arg, _ in pickletools.genops(data)
               if op.name in ("GLOBAL", "INST")}
    assert classes <= {"torch", "collections"} and not any(op.name == "STACK_GLOBAL" for data in pickles
                                                            for op, _, _ in pickletools.genops(data)), classes
    shutil.copytree(COMMITTED_STATE.parent, tmp_path / "checkpoint")
    step = int(torch.load(COMMITTED_STATE, map_location="cpu", weights_only=True)["step"])
    cfg = resume_config(tmp_path, {"steps": step + 1, "threads": 1}, TrainConfig, RESUMABLE)
    assert isinstance(cfg, TrainConfig) and cfg.resume and cfg.steps == step + 1 and cfg.recipe == "edm"
    state = resume_state(cfg, TrainConfig, RESUMABLE)
    progress = Progress.begin("resume", state)
    assert progress.step == step == len(progress.losses) and progress.legs[-1]["to_step"] == step
    assert json.loads(json.dumps(state["config"])) == state["config"]
    with pytest.raises(ValueError, match="--lr"):
        resume_config(tmp_path, {"steps": step + 1, "lr": 1.0}, TrainConfig, RESUMABLE)
