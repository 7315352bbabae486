"""The end of a run, shared by `bench run` (cli) and each job of `bench run -m` (sweep): merge the ranks' samples and
print the run's table. A module of its own so that neither of the two imports the other."""
from __future__ import annotations

from pathlib import Path


def print_run(cfg, out: Path, summary, job: list[str]) -> None:
    """The run's title line (and its job's overrides in a sweep), then its summary table."""
    from benchmarks.progress import run_heading
    from benchmarks.summary import format_table

    print(f"\n{run_heading(cfg, out)}" + (f"  [{' '.join(job)}]" if job else ""))
    print(format_table(summary))


def merge_ranks(cfg, out: Path, world: int, timeout: float = 7 * 24 * 3600):
    """Rank 0: wait for every process's done-marker, then summarise the merged samples files."""
    import time

    from benchmarks.results import RunDir
    from benchmarks.summary import summarise

    start = time.time()
    while not all((out / f"rank{r}.done").exists() for r in range(world)):
        if time.time() - start > timeout:
            raise RuntimeError(f"ranks did not finish within {timeout:.0f} s")
        time.sleep(0.5)
    for r in range(world):
        (out / f"rank{r}.done").unlink()
    return summarise(cfg, RunDir(out), cfg.run.device)
