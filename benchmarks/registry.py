"""One registry for built-ins and plugins: Python entry points (docs/design.md, "Registration").

Group `medtta_bench.<group>` for group in problems, priors, algorithms, adapters, datasets. The
project's own pyproject registers the built-ins; a third-party distribution adds components by
declaring entry points in the same groups.
"""
from __future__ import annotations

import ast
import collections.abc
import importlib.machinery
import importlib.util
import inspect
import math
import sys
import types
import typing
from importlib import metadata
from pathlib import Path
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


_SCAN: list[Any] = [None, None]  # (sys.path at the scan, every installed entry point then)


def _installed_entry_points() -> metadata.EntryPoints:
    """Every installed distribution's entry points, scanned once per `sys.path` (a plugin directory put on the path
    triggers a new scan): one scan of the installed distributions serves all of a command's look-ups."""
    key = tuple(sys.path)
    if _SCAN[0] != key:
        _SCAN[:] = [key, metadata.entry_points()]
    return _SCAN[1]


def entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    """All entry points of a group, by name; a name declared by two distributions is an error naming both
    (neither may silently shadow the other)."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in _installed_entry_points().select(group=f"medtta_bench.{_group(group)}"):
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


def load_optional(group: str, name: str) -> Any:
    """`load`, or None where the name is not registered (e.g. the problem of a run made with a removed plugin)."""
    try:
        return load(group, name)
    except RegistryError:
        return None


def describe(group: str, name: str) -> str:
    """The first line of the component's docstring, or the load error.

    Read from the entry point's source file with `ast`, without importing it (so `bench list` does not
    import torch); a component whose docstring is not there to read (no source file, an object built by
    an assignment, an inherited docstring) is imported and asked with inspect.getdoc.
    """
    eps = entry_points(group)
    return _describe(group, name, eps[name] if name in eps else None)


def _describe(group: str, name: str, ep: metadata.EntryPoint | None) -> str:
    doc = source_docstring(ep.value) if ep is not None else None
    if doc is None:
        try:
            obj = load(group, name)
        except RegistryError as exc:
            return f"(broken: {exc})"
        doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def listing(group: str) -> list[tuple[str, str, str]]:
    """(name, description, distribution) of every component of a group, from one scan of the entry points."""
    return [(name, _describe(group, name, ep), _dist_name(ep)) for name, ep in entry_points(group).items()]


def module_source(module: str) -> Path | None:
    """The source file of a module, found without importing it or its parent packages (None if there is none).

    importlib.util.find_spec("a.b") would import package `a`; here only the top-level name goes through
    find_spec (which does not run it), and each level below is looked up in its parent's folders.
    """
    if module in sys.modules:
        origin = getattr(sys.modules[module], "__file__", None)
        return Path(origin) if origin and origin.endswith(".py") else None
    parts = module.split(".")
    try:  # a top-level name is found without running it (by every finder: an editable install has its own)
        spec = importlib.util.find_spec(parts[0])
        for depth in range(1, len(parts)):
            if spec is None or not spec.submodule_search_locations:
                return None
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth + 1]),
                                                            list(spec.submodule_search_locations))
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def source_docstring(value: str) -> str | None:
    """The docstring of the class or function an entry-point value 'module:attr' names, read with `ast`.

    None when it cannot be read that way: no source, a syntax error, `attr` not a top-level class or
    function definition, or no docstring written there (inspect.getdoc would look in the base classes).
    """
    module, _, attr = value.partition(":")
    path = module_source(module.strip())
    if path is None or not attr:
        return None
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    target = attr.strip()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == target:
            doc = ast.get_docstring(node)
            return inspect.cleandoc(doc) if doc else None
    return None


def distribution(group: str, name: str) -> str:
    return _dist_name(entry_points(group)[name])


def build(group: str, name: str, **kwargs: Any) -> Any:
    """Instantiate a component with keyword arguments, naming bad keys and the valid ones.

    Each value is checked against the parameter's type hint (or its default's type) first, so a
    wrong-typed option is an OptionError naming `group.key` (e.g. problem.acceleration), never a
    failure deep inside the constructor or a silently rounded number.
    """
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
    if sig is not None:
        prefix = f"adapters.{name}" if group == "adapters" else CONFIG_DIR[_group(group)]
        kwargs = check_options(factory, sig, kwargs, prefix)
    return factory(**kwargs)


# ---------------------------------------------------------------- option types
class OptionError(TypeError):
    """A component option whose value does not have the parameter's type; the message names `group.key`."""


def _hints(factory: Any) -> dict[str, Any]:
    """The resolved type hints of a class's __init__ or a function; unresolvable ones are left out."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:  # a hint naming something not importable at run time: resolve one by one
        raw = getattr(target, "__annotations__", {}) or {}
        scope = dict(getattr(inspect.getmodule(target), "__dict__", {}))
        hints = {}
        for key, ann in raw.items():
            try:
                hints[key] = eval(ann, scope) if isinstance(ann, str) else ann  # noqa: S307 - the component's own hint
            except Exception:
                continue
        return hints


def describe_type(hint: Any) -> str:
    """'an integer', 'a number', 'a string or null', 'a list of 2 integers', ... for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (tuple, list, collections.abc.Sequence, collections.abc.MutableSequence):
        bare = [describe_type(a).removeprefix("an ").removeprefix("a ") for a in args if a is not Ellipsis]
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} {bare[0]}s" if len(set(bare)) == 1 else f"a list ({', '.join(bare)})"
        return f"a list of {bare[0]}s" if bare else "a list"
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
        return "a mapping key: value"
    return f"a {getattr(hint, '__name__', str(hint))}"


_NO = object()  # "does not conform"


def conform(value: Any, hint: Any) -> Any:
    """value, or value converted without loss (3.0 -> 3 for an int, '1e-3' -> 0.001 for a float), or _NO."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object or hint is inspect.Parameter.empty:
        return value
    if hint is type(None):
        return value if value is None else _NO
    if origin in (typing.Union, types.UnionType):
        for arm in sorted(args, key=lambda a: a is str):  # exact arms first; str (which takes numbers) last
            out = conform(value, arm)
            if out is not _NO:
                return out
        return _NO
    if origin is typing.Literal:
        return value if value in args else _NO
    if isinstance(value, bool):
        return value if hint is bool or hint is object else _NO  # never a number or a string
    if hint is bool:
        return _NO
    if hint is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                return _NO
        return _NO
    if hint is float:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                return _NO
        if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
            return value
        return _NO
    if hint is str:
        if isinstance(value, str):
            return value
        return str(value) if isinstance(value, (int, float)) else _NO  # a folder named 2024 reads as a number
    if origin in (tuple, list, collections.abc.Sequence, collections.abc.MutableSequence) or hint in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return _NO
        if args and origin is tuple and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return _NO
            items = [conform(v, a) for v, a in zip(value, args)]
        else:
            items = [conform(v, args[0]) if args else v for v in value]
        if any(v is _NO for v in items):
            return _NO
        return tuple(items) if origin is tuple or hint is tuple else type(value)(items)
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping) or hint is dict:
        return value if isinstance(value, dict) else _NO
    if inspect.isclass(hint):
        try:
            return value if isinstance(value, hint) else _NO
        except TypeError:  # a protocol or generic alias that isinstance cannot check
            return value
    return value  # callables, type variables, ...: not checked here


def check_options(factory: Any, sig: inspect.Signature, kwargs: dict[str, Any], prefix: str) -> dict[str, Any]:
    """kwargs with each value conformed to its parameter's hint (or its default's type); else OptionError."""
    hints = _hints(factory)
    out = dict(kwargs)
    for key, value in kwargs.items():
        param = sig.parameters.get(key)
        if param is None:
            continue
        hint = hints.get(key, inspect.Parameter.empty)
        if hint is inspect.Parameter.empty and type(param.default) in (bool, int, float, str):
            hint = float if type(param.default) is float else type(param.default)
        converted = conform(value, hint)
        if converted is _NO:
            raise OptionError(f"{prefix}.{key}: expected {describe_type(hint)}, got {value!r}")
        out[key] = converted
    return out
