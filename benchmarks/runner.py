"""Run one benchmark: dataset -> problem -> (adapted) algorithm -> metrics -> run directory (`execute`).

The pieces: benchmarks.build (the components from the config), benchmarks.schedule (which samples run together),
benchmarks.batch (one batch reconstructed and scored), benchmarks.progress (start line, progress bar, TensorBoard),
benchmarks.summary (summary.json and the table), benchmarks.volumes (fastMRI volumes and submission files).

Randomness is per sample (benchmarks.batch), so a sample's noise does not depend on the batch size, the number of
processes or where a resume restarted; a resume reruns a partly written batch whole (benchmarks.schedule) and writes
only its missing samples, so it equals the uninterrupted run to the bit. Many processes (`accelerate launch` or
`torchrun`, which set RANK and WORLD_SIZE): process r takes batches r, r+W, r+2W, ... and writes
samples.rank<r>.jsonl beside samples.jsonl; rank 0 merges them.

An item that cannot be read or holds NaN/Inf becomes a failed line (status failed, reason) and the run goes on.
Ctrl-C stops after the line being written, writes the summary and raises RunInterrupted (exit code 130).
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf

from adaptation.schemes import Scheme
from benchmarks.batch import adapt_batch, run_batch
from benchmarks.build import build_components, check_run_options, resolve_device
from benchmarks.domains import warn_in_distribution_shift
from benchmarks.progress import StepProgress, announce, method_label, tensorboard_writer
from benchmarks.results import RunDir
from benchmarks.schedule import run_batches
from benchmarks.summary import summarise
from benchmarks.threads import ThreadChoice, apply_threads, load_average


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the lines written so far and the summary are on disk; `--resume` finishes it."""

    def __init__(self, out: str | os.PathLike) -> None:
        super().__init__(str(out))
        self.out = Path(out)


class SigintGuard:
    """SIGINT raises KeyboardInterrupt at once, except inside `deferred()` (a line being written): then after it."""

    def __init__(self) -> None:
        self.deferring = False
        self.pending = False
        self.previous: Any = None

    def __enter__(self) -> "SigintGuard":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.deferring:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending:
            raise KeyboardInterrupt


_STARTUP_COUNTED = False  # whether this process's start-up CPU is already in a run's cost


def record_cost(rundir: RunDir, cpu0: float, wall0: float, startup: float, threads: ThreadChoice,
                warmup: float | None = None) -> None:
    """Append this process's share of the run to RUN_DIR/cost.jsonl: process CPU seconds (all threads) and wall
    seconds since `execute` began, the start-up CPU before it (a process's first run only), threads and load; with
    the naive scheme, `naive_warmup_seconds`: the wall time of its adaptation passes before the predicting one."""
    rundir.append({"rank": rundir.rank, "cpu_seconds": round(time.process_time() - cpu0, 3),
                   "startup_cpu_seconds": round(startup, 3), "wall_seconds": round(time.perf_counter() - wall0, 3),
                   "threads": threads.threads, "load_1min_start": threads.load,
                   "load_1min_end": round(load_average(), 2),
                   **({} if warmup is None else {"naive_warmup_seconds": round(warmup, 3)}),
                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}, rundir.cost_path)


def execute(cfg: DictConfig, out: str | os.PathLike, resume: bool = False, progress: bool = True,
            rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """Run (or finish, with resume) the benchmark described by cfg into the run directory `out`.

    Raises RunInterrupted on Ctrl-C, after writing the summary of the lines written so far."""
    global _STARTUP_COUNTED
    cpu0, wall0 = time.process_time(), time.perf_counter()
    startup = 0.0 if _STARTUP_COUNTED else cpu0  # the interpreter and its imports, counted by a process's first run
    _STARTUP_COUNTED = True
    check_run_options(cfg)
    threads = apply_threads(cfg.run.get("threads", "auto"))
    device = resolve_device(cfg.run.device)
    torch.manual_seed(cfg.run.seed)
    comp = build_components(cfg, device)
    warn_in_distribution_shift(cfg, comp.algorithm, comp.prior)
    from benchmarks.fingerprint import prior_fingerprint  # the weights' hash, frozen in config.yaml (leaderboard key)
    prior_hash = None if comp.prior is None else prior_fingerprint(comp.prior)
    OmegaConf.update(cfg, "names.prior_hash", prior_hash, force_add=True)
    n = int(cfg.run.n)
    if n > len(comp.dataset):
        warnings.warn(f"run.n={n} but dataset {cfg.names.dataset!r} has {len(comp.dataset)} items; using all")
        n = len(comp.dataset)
    seed, save = int(cfg.run.seed), bool(cfg.run.get("save_reconstructions", True))
    rundir = RunDir(out, rank)
    rundir.open(cfg, device, resume, threads.as_dict())
    try:
        done, traced = rundir.finished(), rundir.traced()
        batches = run_batches(comp.dataset, comp.adapters, n, int(cfg.run.batch_size))
        mine = [b for j, b in enumerate(batches) if j % world_size == rank]
        todo = [b for b in mine if any(i not in done for i in b)]  # a partly written batch is rerun whole
        if progress and rank == 0:
            announce(cfg, out, sum(i in done for i in range(n)), n)
        scheme = Scheme(cfg.run.scheme, comp.adapters)
        writer = tensorboard_writer(rundir.path, rank) if cfg.run.get("tensorboard", False) else None
        warmup: float | None = None
        with SigintGuard() as guard:
            try:
                if scheme.needs_warmup and todo:
                    warm0 = time.perf_counter()
                    scheme.set_adapting(True)
                    warm = StepProgress(sum(map(len, mine)) * max(1, int(cfg.run.get("naive_epochs", 1))), f"adapting (naive scheme): {method_label(cfg)}", progress)
                    epochs, adapt_only = int(cfg.run.get("naive_epochs", 1)), bool(cfg.run.get("naive_adapt_only", False))
                    for _ in range(epochs):
                        for b in mine:
                            with warm.batch(b):
                                (adapt_batch if adapt_only else run_batch)(comp, b, seed, device, warm)
                    warm.close()
                    scheme.set_adapting(False)
                    warmup = time.perf_counter() - warm0
                bar = StepProgress(sum(map(len, todo)), method_label(cfg), progress, writer)
                for b in todo:
                    scheme.before_batch()
                    with bar.batch(b):
                        rows, images, targets, trace = run_batch(comp, b, seed, device, bar)
                    with guard.deferred():  # Ctrl-C waits for the lines: none is torn, none half-saved
                        if trace and tuple(b) not in traced:  # what the adapters learned on this batch
                            rundir.append({"indices": b, "trace": trace}, rundir.trace_path)
                        for row, image, target in zip(rows, images, targets):
                            if row["index"] in done:
                                continue
                            if save and image is not None:
                                row["reconstruction"] = rundir.save_reconstruction(row["index"], image)
                                if target is not None:
                                    row["target"] = rundir.save_target(row["index"], target)
                            rundir.append(row)
                    bar.log_trace(b, trace)
                    bar.postfix(rows)
                bar.close()
            except KeyboardInterrupt:
                guard.deferring = True  # a second Ctrl-C does not tear the summary
                record_cost(rundir, cpu0, wall0, startup, threads, warmup)
                summarise(cfg, rundir, device)
                raise RunInterrupted(out) from None
        record_cost(rundir, cpu0, wall0, startup, threads, warmup)
        return summarise(cfg, rundir, device)
    finally:
        rundir.close()
