"""Every fenced shell command of the README and docs/*.md runs, or says why it does not (tests/docs/commands.py).

Fast commands run in the default suite; commands marked `# slow: ...` run under `-m slow`, reduced when
MEDTTA_DOCS_QUICK=1 (the default); commands marked `# not run in tests: <reason>` are not run, and the reason must be
there. `test_counts` prints how many commands run, run slowly and are not run.
"""
from __future__ import annotations

import pytest

from tests.docs import conftest as report
from tests.docs.commands import blocks, needs, quick, quick_enabled, run_command, workspace

BLOCKS = blocks()


def _params():
    """One test per block and suite: its fast commands in the default suite; under -m slow, every command it runs
    (its fast ones too, in order, since a slow command may use what a fast one before it made)."""
    out = []
    for b in BLOCKS:
        kinds = {c.kind for c in b.commands}
        if kinds == {"skip"}:
            out.append(pytest.param(b, "skip", id=f"{b.page}:{b.line}:not-run"))
        if "fast" in kinds:
            out.append(pytest.param(b, "fast", id=f"{b.page}:{b.line}"))
        if "slow" in kinds:
            out.append(pytest.param(b, "slow", marks=pytest.mark.slow, id=f"{b.page}:{b.line}:slow"))
    return out


def test_the_pages_have_shell_commands():
    assert len(BLOCKS) >= 20 and {b.page for b in BLOCKS} >= {"README.md", "docs/cli.md", "docs/data.md"}


def test_every_marker_gives_its_reason():
    bad = [c.where for b in BLOCKS for c in b.commands if c.kind in ("skip", "slow") and not c.reason]
    assert not bad, f"a marker without its reason at {bad}"


def test_commands_that_cannot_run_here_are_marked_not_run():
    bad = [f"{c.where}: {c.text[:60]}... needs {', '.join(needs(c.text))}"
           for b in BLOCKS for c in b.commands if needs(c.text) and c.kind != "skip"]
    assert not bad, "mark these `# not run in tests: <reason>`:\n" + "\n".join(bad)


def test_counts(capsys):
    commands = [c for b in BLOCKS for c in b.commands]
    counts = {k: sum(c.kind == k for c in commands) for k in ("fast", "slow", "skip")}
    with capsys.disabled():
        print(f"\ndocs commands: {len(commands)} in {len(BLOCKS)} blocks: {counts['fast']} run in the default suite, "
              f"{counts['slow']} under -m slow, {counts['skip']} not run with a reason")
    assert counts["fast"] >= 10 and counts["slow"] >= 5 and sum(counts.values()) == len(commands)


def test_the_quick_rewrite():
    assert quick(["run", "--problem", "cs_mri", "--algo", "daps+tda", "--n", "8"]) == [
        "run", "--problem", "cs_mri", "--algo", "daps+tda", "--n", "1", "algorithm.n_steps=4",
        "algorithm.ode_steps=1", "algorithm.langevin_steps=4"]
    assert quick(["train-prior", "--out", "x", "--steps", "4200", "--resume"]) == [
        "train-prior", "--out", "x", "--steps", "2", "--resume", "--save-every", "1", "--samples", "1",
        "--sample-steps", "2"]
    assert quick(["export-data", "--n", "2", "--encoded", "640", "368", "size=320"]) == [
        "export-data", "--n", "1", "--encoded", "128", "73", "size=64"]


@pytest.mark.parametrize("block, suite", _params())
def test_documented_commands_run(block, suite, tmp_path, monkeypatch):
    if suite == "skip":
        pytest.skip("not run in tests: " + "; ".join(sorted({c.reason for c in block.commands})))
    cwd = workspace(tmp_path)
    monkeypatch.chdir(cwd)
    quick_mode = quick_enabled()
    for command in block.commands:
        if command.kind == "skip" or (suite == "fast" and command.kind != "fast"):
            continue
        code, output = run_command(command, cwd, quick_mode)
        if code != 0:
            report.FAILED.append(f"{command.where}: {command.text}")
        assert code == 0, f"{command.where}: `{command.text}` exited {code}:\n{output[-3000:]}"
        if command.kind == suite:
            report.RAN[suite] += 1
