"""CPU threads for a run: as many as the cores actually free, never more, and no busy-waiting.

On a shared machine an OpenMP team larger than the free cores spends its time in barriers: each parallel region
waits for the thread the scheduler parked, and spinning threads take CPU from the other jobs. `run.threads=auto`
(the default) takes
    threads = max(1, min(affinity, floor((affinity - load) / processes + 1/2)))
from the cores this process may run on (`os.sched_getaffinity`), the 1-minute load average (`os.getloadavg`,
read when the run starts) and the number of processes of this run on the machine (WORLD_SIZE/LOCAL_WORLD_SIZE,
which share the free cores); `run.threads=N` forces N, and so does OMP_NUM_THREADS=N under `auto`. `passive_wait()` sets OMP_WAIT_POLICY=PASSIVE (threads
sleep at barriers instead of spinning) and must run before torch starts its thread pool; a value the user set
is kept.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ThreadChoice:
    """The chosen intra-op thread count and what it was chosen from."""

    threads: int
    affinity: int
    load: float
    processes: int
    source: str  # "auto", "run.threads" or "OMP_NUM_THREADS"

    def as_dict(self) -> dict[str, object]:
        return {"threads": self.threads, "affinity": self.affinity, "load_1min": self.load,
                "processes": self.processes, "source": self.source}


def choose_threads(affinity: int, load: float, processes: int = 1) -> int:
    """max(1, min(affinity, floor((affinity - load)/processes + 1/2))): this process' share of the free cores."""
    if affinity < 1 or processes < 1:
        raise ValueError(f"need affinity >= 1 and processes >= 1, got {affinity} and {processes}")
    free = (affinity - max(0.0, load)) / processes
    return max(1, min(affinity, math.floor(free + 0.5)))


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def local_processes() -> int:
    """Processes of this run on this machine: LOCAL_WORLD_SIZE (torchrun), else WORLD_SIZE, else 1."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))))


def load_average() -> float:
    """The 1-minute load average (0 where the platform has none, e.g. Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def thread_choice(setting: int | str) -> ThreadChoice:
    """run.threads: 'auto' from the affinity and the load average, or a whole number >= 1 as given."""
    n, procs, load = cores(), local_processes(), load_average()
    env = os.environ.get("OMP_NUM_THREADS", "")
    if setting == "auto" and env.isdigit() and int(env) >= 1:  # the user's explicit choice
        return ThreadChoice(int(env), n, round(load, 2), procs, "OMP_NUM_THREADS")
    if setting == "auto":
        return ThreadChoice(choose_threads(n, load, procs), n, round(load, 2), procs, "auto")
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"run.threads must be 'auto' or a whole number >= 1, got {setting!r}")
    return ThreadChoice(setting, n, round(load, 2), procs, "run.threads")


def passive_wait() -> None:
    """OMP_WAIT_POLICY=PASSIVE unless set: idle OpenMP threads sleep rather than spin (read when torch loads)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def apply_threads(setting: int | str) -> ThreadChoice:
    """Set torch's intra-op threads (and one inter-op thread, where torch has not started that pool yet)."""
    import torch

    choice = thread_choice(setting)
    current = torch.get_num_threads()
    if choice.threads > current:
        # torch's threads start at the cores (or OMP_NUM_THREADS), so this is a second run of a process that set
        # fewer; raising the count again breaks MKL's LU solves in torch 2.14 ("Parameter 6 was incorrect on entry
        # to DLASWP"), as does any set_num_threads call once LAPACK has run, so only a lower count is ever set
        choice = replace(choice, threads=current, source=f"{choice.source}, capped at {current} (this process "
                         "already runs with fewer threads; raising them breaks MKL's LU solves)")
    if choice.threads != current:
        torch.set_num_threads(choice.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # the inter-op pool already started (a second run in this process)
        pass
    return choice
