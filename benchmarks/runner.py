"""Run one benchmark: dataset -> problem -> (adapted) algorithm -> metrics -> run directory.

Randomness is per sample: every random draw for a sample comes from its own generator, seeded from (run.seed,
the item's id) (inverse_problems.operators.random.SampleGenerators), so a sample's noise does not depend on the batch size,
the number of processes or where a resume restarted. Samples are processed in batches of `run.batch_size` on
fixed boundaries (0..B-1, B..2B-1, ...), or one patient's slices per batch when an adapter is patient-level
(`patient_level`, DESIGN.md: it sees all of a patient's slices first); a resume reruns a partly written batch whole (the same composition)
and writes only its missing samples, so it equals the uninterrupted run to the bit. Many processes
(`accelerate launch` or `torchrun`, which set RANK and WORLD_SIZE): process r takes batches r, r+W, r+2W, ...
and writes samples.rank<r>.jsonl beside samples.jsonl; rank 0 merges them.

An item that cannot be read or holds NaN/Inf becomes a failed line (status failed, reason) and the run goes on.
Ctrl-C stops after the line being written, writes the summary and raises RunInterrupted (exit code 130).
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from adaptation.base import AdaptedAlgorithm, Adapter, adaptable_parameters
from adaptation.schemes import Scheme
from algorithms.base import Algorithm, Step
from benchmarks import registry
from benchmarks.config import ConfigError, component_defaults, options
from benchmarks.metrics import (IMAGE_METRICS, VOLUME_METRICS, image_metrics, peak_memory_mb, reset_peak_memory,
                                volume_metrics)
from benchmarks.results import METRICS, RunDir, aggregate, problem_info, run_defaults
from inverse_problems.problems.base import Problem
from inverse_problems.operators.random import SampleGenerators
from priors.base import MEMORY_FORMATS, PRECISIONS, Prior

try:  # the dataset readers' own error type, where they define one
    from inverse_problems.data.base import DataError  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older readers raise these directly
    DataError = ValueError  # type: ignore[misc,assignment]
NO_TARGET = "no target (prospective data: the file has no reference): reconstruction written, excluded from metrics"
LOAD_ERRORS: tuple[type[BaseException], ...] = (DataError, ValueError, OSError, EOFError, KeyError)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the lines written so far and the summary are on disk; `--resume` finishes it."""

    def __init__(self, out: str | os.PathLike) -> None:
        super().__init__(str(out))
        self.out = Path(out)


def check_run_options(cfg: DictConfig) -> None:
    """Refuse unknown run.* keys and values that would give an empty or wrong run, naming key and fix."""
    valid = run_defaults()
    unknown = sorted(set(cfg.run) - set(valid))
    if unknown:
        raise ConfigError(f"unknown run option {', '.join('run.' + k for k in unknown)}; valid run options: "
                          f"{', '.join('run.' + k for k in valid)}")
    for key, flag in (("n", "--n"), ("batch_size", "--batch-size")):
        value = cfg.run.get(key, valid[key])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"run.{key} ({flag}) must be a whole number >= 1, got {value!r}")
    seed = cfg.run.get("seed", valid["seed"])
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"run.seed (--seed) must be a whole number, got {seed!r}")
    for key in ("save_reconstructions", "tensorboard", "prior_per_sample"):
        value = cfg.run.get(key, valid.get(key, False))
        if not isinstance(value, bool):
            raise ConfigError(f"run.{key} must be true or false, got {value!r}")
    for key, allowed in (("precision", tuple(PRECISIONS)), ("memory_format", ("auto", *MEMORY_FORMATS))):
        value = cfg.run.get(key, valid[key])
        if value not in allowed:
            raise ConfigError(f"run.{key} must be one of {', '.join(allowed)}, got {value!r}")


def memory_format(spec: str, device: torch.device) -> str:
    """run.memory_format: `auto` is channels_last on CPU (the shipped UNet's convolutions run faster in NHWC
    there, benchmarks/results/denoiser_speed.json) and contiguous elsewhere (not measured on a GPU)."""
    if spec != "auto":
        return spec
    return "channels_last" if device.type == "cpu" else "contiguous"


def resolve_device(spec: str) -> torch.device:
    """auto | cpu | cuda | cuda:N | mps, with a clear error where the device is absent."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as exc:
        raise ConfigError(f"bad --device {spec!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"--device {spec}: no such CUDA device here (found {torch.cuda.device_count()}); use --device cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps: MPS is not available here; use --device cpu")
    return dev


def build_dataset(name: str, cfg: DictConfig, split: str):
    return registry.build("datasets", name, split=split, **options(cfg, "dataset"))


class PerSamplePrior(Prior):
    """A prior evaluated one sample at a time (run.prior_per_sample): a network's batched kernels (oneDNN
    convolutions, gemm against gemv) round differently for different batch sizes (~1e-6); batch-1 calls make
    every sample's numbers those of batch size 1, whatever the batch, at the cost of the network's batching."""

    def __init__(self, base: Prior) -> None:
        super().__init__()
        self.base = base
        self.channels, self.resolution = base.channels, base.resolution
        self.sigma_min, self.sigma_max = base.sigma_min, base.sigma_max

    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(sigma)
        per = s.ndim > 0 and s.numel() == x.shape[0]
        return torch.cat([self.base.denoise(x[k:k + 1], sigma[k:k + 1] if per else sigma)  # type: ignore[index]
                          for k in range(x.shape[0])])


def build_components(cfg: DictConfig, device: torch.device) -> dict[str, Any]:
    """Instantiate every component and check that they fit together, before any compute."""
    names = cfg.names
    dataset = build_dataset(names.dataset, cfg, cfg.run.split)
    problem: Problem = registry.build("problems", names.problem, **options(cfg, "problem"))
    first = first_readable(dataset)
    if getattr(problem, "tier", "simulated") == "measured" and "kspace" not in first:
        raise ConfigError(f"problem {names.problem!r} with data=measured needs a dataset of measurements (items with "
                          f"'kspace', e.g. --dataset fastmri); dataset {names.dataset!r} gives images only: use "
                          f"problem.data=simulated")
    item_shape = image_shape(first)
    if item_shape != tuple(problem.image_shape):
        raise ConfigError(
            f"dataset {names.dataset!r} yields images of shape {item_shape} but problem {names.problem!r} takes "
            f"{tuple(problem.image_shape)}; set the sizes to match (e.g. dataset.size=... problem.size=...)"
        )
    algorithm: Algorithm = registry.build("algorithms", names.algorithm, **options(cfg, "algorithm"))
    prior: Prior | None = None
    if algorithm.uses_prior:
        if names.prior is None:
            raise ConfigError(f"algorithm {names.algorithm!r} needs a prior and problem {names.problem!r} has no "
                              f"default; pass --prior NAME (`bench list priors`)")
        prior_opts = options(cfg, "prior")
        if isinstance(prior_opts.get("dataset"), str):  # a prior fitted to a named dataset
            prior_opts["dataset"] = registry.build("datasets", prior_opts.pop("dataset"), split="train",
                                                   **prior_opts.pop("dataset_options", {}))
        prior = registry.build("priors", names.prior, **prior_opts)
        prior.check_compatible(tuple(problem.image_shape), f"problem {names.problem!r}")
        prior = prior.to(device).eval()
        for p in prior.parameters():
            p.requires_grad_(False)
        prior.set_execution(cfg.run.get("precision", "fp32"), memory_format(cfg.run.get("memory_format", "auto"), device))
        if cfg.run.get("prior_per_sample", False):
            prior = PerSamplePrior(prior)
    adapters: list[Adapter] = [registry.build("adapters", a, **dict(options(cfg, "adapters").get(a, {})))
                               for a in names.adapters]
    adapters = [a.to(device) for a in adapters]
    if adapters:
        algorithm = AdaptedAlgorithm(algorithm, adapters)
    return {"dataset": dataset, "problem": problem, "algorithm": algorithm, "prior": prior, "adapters": adapters}


def image_shape(item: dict[str, Any]) -> tuple[int, ...]:
    """The item's image shape; for a measurement without a target (prospective data) (2, H, W) of its k-space."""
    if item.get("image") is None and isinstance(item.get("kspace"), torch.Tensor):
        return (2, *item["kspace"].shape[-2:])
    return tuple(item["image"].shape)


def first_readable(dataset, tries: int = 8) -> dict[str, Any]:
    """The first item among the first `tries` that loads (a bad item is the run's business, not the setup's)."""
    errors = []
    for i in range(min(tries, len(dataset))):
        try:
            return dataset[i]
        except LOAD_ERRORS as exc:
            errors.append(f"item {i}: {exc}")
    raise ConfigError("the dataset's first items cannot be read: " + "; ".join(errors) if errors
                      else "the dataset is empty")


def batches_of(n: int, batch_size: int) -> list[list[int]]:
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def patient_of(dataset, i: int) -> str:
    """Item i's patient id: the dataset's `patient_of(i)` where it has one (no rendering), else the item's `patient`,
    else its id (an item without a patient is a patient of its own; an unreadable one too)."""
    fn = getattr(dataset, "patient_of", None)
    if callable(fn):
        return str(fn(i))
    try:
        item = dataset[i]
    except LOAD_ERRORS:
        return f"unreadable item {i}"
    return str(item.get("patient") or item.get("id") or f"item {i}")


def patient_batches(dataset, n: int) -> list[list[int]]:
    """The indices 0..n-1 grouped by patient (DESIGN.md: patient-level adapters see all of a patient's slices
    first), each group in index order, the groups in order of their first index: a partition of 0..n-1 that does
    not depend on run.batch_size, so every number is the same whatever the batch size, and a resume reruns a
    partly written patient whole."""
    groups: dict[str, list[int]] = {}
    for i in range(n):
        groups.setdefault(patient_of(dataset, i), []).append(i)
    return list(groups.values())


def run_batches(comp: dict[str, Any], n: int, batch_size: int) -> list[list[int]]:
    """The runner's batches: one patient each when an adapter is patient-level (patient_batches), else fixed
    boundaries of run.batch_size. A patient cut by run.n keeps the slices below n (warned)."""
    if not any(getattr(a, "patient_level", False) for a in comp.get("adapters", [])):
        return batches_of(n, batch_size)
    batches = patient_batches(comp["dataset"], n)
    if n < len(comp["dataset"]) and batches and patient_of(comp["dataset"], n) == patient_of(comp["dataset"], batches[-1][0]):
        warnings.warn(f"run.n={n} cuts the last patient: its slices from index {n} on are left out (the patient-level "
                      f"adapters see {len(batches[-1])} of them); raise --n to a whole number of patients")
    return batches


def load_item(dataset, i: int, shape: tuple[int, ...], tier: str = "simulated") -> tuple[dict[str, Any], str | None]:
    """Item i and None, or what is known of it ({"id"}) and the reason it cannot be used (unreadable, NaN/Inf,
    wrong shape)."""
    try:
        item = dataset[i]
        image = item["image"]
    except LOAD_ERRORS as exc:  # a DataError names the file and key (and the item's id)
        return {"id": getattr(exc, "item_id", None)}, f"item {i} could not be read: {type(exc).__name__}: {exc}"
    if image is None:  # a measurement without a reference (prospective data): reconstructed, not scored
        if not isinstance(item.get("kspace"), torch.Tensor):
            return {"id": item.get("id")}, f"item {i} ({item.get('id')}) has neither an image nor measurements"
        if tier != "measured":
            return {"id": item.get("id")}, (f"item {i} ({item.get('id')}) has no target image (prospective data): "
                                            f"it can only be reconstructed from its own k-space: problem.data=measured")
        image = torch.view_as_real(item["kspace"])
    if tuple(image_shape(item)) != tuple(shape):
        return {"id": item.get("id")}, (f"item {i} ({item.get('id')}) has shape {image_shape(item)}, the problem "
                                        f"takes {tuple(shape)}")
    if not bool(torch.isfinite(image).all()):
        return {"id": item.get("id")}, f"item {i} ({item.get('id')}) holds NaN or Inf values"
    return item, None


def run_batch(comp: dict[str, Any], indices: list[int], seed: int, device: torch.device,
              callback: Any = None) -> tuple[list[dict], list, list, list[dict[str, Any]]]:
    """Reconstruct one batch; returns the JSON rows (index order), the reconstructions (target units; None for
    an item that failed to load), the targets (None where there is none) and the trace. Sample k's randomness comes from (seed, its id) alone."""
    shape = tuple(comp["problem"].image_shape)
    tier = getattr(comp["problem"], "tier", "simulated")
    loaded = {i: load_item(comp["dataset"], i, shape, tier) for i in indices}
    good = [i for i in indices if loaded[i][1] is None]
    rows: dict[int, dict[str, Any]] = {
        i: {"index": i, "id": loaded[i][0]["id"], "status": "failed", "reason": loaded[i][1], **dict.fromkeys(METRICS)}
        for i in indices if i not in good}
    images: dict[int, Any] = {i: None for i in rows}
    targets: dict[int, Any] = {}
    trace: list[dict[str, Any]] = []
    if good:
        items = [loaded[i][0] for i in good]
        gen = SampleGenerators.seeded(seed, [it["id"] for it in items], device)
        reset_peak_memory(device)
        inst = comp["problem"].instance(items, device, gen)
        recon = comp["algorithm"].reconstruct(inst.y, inst.operator, comp["prior"], gen, callback)
        scale = inst.scale.view(-1, 1, 1, 1).to(recon.image)
        image = recon.image * scale
        with torch.no_grad():
            misfit = inst.operator.data_misfit(recon.image, inst.y).tolist()
        scored = [k for k, it in enumerate(items) if it.get("image") is not None]  # prospective items: no target
        metrics: list[dict[str, Any]] = [dict.fromkeys(IMAGE_METRICS) for _ in items]
        if scored:
            x = torch.stack([items[k]["image"] for k in scored]).to(device)
            for k, m in zip(scored, image_metrics(image[scored], x)):
                metrics[k] = m
        # the problem's own metrics (DESIGN.md: one hook), per sample, in target units: row["problem_metrics"]
        hook = getattr(comp["problem"], "metrics", None)
        extra: list[dict[str, Any]] = [{} for _ in items]
        records: list[dict[str, Any]] = [{} for _ in items]
        if callable(hook):
            for k in scored:
                extra[k] = hook(image[k], items[k]["image"].to(image), items[k])
        record_hook = getattr(comp["problem"], "sample_record", None)
        if callable(record_hook):  # facts for the per-run metrics (Problem.run_metrics), after the reconstruction
            for k in scored:
                records[k] = record_hook(image[k], items[k]["image"].to(image), items[k])
        mem = peak_memory_mb(device)
        trace = recon.trace
        for k, (i, it) in enumerate(zip(good, items)):
            failed = bool(recon.failed[k])
            row: dict[str, Any] = {"index": i, "id": it["id"], "status": "failed" if failed else "ok",
                                   "reason": recon.failure[k]}
            if not failed and it.get("image") is None:
                row["reason"] = NO_TARGET
            row.update({"tier": tier, "target_convention": it.get("target_convention", "dataset image")})
            row.update({key: it[key] for key in ("volume", "patient", "slice", "data_scale") if key in it})
            row.update({m: (None if failed else v) for m, v in metrics[k].items()})
            row["data_misfit"] = None if failed else misfit[k]
            if extra[k]:
                row["problem_metrics"] = {m: (None if failed else v) for m, v in extra[k].items()}
            if records[k] and not failed:
                row["problem_record"] = records[k]
            row.update({"seconds": recon.seconds / len(good), "nfe": recon.nfe, "peak_memory_mb": mem,
                        "batch_size": len(good), "scale": float(inst.scale[k])})
            row.update({f"problem_{k2}": v for k2, v in inst.info.items()})
            rows[i] = row
            images[i] = image[k]
            targets[i] = it.get("image")
    return [rows[i] for i in indices], [images[i] for i in indices], [targets.get(i) for i in indices], trace


class StepProgress:
    """A tqdm bar in samples that moves at every sampler step (via the algorithm's step callback), with ETA;
    optionally logs each step to TensorBoard (data misfit of x̂0 and the operator's adaptable parameters)."""

    def __init__(self, total: int, desc: str, enabled: bool, writer: Any = None) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="sample", disable=not enabled, smoothing=0.1)
        self.writer = writer
        self.size, self.done, self.indices = 0, 0.0, []

    @contextlib.contextmanager
    def batch(self, indices: list[int]) -> Iterator[None]:
        self.size, self.done, self.indices = len(indices), 0.0, list(indices)
        yield
        self.advance(float(self.size))

    def advance(self, target: float) -> None:
        if target > self.done:
            self.bar.update(target - self.done)
            self.done = target

    def __call__(self, step: Step) -> None:
        """The step callback: returns None (never changes the sampler's estimate)."""
        self.advance(self.size * min(1.0, (step.index + 1) / max(step.n_steps, 1)))
        if self.writer is not None:
            self.log_step(step)
        return None

    @torch.no_grad()
    def log_step(self, step: Step) -> None:
        misfit = step.operator.data_misfit(step.x0, step.y).tolist()
        params = adaptable_parameters(step.operator)
        for k, i in enumerate(self.indices[: len(misfit)]):
            self.writer.add_scalar(f"sample_{i:06d}/data_misfit", misfit[k], step.index)
            self.writer.add_scalar(f"sample_{i:06d}/sigma", float(step.sigma.reshape(-1)[0]), step.index)
            for name, p in params.items():
                value = p.detach()
                if value.ndim and value.shape[0] == len(misfit):
                    value = value[k]
                self.writer.add_scalar(f"sample_{i:06d}/{name}", float(value.abs().pow(2).sum().sqrt())
                                       if value.numel() > 1 else float(value.reshape(())), step.index)

    def log_trace(self, indices: list[int], trace: list[dict[str, Any]]) -> None:
        """An adapter's per-batch record (losses, adapted values): its numbers as scalars at the batch's first index."""
        if self.writer is None:
            return
        for record in trace:
            name = record.get("adapter", "adapter")
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.writer.add_scalar(f"adaptation/{name}/{key}", value, indices[0])

    def postfix(self, rows: list[dict[str, Any]]) -> None:
        ok = [r["psnr"] for r in rows if r.get("psnr") is not None]
        if ok:
            self.bar.set_postfix(psnr=f"{sum(ok) / len(ok):.2f}")

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def tensorboard_writer(path: Path, rank: int) -> Any:
    """A TensorBoard SummaryWriter in RUN_DIR/tensorboard (optional extra: pip install medtta-bench[tensorboard])."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ConfigError("run.tensorboard=true needs the tensorboard package: pip install 'medtta-bench[tensorboard]' "
                          "(or pip install tensorboard)") from exc
    return SummaryWriter(str(path / "tensorboard" / (f"rank{rank}" if rank else "")))


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


def method_label(cfg: DictConfig) -> str:
    """'daps+tda on cs_mri'."""
    return f"{cfg.names.algorithm}{''.join('+' + a for a in cfg.names.adapters)} on {cfg.names.problem}"


def execute(cfg: DictConfig, out: str | os.PathLike, resume: bool = False, progress: bool = True,
            rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """Run (or finish, with resume) the benchmark described by cfg into the run directory `out`.

    Raises RunInterrupted on Ctrl-C, after writing the summary of the lines written so far."""
    check_run_options(cfg)
    device = resolve_device(cfg.run.device)
    torch.manual_seed(cfg.run.seed)
    comp = build_components(cfg, device)
    warn_in_distribution_shift(cfg, comp["algorithm"])
    from benchmarks.fingerprint import prior_fingerprint  # the weights' hash, frozen in config.yaml (leaderboard key)
    prior_hash = None if comp["prior"] is None else prior_fingerprint(comp["prior"])
    OmegaConf.update(cfg, "names.prior_hash", prior_hash, force_add=True)
    n = int(cfg.run.n)
    if n > len(comp["dataset"]):
        warnings.warn(f"run.n={n} but dataset {cfg.names.dataset!r} has {len(comp['dataset'])} items; using all")
        n = len(comp["dataset"])
    seed, save = int(cfg.run.seed), bool(cfg.run.get("save_reconstructions", True))
    rundir = RunDir(out, rank)
    rundir.open(cfg, device, resume)
    try:
        done, traced = rundir.finished(), rundir.traced()
        mine = [b for j, b in enumerate(run_batches(comp, n, int(cfg.run.batch_size))) if j % world_size == rank]
        todo = [b for b in mine if any(i not in done for i in b)]  # a partly written batch is rerun whole
        scheme = Scheme(cfg.run.scheme, comp["adapters"])
        writer = tensorboard_writer(rundir.path, rank) if cfg.run.get("tensorboard", False) else None
        with SigintGuard() as guard:
            try:
                if scheme.needs_warmup and todo:
                    scheme.set_adapting(True)
                    warm = StepProgress(sum(map(len, mine)), f"adapting (naive scheme): {method_label(cfg)}", progress)
                    for b in mine:
                        with warm.batch(b):
                            run_batch(comp, b, seed, device, warm)
                    warm.close()
                    scheme.set_adapting(False)
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
                summarise(cfg, rundir, device)
                raise RunInterrupted(out) from None
        return summarise(cfg, rundir, device)
    finally:
        rundir.close()


def problem_run_metrics(problem: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The problem's per-run metrics (Problem.run_metrics) of the ok rows' `problem_record`s; None if it has none."""
    records = [r["problem_record"] for r in rows if r.get("status") == "ok" and r.get("problem_record")]
    cls = registry.load_optional("problems", problem)
    if not records or cls is None:
        return None
    return cls.run_metrics(records)


# dataset options that pick which items or how many, not how they look: they do not move a run off the training data
SAMPLING_OPTIONS = {"split", "length", "seed", "slices", "slab"}


def acquisition_changes(cfg: DictConfig, training: dict[str, Any]) -> list[str]:
    """The problem and dataset options of this run that differ from those a network was trained with (its training
    facts' `problem_options`/`dataset_options` over the components' defaults), e.g. the scanner shift's coils."""
    changed = []
    for group, key, facts in (("problems", "problem", "problem_options"), ("datasets", "dataset", "dataset_options")):
        node, name = cfg.get(key), training.get(key)
        if node is None or not name:
            continue
        try:
            trained = {**component_defaults(group, str(name)), **(training.get(facts) or {})}
        except LookupError:  # trained on a component not installed here: its defaults are unknown
            trained = dict(training.get(facts) or {})
        for k, v in OmegaConf.to_container(node, resolve=True).items():
            if key == "dataset" and k in SAMPLING_OPTIONS:
                continue
            if k in trained and trained[k] != v:
                changed.append(f"{key}.{k}")
    return changed


def warn_in_distribution_shift(cfg: DictConfig, algorithm: Any) -> None:
    """Warn when `--shift` tests a trained network on its own training data: the same dataset with the problem and
    dataset options it was trained with (a shift without a `networks:` block names a change from the diffusion
    prior's domain, which may be none for the network, or `algorithm.model` chose a source trained on the target)."""
    shift = cfg.names.get("shift")
    base = getattr(algorithm, "algorithm", algorithm)  # AdaptedAlgorithm wraps the solver
    training = getattr(base, "training", None)
    trained_on = training.get("dataset") if isinstance(training, dict) else None
    if shift and trained_on and trained_on == cfg.names.dataset and not acquisition_changes(cfg, training):
        warnings.warn(f"shift {shift!r} tests on {trained_on!r}, the dataset the network was trained on: this run is "
                      f"in distribution for it; the D2SA shifts of the shipped source networks are `--shift "
                      f"anatomy|contrast|acceleration|scanner` at their default model (`bench list shifts`)",
                      stacklevel=2)


def summarise(cfg: DictConfig, rundir: RunDir, device: torch.device | str) -> dict[str, Any]:
    rows = rundir.all_samples()
    summary = aggregate(rows)
    summary.update({"names": OmegaConf.to_container(cfg.names), "device": str(device), "run_id": Path(rundir.path).resolve().name,
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    summary["problem_info"] = problem_info(rows)
    extra = sorted({m for r in rows for m in (r.get("problem_metrics") or {})})
    if extra:  # the problem's own metrics: mean and std over the ok samples, as the image metrics
        summary["problem_metrics"] = aggregate([{"status": r.get("status"), **(r.get("problem_metrics") or {})}
                                                for r in rows], extra)["metrics"]
    run_metrics = problem_run_metrics(str(cfg.names.problem), rows)
    if run_metrics is not None:
        summary["problem_run_metrics"] = run_metrics
    version = getattr(registry.load_optional("problems", str(cfg.names.problem)), "metrics_version", None)
    if version is not None:
        summary["problem_metrics_version"] = version
    failures = [{"index": r["index"], "reason": r.get("reason")} for r in rows if r.get("status") != "ok"]
    summary["failures"] = failures
    summary["tier"] = "+".join(sorted({str(r["tier"]) for r in rows if r.get("tier")})) or "simulated"
    summary["target_convention"] = "+".join(sorted({str(r["target_convention"]) for r in rows
                                                     if r.get("target_convention")})) or None
    summary["metric_convention"] = "per-slice"
    volumes = per_volume(rows, Path(rundir.path))
    if volumes:
        summary["metric_convention"] = "per-slice + per-volume (fastMRI)"
        summary["volumes"] = volumes
        summary["volume_metrics"] = aggregate(volumes, VOLUME_METRICS)["metrics"]
    untargeted = [r for r in rows if r.get("status") == "ok" and r.get("reason") == NO_TARGET]
    if untargeted:
        summary["n_no_target"] = len(untargeted)
        summary["no_target"] = (f"{len(untargeted)} sample(s) have no target (prospective data): their "
                                f"reconstructions are written and they are excluded from every metric")
        summary["submission"] = write_submission(untargeted, Path(rundir.path))
    rundir.write_summary(summary)
    return summary


def _volume_stack(rows: list[dict[str, Any]], path: Path, key: str) -> Any:
    """(slices, H, W) magnitudes of the rows' `key` files (reconstruction | target), in the file's units."""
    import numpy as np

    out = []
    for r in sorted(rows, key=lambda r: r.get("slice", 0)):
        a = np.load(path / r[key]).astype(np.float64)
        out.append(np.sqrt((a**2).sum(0)) * float(r.get("data_scale") or 1.0))
    return np.stack(out)


def per_volume(rows: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """fastMRI's per-volume metrics (benchmarks.metrics.volume_metrics) of every volume whose slices all finished
    with a target and saved files; slices in the file's units (x data_scale), as fastMRI scores them."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("volume") is not None:
            groups.setdefault(str(r["volume"]), []).append(r)
    out = []
    for vol, vrows in sorted(groups.items()):
        if not all(r.get("status") == "ok" and r.get("target") and r.get("reconstruction") for r in vrows):
            continue
        m = volume_metrics(_volume_stack(vrows, path, "reconstruction"), _volume_stack(vrows, path, "target"))
        out.append({"volume": vol, "slices": len(vrows), "status": "ok", **m})
    return out


def write_submission(rows: list[dict[str, Any]], path: Path) -> str:
    """RUN_DIR/submission/<volume>.h5 with `reconstruction` (slices, H, W) float32 magnitude in the file's units
    (fastMRI's submission layout), for the samples without a target."""
    import h5py

    folder = path / "submission"
    folder.mkdir(exist_ok=True)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("reconstruction"):
            groups.setdefault(str(r.get("volume") or r["id"]), []).append(r)
    for vol, vrows in groups.items():
        tmp = folder / f".{vol}.h5.tmp"
        with h5py.File(tmp, "w") as f:
            f.create_dataset("reconstruction", data=_volume_stack(vrows, path, "reconstruction").astype("float32"))
        os.replace(tmp, folder / f"{vol}.h5")
    return "submission/"


def format_table(summary: dict[str, Any], metrics: tuple[str, ...] = ("psnr", "ssim", "nmse", "ncc", "lpips",
                                                                     "data_misfit", "seconds", "nfe")) -> str:
    """A plain-text table of mean ± std per metric."""
    lines = [f"{'metric':<14}{'mean':>12}{'std':>12}"]
    for m in metrics:
        s = summary["metrics"].get(m, {})
        if s.get("mean") is None:
            lines.append(f"{m:<14}{'null':>12}{'':>12}")
        else:
            lines.append(f"{m:<14}{s['mean']:>12.4g}{s['std']:>12.3g}")
    for m, s in (summary.get("problem_metrics") or {}).items():
        lines.append(f"{m:<14}{'null':>12}" if s.get("mean") is None else f"{m:<14}{s['mean']:>12.4g}{s['std']:>12.3g}")
    for m, v in (summary.get("problem_run_metrics") or {}).items():
        lines.append(f"{m:<22}{'null' if v is None else format(v, '.4g'):>12}  (per run)")
    lines.append(f"samples: {summary['n_ok']} ok, {summary['n_failed']} failed")
    for k, v in summary.get("problem_info", {}).items():
        lines.append(f"{k}: {v:.4g}")
    if summary.get("tier") == "measured" or summary.get("volumes"):
        lines.append(f"tier: {summary.get('tier')}, target: {summary.get('target_convention')}, "
                     f"metrics: {summary.get('metric_convention')}")
    for m, s in (summary.get("volume_metrics") or {}).items():
        if s.get("mean") is not None:
            lines.append(f"volume {m} (fastMRI, {s['n']} volume(s)): {s['mean']:.4g} ± {s['std']:.3g}")
    if summary.get("no_target"):
        lines.append(f"{summary['no_target']}; submission files in {summary.get('submission')}")
    return "\n".join(lines)
