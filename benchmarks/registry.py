"""One registry for built-ins and plugins: Python entry points (DESIGN.md, "Registration").

Group `medtta_bench.<group>` for group in problems, priors, algorithms, adapters, datasets. The
project's own pyproject registers the built-ins; a third-party distribution adds components by
declaring entry points in the same groups.
"""
from __future__ import annotations

import inspect
from importlib import metadata
from typing import Any

GROUPS = ("problems", "priors", "algorithms", "adapters", "datasets")
# the config group (configs/<dir>/) of each registry group
CONFIG_DIR = {"problems": "problem", "priors": "prior", "algorithms": "algorithm", "adapters": "adapter",
              "datasets": "dataset"}


class RegistryError(LookupError):
    """An unknown group or name; the message lists the valid ones."""


def _group(group: str) -> str:
    if group not in GROUPS:
        raise RegistryError(f"unknown group {group!r}; valid groups: {', '.join(GROUPS)}")
    return group


def _dist_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else "?"


def entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    """All entry points of a group, by name; a name declared by two distributions is an error naming both
    (neither may silently shadow the other)."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=f"medtta_bench.{_group(group)}"):
        prev = found.setdefault(ep.name, ep)
        if prev is not ep and (_dist_name(prev), prev.value) != (_dist_name(ep), ep.value):
            raise RegistryError(
                f"{group[:-1]} {ep.name!r} is registered twice in entry-point group medtta_bench.{group}: by "
                f"distribution {_dist_name(prev)!r} ({prev.value}) and by distribution {_dist_name(ep)!r} "
                f"({ep.value}); uninstall one of them or rename the plugin's entry point")
    return dict(sorted(found.items()))


def names(group: str) -> list[str]:
    return list(entry_points(group))


def load(group: str, name: str) -> Any:
    """The registered class or factory; an unknown name raises an error that lists the valid ones."""
    eps = entry_points(group)
    if name not in eps:
        singular = group[:-1]
        raise RegistryError(
            f"unknown {singular} {name!r}; valid {group}: {', '.join(eps) or '(none)'} (see `bench list {group}`)"
        )
    try:
        return eps[name].load()
    except Exception as exc:  # a broken plugin must say which one it is
        raise RegistryError(f"{group[:-1]} {name!r} ({eps[name].value}) failed to load: {exc}") from exc


def describe(group: str, name: str) -> str:
    """The first line of the component's docstring, or the load error."""
    try:
        obj = load(group, name)
    except RegistryError as exc:
        return f"(broken: {exc})"
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def distribution(group: str, name: str) -> str:
    return _dist_name(entry_points(group)[name])


def build(group: str, name: str, **kwargs: Any) -> Any:
    """Instantiate a component with keyword arguments, naming bad keys and the valid ones."""
    factory = load(group, name)
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        sig = None
    if sig is not None and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        unknown = sorted(set(kwargs) - set(sig.parameters))
        if unknown:
            valid = [p for p in sig.parameters if p not in ("self",)]
            raise TypeError(
                f"{group[:-1]} {name!r} takes no option {', '.join(map(repr, unknown))}; its options are: "
                f"{', '.join(valid) or '(none)'}"
            )
    return factory(**kwargs)
