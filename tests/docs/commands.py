"""The shell commands of the README and docs/*.md: extraction, markers, the quick rewrite, and running them.

A fenced block is a shell block when its info string is `bash`, `sh` or `console` (in a `console` block only lines
starting with `$ ` are commands). Lines ending in a backslash continue the command. Two comment lines mark the
commands after them in the block (up to the next marker):

    # not run in tests: <reason>     the commands are not run (the reason must be given)
    # slow: <how long>               the commands run under `-m slow`; with MEDTTA_DOCS_QUICK=1 (the default)
                                     reduced by `quick()`: --n 1, step budgets of a few steps, two training steps

Any other command is fast: it runs in the default suite. Commands of one block run in order, in one temporary
folder (so a block may make a run directory and report it), with the `bench` of the tree under test called in
this process (`benchmarks.cli.main`); `python SCRIPT` with a script of the repository runs that script. The folder
sees the repository's `tests/fixtures` (read-only use) so that documented example data can be named as in a clone.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>[A-Za-z]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
SHELL = {"bash", "sh", "console"}
SKIP = re.compile(r"#\s*not run in tests:\s*(?P<reason>.*)$")
SLOW = re.compile(r"#\s*slow:\s*(?P<reason>.*)$")
QUICK_ENV = "MEDTTA_DOCS_QUICK"

# programs the test runs; any other program must carry the not-run marker
RUNNABLE = {"bench", "python"}
# what needs a machine, data or network this test does not have: such a command must carry the not-run marker
NEEDS = [(re.compile(p), why) for p, why in [
    (r"^(pip|apt-get|apt|conda)\b", "installs packages"),
    (r"^(torchrun|accelerate|srun|sbatch|mpirun)\b", "several processes or a cluster"),
    (r"--device[ =](cuda|mps)", "a GPU"),
    (r"launcher=(slurm_example|submitit_slurm)", "a SLURM cluster"),
    (r"=DIR\b|PATH/TO|\.pkl\b|ffhq_10m\.pt|mri-knee\.pt", "data or checkpoints you bring"),
    (r"^mkdocs\b", "the [docs] extra"),
    (r"-m pytest\b", "the test suite itself"),
]]

# MEDTTA_DOCS_QUICK: budgets of a few steps per component of `--algo` (only the components a command names)
QUICK_OPTIONS = {
    "daps": {"algorithm.n_steps": "4", "algorithm.ode_steps": "1", "algorithm.langevin_steps": "4"},
    "dps": {"algorithm.n_steps": "8"},
    "diffpir": {"algorithm.n_steps": "4"},
    "ddrm": {"algorithm.n_steps": "4"},
    "interp-io": {"algorithm.steps": "20"},
    "diffdeur": {"algorithm.n_steps": "3", "algorithm.inr_iters": "5"},
    "fine": {"adapters.fine.epochs": "1"},
    "ssdu": {"adapters.ssdu.epochs": "1"},
    "nr2n": {"adapters.nr2n.epochs": "1"},
    "mr-inr": {"adapters.mr-inr.epochs": "1"},
    "sst": {"adapters.sst.max_iters": "3", "adapters.sst.start": "2", "adapters.sst.window": "1"},
    "dip-ttt": {"adapters.dip-ttt.max_iters": "3", "adapters.dip-ttt.start": "2", "adapters.dip-ttt.window": "1"},
}
QUICK_FLAGS = {  # verb -> {flag: value}; flags of `bench train-*` only where the command does not --resume
    "run": {"--n": "1"},
    "tune": {"--trials": "2", "--n-val": "1"},
    "train-prior": {"--steps": "2", "--n-images": "8", "--batch-size": "4", "--save-every": "1", "--samples": "1",
                    "--sample-steps": "2"},
    "train-recon": {"--steps": "2", "--n-images": "4", "--n-val": "2", "--batch-size": "2", "--save-every": "1"},
    "export-data": {"--n": "1"},
}
RESUMABLE = {"--steps", "--save-every", "--samples", "--sample-steps"}  # what a --resume leg may change
QUICK_SIZES = {"size=320": "size=64", "dataset.size=320": "dataset.size=64", "problem.size=320": "problem.size=64"}


@dataclass
class Command:
    page: str
    line: int
    text: str
    kind: str = "fast"  # fast | slow | skip
    reason: str = ""

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass
class Block:
    page: str
    line: int
    commands: list[Command] = field(default_factory=list)

    @property
    def kind(self) -> str:
        kinds = {c.kind for c in self.commands}
        return "slow" if "slow" in kinds else "fast" if "fast" in kinds else "skip"


def parse_block(body: str, page: str, line: int, lang: str = "bash") -> Block:
    """The commands of one fenced block, each with the marker in force above it."""
    block = Block(page, line)
    kind, reason, pending, start = "fast", "", "", 0
    for i, raw in enumerate(body.splitlines()):
        text = raw.strip()
        if lang == "console" and not pending:
            if not text.startswith("$ "):
                continue
            text = text[2:]
        if not pending:
            if not text:
                continue
            if text.startswith("#"):
                if m := SKIP.match(text):
                    kind, reason = "skip", m.group("reason").strip()
                elif m := SLOW.match(text):
                    kind, reason = "slow", m.group("reason").strip()
                continue
            start = line + 1 + i
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        block.commands.append(Command(page, start, pending + text, kind, reason))
        pending = ""
    return block


def blocks(pages: list[Path] = PAGES) -> list[Block]:
    out = []
    for path in pages:
        text = path.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if m.group("lang") in SHELL:
                line = text.count("\n", 0, m.start()) + 1
                out.append(parse_block(m.group("body"), path.relative_to(REPO).as_posix(), line, m.group("lang")))
    return out


def needs(command: str) -> list[str]:
    """What a command needs that this test does not have (empty: it can run here)."""
    found = [why for pattern, why in NEEDS if pattern.search(command)]
    for part in split_and(command):
        words = shlex.split(part, comments=True)
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            words = words[1:]
        if words and words[0] not in RUNNABLE:
            found.append(f"the program {words[0]!r}")
    return found


def split_and(command: str) -> list[str]:
    return [p.strip() for p in re.split(r"\s&&\s", command) if p.strip()]


def quick_enabled() -> bool:
    return os.environ.get(QUICK_ENV, "1") != "0"


def _set_flag(args: list[str], flag: str, value: str) -> list[str]:
    if flag in args:
        i = args.index(flag)
        return args[:i + 1] + [value] + args[i + 2:]
    return args + [flag, value]


def quick(args: list[str]) -> list[str]:
    """`bench` arguments reduced for MEDTTA_DOCS_QUICK: fewer samples, steps and images, 320 px at 64 px."""
    if not args:
        return args
    verb = args[0]
    args = [QUICK_SIZES.get(a, a) for a in args]
    if "--encoded" in args:  # an encoded matrix for 320 px images -> for 64 px
        i = args.index("--encoded")
        args[i + 1:i + 3] = [str(int(args[i + 1]) // 5), str(int(args[i + 2]) // 5)]
    resume = "--resume" in args
    for flag, value in QUICK_FLAGS.get(verb, {}).items():
        if verb.startswith("train-") and resume and flag not in RESUMABLE:
            continue
        args = _set_flag(args, flag, value)
    if "--algo" in args:
        parts = re.split(r"[+,]", args[args.index("--algo") + 1])
        options = {k: v for p in parts for k, v in QUICK_OPTIONS.get(p, {}).items()}
        for key, value in options.items():
            found = [i for i, a in enumerate(args) if a.startswith(key + "=")]
            if found:
                args[found[0]] = f"{key}={value}"
            else:
                args.append(f"{key}={value}")
    return args


def bench(args: list[str]) -> tuple[int, str]:
    """`bench ARGS` in this process (the source tree's `benchmarks.cli.main`): exit code and captured output."""
    from benchmarks.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(list(args))
        except SystemExit as e:  # --help, argparse errors
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return int(code or 0), out.getvalue()


def run_command(command: Command, cwd: Path, quick_mode: bool) -> tuple[int, str]:
    """Run one documented command (all its `&&` parts) in `cwd`; the first failing part's code and output."""
    output = ""
    for part in split_and(command.text):
        words = shlex.split(part, comments=True)
        env = {}
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        program, args = words[0], words[1:]
        if program == "python" and args[:2] == ["-m", "benchmarks.cli"]:
            program, args = "bench", args[2:]
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            if program == "bench":
                code, out = bench(quick(args) if quick_mode and command.kind == "slow" else args)
            elif program == "python":
                script = REPO / args[0]
                if not script.is_file():
                    return 1, f"{command.where}: python {args[0]}: not a file of the repository"
                proc = subprocess.run([sys.executable, str(script), *args[1:]], cwd=cwd, capture_output=True,
                                      text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
                code, out = proc.returncode, proc.stdout + proc.stderr
            else:
                return 1, f"{command.where}: the test does not run {program!r}; mark the command not run"
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        output += out
        if code != 0:
            return code, output
    return 0, output


def workspace(tmp: Path) -> Path:
    """A temporary folder that sees the repository's test fixtures under their documented path."""
    (tmp / "tests").mkdir(exist_ok=True)
    link = tmp / "tests" / "fixtures"
    if not link.exists():
        link.symlink_to(REPO / "tests" / "fixtures", target_is_directory=True)
    return tmp
