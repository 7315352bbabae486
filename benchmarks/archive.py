"""`bench submit RUN_DIR -o entry.tar`: a run directory packed as a leaderboard entry, and its checked unpacking.

An entry is a tar file holding one folder, `<run name>/`, with what a leaderboard row needs and what `bench verify`
re-runs from: config.yaml, environment.json, samples*.jsonl, summary.json, and where the run has them
adaptation*.jsonl (what the adapters did: the leaderboard drops an adapter that adapted nothing), resumes.jsonl
and verify.json; with `--with-recons` also reconstructions/ and targets/ (the results page's figures, `bench
rescore`). Its first member is `<run name>/MANIFEST.json`:

    {"format": "medtta-bench entry 1", "run": "<run name>", "created": "<date>",
     "files": {"<path in the run folder>": "<sha256 of the file>", ...}}

`bench leaderboard` accepts entries beside run directories (`unpack`): every member must be a regular file or
folder inside the run folder (no links, no absolute or `..` paths), every file the manifest lists must be there
with its hash, and no other file may be: anything else is an ArchiveError naming the file. The row's run id is the
entry's path. `bench verify entry.tar` verifies an entry the same way and writes `entry.tar.verify.json` beside it,
which the leaderboard then reads in place of the verify.json packed in the entry.
"""
from __future__ import annotations

import atexit
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath

from benchmarks.results import CONFIG, RunDir, RunDirError, is_run_dir

FORMAT = "medtta-bench entry 1"
MANIFEST = "MANIFEST.json"
REQUIRED = ("config.yaml", "environment.json", "summary.json")
OPTIONAL = ("samples*.jsonl", "adaptation*.jsonl", "resumes.jsonl", "verify.json")
RECONS = ("reconstructions", "targets")
SUFFIXES = (".tar", ".tar.gz", ".tgz")

_UNPACKED: dict[Path, str] = {}  # unpacked run folder -> the entry it came from (the row's run id)


class ArchiveError(ValueError):
    """An entry that cannot be packed or accepted (the message names the file and the fix)."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_files(run: Path, with_recons: bool) -> list[str]:
    """The run folder's files an entry holds (paths relative to it, sorted); refuses a run missing a required one."""
    missing = [f for f in REQUIRED if not (run / f).is_file()]
    if missing:
        raise ArchiveError(f"{run}: no {', '.join(missing)}; an entry is made from a run that has written them "
                           f"(finish it with `bench run ... --resume`)")
    files = set(REQUIRED)
    for pattern in OPTIONAL:
        files |= {p.name for p in run.glob(pattern) if p.is_file()}
    if not any(f.startswith("samples") for f in files):
        raise ArchiveError(f"{run}: no samples.jsonl (no sample finished yet)")
    if with_recons:
        for folder in RECONS:
            files |= {p.relative_to(run).as_posix() for p in (run / folder).glob("*.npy") if p.is_file()}
    return sorted(files)


def pack(run_dir: str | Path, out: str | Path, with_recons: bool = False) -> tuple[Path, int]:
    """Write the entry of `run_dir` to `out` (module docstring); (its path, the number of files). The run must not
    be being written (its lock is taken while packing); the tar is written to a temporary file and renamed."""
    run, out = Path(run_dir), Path(out)
    if not is_run_dir(run):
        raise ArchiveError(f"{run} is not a run directory (no config.yaml of `bench run`); pass a run directory")
    if not out.name.endswith(SUFFIXES):
        raise ArchiveError(f"-o {out}: an entry's name ends in {', '.join(SUFFIXES)}")
    lock = RunDir(run)
    try:
        lock._lock()
    except RunDirError as exc:
        raise ArchiveError(f"{run} is still being written ({exc}); submit it when the run has finished") from None
    try:
        files = entry_files(run, with_recons)
        data = {f: (run / f).read_bytes() for f in files}
    finally:
        lock.close()
    name = run.resolve().name
    manifest = {"format": FORMAT, "run": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "files": {f: sha256(b) for f, b in data.items()}}
    members = [(MANIFEST, json.dumps(manifest, indent=2).encode()), *data.items()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w:gz" if out.name.endswith((".gz", ".tgz")) else "w") as tar:
            for rel, blob in members:
                info = tarfile.TarInfo(f"{name}/{rel}")
                info.size, info.mode, info.mtime = len(blob), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(blob))
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out, len(data)


def is_entry(path: Path) -> bool:
    """A file named like an entry (.tar, .tar.gz, .tgz)."""
    return path.is_file() and path.name.endswith(SUFFIXES)


def _member_path(entry: Path, member: tarfile.TarInfo) -> PurePosixPath:
    p = PurePosixPath(member.name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ArchiveError(f"{entry}: member {member.name!r} lies outside the run folder; the entry was not made by "
                           f"`bench submit`: refused")
    if not (member.isfile() or member.isdir()):
        raise ArchiveError(f"{entry}: member {member.name!r} is a link or special file; an entry holds regular files "
                           f"only: refused")
    return p


def _cleanup(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def unpack(entry: str | Path) -> Path:
    """The entry unpacked into a temporary folder (removed at exit) after every check of the module docstring;
    returns the run folder. Raises ArchiveError naming the file that does not match, is missing or is extra."""
    entry = Path(entry)
    try:
        tar = tarfile.open(entry)
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"{entry}: not a readable tar file ({exc}); pass an entry made by `bench submit`") from exc
    folder = tempfile.mkdtemp(prefix="bench-entry-")
    atexit.register(_cleanup, folder)
    root = Path(folder)
    with tar:
        tops = set()
        for member in tar.getmembers():
            p = _member_path(entry, member)
            tops.add(p.parts[0])
            if member.isfile():
                target = root.joinpath(*p.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                target.write_bytes(src.read() if src is not None else b"")
    if len(tops) != 1:
        raise ArchiveError(f"{entry}: holds {len(tops)} top folders ({sorted(tops)}); an entry holds one run folder")
    run = root / tops.pop()
    try:
        manifest = json.loads((run / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ArchiveError(f"{entry}: {run.name}/{MANIFEST} is missing or unreadable ({exc}); refused") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise ArchiveError(f"{entry}: {MANIFEST} is not a manifest of format {FORMAT!r}; refused")
    listed: dict[str, str] = manifest["files"]
    present = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()} - {MANIFEST}
    for rel in sorted(set(listed) - present):
        raise ArchiveError(f"{entry}: {rel} is listed in the manifest but missing from the entry; refused")
    for rel in sorted(present - set(listed)):
        raise ArchiveError(f"{entry}: {rel} is in the entry but not in its manifest; refused")
    for rel in sorted(listed):
        if sha256((run / rel).read_bytes()) != listed[rel]:
            raise ArchiveError(f"{entry}: {rel} does not match its sha256 in the manifest (changed after `bench "
                               f"submit`); refused")
    if not (run / CONFIG).is_file():
        raise ArchiveError(f"{entry}: holds no {CONFIG}; refused")
    _UNPACKED[run.resolve()] = str(entry)
    return run


def entry_run(path: Path) -> Path:
    """What `bench leaderboard` reads for a path it is given: an entry's checked run folder, else the path itself."""
    return unpack(path) if is_entry(path) else path


def verification_file(path: Path) -> Path:
    """Where `bench verify` writes and the leaderboard reads a run's verification: RUN_DIR/verify.json, or for an
    unpacked entry `<entry>.verify.json` beside the entry (the entry itself stays as its manifest says; a
    verification made by whoever received it takes the place of the one packed in it)."""
    entry = _UNPACKED.get(Path(path).resolve())
    return Path(f"{entry}.verify.json") if entry is not None else Path(path) / "verify.json"


def run_label(path: Path) -> str:
    """A run's id on the leaderboard: the entry it was unpacked from, else its folder."""
    return _UNPACKED.get(Path(path).resolve(), str(path))
