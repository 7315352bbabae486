"""The `bench` command line run in the test process, its output captured."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bench(*args: str, plugin: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the `bench` CLI in this process (with the test plugin importable if asked); capture its output."""
    import contextlib
    import io

    from benchmarks.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = list(sys.path)
    if plugin is not None:
        sys.path.insert(0, str(plugin))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        sys.path[:] = saved
    res = subprocess.CompletedProcess(["bench", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"bench {' '.join(args)} failed ({code}):\n{res.stdout}\n{res.stderr}")
    return res
