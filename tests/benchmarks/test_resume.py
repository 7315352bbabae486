"""Resume: a run killed at any moment loses nothing finished and duplicates nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import bench

ARGS = ["run", "--problem", "inpainting", "--algo", "denoise-adjoint", "--prior", "half", "--n", "10",
        "--batch-size", "1", "--quiet"]


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_kill_then_resume_gives_exactly_n_lines(plugin_path, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=f"{plugin_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.cli", *ARGS, "--out", str(out),
                             "algorithm.delay=0.4"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = out / "samples.jsonl"
    deadline = time.time() + 180
    while len(lines(samples)) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    k = len(lines(samples))
    assert 3 <= k < 10, f"expected a kill mid-run, found {k} lines"
    with open(samples, "a") as f:  # a torn line, as if killed mid-write
        f.write('{"index": 9, "psn')
    bench("run", *ARGS[1:], "--out", str(out), "--resume", "algorithm.delay=0.4", plugin=plugin_path)
    rows = lines(samples)
    assert sorted(r["index"] for r in rows) == list(range(10))
    assert len(rows) == 10
    # the resumed samples equal an uninterrupted run's
    ref = tmp_path / "ref"
    bench(*ARGS, "--out", str(ref), plugin=plugin_path)
    by_index = {r["index"]: r["psnr"] for r in lines(ref / "samples.jsonl")}
    assert {r["index"]: r["psnr"] for r in rows} == by_index
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 10 and summary["n_ok"] == 10


# --- the run directory as a contract (issue 11) -------------------------------------------------------------------
SLOW_LINES = """
import os, sys, time
import benchmarks.results as results
append = results.RunDir.append
def slow(self, row, path=None):
    append(self, row, path)
    if path is None:  # a sample line: leave a window in which the test kills or interrupts us
        time.sleep(float(os.environ["LINE_DELAY"]))
results.RunDir.append = slow
from benchmarks.cli import main
sys.exit(main(sys.argv[1:]))
"""
L1 = ["run", "--problem", "cs_mri", "--algo", "l1-wavelet", "--n", "6", "--batch-size", "3", "--device", "cpu",
      "--quiet", "problem.size=32", "problem.coils=1", "dataset.size=32", "algorithm.n_iter=8"]
COMPARED = ("psnr", "ssim", "nmse", "ncc", "data_misfit", "scale", "status")


def slow_process(args, delay=0.5):
    env = dict(os.environ, OMP_NUM_THREADS="1", LINE_DELAY=str(delay),
               PYTHONPATH=f"{os.getcwd()}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.Popen([sys.executable, "-c", SLOW_LINES, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_lines(proc, samples, k, timeout=180):
    deadline = time.time() + timeout
    while len(lines(samples)) < k and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert len(lines(samples)) == k, (len(lines(samples)), proc.poll())


def test_sigkill_inside_a_batch_then_resume_is_bit_identical(tmp_path):
    import numpy as np

    out = tmp_path / "run"
    proc = slow_process([*L1, "--out", str(out)])
    wait_for_lines(proc, out / "samples.jsonl", 4)  # the first line of the second batch (3, 4, 5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert sorted(r["index"] for r in lines(out / "samples.jsonl")) == [0, 1, 2, 3]
    bench(*L1, "--out", str(out), "--resume")
    ref = tmp_path / "ref"
    bench(*L1, "--out", str(ref))
    got = {r["index"]: r for r in lines(out / "samples.jsonl")}
    want = {r["index"]: r for r in lines(ref / "samples.jsonl")}
    assert sorted(got) == list(range(6)) and len(lines(out / "samples.jsonl")) == 6
    for i in range(6):
        assert [got[i][m] for m in COMPARED] == [want[i][m] for m in COMPARED], i
        assert np.array_equal(np.load(out / got[i]["reconstruction"]), np.load(ref / want[i]["reconstruction"]))


def test_ctrl_c_finishes_the_line_writes_the_summary_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = slow_process([*L1, "--out", str(out)])
    wait_for_lines(proc, out / "samples.jsonl", 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and str(out) in err and "Traceback" not in err
    written = lines(out / "samples.jsonl")  # every line whole
    summary = json.loads((out / "summary.json").read_text())
    assert 1 <= len(written) < 6 and summary["n"] == len(written)
    bench(*L1, "--out", str(out), "--resume")
    assert sorted(r["index"] for r in lines(out / "samples.jsonl")) == list(range(6))


def test_a_second_writer_is_refused(tmp_path):
    import fcntl

    out = tmp_path / "run"
    bench(*L1[:5], "--algo", "zero-filled", "--n", "2", "--quiet", "--out", str(out))
    with open(out / ".lock", "w") as f:  # another process holds the run directory
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        res = bench(*L1[:5], "--algo", "zero-filled", "--n", "4", "--quiet", "--out", str(out), "--resume", "--n", "2",
                    check=False)
    assert res.returncode == 2 and "being written by another process" in res.stderr
    assert len(lines(out / "samples.jsonl")) == 2


ZF = ["run", "--problem", "inpainting", "--algo", "zero-filled", "--n", "4", "--batch-size", "2", "--quiet"]


def test_out_into_a_foreign_folder_is_refused(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("lr: 0.1\n")
    (out / "summary.json").write_text('{"mine": true}')
    for extra in ([], ["--resume"]):
        res = bench(*ZF, "--out", str(out), *extra, check=False)
        assert res.returncode == 2 and "not a run directory" in res.stderr
    assert (out / "config.yaml").read_text() == "lr: 0.1\n" and (out / "summary.json").read_text() == '{"mine": true}'
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "summary.json"]
    empty = tmp_path / "empty"
    empty.mkdir()
    bench(*ZF, "--out", str(empty))  # an empty folder is fine
    assert len(lines(empty / "samples.jsonl")) == 4


@pytest.mark.parametrize("change,key", [(["--seed", "7"], "run.seed: 0 -> 7"),
                                        (["--batch-size", "1"], "run.batch_size: 2 -> 1"),
                                        (["--n", "3"], "run.n: 4 -> 3"),
                                        (["run.split=val"], 'run.split: "test" -> "val"'),
                                        (["--scheme", "minibatch"], 'run.scheme: "online" -> "minibatch"'),
                                        (["problem.keep=0.9"], "problem.keep: 0.5 -> 0.9")])
def test_resume_with_a_changed_option_is_refused_with_the_diff(change, key, tmp_path):
    out = tmp_path / "run"
    bench(*ZF, "--out", str(out))
    frozen = (out / "config.yaml").read_text()
    inode = (out / "config.yaml").stat().st_ino
    res = bench(*ZF, "--out", str(out), "--resume", *change, check=False)
    assert res.returncode == 2 and "another configuration" in res.stderr and key in res.stderr, res.stderr
    assert (out / "config.yaml").read_text() == frozen and (out / "config.yaml").stat().st_ino == inode
    bench(*ZF, "--out", str(out), "--resume")  # the same options resume (nothing left to do)
    assert (out / "config.yaml").stat().st_ino == inode  # never rewritten
    assert len(lines(out / "samples.jsonl")) == 4 and len(lines(out / "resumes.jsonl")) == 1


def test_a_run_made_before_an_option_existed_resumes(tmp_path):
    """A key missing from an older config.yaml reads as the component's default (it ran with it); a key whose
    value differs from the default is still a change that refuses the resume."""
    from omegaconf import OmegaConf

    out = tmp_path / "run"
    bench(*ZF, "--out", str(out))
    cfg = OmegaConf.load(out / "config.yaml")
    del cfg.problem["keep"]  # as if `keep` had been added to the problem after this run was made
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    bench(*ZF, "--out", str(out), "--resume")  # accepted (nothing left to do)
    assert len(lines(out / "samples.jsonl")) == 4 and len(lines(out / "resumes.jsonl")) == 1
    res = bench(*ZF, "--out", str(out), "--resume", "problem.keep=0.9", check=False)
    assert res.returncode == 2 and "problem.keep: 0.5 -> 0.9" in res.stderr, res.stderr


@pytest.mark.parametrize("args,message", [
    (["--batch-size", "0"], r"run.batch_size \(--batch-size\) must be a whole number >= 1, got 0"),
    (["--n", "0"], r"run.n \(--n\) must be a whole number >= 1, got 0"),
    (["--n", "-1"], r"run.n \(--n\) must be a whole number >= 1, got -1"),
    (["+run.nn=3"], r"unknown run option run.nn; valid run options: run.n, run.batch_size"),
    (["run.save_reconstructions=maybe"], "run.save_reconstructions must be true or false"),
])
def test_bad_run_values_are_clear_errors(args, message, tmp_path):
    import re

    res = bench(*ZF, "--out", str(tmp_path / "r"), *args, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert re.search(message, res.stderr), res.stderr
    assert not (tmp_path / "r").exists()


def test_unreadable_and_nan_items_are_failed_lines_and_the_run_goes_on(tmp_path, monkeypatch):
    import torch

    import benchmarks.build as build
    import benchmarks.runner as runner
    from benchmarks.config import Selection, compose_config

    real = build.build_dataset

    class Broken:
        def __init__(self, base):
            self.base = base

        def __len__(self):
            return len(self.base)

        def __getitem__(self, i):
            if i == 1:
                raise ValueError("scan_0001.h5: key 'kspace' holds no data")
            item = dict(self.base[i])
            if i == 2:
                item["image"] = item["image"].clone()
                item["image"][0, 3, 3] = float("nan")
            return item

    monkeypatch.setattr(build, "build_dataset", lambda *a: Broken(real(*a)))
    cfg = compose_config(Selection("inpainting", "zero-filled", []), ["run.n=4", "run.batch_size=4", "run.device=cpu"])
    ref_id = lambda i: real("grf", cfg, "test")[i]["id"]  # noqa: E731
    summary = runner.execute(cfg, tmp_path / "r", progress=False)
    rows = {r["index"]: r for r in lines(tmp_path / "r" / "samples.jsonl")}
    assert [rows[i]["status"] for i in range(4)] == ["ok", "failed", "failed", "ok"]
    assert "scan_0001.h5" in rows[1]["reason"] and "kspace" in rows[1]["reason"]
    assert "NaN" in rows[2]["reason"] and rows[2]["psnr"] is None and rows[2]["id"] == ref_id(2)
    assert summary["n"] == 4 and summary["n_ok"] == 2 and summary["n_failed"] == 2
    assert {f["index"] for f in summary["failures"]} == {1, 2}
    # the good samples are those of a clean run: a failed neighbour changes no number
    monkeypatch.setattr(build, "build_dataset", real)
    clean = runner.execute(cfg, tmp_path / "clean", progress=False)
    ref = {r["index"]: r for r in lines(tmp_path / "clean" / "samples.jsonl")}
    assert clean["n_ok"] == 4 and all(rows[i]["psnr"] == ref[i]["psnr"] for i in (0, 3))
    assert torch.isfinite(torch.tensor([rows[0]["psnr"], rows[3]["psnr"]])).all()


def test_progress_moves_at_every_sampler_step():
    import torch

    from algorithms.base import Step
    from benchmarks.progress import StepProgress

    bar = StepProgress(total=8, desc="daps+tda on cs_mri", enabled=True)
    seen = []
    with bar.batch([0, 1, 2, 3]):
        for i in range(10):
            bar(Step(i, 10, torch.ones(4), None, None, None, None))
            seen.append(bar.bar.n)
    assert seen == pytest.approx([0.4 * (i + 1) for i in range(10)])
    with bar.batch([4, 5, 6, 7]):  # a method without steps advances once, at the end of the batch
        pass
    assert bar.bar.n == pytest.approx(8)
    assert bar.bar.desc.startswith("daps+tda on cs_mri")


def test_tensorboard_logs_steps_and_adaptation(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "tb"
    bench("run", "--problem", "cs_mri", "--algo", "diffpir+tda", "--prior", "gaussian", "--n", "2", "--quiet",
          "--device", "cpu", "--out", str(out), "problem.size=32", "problem.coils=1", "dataset.size=32",
          "prior.n=8", "prior.dataset_options={size: 32, channels: 2}", "algorithm.n_steps=4",
          "adapters.tda.sigma_max=100", "run.tensorboard=true")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "sample_000000/data_misfit" in tags and "sample_000001/phase" in tags
    steps = [e.step for e in acc.Scalars("sample_000000/data_misfit")]  # one per sampler step handed to adapters
    assert len(steps) >= 3 and steps == list(range(len(steps)))
    assert any(t.startswith("adaptation/tda/") for t in tags)
