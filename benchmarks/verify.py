"""`bench verify RUN_DIR`: re-run K samples of a run from its provenance alone and compare them with what it saved.

The run is rebuilt from its directory only: the resolved config.yaml (every option, run.seed, run.batch_size,
run.scheme), its sample ids (the lines of samples*.jsonl) and environment.json. Before any compute, the rebuilt
run is compared with the recorded one and refused, naming each difference, unless `--force`:

- the prior's fingerprint (benchmarks.fingerprint) of the weights this checkout loads against `names.prior_hash`;
- the code: each source file recorded in environment.json `code` (benchmarks.provenance) against this checkout,
  naming the changed files (a run made before files were recorded: its git revision against this checkout's);
- the versions of the packages that change numbers (`MATTERS`: torch, numpy, scipy, diffusers);
- the device kind (random draws and kernels differ between CPU and GPU).

K finished samples (default 2) are drawn by a seeded draw (`--seed`, default 0) and re-run in the batches the run
put them in (`benchmarks.schedule.run_batches`: the same composition, so even a network prior's batched kernels see
the same inputs), with the run's torch thread count; adapter state flows as in the run (the naive scheme's
warm-up pass; the minibatch scheme replays every batch before the last one drawn). Per sample: bit-identical (the
reconstruction's bytes equal the saved file's), max |Δ| and the metric differences. The result is written to
RUN_DIR/verify.json (`verified: "k/K"`: bit-identical, or for an entry packed without reconstructions every metric
equal to the bit; date, machine, device, the differences passed over with --force), which the
leaderboard carries on the run's row (`verification`). An entry of `bench submit` is verified from its unpacked,
manifest-checked copy, and the result is written beside it (`entry.tar.verify.json`, benchmarks.archive).
"""
from __future__ import annotations

import json
import platform
import random
import time
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from benchmarks.results import (CONFIG, RunDir, _clean, added_defaults, device_kind, git_revision, is_run_dir,
                                run_defaults, write_atomic)

MATTERS = ("torch", "numpy", "scipy", "diffusers")
VERIFY = "verify.json"
COMPARED = ("psnr", "ssim", "nmse")


class VerifyError(RuntimeError):
    """A run that cannot be verified as asked (the message names the difference or the problem, and the fix)."""


@dataclass
class SampleCheck:
    """One re-run sample against its saved line and reconstruction."""

    index: int
    id: str | None
    status: str
    bit_identical: bool | None = None  # None: the run saved no reconstruction to compare with
    max_abs_diff: float | None = None
    metric_delta: dict[str, float | None] = field(default_factory=dict)
    note: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SampleCheck":
        """A check as verify.json holds it (its derived `verified` dropped)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    @property
    def verified(self) -> bool:
        """Bit-identical; without a saved reconstruction (an entry without --with-recons), every metric equal."""
        if self.bit_identical is not None:
            return self.bit_identical
        deltas = [v for v in self.metric_delta.values() if v is not None]
        return self.status == "ok" and bool(deltas) and all(v == 0 for v in deltas)

    def line(self) -> str:
        head = f"sample {self.index} ({self.id})"
        if self.status != "ok":
            return f"{head}: the re-run failed: {self.note}"
        deltas = ", ".join(f"Δ{m.upper()} {v:+.3g}" for m, v in self.metric_delta.items() if v is not None)
        if self.bit_identical:
            what = "bit-identical"
        elif self.bit_identical is None:
            what = "no saved reconstruction to compare; metrics " + ("equal" if self.verified else "differ")
        else:
            what = f"differs: max |Δ| {self.max_abs_diff:.3g}"
        return f"{head}: {what}" + (f"; {deltas}" if deltas else "") + (f" ({self.note})" if self.note else "")


def draw(rows: list[dict[str, Any]], k: int, seed: int) -> list[dict[str, Any]]:
    """K of the finished (status ok) lines, chosen by a draw seeded with `seed`, in index order."""
    ok = sorted((r for r in rows if r.get("status") == "ok"), key=lambda r: int(r["index"]))
    if not ok:
        raise VerifyError("the run has no finished sample to verify")
    if k < 1:
        raise VerifyError(f"--samples must be a whole number >= 1, got {k}")
    return sorted(random.Random(seed).sample(ok, min(k, len(ok))), key=lambda r: int(r["index"]))


def package_differences(env: dict[str, Any]) -> list[str]:
    """`torch: 2.4.0 (run) -> 2.5.1 (here)` for each package of MATTERS whose version differs."""
    recorded = env.get("packages") or {}
    out = []
    for name in MATTERS:
        try:
            here: str | None = metadata.version(name)
        except metadata.PackageNotFoundError:
            here = None
        if name in recorded and recorded[name] != here:
            out.append(f"package {name}: {recorded[name]} (run) -> {here} (here)")
    return out


def code_differences(env: dict[str, Any]) -> list[str]:
    """The changed source files (environment.json `code`), or, for a run without them, the git revisions."""
    from benchmarks.provenance import changed_files

    code = env.get("code")
    if isinstance(code, dict) and isinstance(code.get("files"), dict):
        return [f"code: {f}" for f in changed_files(code["files"])]
    made, here = str(env.get("git_revision", "unknown")), git_revision()
    if made == here and "dirty" not in made and made != "unknown":
        return []
    return [f"code: the run records no source files, and its git revision {made} is not this checkout's clean "
            f"{here}" if made != here else f"code: the run records no source files, and its git revision {made} "
            f"had uncommitted changes"]


def prior_difference(cfg: Any, prior: torch.nn.Module | None) -> list[str]:
    """The prior's fingerprint here against the run's `names.prior_hash`, naming the prior and where it loads from."""
    from benchmarks.fingerprint import prior_fingerprint

    if prior is None:
        return []
    recorded = cfg.names.get("prior_hash")
    here = prior_fingerprint(prior)  # as the runner computes it (a PerSamplePrior wrapper included)
    if recorded == here:
        return []
    opts = cfg.get("prior") or {}
    where = f"prior.path={opts.get('path')}" if opts.get("path") else "its default weights"
    return [f"prior fingerprint of {cfg.names.prior} ({where}): {recorded} (run) -> {here} (the weights loaded "
            f"here): the weights file was changed or swapped"]


def compare(row: dict[str, Any], new_row: dict[str, Any], image: torch.Tensor | None, target: torch.Tensor | None,
            path: Path, ssim: str) -> SampleCheck:
    """One re-run sample against its saved line and reconstruction file."""
    from benchmarks.metrics import LEGACY_CONVENTION, image_metrics

    check = SampleCheck(int(row["index"]), row.get("id"), str(new_row.get("status")))
    if new_row.get("status") != "ok" or image is None:
        check.note = str(new_row.get("reason"))
        return check
    new = image.detach().float().cpu().numpy()
    rec = row.get("reconstruction")
    saved = np.load(path / rec) if isinstance(rec, str) and (path / rec).is_file() else None
    old = dict(row)
    if saved is not None:
        check.bit_identical = saved.shape == new.shape and saved.dtype == new.dtype and saved.tobytes() == new.tobytes()
        check.max_abs_diff = float(np.max(np.abs(saved.astype(np.float64) - new))) if saved.shape == new.shape \
            else None
        if (row.get("metric_convention") or LEGACY_CONVENTION) != new_row.get("metric_convention") and target is not None:
            old = image_metrics(torch.from_numpy(saved)[None], target.detach().float().cpu()[None], ssim)[0]
            check.note = "the line was scored under an older convention: compared with its saved reconstruction " \
                         "scored now (bench rescore re-scores the run)"
    for m in COMPARED:
        a, b = new_row.get(m), old.get(m)
        check.metric_delta[m] = (a - b) if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
    return check


def rerun(cfg: Any, chosen: list[int], device: torch.device, comp: Any) -> dict[int, tuple[dict, Any, Any]]:
    """The chosen samples re-run in the run's own batches and adapter scheme: {index: (row, image, target)}."""
    from adaptation.schemes import Scheme
    from benchmarks.batch import run_batch
    from benchmarks.schedule import run_batches

    n = min(int(cfg.run.n), len(comp.dataset))
    seed = int(cfg.run.seed)
    batches = run_batches(comp.dataset, comp.adapters, n, int(cfg.run.batch_size))
    needed = [j for j, b in enumerate(batches) if any(i in b for i in chosen)]
    outside = sorted(set(chosen) - {i for j in needed for i in batches[j]})
    if outside:
        raise VerifyError(f"sample(s) {outside} lie outside the run's {n} samples (run.n={cfg.run.n}, the dataset has "
                          f"{len(comp.dataset)} items): the data changed since the run; it cannot be re-run")
    scheme = Scheme(str(cfg.run.scheme), comp.adapters)
    if scheme.needs_warmup:
        scheme.set_adapting(True)
        for b in batches:
            run_batch(comp, b, seed, device)
        scheme.set_adapting(False)
    carries = scheme.name == "minibatch" and bool(comp.adapters)
    order = range(max(needed) + 1) if carries else needed
    out = {}
    for j in order:
        scheme.before_batch()
        rows, images, targets, _ = run_batch(comp, batches[j], seed, device)
        for r, image, target in zip(rows, images, targets):
            if r["index"] in chosen:
                out[int(r["index"])] = (r, image, target)
    return out


def verify(run_dir: str | Path, k: int = 2, seed: int = 0, force: bool = False,
           device: str | None = None) -> dict[str, Any]:
    """Verify a run directory (module docstring); returns what it writes to RUN_DIR/verify.json."""
    from benchmarks.archive import entry_run, verification_file
    from benchmarks.build import build_components, check_run_options, resolve_device
    from benchmarks.rescore import ssim_convention_of

    path = entry_run(Path(run_dir))  # an entry of `bench submit`: unpacked and checked against its manifest
    if not is_run_dir(path):
        raise VerifyError(f"{path} is not a run directory (no config.yaml of `bench run`); pass a run directory")
    cfg = OmegaConf.load(path / CONFIG)
    # options added since the run was made read as the defaults it ran with (as `bench run --resume` reads them)
    cfg = OmegaConf.merge(OmegaConf.create({"run": run_defaults(), **added_defaults(cfg)}), cfg)
    env_path = path / "environment.json"
    env = json.loads(env_path.read_text()) if env_path.is_file() else {}
    chosen = draw(RunDir(path).all_samples(), k, seed)
    check_run_options(cfg)
    made_on = device_kind(str(env.get("device", "cpu")))
    dev = resolve_device(device or made_on)
    threads = torch.get_num_threads()
    torch.set_num_threads(int(env.get("torch_threads") or threads))
    try:
        torch.manual_seed(int(cfg.run.seed))
        comp = build_components(cfg, dev)
        differences = package_differences(env) + code_differences(env) + \
            prior_difference(cfg, comp.prior)
        if made_on != dev.type:
            differences.append(f"device: {made_on} (run) -> {dev.type} (here)")
        if differences and not force:
            raise VerifyError(f"{path} was made with something that differs here, so a re-run would not be the same "
                              f"computation:\n  " + "\n  ".join(differences) + "\nre-run it where it was made, or pass "
                              "--force to compare anyway (verify.json then records these differences)")
        ids = [int(r["index"]) for r in chosen]
        new = rerun(cfg, ids, dev, comp)
    finally:
        torch.set_num_threads(threads)
    ssim = ssim_convention_of(str(cfg.names.problem))
    checks = [compare(r, *new[int(r["index"])], path, ssim) for r in chosen]
    same = sum(c.verified for c in checks)
    name = f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""
    result = {"verified": f"{same}/{len(checks)}", "n_verified": same, "samples_checked": len(checks),
              "n_bit_identical": sum(bool(c.bit_identical) for c in checks),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": platform.node(), "platform": platform.platform(),
              "device": str(dev) + name, "seed": seed, "forced": bool(differences), "differences": differences,
              "git_revision": git_revision(), "samples": [{**asdict(c), "verified": c.verified} for c in checks]}
    result["written_to"] = str(verification_file(path))
    write_atomic(Path(result["written_to"]), json.dumps(_clean(result), indent=2, default=str))
    return result


def read_verification(path: Path) -> dict[str, Any] | None:
    """The run's verification (RUN_DIR/verify.json; for an entry, `<entry>.verify.json` beside it when there, else the
    one packed in it) when it is there and readable (else None: an unverified run)."""
    from benchmarks.archive import verification_file

    where = verification_file(path)
    try:
        data = json.loads((where if where.is_file() else Path(path) / VERIFY).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("samples_checked"), int) else None


def row_verification(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A leaderboard row's `verification`: over its runs' verify.json, the samples found bit-identical of those
    re-run, the runs verified of the row's runs, the latest date, the machines, and whether any was forced."""
    found = [v for v in (r.get("verification") for r in runs) if v]
    if not found:
        return None
    return {"verified": f"{sum(int(v.get('n_verified', 0)) for v in found)}/"
                        f"{sum(int(v['samples_checked']) for v in found)}",
            "runs": f"{len(found)}/{len(runs)}", "date": max(str(v.get("date")) for v in found),
            "machines": sorted({str(v.get("machine")) for v in found}),
            "forced": any(bool(v.get("forced")) for v in found)}
