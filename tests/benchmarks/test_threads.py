"""run.threads=auto: the thread count is a deterministic function of the affinity, the load and the processes."""
from __future__ import annotations

import pytest

from benchmarks import threads


@pytest.mark.parametrize("affinity,load,processes,expected", [
    (2, 0.0, 1, 2), (2, 0.4, 1, 2), (2, 0.6, 1, 1), (2, 1.58, 1, 1), (2, 4.0, 1, 1),  # never 0, never above free
    (16, 3.2, 1, 13), (16, 0.0, 2, 8), (16, 4.0, 2, 6), (2, 0.0, 2, 1), (8, -1.0, 1, 8), (4, 0.0, 1, 4)])
def test_choose_threads(affinity, load, processes, expected):
    assert threads.choose_threads(affinity, load, processes) == expected


def test_thread_choice_reads_affinity_load_and_overrides(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 4)
    monkeypatch.setattr(threads, "load_average", lambda: 1.3)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    auto = threads.thread_choice("auto")
    assert (auto.threads, auto.affinity, auto.load, auto.processes, auto.source) == (3, 4, 1.3, 1, "auto")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert threads.thread_choice("auto").threads == 1  # (4 - 1.3)/2 = 1.35
    assert threads.thread_choice(3).as_dict()["source"] == "run.threads" and threads.thread_choice(3).threads == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.thread_choice("auto").source == "OMP_NUM_THREADS" and threads.thread_choice("auto").threads == 2
    assert threads.thread_choice(1).threads == 1  # run.threads wins over the environment
    for bad in (0, -2, True, "many", 1.5):
        with pytest.raises(ValueError, match="run.threads"):
            threads.thread_choice(bad)


def test_passive_wait_keeps_a_users_policy(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    threads.passive_wait()
    import os
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.passive_wait()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_run_threads_is_checked_before_compute():
    from omegaconf import OmegaConf

    from benchmarks.build import check_run_options
    from benchmarks.config import ConfigError
    from benchmarks.results import run_defaults

    for good in ("auto", 1, 4):
        check_run_options(OmegaConf.create({"run": {**run_defaults(), "threads": good}}))
    for bad in (0, -1, "many", True):
        with pytest.raises(ConfigError, match="run.threads"):
            check_run_options(OmegaConf.create({"run": {**run_defaults(), "threads": bad}}))


def test_a_later_run_of_the_process_never_raises_the_thread_count(monkeypatch):
    """torch 2.14's MKL LU solves fail after set_num_threads raises the count or repeats it once LAPACK has run:
    a run sets only a count below the process's current one, else keeps it (recorded in the choice's source)."""
    import torch

    from benchmarks import threads

    state = {"n": 2}
    calls: list[int] = []
    monkeypatch.setattr(torch, "get_num_threads", lambda: state["n"])
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), state.update(n=n)))
    monkeypatch.setattr(torch, "set_num_interop_threads", lambda n: None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.apply_threads(2).threads == 2 and calls == []            # the same count: no call at all
    assert threads.apply_threads(1).threads == 1 and calls == [1]
    raised = threads.apply_threads(2)
    assert raised.threads == 1 and "capped at 1" in raised.source and calls == [1]


def test_a_second_run_in_one_process_leaves_lu_solves_working():
    """The failure itself, in a fresh process: LAPACK used, then two runs' thread settings, then an LU solve."""
    import subprocess
    import sys

    code = ("import torch; from benchmarks.threads import apply_threads\n"
            "a = torch.randn(2, 64, 64, dtype=torch.float64); a = a @ a.mT + torch.eye(64)\n"
            "b = torch.randn(2, 64, 1, dtype=torch.float64); torch.linalg.solve(a, b)\n"
            "apply_threads(2); apply_threads(1); apply_threads(2); torch.linalg.solve(a, b); print('solved')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": ""}, timeout=120)
    assert "solved" in res.stdout, res.stderr[-2000:]
