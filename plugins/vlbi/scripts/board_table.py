"""The VLBI plugin's board as a markdown table: one row per run directory (its summary.json), the problem's metrics
(mean ± std over the samples), NFE and seconds per sample. Usage: python board_table.py RUN_DIR... > board.md"""
from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("psnr_aligned", "psnr_blur10", "psnr_blur15", "psnr_blur20", "chi2_cp", "chi2_lcamp")


def row(run: Path) -> str:
    """One table row: the run's label (its folder name), n, the problem metrics, NFE and seconds per sample."""
    summary = json.loads((run / "summary.json").read_text())
    pm = summary["problem_metrics"]
    cells = [f"{pm[c]['mean']:.2f} ± {pm[c]['std']:.2f}" if pm.get(c) and pm[c]["mean"] is not None
             else "–" for c in COLUMNS]
    rows = [json.loads(s) for s in (run / "samples.jsonl").read_text().splitlines() if s.strip()]
    ok = [r for r in rows if r["status"] == "ok"]
    nfe = ok[0]["nfe"] if ok else "–"
    sec = sum(r["seconds"] for r in ok) / max(len(ok), 1)
    return f"| {run.name} | {summary['n_ok']}/{summary['n']} | " + " | ".join(cells) + f" | {nfe} | {sec:.1f} |"


def main(runs: list[str]) -> None:
    print("| run | ok/n | " + " | ".join(COLUMNS) + " | NFE | s/sample |")
    print("|---|---|" + "---|" * (len(COLUMNS) + 2))
    for r in runs:
        print(row(Path(r)))


if __name__ == "__main__":
    main(sys.argv[1:])
