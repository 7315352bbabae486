"""Reconstruct one batch of samples: load its items, measure them (the problem's instance: simulated, or the items'
own k-space), reconstruct, score against the targets (metrics after undoing the measurement's scale) and give the
rows of samples.jsonl. Every random draw of sample k comes from its own generator, seeded from (run.seed, its id)
(inverse_problems.operators.random.SampleGenerators): a sample's numbers do not depend on the batch it is in.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from algorithms.base import Step
from benchmarks.build import Components
from benchmarks.items import NO_TARGET, Unusable, load_item
from benchmarks.metrics import IMAGE_METRICS, image_metrics, metric_convention, peak_memory_mb, reset_peak_memory
from benchmarks.results import METRICS
from inverse_problems.operators.random import SampleGenerators


Row = dict[str, Any]  # one line of samples.jsonl


def adapt_batch(comp: Components, indices: list[int], seed: int, device: torch.device,
                callback: Callable[[Step], Any] | None = None) -> None:
    """The adapters' before-run adaptation on one batch, without reconstructing (the naive scheme's adapt-only
    warm-up, run.naive_adapt_only): the batch measured as `run_batch` measures it, then AdaptedAlgorithm.adapt."""
    adapt = getattr(comp.algorithm, "adapt", None)
    if not callable(adapt):
        return
    shape = tuple(comp.problem.image_shape)
    tier = getattr(comp.problem, "tier", "simulated")
    items = [it for it in (load_item(comp.dataset, i, shape, tier) for i in indices) if not isinstance(it, Unusable)]
    if items:
        gen = SampleGenerators.seeded(seed, [it["id"] for it in items], device)
        inst = comp.problem.instance(items, device, gen)
        adapt(inst.y, inst.operator, comp.prior, gen)


def run_batch(comp: Components, indices: list[int], seed: int, device: torch.device,
              callback: Callable[[Step], Any] | None = None) -> tuple[list[Row], list, list, list[dict[str, Any]]]:
    """Reconstruct one batch; returns the JSON rows (index order), the reconstructions (target units; None for
    an item that failed to load), the targets (None where there is none) and the trace. Sample k's randomness comes from (seed, its id) alone."""
    shape = tuple(comp.problem.image_shape)
    tier = getattr(comp.problem, "tier", "simulated")
    loaded = {i: load_item(comp.dataset, i, shape, tier) for i in indices}
    unusable = {i: u for i, u in loaded.items() if isinstance(u, Unusable)}
    usable = {i: it for i, it in loaded.items() if not isinstance(it, Unusable)}
    good = list(usable)
    rows: dict[int, Row] = {
        i: {"index": i, "id": u.id, "status": "failed", "reason": u.reason, "tier": tier, **dict.fromkeys(METRICS)}
        for i, u in unusable.items()}
    images: dict[int, Any] = {i: None for i in rows}
    targets: dict[int, Any] = {}
    trace: list[dict[str, Any]] = []
    if good:
        items = list(usable.values())
        gen = SampleGenerators.seeded(seed, [it["id"] for it in items], device)
        reset_peak_memory(device)
        inst = comp.problem.instance(items, device, gen)
        recon = comp.algorithm.reconstruct(inst.y, inst.operator, comp.prior, gen, callback)
        scale = inst.scale.view(-1, 1, 1, 1).to(recon.image)
        image = recon.image * scale
        with torch.no_grad():
            misfit = inst.operator.data_misfit(recon.image, inst.y).tolist()
        scored = [k for k, it in enumerate(items) if it.get("image") is not None]  # prospective items: no target
        metrics: list[dict[str, Any]] = [dict.fromkeys(IMAGE_METRICS) for _ in items]
        ssim_convention = getattr(comp.problem, "ssim_convention", "fastmri")  # a problem may declare another
        if scored:
            x = torch.stack([items[k]["image"] for k in scored]).to(device)
            for k, m in zip(scored, image_metrics(image[scored], x, ssim_convention)):
                metrics[k] = m
        # the problem's own metrics (docs/design.md: one hook), per sample, in target units: row["problem_metrics"]
        hook = getattr(comp.problem, "metrics", None)
        extra: list[dict[str, Any]] = [{} for _ in items]
        records: list[dict[str, Any]] = [{} for _ in items]
        if callable(hook):
            for k in scored:
                extra[k] = hook(image[k], items[k]["image"].to(image), items[k])
        record_hook = getattr(comp.problem, "sample_record", None)
        if callable(record_hook):  # facts for the per-run metrics (Problem.run_metrics), after the reconstruction
            for k in scored:
                records[k] = record_hook(image[k], items[k]["image"].to(image), items[k])
        mem = peak_memory_mb(device)
        trace = recon.trace
        for k, (i, it) in enumerate(zip(good, items)):
            failed = bool(recon.failed[k])
            row: Row = {"index": i, "id": it["id"], "status": "failed" if failed else "ok",
                                   "reason": recon.failure[k]}
            if not failed and it.get("image") is None:
                row["reason"] = NO_TARGET
            row.update({"tier": tier, "target_convention": it.get("target_convention", "dataset image"),
                        "metric_convention": metric_convention(ssim_convention)})
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

