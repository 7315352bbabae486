"""The README and docs/*.md: results tables equal the generator's output, links resolve, the front page stays short."""
from __future__ import annotations

import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import yaml

from benchmarks.experiments import docs_tables

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def _headings(path: Path) -> set[str]:
    """The anchors MkDocs (Python-Markdown's toc) gives the page's headings."""
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^#{1,6}\s+(.*?)\s*$", line):  # Python-Markdown's toc slugify of the rendered text
            text = unicodedata.normalize("NFKD", re.sub(r"[`*]", "", m.group(1))).encode("ascii", "ignore").decode()
            out.add(re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower()))
    return out


def test_results_tables_equal_the_generators_output():
    """Every `<!-- results:NAME:start/end -->` block is what docs_tables.py writes from benchmarks/results/ (the
    script itself, `--check` and `--list`, runs as a documented command of docs/results.md)."""
    stale = docs_tables.stale()
    assert not stale, f"stale results tables {stale}: run python benchmarks/experiments/docs_tables.py"


def test_every_results_table_is_used_and_every_block_is_known():
    used = [name for page in [README, *DOCS] for name in docs_tables.blocks(page.read_text(encoding="utf-8"))]
    assert set(used) == set(docs_tables.TABLES), set(used) ^ set(docs_tables.TABLES)
    assert len(used) == len(set(used)), "a results table appears twice"
    assert "headline" in docs_tables.blocks(README.read_text(encoding="utf-8"))


def test_the_front_page_is_short_and_has_what_ci_reads():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    for cmd in ("setup", "main", "test"):
        out = subprocess.run([sys.executable, ".ci/readme.py", cmd], cwd=REPO, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    assert subprocess.run([sys.executable, ".ci/readme.py", "setup"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip() == "pip install -e ."
    assert subprocess.run([sys.executable, ".ci/readme.py", "main"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip() == "bench run --problem cs_mri --algo daps+tda"


def _prose(text: str) -> str:
    """The text without code: fenced blocks, indented (4-space) blocks and inline code spans."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("    "))
    return re.sub(r"`[^`\n]*`", "", text)


def test_links_resolve_inside_the_repository():
    bad = []
    for page in [README, *DOCS]:
        for m in LINK.finditer(_prose(page.read_text(encoding="utf-8"))):
            target = m.group("target")
            if re.match(r"^[a-z]+:", target):
                bad.append(f"{page.name}: {target} (a link outside the repository)")
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path) if path else page
            if not dest.is_file():
                bad.append(f"{page.name}: {target} (no such file)")
            elif page != README and dest.parent != REPO / "docs":
                bad.append(f"{page.name}: {target} (a docs page links to a file outside docs/)")
            elif anchor and dest.suffix == ".md" and anchor not in _headings(dest):
                bad.append(f"{page.name}: {target} (no such heading)")
    assert not bad, "\n".join(bad)


def test_every_page_is_in_the_site_and_the_design_page_exists():
    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    nav = {v for item in config["nav"] for v in item.values()}
    assert nav == {"index.md"} | {p.name for p in DOCS}, nav ^ ({"index.md"} | {p.name for p in DOCS})
    assert (REPO / "docs" / "design.md").is_file()
