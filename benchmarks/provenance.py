"""The code that made a run, recorded in its environment.json (`code`) so that `bench verify` can say which source
file changed since:

    code = {"fingerprint": "sha256:" + sha256 over the sorted (path, sha256 of the file) pairs,
            "files": {path relative to the repository: sha256 of the file}}

The files are the sources of the project's modules loaded when the run directory is made (after the components
were built: the problem, dataset, algorithm, prior and adapters with everything they import, and the harness),
so a change to a module the run never used does not count, nor one of the harness modules that only present or
check results (`PRESENTING`: the command line, leaderboard, results page, report, verify, ...). The
resolved config.yaml and the prior's fingerprint (benchmarks.fingerprint) cover the rest of what changes a number.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("inverse_problems", "priors", "algorithms", "adaptation", "benchmarks", "configs")
# harness modules that present, store or check results and compute no number of a sample
PRESENTING = frozenset(f"benchmarks.{m}" for m in (
    "cli", "leaderboard", "site", "report", "verify", "archive", "rescore", "progress", "suites", "sweep", "tune",
    "finish", "train_prior_cli", "train_recon_cli", "provenance"))


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def loaded_sources() -> list[Path]:
    """The source files of the project's modules in sys.modules (only those in PACKAGES, below the repository)."""
    out = set()
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in PACKAGES or name in PRESENTING:
            continue
        f = getattr(module, "__file__", None)
        if not f:
            continue
        p = Path(f).resolve()
        if p.suffix == ".py" and p.is_file() and REPO in p.parents:
            out.add(p)
    return sorted(out)


def fingerprint_of(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel} {files[rel]}\n".encode())
    return "sha256:" + h.hexdigest()


def code_record() -> dict[str, object]:
    """{fingerprint, files} of the loaded project modules (module docstring)."""
    files = {p.relative_to(REPO).as_posix(): file_hash(p) for p in loaded_sources()}
    return {"fingerprint": fingerprint_of(files), "files": files}


def changed_files(recorded: dict[str, str]) -> list[str]:
    """The recorded files whose source in this checkout differs (or is gone), each `path (changed|missing)`."""
    out = []
    for rel, digest in sorted(recorded.items()):
        p = REPO / rel
        if not p.is_file():
            out.append(f"{rel} (missing)")
        elif file_hash(p) != digest:
            out.append(f"{rel} (changed)")
    return out
