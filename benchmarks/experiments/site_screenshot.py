"""Build the results page of a set of runs and take the README's screenshot of it in headless Chromium.

    python benchmarks/experiments/site_screenshot.py [RUNS...] [--site /tmp/medtta-site] [--png benchmarks/results/site.png]

RUNS default to benchmarks/results/runs/test (what benchmarks/experiments/leaderboard_runs.py writes). Needs Debian's
chromium and the playwright package (the `test` extra); no browser download.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from benchmarks import leaderboard, site

RESULTS = Path(__file__).resolve().parents[1] / "results"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", default=[str(RESULTS / "runs" / "test")])
    ap.add_argument("--site", default="/tmp/medtta-site")
    ap.add_argument("--png", default=str(RESULTS / "site.png"))
    ap.add_argument("--problem", default="cs_mri", help="the problem filter shown in the screenshot")
    args = ap.parse_args()
    out = Path(args.site)
    if out.exists():
        shutil.rmtree(out)
    site.write_site(leaderboard.build(args.runs), out)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.goto((out / "index.html").as_uri())
        tab.wait_for_load_state("load")
        tab.select_option("#filter-problem", args.problem)
        tab.locator("#board thead th", has_text="PSNR").click()
        tab.locator("#board thead th", has_text="PSNR").click()  # descending: best first
        tab.screenshot(path=args.png)
        browser.close()
    print(f"page -> {out / 'index.html'}; screenshot -> {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
