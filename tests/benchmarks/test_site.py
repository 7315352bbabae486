"""The results page (`bench leaderboard --html`): its files, and its behaviour in a real headless Chromium."""
from __future__ import annotations

import contextlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks import leaderboard, site
from tests.helpers import bench

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SMALL = ("--n", "2", "--quiet", "problem.size=16", "dataset.size=16")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Three tiny real runs: inpainting with zero-filled and TV, and cs_mri (single-coil) with CG-SENSE only."""
    root = tmp_path_factory.mktemp("site_runs")
    bench("run", "--problem", "inpainting", "--algo", "zero-filled", "--out", str(root / "inp-zf"), *SMALL)
    bench("run", "--problem", "inpainting", "--algo", "tv", "--out", str(root / "inp-tv"), *SMALL)
    bench("run", "--problem", "cs_mri", "--algo", "cg-sense", "--out", str(root / "cs-cg"), *SMALL, "problem.coils=1")
    return root


@pytest.fixture(scope="module")
def page(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "html"
    res = bench("leaderboard", str(runs), "-o", str(out.parent / "lb.json"), "--html", str(out))
    assert "results page ->" in res.stdout
    return out


def test_page_files(runs, page):
    """Every link and image of the page is a file inside the site; configs are copies; nothing is fetched."""
    text = (page / "index.html").read_text()
    assert "http://" not in text and "https://" not in text
    refs = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert any(r.endswith(".png") for r in refs) and any(r.startswith("configs/") for r in refs)
    for ref in refs:
        assert (page / ref).is_file(), ref
    for name in ("inp-zf", "inp-tv", "cs-cg"):
        [copy] = page.glob(f"configs/*-{name}/config.yaml")
        assert copy.read_bytes() == (runs / name / "config.yaml").read_bytes()
    board = json.loads((page / "leaderboard.json").read_text())
    assert len(board["entries"]) == 3
    assert len(re.findall(r"<tr data-problem=", text)) == 3
    # the cs_mri setting has no zero-filled run: the page says so; the inpainting setting has one
    sections = dict(re.findall(r'<section class="setting" data-problem="(\w+)"(.*?)</section>', text, re.S))
    assert sorted(sections) == ["cs_mri", "inpainting"]
    assert "no zero-filled column" in sections["cs_mri"] and "no zero-filled column" not in sections["inpainting"]
    assert "samples.png" in sections["inpainting"] and "curves.png" in sections["inpainting"]


def test_grid_rows_and_shared_colour_bars(runs):
    """The grid has one row per image source (target, zero-filled, TV), images then errors per sample, and
    exactly two colour bars: intensity and |error|."""
    board = leaderboard.build([runs / "inp-zf", runs / "inp-tv"])
    zf, tv = (site._first_run(e) for e in sorted(board["entries"], key=lambda e: not site.is_zero_filled(e)))
    targets = {i: np.load(runs / "inp-tv" / "targets" / f"{i:06d}.npy") for i in (0, 1)}
    fig = site.samples_grid([("tv", *tv)], [0, 1], targets, zf, "t")
    labels = [a.get_xlabel() for a in fig.axes]
    assert labels.count("intensity") == 1 and labels.count("|error|") == 1
    assert len(fig.axes) == 3 * 4 + 2
    grid = fig.axes[:12]
    assert [a.get_ylabel() for a in grid[::4]] == ["target", "zero-filled", "tv"]
    error_tv0 = grid[2 * 4 + 2].get_images()[0].get_array()
    recon = np.load(runs / "inp-tv" / "reconstructions" / "000000.npy")[0]
    np.testing.assert_allclose(error_tv0, np.abs(recon - targets[0][0]), rtol=1e-6)


def test_folder_rules(runs, page, tmp_path):
    """A non-empty folder that holds no page is refused; a page is rewritten in place without stale files."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    res = bench("leaderboard", str(runs), "-o", str(tmp_path / "lb.json"), "--html", str(tmp_path / "mine"),
                check=False)
    assert res.returncode == 2 and "not empty" in res.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    again = tmp_path / "again"
    shutil.copytree(page, again)
    (again / "figures" / "stale.png").write_bytes(b"x")
    site.write_site(leaderboard.build([runs / "inp-tv"]), again)
    assert not (again / "figures" / "stale.png").exists()
    assert len(re.findall(r"<tr data-problem=", (again / "index.html").read_text())) == 1


def _browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium); .ci/run installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is absent (pip install playwright, the `test` extra)")
    return sync_playwright


@contextlib.contextmanager
def _tab(page: Path):
    """A headless Chromium tab on the page's index.html, and the list its console errors, page errors and failed
    loads go to."""
    sync_playwright = _browser()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("requestfailed", lambda r: errors.append(f"failed to load {r.url}"))
            tab.goto((page / "index.html").as_uri())
            tab.wait_for_load_state("load")
            yield tab, errors
        finally:
            browser.close()


def test_page_in_headless_chromium(page, tmp_path):
    """Loads with no console error; a header click reorders rows; filters hide rows; a screenshot is taken."""
    with _tab(page) as (tab, errors):

        def column(name: str) -> list[str]:
            col = tab.eval_on_selector_all("#board thead th", "hs => hs.map(h => h.textContent.trim())").index(name)
            return tab.eval_on_selector_all(
                "#board tbody tr:not([hidden])", f"rs => rs.map(r => r.cells[{col}].dataset.v)")

        before = column("method")
        psnr_head = tab.locator("#board thead th", has_text="PSNR")
        psnr_head.click()
        up, order_up = [float(v) for v in column("PSNR")], column("method")
        assert up == sorted(up) and len(set(up)) == 3 and psnr_head.get_attribute("aria-sort") == "ascending"
        psnr_head.click()
        down, order_down = [float(v) for v in column("PSNR")], column("method")
        assert down == up[::-1] and order_down == order_up[::-1] and order_up != order_down
        tab.locator("#board thead th", has_text="method").click()
        assert column("method") == sorted(before)

        tab.select_option("#filter-problem", "inpainting")
        assert column("problem") == ["inpainting", "inpainting"]
        assert tab.locator("#count").inner_text() == "2 of 3 rows"
        assert tab.locator("section.setting[data-problem=cs_mri]").is_hidden()
        tab.fill("#filter-text", "tv")
        assert column("method") == ["tv"]
        tab.select_option("#filter-problem", "")
        tab.fill("#filter-text", "")
        assert len(column("method")) == 3

        assert all(tab.eval_on_selector_all("img", "is => is.map(i => i.complete && i.naturalWidth > 0)"))
        shot = tmp_path / "site.png"
        tab.screenshot(path=str(shot), full_page=True)
        tab.locator("#board tbody tr a").first.click()
        tab.wait_for_load_state("load")
        assert "names:" in tab.locator("pre").first.inner_text()
        assert errors == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_entries_read_defensively(tmp_path):
    """Runs without reconstructions, and entries with fields added later (tier, scheme, a prior hash, tuning),
    still give a page: the new fields are shown and filterable, the missing figures are explained."""
    from tests.helpers import fake_run

    fake_run(tmp_path / "runs" / "a", "daps", [30.0, 32.0])
    fake_run(tmp_path / "runs" / "b", "daps", [20.0], adapters=["tda"], shift="contrast")
    board = leaderboard.build([tmp_path / "runs"])
    measured = next(e for e in board["entries"] if e["adapters"] == "tda")
    measured.update({"tier": "measured", "scheme": "online", "prior_hash": "0123456789abcdef",
                     "tuning": {"split": "val", "by": "psnr"}})
    text = site.write_site(board, tmp_path / "html").read_text()
    assert '<option value="measured">measured</option>' in text and '<option value="simulated">' in text
    assert ">scheme</th>" in text and ">tuning</th>" in text and "p [01234567]" in text
    row = re.search(r'<tr data-problem="cs_mri" data-shift="contrast" data-tier="measured">(.*?)</tr>', text).group(1)
    assert ">online<" in row and ">tuned on val, None trials: defaults kept<" in row  # the leaderboard's tuning label
    assert text.count("no saved reconstructions") == 2 and text.count("curves.png") == 2
    assert "samples.png" not in text


def test_matrices_link_each_cell_to_its_row_page(page):
    """One matrix per problem family above the table; every cell links to rows/<row_id>.html, whose own links (the
    run's config, the setting's figures, the way back) are files inside the site; one best cell per column is bold."""
    text = (page / "index.html").read_text()
    assert text.index('<table class="matrix"') < text.index('<table id="board">')
    assert re.findall(r'<table class="matrix" data-family="(\w+)"', text) == ["cs_mri", "inpainting"]
    cells = re.findall(r'<td class="num"><a href="(rows/r[0-9a-f]+\.html)">(.*?)</a></td>', text)
    assert len(cells) == 3 and text.count("<strong>") == 2 + 1  # a best per matrix column, and the legend's "Bold"
    for ref, shown in cells:
        assert re.match(r"(<strong>)?-?[0-9.]+ \[[-0-9.]+, [-0-9.]+\] n=2", shown), shown
        row = (page / ref).read_text()
        refs = re.findall(r'(?:src|href)="([^"]+)"', row)
        assert "../index.html" in refs and any(r.startswith("../configs/") for r in refs)
        for r in refs:
            assert (page / "rows" / r).is_file(), r
        assert "http://" not in row and "https://" not in row
    inpainting = [(page / ref).read_text() for ref, _ in cells if "inpainting" in (page / ref).read_text()]
    assert len(inpainting) == 2 and all("samples.png" in r for r in inpainting)


def test_a_matrix_cell_click_opens_its_row_in_headless_chromium(page):
    with _tab(page) as (tab, errors):
        tab.locator('table.matrix[data-family="inpainting"] td a', has_text="[").first.click()
        tab.wait_for_load_state("load")
        assert "/rows/r" in tab.url and tab.locator("h1").inner_text() in ("tv", "zero-filled")
        assert all(tab.eval_on_selector_all("img", "is => is.map(i => i.complete && i.naturalWidth > 0)"))
        tab.locator("a", has_text="← results").click()
        tab.wait_for_load_state("load")
        assert tab.url.endswith("/index.html") and errors == []
