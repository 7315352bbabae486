"""The registry as the tests see it: this source tree's pyproject.toml entry points, and the completeness check of a
battery (every component the project registers in a group goes through it, DeepInverse-style)."""
from __future__ import annotations

from collections.abc import Iterable

from tests.helpers.cli import REPO

PROJECT = "medtta-bench"


def source_entry_points() -> dict[str, dict[str, str]]:
    """The entry points this source tree's pyproject.toml declares, {group: {name: "module:attr"}}."""
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    return {g.removeprefix("medtta_bench."): dict(eps) for g, eps in declared.items() if g.startswith("medtta_bench.")}


def project_names(group: str) -> list[str]:
    """The names of a group that this project registers (the registry's, less any installed plugin's)."""
    from benchmarks import registry

    return [n for n in registry.names(group) if registry.distribution(group, n) == PROJECT]


def assert_covered(group: str, covered: Iterable[str], battery: str, names: Iterable[str] | None = None) -> None:
    """Every registered `group` entry of the project (or every one of `names`) is among `covered`, the entries the
    battery runs; else fail naming the missing ones and where to add them."""
    missing = sorted(set(project_names(group) if names is None else names) - set(covered))
    assert not missing, (f"registered {group} not put through {battery}: {', '.join(missing)}; add a case for each "
                         f"(a new component is tested like its peers)")
