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
