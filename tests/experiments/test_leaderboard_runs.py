"""The board driver remakes what a new prior checkpoint outdates: a finished row or a tuning study whose recorded
prior fingerprint is not that of the weights its config loads now is moved aside (OUT/superseded/) and made again; one
that matches is kept, also when it was made on another kind of device."""
from __future__ import annotations

import json
import shutil

import torch
from omegaconf import OmegaConf

from benchmarks.build import build_prior
from benchmarks.experiments.leaderboard_runs import remove_if_stale, stale
from benchmarks.fingerprint import prior_fingerprint
from benchmarks.tune import neutral_prior_hash
from tests.helpers.cli import bench

ZEROS = "sha256:" + "0" * 64


def make_row(path):
    bench("run", "--problem", "inpainting", "--algo", "ddrm", "--prior", "gaussian", "--n", "2", "--out", str(path),
          "--quiet", "algorithm.n_steps=2")
    return path


def set_recorded(row, fingerprint):
    cfg = OmegaConf.load(row / "config.yaml")
    cfg.names.prior_hash = fingerprint
    (row / "config.yaml").write_text(OmegaConf.to_yaml(cfg))


def test_a_row_made_with_other_prior_weights_is_stale_and_moved_aside(tmp_path, capsys):
    row = make_row(tmp_path / "test" / "inpainting-ddrm")
    assert stale(row) is None  # the runner's fingerprint, taken again here
    remove_if_stale("inpainting-ddrm", row)
    assert (row / "samples.jsonl").exists()  # current: kept
    set_recorded(row, ZEROS)
    why = stale(row)
    assert why is not None and "other weights of its prior 'gaussian'" in why and "sha256:000000000000" in why
    remove_if_stale("inpainting-ddrm", row)
    kept = tmp_path / "superseded" / ("0" * 12) / "test" / "inpainting-ddrm"
    assert not row.exists() and (kept / "samples.jsonl").exists() and str(kept) in capsys.readouterr().out


def test_a_row_made_on_another_device_kind_is_fingerprinted_as_it_ran(tmp_path):
    """run.memory_format=auto is channels_last on CPU and contiguous on CUDA, and the layout is part of the
    fingerprint: a GPU row checked on a CPU machine is current when its weights are."""
    row = make_row(tmp_path / "test" / "inpainting-ddrm")
    cfg = OmegaConf.load(row / "config.yaml")
    on_cuda = prior_fingerprint(build_prior(cfg, torch.device("cpu"), made_on=torch.device("cuda")))
    assert on_cuda != cfg.names.prior_hash  # the layouts differ, so the device kind matters
    env = json.loads((row / "environment.json").read_text())
    (row / "environment.json").write_text(json.dumps({**env, "device": "cuda:0 (NVIDIA H100)"}))
    set_recorded(row, on_cuda)
    assert stale(row) is None


def test_a_study_made_with_other_prior_weights_is_stale(tmp_path):
    row = make_row(tmp_path / "row")
    study = tmp_path / "studies" / "inpainting-ddrm"
    (study / "0").mkdir(parents=True)
    shutil.copy(row / "config.yaml", study / "0" / "config.yaml")
    (study / "study.json").write_text(json.dumps({"prior_hash": neutral_prior_hash(OmegaConf.load(row / "config.yaml"))}))
    assert stale(study, study=True) is None
    (study / "study.json").write_text(json.dumps({"prior_hash": ZEROS}))
    assert "other weights of its prior 'gaussian'" in stale(study, study=True)


def test_a_row_without_a_prior_is_never_stale(tmp_path):
    row = tmp_path / "zf"
    bench("run", "--problem", "inpainting", "--algo", "zero-filled", "--n", "1", "--out", str(row), "--quiet")
    assert OmegaConf.load(row / "config.yaml").names.get("prior") is None
    set_recorded(row, ZEROS)
    assert stale(row) is None
