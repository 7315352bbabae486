"""The run directory (docs/design.md, "The harness"): a contract between the runs that write it.

    RUN_DIR/config.yaml          resolved config (names, every option), frozen when the directory is made
    RUN_DIR/environment.json     package versions, git revision, device, torch threads, command, and the
                                 sha256 of each source file of the modules loaded (benchmarks.provenance)
    RUN_DIR/resumes.jsonl        the environment of every --resume (one line each)
    RUN_DIR/samples.jsonl        one JSON line per finished sample, appended (and fsynced) as it finishes
    RUN_DIR/adaptation.jsonl     per batch, what the adapters learned (Reconstruction.trace), if any
    RUN_DIR/summary.json         mean/std of every metric over the finished samples
    RUN_DIR/reconstructions/<index>.npy   float32 (C, H, W) reconstruction in the target's units
                                          (C = 2: real, imaginary), written before its JSON line

A line is written only after its reconstruction file, so a kill at any moment loses nothing that
was reported finished; a half-written last line is dropped on resume and the sample redone.

Every whole file (config, environment, summary) is written to a temporary name and renamed over the old one, so
a kill never leaves one truncated. `RunDir.open` takes an advisory lock (`fcntl.flock` on RUN_DIR/.lock, one per
process rank) for as long as the run writes, refuses a folder that is not empty and not a run directory, a run
directory without `--resume`, and a resume whose options differ from the frozen config (with the difference).
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

SAMPLES = "samples.jsonl"
METRICS = ("psnr", "ssim", "nmse", "ncc", "lpips", "data_misfit", "seconds", "nfe", "peak_memory_mb")
PACKAGES = ("medtta-bench", "torch", "torchvision", "diffusers", "numpy", "scipy", "piq", "hydra-core", "accelerate",
            "h5py")


CONFIG = "config.yaml"
STARTED = ".started"  # rank 0 writes it once its checks have passed; the other ranks wait for it
RANK_WAIT = 600.0  # seconds a rank > 0 waits for rank 0 to open the run directory
# Options that may differ on resume: the device (per-rank cuda:N; its kind is checked apart) and logging.
RESUMABLE = ("run.device", "run.tensorboard")
_PROCESS_START = time.time()


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked (exists without --resume, config mismatch, locked)."""


def run_defaults() -> dict[str, Any]:
    """The run.* options and their defaults (configs/bench.yaml)."""
    from configs import CONFIG_DIR

    return dict(OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "bench.yaml"))["run"])


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: readers see the old or the new file whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as {dotted.key: value} (lists and empty dicts kept whole)."""
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def config_diff(old: Any, new: Any, ignore: Iterable[str] = RESUMABLE) -> list[str]:
    """`key: old -> new` for every option that differs between two configs (dotted keys, sorted)."""
    a = flatten(OmegaConf.to_container(old, resolve=True) if isinstance(old, DictConfig) else old)
    b = flatten(OmegaConf.to_container(new, resolve=True) if isinstance(new, DictConfig) else new)
    lines = []
    for k in sorted(set(a) | set(b)):
        if k in ignore or a.get(k, KeyError) == b.get(k, KeyError):
            continue
        left = "(absent)" if k not in a else json.dumps(a[k])
        right = "(absent)" if k not in b else json.dumps(b[k])
        lines.append(f"{k}: {left} -> {right}")
    return lines


def added_defaults(cfg: DictConfig) -> dict[str, Any]:
    """The current defaults of the components a config names (problem, algorithm, dataset, prior, adapters), in
    the config's layout; a component no longer registered contributes nothing."""
    from benchmarks.config import component_defaults
    from benchmarks.registry import RegistryError

    names = cfg.get("names") or {}
    parts = [("problem", "problems", names.get("problem")), ("algorithm", "algorithms", names.get("algorithm")),
             ("dataset", "datasets", names.get("dataset")), ("prior", "priors", names.get("prior"))]
    out: dict[str, Any] = {}
    for key, group, name in parts:
        if name is not None and key in cfg:
            try:
                out[key] = component_defaults(group, name)
            except RegistryError:
                pass
    adapters = {}
    for name in names.get("adapters") or []:
        try:
            adapters[name] = component_defaults("adapters", name)
        except RegistryError:
            pass
    if adapters:
        out["adapters"] = adapters
    return out


def is_run_dir(path: Path) -> bool:
    """A folder made by `bench run`: its config.yaml holds the run's `names` and `run` sections."""
    cfg = path / CONFIG
    if not cfg.is_file():
        return False
    try:
        node = OmegaConf.load(cfg)
    except Exception:  # noqa: BLE001 - any unreadable yaml is simply not a run directory
        return False
    return isinstance(node, DictConfig) and "names" in node and "run" in node


def _ignorable(p: Path) -> bool:
    """What a start killed before its config.yaml may leave in an otherwise empty folder."""
    return p.name.startswith(".lock") or (p.name == "reconstructions" and p.is_dir() and not any(p.iterdir()))


def device_kind(text: str) -> str:
    """'cuda:1 (NVIDIA H200)' -> 'cuda'."""
    return text.split(" ")[0].split(":")[0]


def git_revision() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        rev = out.stdout.strip()
        if out.returncode == 0 and rev:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def environment(device: torch.device) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    dev = str(device)
    if device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(device)})"
    return {
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_revision": git_revision(),
        "device": dev,
        "torch_threads": torch.get_num_threads(),
        "command": sys.argv,
    }


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def read_samples(path: Path) -> list[dict[str, Any]]:
    """All complete lines of a samples file (a torn last line from a kill is skipped)."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class RunDir:
    """A run directory on disk; see the module docstring for its layout."""

    def __init__(self, path: str | os.PathLike, rank: int = 0) -> None:
        self.path = Path(path)
        self.rank = rank
        self.samples_path = self.path / (SAMPLES if rank == 0 else f"samples.rank{rank}.jsonl")
        self.trace_path = self.path / ("adaptation.jsonl" if rank == 0 else f"adaptation.rank{rank}.jsonl")

    def open(self, cfg: DictConfig, device: torch.device, resume: bool) -> None:
        """Lock the directory and check it against cfg (see the module docstring); make it if new.

        Raises RunDirError with the reason and the fix. `close()` releases the lock."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--out {self.path} is a file, not a folder; choose another --out")
        if self.rank == 0 and self.path.is_dir() and not is_run_dir(self.path) \
                and any(not _ignorable(p) for p in self.path.iterdir()):
            raise RunDirError(f"--out {self.path} is a folder that is not empty and is not a run directory (it has no "
                              f"config.yaml of a bench run); nothing was written there: choose a new or empty --out")
        if self.rank > 0:
            self._wait_for_rank0()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._check_or_create(cfg, device, resume)
        except BaseException:
            self.close()
            raise

    def _check_or_create(self, cfg: DictConfig, device: torch.device, resume: bool) -> None:
        cfg_path = self.path / CONFIG
        existing = read_samples(self.samples_path)  # this process's own file: ranks start at different times
        if is_run_dir(self.path):
            if not resume and (self.rank == 0 or existing):
                what = f"{len(existing)} finished samples" if existing else "a run"
                raise RunDirError(f"{self.path} already holds {what}; pass --resume to finish that run, or choose "
                                  f"another --out")
            # a run made before an option existed (run.*, or a component's new constructor option) ran with its
            # default, so the missing key reads as the default and does not block the resume
            old = OmegaConf.load(cfg_path)
            old = OmegaConf.merge(OmegaConf.create({"run": run_defaults(), **added_defaults(old)}), old)
            diff = config_diff(old, cfg)
            if diff:
                raise RunDirError(
                    f"--resume: {self.path} was made with another configuration; these options differ (run directory "
                    f"-> now):\n  " + "\n  ".join(diff) + f"\nrerun with the run's own options (see {cfg_path}) or "
                    f"choose another --out")
            env_path = self.path / "environment.json"
            if env_path.exists():
                made_on = device_kind(json.loads(env_path.read_text()).get("device", str(device)))
                if made_on != device.type:
                    raise RunDirError(f"--resume: {self.path} was made on {made_on} and this process runs on "
                                      f"{device.type}; random draws differ between devices: pass --device {made_on}")
            if self.rank == 0 and resume:
                self.append({"resumed_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **environment(device)},
                            self.path / "resumes.jsonl")
        elif self.rank == 0:
            write_atomic(cfg_path, OmegaConf.to_yaml(cfg))  # from here on the folder is a run directory
            from benchmarks.provenance import code_record  # the source files of the modules that compute the run

            write_atomic(self.path / "environment.json", json.dumps({**environment(device), "code": code_record()},
                                                                    indent=2))
        else:
            raise RunDirError(f"rank {self.rank}: {self.path} has no config.yaml although rank 0 opened it")
        (self.path / "reconstructions").mkdir(exist_ok=True)
        if self.rank == 0:
            write_atomic(self.path / STARTED, f"{os.getpid()}\n")
        self._repair()

    def _wait_for_rank0(self, timeout: float = RANK_WAIT) -> None:
        """Ranks > 0: wait until rank 0 of this launch has checked and opened the directory."""
        marker = self.path / STARTED
        deadline = time.time() + timeout
        while not (marker.exists() and marker.stat().st_mtime >= _PROCESS_START - 60):
            if time.time() > deadline:
                raise RunDirError(f"rank {self.rank}: rank 0 did not open {self.path} within {timeout:.0f} s")
            time.sleep(0.2)

    def _lock(self) -> None:
        """An advisory exclusive lock on RUN_DIR/.lock (.lock.rank<r> for rank r), held until close()."""
        try:
            import fcntl
        except ImportError:  # no flock on this platform: run without the lock
            self._lock_fd = None
            return
        path = self.path / (".lock" if self.rank == 0 else f".lock.rank{self.rank}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirError(f"{self.path} is being written by another process (pid {holder}); wait for it to "
                              f"finish, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def close(self) -> None:
        """Release the lock (the lock file stays: removing it would race with a waiting writer)."""
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._lock_fd = None

    def _repair(self) -> None:
        """Verify what a resume trusts: drop a torn last line (a kill mid-write), and set aside, in
        `samples.jsonl.set-aside` beside it (never silently kept or dropped), every line that does not parse, repeats
        a sample already on file, or reports a finished sample whose reconstruction file is gone; those samples are
        redone, so the file holds each sample once."""
        if not self.samples_path.exists():
            return
        text = self.samples_path.read_text()
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        keep, aside, seen = [], [], set()
        for line in text.splitlines():
            try:
                row = json.loads(line)
                index = int(row["index"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                aside.append(f"unreadable line: {line}")
                continue
            rec = row.get("reconstruction")
            if index in seen:
                aside.append(f"duplicate of sample {index}: {line}")
            elif row.get("status") == "ok" and isinstance(rec, str) and not (self.path / rec).is_file():
                aside.append(f"sample {index}: its reconstruction {rec} is missing: {line}")
            else:
                seen.add(index)
                keep.append(line)
        if aside:
            with open(self.path / f"{self.samples_path.name}.set-aside", "a") as f:
                f.write("".join(a + "\n" for a in aside))
        if aside or text != self.samples_path.read_text():
            write_atomic(self.samples_path, "".join(line + "\n" for line in keep))

    def all_samples(self) -> list[dict[str, Any]]:
        rows = []
        for p in sorted(self.path.glob("samples*.jsonl")):
            rows.extend(read_samples(p))
        return rows

    def finished(self) -> set[int]:
        return {int(r["index"]) for r in self.all_samples()}

    def traced(self) -> set[tuple[int, ...]]:
        """The batches (index tuples) whose adaptation trace is already written (by any rank)."""
        out = set()
        for p in self.path.glob("adaptation*.jsonl"):
            out |= {tuple(r["indices"]) for r in read_samples(p) if "indices" in r}
        return out

    def save_reconstruction(self, index: int, image: torch.Tensor) -> str:
        rel = f"reconstructions/{index:06d}.npy"
        tmp = self.path / f"{rel}.tmp.npy"
        np.save(tmp, image.detach().float().cpu().numpy())
        os.replace(tmp, self.path / rel)
        return rel

    def save_target(self, index: int, image: torch.Tensor) -> str:
        """RUN_DIR/targets/<index>.npy: the ground truth (float32 C, H, W, target units), so that a report of
        the run never depends on the dataset being present; written only after the reconstruction is made."""
        rel = f"targets/{index:06d}.npy"
        (self.path / "targets").mkdir(exist_ok=True)
        tmp = self.path / f"{rel}.tmp.npy"
        np.save(tmp, image.detach().float().cpu().numpy())
        os.replace(tmp, self.path / rel)
        return rel

    def append(self, row: dict[str, Any], path: Path | None = None) -> None:
        """Append one JSON line (to samples.jsonl by default) and fsync it."""
        with open(path or self.samples_path, "a") as f:
            f.write(json.dumps(_clean(row), default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_atomic(self.path / "summary.json", json.dumps(_clean(summary), indent=2))


def problem_info(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Mean over samples of each numeric `problem_*` fact (e.g. the realised acceleration), prefix dropped."""
    rows = list(rows)
    info = {}
    for k in sorted({k for r in rows for k in r if k.startswith("problem_")}):
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float))]
        if vals:
            info[k.removeprefix("problem_")] = sum(vals) / len(vals)
    return info


def aggregate(rows: Iterable[dict[str, Any]], metrics: Iterable[str] = METRICS) -> dict[str, Any]:
    """Mean and (population) std of each metric over the samples that finished with status ok."""
    rows = list(rows)
    ok = [r for r in rows if r.get("status") == "ok"]
    out: dict[str, Any] = {"n": len(rows), "n_ok": len(ok), "n_failed": len(rows) - len(ok), "metrics": {}}
    for m in metrics:
        vals = [float(r[m]) for r in ok if r.get(m) is not None]
        if vals:
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
            out["metrics"][m] = {"mean": mean, "std": std, "n": len(vals)}
        else:
            out["metrics"][m] = {"mean": None, "std": None, "n": 0}
    return out
