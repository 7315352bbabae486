"""Print a command of the README, so that CI runs what a newcomer reads (the two cannot drift).

`setup`: the README's set-up line (`pip install ...` in the set-up block); `main`: the main command (`bench run ...`
in the same block); `test`: the test command (the block under "## Tests").
"""
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def block_after(heading: str) -> list[str]:
    """The lines of the first fenced shell block below the README heading that starts with `heading`."""
    text = README.read_text()
    start = re.search(rf"^## {re.escape(heading)}.*$", text, re.M)
    if start is None:
        sys.exit(f"README.md has no '## {heading}' section")
    block = re.search(r"^```(?:bash|sh|console)?\n(.*?)^```", text[start.end():], re.M | re.S)
    if block is None:
        sys.exit(f"README.md's '## {heading}' section has no fenced shell block")
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def main(which: str) -> str:
    lines = block_after("Tests" if which == "test" else "Set-up")
    prefix = {"setup": "pip install", "main": "bench run", "test": ""}[which]
    found = [line for line in lines if line.startswith(prefix)]
    if not found:
        sys.exit(f"README.md's set-up block has no line starting with {prefix!r}")
    return found[0] if which != "test" else " && ".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1]))
