"""MkDocs hooks: the README is the site's home page, and GitHub's table escapes read as MkDocs reads them.

- `on_files`: the README becomes `index.md` with its `docs/` links made relative to the site, so the front page and
  the site's home cannot differ: there is one text, the README.
- `on_page_markdown`: GitHub needs `\\|` for a pipe inside a code span of a table cell; Python-Markdown splits cells
  outside code spans only and would show the backslash, so inside code spans of table rows `\\|` becomes `|`.
"""
from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

README = Path(__file__).resolve().parents[2] / "README.md"
CODE = re.compile(r"`[^`\n]*`")


def home_page(text: str) -> str:
    """The README's text as a page of the docs folder: `](docs/x.md)` -> `](x.md)`."""
    return re.sub(r"\]\(docs/", "](", text)


def unescape_table_code(markdown: str) -> str:
    """`\\|` -> `|` inside the code spans of table rows (lines starting with `|`)."""
    return "\n".join(CODE.sub(lambda m: m.group(0).replace("\\|", "|"), line) if line.startswith("|") else line
                     for line in markdown.split("\n"))


def on_files(files: Files, config) -> Files:
    if files.get_file_from_path("index.md") is None:
        files.append(File.generated(config, "index.md", content=home_page(README.read_text(encoding="utf-8"))))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    return unescape_table_code(markdown)
