"""The dependency rule (docs/design.md), read from the source with `ast`: every import of every product module, the
function-level ones included.

    inverse_problems, priors  ->  algorithms  ->  adaptation  ->  benchmarks (the harness)  <-  benchmarks.experiments

`inverse_problems` and `priors` know nothing of the rest and not of each other; `algorithms` imports no adaptation
or harness; `adaptation` no harness; nothing outside `benchmarks` imports hydra; the harness never imports its
experiments (the lab scripts use the harness, not the reverse); and no two modules import each other, directly or
round a longer circle.
"""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("inverse_problems", "priors", "algorithms", "adaptation", "configs", "benchmarks")
EXPERIMENTS = "benchmarks.experiments"
# what each package must not import (a package above it, or a sibling it must not know)
FORBIDDEN = {
    "inverse_problems": ("priors", "algorithms", "adaptation", "benchmarks"),
    "priors": ("inverse_problems", "algorithms", "adaptation", "benchmarks"),
    "algorithms": ("adaptation", "benchmarks"),
    "adaptation": ("benchmarks",),
    "configs": ("inverse_problems", "priors", "algorithms", "adaptation", "benchmarks"),  # yaml files and their folder
}
# known violations in code another change is rewriting: checked on their own, expected to fail until fixed there
# (strict: the check fails again, as a reminder to drop the mark, once the violation is gone)
PENDING: dict[str, str] = {}
LAYER_CHECKS = [pytest.param(area, package, id=area,
                             marks=[pytest.mark.xfail(strict=True, reason=PENDING[area])] if area in PENDING else [])
                for package in FORBIDDEN for area in [package, *(p for p in PENDING if p.startswith(package + "."))]]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def product_modules() -> dict[str, Path]:
    """Every product module (benchmarks.experiments excluded: the lab, not the product), by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = module_name(path)
            if not within(name, EXPERIMENTS):
                found[name] = path
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def imported_names(path: Path, module: str) -> list[tuple[str, int]]:
    """(dotted name, line) of everything a module imports, anywhere in it: `import a.b`, `from a import b` (as `a.b`:
    a submodule or an attribute of `a`), relative imports resolved, and `importlib.import_module("a.b")` with a
    literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out += [(f"{base}.{alias.name}" if alias.name != "*" else base, node.lineno) for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None) in
                   ("import_module", "__import__"))):
            out.append((node.args[0].value, node.lineno))
    return out


def resolve(name: str) -> str | None:
    """The product module an imported name lands in: the longest product module that is `name` or a prefix of it
    (`from a.b import f` lands in a.b; `from a import b`, b a submodule, in a.b); None for other libraries."""
    modules = product_modules()
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def import_graph() -> dict[str, dict[str, int]]:
    """{module: {imported product module: first line}} over the product modules."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in product_modules().items():
        edges = graph.setdefault(module, {})
        for name, line in imported_names(path, module):
            target = resolve(name)
            if target is not None and target != module:
                edges.setdefault(target, line)
    return graph


def where(module: str, line: int) -> str:
    return f"{product_modules()[module].relative_to(REPO)}:{line}"


def violations(area: str, banned: tuple[str, ...]) -> list[str]:
    """Imports of a banned package by the modules of `area` (less the pending areas inside it, checked on their own)."""
    pending = [p for p in PENDING if p != area and within(p, area)]
    return [f"{where(m, line)} imports {t}" for m, edges in import_graph().items()
            if within(m, area) and not any(within(m, p) for p in pending)
            for t, line in edges.items() if any(within(t, b) for b in banned)]


def test_the_modules_are_found_and_parsed():
    graph = import_graph()
    assert {"inverse_problems.operators.base", "priors.base", "algorithms.base", "adaptation.base",
            "benchmarks.runner", "configs"} <= set(graph)
    assert not any(within(m, EXPERIMENTS) for m in graph)
    assert "algorithms.base" in graph["adaptation.base"]  # imports are seen (adaptation wraps algorithms)


def test_imports_are_read_everywhere_in_a_module(tmp_path):
    """Top-level, function-level, relative and importlib imports are all seen (a planted module)."""
    path = tmp_path / "mod.py"
    path.write_text("import algorithms.base\nfrom . import sibling\nfrom ..operators import fft\n"
                    "def f():\n    from benchmarks.runner import execute\n"
                    "    return importlib.import_module('adaptation.base')\n")
    names = [n for n, _ in imported_names(path, "inverse_problems.problems.mod")]
    assert names == ["algorithms.base", "inverse_problems.problems.sibling", "inverse_problems.operators.fft",
                     "benchmarks.runner.execute", "adaptation.base"]
    assert resolve("benchmarks.runner.execute") == "benchmarks.runner" and resolve("torch.nn") is None


@pytest.mark.parametrize("area,package", LAYER_CHECKS)
def test_no_package_imports_one_above_it(area, package):
    found = violations(area, FORBIDDEN[package])
    assert not found, f"{area} must not import {', '.join(FORBIDDEN[package])}:\n" + "\n".join(found)


def test_nothing_below_the_harness_imports_hydra():
    """Components are plain classes with typed constructor arguments, usable from a notebook: hydra and its config
    library (omegaconf) belong to the harness."""
    found = [f"{where(m, line)} imports {name}" for m, path in product_modules().items()
             if not within(m, "benchmarks") for name, line in imported_names(path, m)
             if within(name, "hydra") or within(name, "omegaconf")]
    assert not found, "hydra belongs to the harness (benchmarks) alone:\n" + "\n".join(found)


def test_the_harness_never_imports_its_experiments():
    found = []
    for m, path in product_modules().items():
        found += [f"{where(m, line)} imports {name}" for name, line in imported_names(path, m)
                  if within(m, "benchmarks") and within(name, EXPERIMENTS)]
    assert not found, "the experiments use the harness, never the reverse:\n" + "\n".join(found)


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The import circles: one shortest circle through each strongly connected component of more than one module
    (Tarjan), as [m0, m1, ..., m0]."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # recursive: the graph is ~100 modules deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    circles = []
    for component in components:
        start, members = component[0], set(component)
        paths = {start: [start]}
        frontier = [start]
        circle = None
        while frontier and circle is None:  # breadth first: the shortest way back to `start`
            nxt = []
            for v in frontier:
                for w in sorted(graph.get(v, {})):
                    if w == start:
                        circle = paths[v] + [start]
                        break
                    if w in members and w not in paths:
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
                if circle:
                    break
            frontier = nxt
        circles.append(circle)
    return circles


def test_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1, "d": 1}, "d": {}, "e": {"e2": 1}, "e2": {"e": 1}}
    assert cycles(graph) == [["a", "b", "c", "a"], ["e", "e2", "e"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []


def test_no_import_circle():
    graph = import_graph()
    found = cycles(graph)
    lines = [" -> ".join(c) + "  (" + ", ".join(where(a, graph[a][b]) for a, b in zip(c, c[1:])) + ")" for c in found]
    assert not found, "modules that import each other (move what both need into a module below them):\n" + \
        "\n".join(lines)
