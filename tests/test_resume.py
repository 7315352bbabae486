"""Resume: a run killed at any moment loses nothing finished and duplicates nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import bench

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
