"""Run one benchmark: dataset -> problem -> (adapted) algorithm -> metrics -> run directory.

Samples are processed in batches of `run.batch_size` on fixed boundaries (0..B-1, B..2B-1, ...), each
batch with its own generator seeded from (run.seed, first index), so a resumed run redraws the same
numbers. Many processes (`accelerate launch` or `torchrun`, which set RANK and WORLD_SIZE): process r takes
batches r, r+W, r+2W, ... and writes samples.rank<r>.jsonl beside samples.jsonl; rank 0 merges them.
"""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from adaptation.base import AdaptedAlgorithm, Adapter
from adaptation.schemes import Scheme
from algorithms.base import Algorithm
from benchmarks import registry
from benchmarks.config import ConfigError, options
from benchmarks.metrics import image_metrics, peak_memory_mb, reset_peak_memory
from benchmarks.results import RunDir, aggregate, problem_info
from inverse_problems.base import Problem
from inverse_problems.datasets import item_seed
from priors.base import Prior


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


def build_components(cfg: DictConfig, device: torch.device) -> dict[str, Any]:
    """Instantiate every component and check that they fit together, before any compute."""
    names = cfg.names
    dataset = build_dataset(names.dataset, cfg, cfg.run.split)
    problem: Problem = registry.build("problems", names.problem, **options(cfg, "problem"))
    item_shape = tuple(dataset[0]["image"].shape)
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
    adapters: list[Adapter] = [registry.build("adapters", a, **dict(options(cfg, "adapters").get(a, {})))
                               for a in names.adapters]
    adapters = [a.to(device) for a in adapters]
    if adapters:
        algorithm = AdaptedAlgorithm(algorithm, adapters)
    return {"dataset": dataset, "problem": problem, "algorithm": algorithm, "prior": prior, "adapters": adapters}


def batches_of(n: int, batch_size: int) -> list[list[int]]:
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def run_batch(comp: dict[str, Any], indices: list[int], seed: int,
              device: torch.device) -> tuple[list[dict], list, list[dict[str, Any]]]:
    """Reconstruct one batch; returns the JSON rows, the reconstructions (target units) and the trace."""
    items = [comp["dataset"][i] for i in indices]
    x = torch.stack([it["image"] for it in items]).to(device)
    gen = torch.Generator(device=device).manual_seed(item_seed("batch", seed, indices[0]))
    reset_peak_memory(device)
    inst = comp["problem"].simulate(x, gen)
    recon = comp["algorithm"].reconstruct(inst.y, inst.operator, comp["prior"], gen)
    scale = inst.scale.view(-1, 1, 1, 1).to(recon.image)
    image = recon.image * scale
    with torch.no_grad():
        misfit = inst.operator.data_misfit(recon.image, inst.y).tolist()
    metrics = image_metrics(image, x)
    mem = peak_memory_mb(device)
    rows = []
    for k, (i, it) in enumerate(zip(indices, items)):
        failed = bool(recon.failed[k])
        row: dict[str, Any] = {"index": i, "id": it["id"], "status": "failed" if failed else "ok",
                               "reason": recon.failure[k]}
        row.update({m: (None if failed else v) for m, v in metrics[k].items()})
        row["data_misfit"] = None if failed else misfit[k]
        row.update({"seconds": recon.seconds / len(indices), "nfe": recon.nfe, "peak_memory_mb": mem,
                    "batch_size": len(indices), "scale": float(inst.scale[k])})
        row.update({f"problem_{k2}": v for k2, v in inst.info.items()})
        rows.append(row)
    return rows, list(image), recon.trace


def execute(cfg: DictConfig, out: str | os.PathLike, resume: bool = False, progress: bool = True,
            rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """Run (or finish, with resume) the benchmark described by cfg into the run directory `out`."""
    device = resolve_device(cfg.run.device)
    torch.manual_seed(cfg.run.seed)
    comp = build_components(cfg, device)
    from benchmarks.fingerprint import prior_fingerprint  # the weights' hash, frozen in config.yaml (leaderboard key)
    prior_hash = None if comp["prior"] is None else prior_fingerprint(comp["prior"])
    OmegaConf.update(cfg, "names.prior_hash", prior_hash, force_add=True)
    n = int(cfg.run.n)
    if n > len(comp["dataset"]):
        warnings.warn(f"run.n={n} but dataset {cfg.names.dataset!r} has {len(comp['dataset'])} items; using all")
        n = len(comp["dataset"])
    rundir = RunDir(out, rank)
    rundir.start(cfg, device, resume)
    done = rundir.finished()
    mine = [b for j, b in enumerate(batches_of(n, int(cfg.run.batch_size))) if j % world_size == rank]
    todo = [[i for i in b if i not in done] for b in mine]
    todo = [b for b in todo if b]
    scheme = Scheme(cfg.run.scheme, comp["adapters"])
    if scheme.needs_warmup and todo:
        scheme.set_adapting(True)
        for b in tqdm(mine, desc="adapting (naive scheme)", disable=not progress):
            run_batch(comp, b, int(cfg.run.seed), device)
        scheme.set_adapting(False)
    bar = tqdm(total=sum(len(b) for b in todo), desc=f"{cfg.names.algorithm} on {cfg.names.problem}", unit="sample",
               disable=not progress)
    for b in todo:
        scheme.before_batch()
        rows, images, trace = run_batch(comp, b, int(cfg.run.seed), device)
        if trace:  # what the adapters learned on this batch (adapted parameters, losses, weights)
            rundir.append({"indices": b, "trace": trace}, rundir.trace_path)
        for row, image in zip(rows, images):
            if cfg.run.save_reconstructions:
                row["reconstruction"] = rundir.save_reconstruction(row["index"], image)
                row["target"] = rundir.save_target(row["index"], comp["dataset"][row["index"]]["image"])
            rundir.append(row)
        bar.update(len(b))
        bar.set_postfix(psnr=f"{sum((r['psnr'] or 0) for r in rows) / len(rows):.2f}")
    bar.close()
    return summarise(cfg, rundir, device)


def summarise(cfg: DictConfig, rundir: RunDir, device: torch.device | str) -> dict[str, Any]:
    rows = rundir.all_samples()
    summary = aggregate(rows)
    summary.update({"names": OmegaConf.to_container(cfg.names), "device": str(device), "run_id": Path(rundir.path).resolve().name,
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    summary["problem_info"] = problem_info(rows)
    failures = [{"index": r["index"], "reason": r.get("reason")} for r in rows if r.get("status") != "ok"]
    summary["failures"] = failures
    rundir.write_summary(summary)
    return summary


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
    lines.append(f"samples: {summary['n_ok']} ok, {summary['n_failed']} failed")
    for k, v in summary.get("problem_info", {}).items():
        lines.append(f"{k}: {v:.4g}")
    return "\n".join(lines)
