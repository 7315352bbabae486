"""`bench train-prior` (issues 4, 17): a few steps on CPU through the CLI, outputs, exact resume that reuses the
checkpoint's configuration, legs in metadata.json, errors."""
from __future__ import annotations

import json
import shlex

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import bench
from priors.diffusers_prior import DiffusersPrior
from priors.schedules import vp_alphas_cumprod
from priors.training.loop import build_unet, normalise, scheduler_config

torch.set_num_threads(1)
TINY = ["--dataset", "grf", "--size", "16", "--batch-size", "4", "--model", "tiny", "--n-images", "8",
        "--samples", "4", "--sample-steps", "2", "--warmup", "2", "--prediction", "v_prediction",
        "channels=2", "length=8"]


def train(out, *extra, check=True):
    return bench("train-prior", *TINY, "--out", str(out), *extra, check=check)


def test_train_prior_writes_a_loadable_diffusers_directory(tmp_path):
    out = tmp_path / "p"
    res = train(out, "--steps", "3")
    assert "trained" in res.stdout and str(out) in res.stdout
    for name in ("unet/config.json", "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
                 "model_index.json", "metadata.json", "loss.png", "samples.png", "checkpoint/state.pt"):
        assert (out / name).exists(), name
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["steps"] == 3 and meta["dataset"] == "grf" and meta["size"] == 16 and meta["channels"] == 2
    assert meta["prediction_type"] == "v_prediction" and meta["wall_seconds"] > 0
    prior = DiffusersPrior(path=str(out))
    assert meta["parameters"] == sum(p.numel() for p in prior.unet.parameters())
    assert meta["weights_bytes"] == (out / "unet/diffusion_pytorch_model.safetensors").stat().st_size
    assert prior.channels == 2 and prior.resolution == (16, 16) and prior.prediction_type == "v_prediction"
    assert torch.isfinite(torch.tensor(meta["final_loss"]))
    x = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        assert prior.denoise(x, torch.tensor([0.1, 1.0])).shape == (2, 2, 16, 16)
    # the saved weights are the EMA weights of the checkpoint
    state = torch.load(out / "checkpoint/state.pt", weights_only=True)
    saved = load_file(out / "unet/diffusion_pytorch_model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in state["ema"]["model"].items())
    # the recorded command reproduces these options
    from benchmarks.cli import parser

    args = parser().parse_args(shlex.split(meta["command"])[1:])
    assert args.steps == 3 and args.model == "tiny" and args.dataset_options == ["channels=2", "length=8"]
    assert [leg["command"] for leg in meta["legs"]] == [meta["command"]]
    assert meta["legs"][0]["from_step"] == 0 and meta["legs"][0]["to_step"] == 3
    assert meta["config"] == state["config"] and state["config"]["model"] == "tiny"


def test_command_line_round_trips_every_option():
    """The spelled-out command parses back (through `bench`'s parser) to the same TrainConfig."""
    from dataclasses import replace

    from benchmarks.cli import parser
    from benchmarks.train_prior_cli import command_line, given_options
    from priors.training.config import TrainConfig

    cfg = TrainConfig(dataset="grf", dataset_options={"channels": 2, "alpha": 3.5, "name": "a b", "code": "8",
                                                      "shape": [1, 2]},
                      size=32, steps=7, model="compact", channels_mult=(1, 2, 2), base_channels=8,
                      prediction="sample", normalize=False, cpu=True, threads=1, cache="c.pt", out="o d")
    args = parser().parse_args(shlex.split(command_line(cfg))[1:])
    assert replace(TrainConfig(**given_options(args)), command="") == cfg
    resumed = replace(cfg, resume=True)
    args = parser().parse_args(shlex.split(command_line(resumed))[1:])
    assert args.resume and TrainConfig(**given_options(args)) == cfg
    assert given_options(parser().parse_args(["train-prior"])) == {}  # nothing given: nothing set


def test_resume_continues_the_step_counter_and_equals_an_uninterrupted_run(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(straight, "--steps", "4", "--save-every", "2")
    train(split, "--steps", "2")
    assert torch.load(split / "checkpoint/state.pt", weights_only=True)["step"] == 2
    # the second leg gives only what changes: the checkpoint's configuration supplies the rest
    res = bench("train-prior", "--out", str(split), "--steps", "4", "--resume")
    assert "resuming" in res.stderr and "step 2 of 4" in res.stderr
    a = torch.load(straight / "checkpoint/state.pt", weights_only=True)
    b = torch.load(split / "checkpoint/state.pt", weights_only=True)
    assert b["step"] == 4 and len(b["losses"]) == 4
    assert a["losses"] == b["losses"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
        assert torch.equal(a["ema"]["model"][k], b["ema"]["model"][k]), k
    meta = json.loads((split / "metadata.json").read_text())
    assert meta["steps"] == 4 and meta["model"] == "tiny" and meta["prediction_type"] == "v_prediction"
    legs = meta["legs"]
    assert [(leg["from_step"], leg["to_step"]) for leg in legs] == [(0, 2), (2, 4)]
    assert "--resume" not in legs[0]["command"] and "--resume" in legs[1]["command"]
    assert "--steps 2" in legs[0]["command"] and "--steps 4" in legs[1]["command"]
    assert "--model tiny" in legs[1]["command"] and "channels=2" in legs[1]["command"]  # spelled out in full
    assert legs[1]["cumulative_wall_seconds"] == pytest.approx(legs[0]["cumulative_wall_seconds"]
                                                               + legs[1]["wall_seconds"], abs=1e-2)
    assert meta["wall_seconds"] == pytest.approx(legs[1]["cumulative_wall_seconds"], abs=0.06)
    assert b["legs"] == legs and b["config"]["steps"] == 4


def test_resume_refuses_a_changed_architecture_option_and_names_it(tmp_path):
    out = tmp_path / "p"
    train(out, "--steps", "2")
    before = (out / "checkpoint/state.pt").read_bytes()
    res = bench("train-prior", "--out", str(out), "--steps", "3", "--resume", "--model", "compact", check=False)
    assert res.returncode == 2 and "--model: 'tiny' in the checkpoint, 'compact' now" in res.stderr
    assert "--steps" in res.stderr and "may change" in res.stderr  # the options that may change are stated
    res = bench("train-prior", "--out", str(out), "--steps", "3", "--resume", "channels=1", "length=8", check=False)
    assert res.returncode == 2 and "dataset options" in res.stderr and "'channels': 2" in res.stderr
    res = bench("train-prior", "--out", str(out), "--steps", "1", "--resume", check=False)
    assert res.returncode == 2 and "step 2" in res.stderr and "--steps 2" in res.stderr
    assert (out / "checkpoint/state.pt").read_bytes() == before  # a refused leg leaves the checkpoint alone
    # the Python API checks the same: a resumed TrainConfig must agree with the stored one outside RESUMABLE
    from dataclasses import replace

    from priors.training.config import config_from_plain
    from priors.training.loop import train as train_api

    stored = config_from_plain(torch.load(out / "checkpoint/state.pt", weights_only=True)["config"])
    with pytest.raises(ValueError, match="--warmup: 2 in the checkpoint, 5 now"):
        train_api(replace(stored, warmup=5, resume=True), dataset=None)
    # an option equal to the checkpoint's, and a resumable one that changes, are accepted
    bench("train-prior", "--out", str(out), "--steps", "3", "--resume", "--model", "tiny", "--samples", "1")
    assert json.loads((out / "metadata.json").read_text())["steps"] == 3


def test_training_module_does_not_import_the_harness():
    """priors/ points down only: the train-prior command line lives in benchmarks/, and the dataset is passed in."""
    import ast
    from pathlib import Path

    import priors.training.loop

    tree = ast.parse(Path(priors.training.loop.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m.split(".")[0] in ("benchmarks", "hydra", "argparse")}, imported


def test_train_prior_errors_name_the_fix(tmp_path):
    out = tmp_path / "p"
    res = train(out, "--steps", "1", "--resume", check=False)
    assert res.returncode == 2 and "no checkpoint" in res.stderr and "without --resume" in res.stderr
    train(out, "--steps", "1")
    res = train(out, "--steps", "2", check=False)
    assert res.returncode == 2 and "--resume" in res.stderr
    res = bench("train-prior", *TINY[:2], "--size", "12", "--model", "tiny", "--out", str(tmp_path / "q"),
                "--steps", "1", "size=16", check=False)
    assert res.returncode == 2 and "--size" in res.stderr
    res = bench("train-prior", "--dataset", "no-such-data", "--out", str(tmp_path / "r"), check=False)
    assert res.returncode == 2 and "no-such-data" in res.stderr and "grf" in res.stderr


def test_schedule_and_presets():
    cfg = scheduler_config("epsilon")
    prior = DiffusersPrior(unet=build_unet(2, 16, "tiny"), scheduler_config=cfg)
    torch.testing.assert_close(prior.alphas_cumprod, vp_alphas_cumprod())
    with pytest.raises(ValueError, match="divisible"):
        build_unet(2, 18, "small")
    with pytest.raises(ValueError, match="choose one of"):
        build_unet(2, 16, "huge")
    x = torch.rand(3, 2, 8, 8) * torch.tensor([1.0, 5.0, 0.1]).view(-1, 1, 1, 1)
    mag = normalise(x).norm(dim=1).flatten(1)
    torch.testing.assert_close(torch.quantile(mag, 0.99, dim=1), torch.ones(3))
