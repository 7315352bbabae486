"""Compose a run's config with hydra: each component's options plus `key=value` overrides.

A component's options are its constructor's defaults overlaid by configs/<group>/<name>.yaml, so
every constructor argument is reachable as an override and a plugin without a yaml runs on its
class defaults. A problem's yaml, configs/problem/<name>.yaml, holds instead the choices made for that
problem (`problem_choices`): its default dataset and prior, and options laid over an algorithm's or an
adapter's defaults on it (e.g. mrsi's DAPS budget, cs_mri's TDA step for the coil-map correction). A problem
without one (a plugin's) has no default dataset or prior: the run names them (--dataset, --prior). A shift
(configs/shift/<name>.yaml) names a target domain: the dataset and overrides that realise it, the same for every
algorithm; a trained network's default source model under a shift is in configs/sources.yaml.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from benchmarks import registry
from configs import CONFIG_DIR, SOURCE_PRIOR


# hydra 1.3 asks for version_base (None: this version's defaults) and warns without it; 1.4 deprecates the argument
# and warns with it (the sweep and test extras install 1.4)
VERSION_BASE: dict[str, None] = {} if tuple(int(p) for p in hydra.__version__.split(".")[:2]) >= (1, 4) else \
    {"version_base": None}


class ConfigError(ValueError):
    """A bad override, an unknown shift or an unusable combination, with the fix in the message."""


@dataclass
class Selection:
    """The names a run is made of."""

    problem: str
    algorithm: str
    adapters: list[str]
    prior: str | None = None
    dataset: str | None = None
    shift: str | None = None


def parse_algo(spec: str) -> tuple[str, list[str]]:
    """'daps+tda+air' -> ('daps', ['tda', 'air'])."""
    parts = [p.strip() for p in spec.split("+")]
    if not all(parts):
        raise ConfigError(f"bad --algo {spec!r}: write ALGORITHM[+ADAPTER...], e.g. daps+tda")
    return parts[0], parts[1:]


def shift_names() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "shift").glob("*.yaml"))


SHIFT_KEYS = {"description", "problem", "dataset", "overrides"}


def load_shift(name: str, algorithm: str | None = None) -> DictConfig:
    """configs/shift/<name>.yaml: a target domain (its dataset and problem/dataset option overrides), the same for
    every algorithm (`algorithm` is accepted for old callers and ignored). Which model a run tests on that target is
    the model choice: `--prior`, `algorithm.model=`, or a network's default source model under the shift
    (`shift_source_model`)."""
    path = CONFIG_DIR / "shift" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown shift {name!r}; valid shifts: {', '.join(shift_names()) or '(none)'}")
    shift = OmegaConf.load(path)
    if "networks" in shift:
        raise ConfigError(f"{path}: a shift names only its target domain; its `networks:` block goes: put the "
                          f"networks' source model in configs/sources.yaml ({name}: {{unet: MODEL}}) or pass "
                          f"`algorithm.model=MODEL`, and another target in a shift of its own")
    unknown = sorted(set(shift) - SHIFT_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; a shift takes {', '.join(sorted(SHIFT_KEYS))}"
                          + (" (a shift names only its target: choose the prior with --prior)"
                             if "prior" in unknown else ""))
    return shift


def _sources_entry(shift: str | None) -> dict:
    path = CONFIG_DIR / "sources.yaml"
    if not shift or not path.exists():
        return {}
    return OmegaConf.to_container(OmegaConf.load(path)).get(shift) or {}


def shift_source_model(shift: str | None, algorithm: str) -> str | None:
    """The default source model (`algorithm.model`) of an end-to-end network under a shift: configs/sources.yaml,
    the one place that says which shipped network a shift is a shift from (None: the network's own default)."""
    model = _sources_entry(shift).get(algorithm) if algorithm != SOURCE_PRIOR else None
    return str(model) if model else None


def shift_source_prior(shift: str | None) -> str | None:
    """The diffusion solvers' default prior under a shift: the `prior:` of its configs/sources.yaml entry, a prior
    trained on the shift's source domain as the networks' source model is (e.g. knee-64 for knee PD -> brain T2);
    None: the problem's default prior. `--prior` wins over it."""
    prior = _sources_entry(shift).get(SOURCE_PRIOR)
    return str(prior) if prior else None


PLAIN = (type(None), bool, int, float, str, list, tuple, Mapping)
RUNNER_SET = {"datasets": {"split"}}  # options the runner sets itself


def _plain_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return dict(value) if isinstance(value, Mapping) else value  # e.g. an immutable empty per-parameter map


def component_defaults(group: str, name: str) -> dict[str, Any]:
    """A component's options: its constructor's plain defaults, overlaid by configs/<dir>/<name>.yaml (a problem's
    yaml holds the problem's choices, not options: `problem_choices`)."""
    node: dict[str, Any] = {}
    try:
        params = inspect.signature(registry.load(group, name)).parameters.values()
    except (TypeError, ValueError):
        params = []
    for p in params:
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in RUNNER_SET.get(group, ()) \
                and p.default is not p.empty and isinstance(p.default, PLAIN):
            node[p.name] = _plain_default(p.default)
    if group != "problems":
        node.update(_component_yaml(group, name))
    node.pop(SEARCH, None)  # the tuning search space is not a constructor option
    return node


SEARCH = "search"


def _component_yaml(group: str, name: str) -> dict[str, Any]:
    path = CONFIG_DIR / registry.CONFIG_DIR[group] / f"{name}.yaml"
    return (OmegaConf.to_container(OmegaConf.load(path)) or {}) if path.exists() else {}


@dataclass
class ProblemChoices:
    """configs/problem/<name>.yaml: what is chosen for a problem, not its physics.

    `dataset`, `prior`: the defaults of a run on it; `algorithms`, `adapters`: {component name: {option: value}},
    laid over that component's own defaults on this problem (under a shift's and the user's overrides), so a run's
    config records them. A problem without a yaml (a plugin's) chooses nothing: a run names its dataset and prior."""

    dataset: str | None = None
    prior: str | None = None
    algorithms: dict[str, dict[str, Any]] = field(default_factory=dict)
    adapters: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: str | None = None  # the yaml it was read from (None: there is none)


PROBLEM_KEYS = ("dataset", "prior", "algorithms", "adapters")


def plugin_problem_yaml(problem: str) -> Path | None:
    """A plugin problem's own choices: configs/problem/<problem>.yaml inside the top-level package its entry point
    names (package data of the plugin's distribution), found without importing it."""
    ep = registry.entry_points("problems").get(problem)
    if ep is None:
        return None
    init = registry.module_source(ep.value.partition(":")[0].strip().split(".")[0])
    path = init.parent / "configs" / "problem" / f"{problem}.yaml" if init is not None else None
    return path if path is not None and path.is_file() else None


def problem_choices(problem: str) -> ProblemChoices:
    """The choices configs/problem/<problem>.yaml declares, in this repository or, for a plugin's problem, in its
    package (none where there is no such file); no torch import."""
    path = CONFIG_DIR / registry.CONFIG_DIR["problems"] / f"{problem}.yaml"
    where = f"configs/problem/{problem}.yaml"
    if not path.exists():
        path = plugin_problem_yaml(problem)
        if path is None:
            return ProblemChoices()
        where = str(path)
    raw = OmegaConf.to_container(OmegaConf.load(path)) or {}
    unknown = sorted(set(raw) - set(PROBLEM_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; a problem's yaml takes "
                          f"{', '.join(PROBLEM_KEYS)} (the problem's own options are its constructor's defaults)")
    for key in ("dataset", "prior"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise ConfigError(f"{where}: `{key}:` must name a registered {key}, got {raw[key]!r}")
    for key in ("algorithms", "adapters"):
        block = raw.get(key) or {}
        if not isinstance(block, dict) or not all(isinstance(v, dict) for v in block.values()):
            raise ConfigError(f"{where}: `{key}:` maps a component name to its options, e.g. "
                              f"`{key}: {{daps: {{budget: 0.1k}}}}`")
    return ProblemChoices(raw.get("dataset"), raw.get("prior"),
                          {k: dict(v) for k, v in (raw.get("algorithms") or {}).items()},
                          {k: dict(v) for k, v in (raw.get("adapters") or {}).items()}, str(path))


def search_space(group: str, name: str) -> dict[str, str]:
    """The component's `search:` block (option -> hydra sweep expression, e.g. `tag(log, interval(0.1, 10))`):
    what `bench tune` lets the Optuna sweeper choose. Empty when the yaml declares none."""
    block = _component_yaml(group, name).get(SEARCH) or {}
    if not isinstance(block, dict):
        raise ConfigError(f"configs/{registry.CONFIG_DIR[group]}/{name}.yaml: `{SEARCH}:` must map option names to "
                          f"sweep expressions, e.g. `lam: tag(log, interval(0.1, 100.0))`")
    known = component_defaults(group, name)
    unknown = sorted(set(block) - set(known))
    if unknown:
        raise ConfigError(f"configs/{registry.CONFIG_DIR[group]}/{name}.yaml: `{SEARCH}:` names {', '.join(unknown)}, "
                          f"which {name!r} does not take; its options are: {', '.join(sorted(known))}")
    return {str(k): str(v) for k, v in block.items()}


def problem_options(problem: str, group: str, name: str) -> dict[str, Any]:
    """The options configs/problem/<problem>.yaml declares for the algorithm or adapter `name` (group `algorithms` or
    `adapters`): what the harness lays over the component's own defaults for that problem, under the shift's and the
    user's overrides (e.g. a CPU-sized DAPS budget where the official one is far too slow, or TDA's step scale for a
    parameter of the problem's operator). Every name must be an option of the component."""
    opts = dict(getattr(problem_choices(problem), group).get(name) or {})
    if not opts:
        return {}
    known = component_defaults(group, name)
    unknown = sorted(set(opts) - set(known))
    if unknown:
        raise ConfigError(f"problem {problem!r} declares options for {group[:-1]} {name!r} with {', '.join(unknown)}, "
                          f"which {name!r} does not take; fix configs/problem/{problem}.yaml ({group}.{name}: options "
                          f"of {name!r}: {', '.join(sorted(known))})")
    return opts


def _store(group: str, name: str, key: str | None = None, over: dict[str, Any] | None = None) -> str:
    """Put the component's options (overlaid by `over`) in hydra's ConfigStore (under a reserved name unless `key`
    is given) and return that name."""
    key = key or f"_{name}_"
    node = OmegaConf.create({**component_defaults(group, name), **(over or {})})
    for k, v in node.items_ex(resolve=False):
        if isinstance(v, DictConfig):
            OmegaConf.set_struct(v, False)  # a dict-valued option (e.g. per-parameter rates) takes new keys
    store_node(name=key, node=node, group=registry.CONFIG_DIR[group])
    return key


def store_node(name: str, node: Any, group: str | None = None) -> None:
    """`ConfigStore.store`, replacing a node stored earlier under the same name.

    hydra-core 1.4 asks for `replace=True` to do that without a warning; the stable 1.3.x has no such argument and
    always replaces, so the argument is passed only where the installed hydra takes it."""
    store = ConfigStore.instance().store
    extra = {"replace": True} if "replace" in inspect.signature(store).parameters else {}
    store(group=group, name=name, node=node, **extra)


def resolve(sel: Selection) -> Selection:
    """Check every name against the registry and fill the problem's default prior and dataset."""
    problem_cls = registry.load("problems", sel.problem)
    algo_cls = registry.load("algorithms", sel.algorithm)
    for a in sel.adapters:
        registry.load("adapters", a)
    shift = load_shift(sel.shift) if sel.shift else None
    if shift is not None and shift.get("problem") not in (None, sel.problem):
        raise ConfigError(f"shift {sel.shift!r} is defined for problem {shift.problem!r}, not {sel.problem!r}; "
                          f"see `bench list shifts`")
    chosen = problem_choices(sel.problem)
    dataset = sel.dataset or (shift.get("dataset") if shift else None) or chosen.dataset
    prior = sel.prior or shift_source_prior(sel.shift) or chosen.prior
    if dataset is None:
        raise ConfigError(f"problem {sel.problem!r} has no default dataset{_no_yaml(sel.problem, problem_cls)}; pass "
                          f"--dataset NAME (`bench list datasets`)")
    registry.load("datasets", dataset)
    if not getattr(algo_cls, "uses_prior", True):
        prior = None  # recorded as no prior, so the leaderboard does not credit one
    elif prior is None:
        raise ConfigError(f"algorithm {sel.algorithm!r} needs a prior and problem {sel.problem!r} has no default "
                          f"prior{_no_yaml(sel.problem, problem_cls)}; pass --prior NAME (`bench list priors`)")
    if prior is not None:
        registry.load("priors", prior)
    return Selection(sel.problem, sel.algorithm, list(sel.adapters), prior, dataset, sel.shift)


def _no_yaml(problem: str, problem_cls: Any) -> str:
    """Why a problem has no default: no configs/problem yaml (and the class attribute it may still carry, which the
    harness no longer reads)."""
    if problem_choices(problem).path is not None:
        return f" (configs/problem/{problem}.yaml names none)"
    legacy = [f"{a} = {getattr(problem_cls, a)!r}" for a in ("default_dataset", "default_prior")
              if getattr(problem_cls, a, None) is not None]
    return (f" (no configs/problem/{problem}.yaml"
            + (f"; its class declares {', '.join(legacy)}, which the harness no longer reads" if legacy else "") + ")")


def compose_config(sel: Selection, overrides: Iterable[str] = ()) -> DictConfig:
    """The resolved config of one run (names under `names`, options under each group and `run`)."""
    sel = resolve(sel)
    shift = load_shift(sel.shift) if sel.shift else None
    # the problem's declared options for the algorithm and adapters sit under the shift's and the user's overrides
    algo_node = _store("algorithms", sel.algorithm, over=problem_options(sel.problem, "algorithms", sel.algorithm))
    choices = [f"+problem={_store('problems', sel.problem)}", f"+algorithm={algo_node}",
               f"+dataset={_store('datasets', sel.dataset)}"]
    if sel.prior is not None:
        choices.append(f"+prior={_store('priors', sel.prior)}")
    for a in sel.adapters:
        choices.append(f"+adapter@adapters.{a}={_store('adapters', a, over=problem_options(sel.problem, 'adapters', a))}")
    shift_overrides = list(shift.get("overrides", [])) if shift else []
    source = shift_source_model(sel.shift, sel.algorithm)
    if source and getattr(registry.load("algorithms", sel.algorithm), "end_to_end", False):
        shift_overrides.insert(0, f"algorithm.model={source}")  # under the user's overrides
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), **VERSION_BASE):
            cfg = compose(config_name="bench", overrides=choices + shift_overrides + list(overrides))
    except HydraException as exc:
        raise ConfigError(f"bad override: {exc}") from exc
    finally:
        GlobalHydra.instance().clear()
    for key in ("prior", "adapters"):
        if key not in cfg:
            with open_dict(cfg):
                cfg[key] = {}
    with open_dict(cfg):
        cfg.names = OmegaConf.create({"problem": sel.problem, "algorithm": sel.algorithm, "adapters": sel.adapters,
                                      "prior": sel.prior, "dataset": sel.dataset, "shift": sel.shift})
    check_known_keys(cfg)
    return cfg


SECTIONS = ("run", "problem", "algorithm", "dataset", "prior", "adapters", "names", "tuning")


def check_known_keys(cfg: DictConfig) -> None:
    """Refuse options that no component reads, which would otherwise be recorded in config.yaml and ignored: a
    top-level key outside the run's sections (`+foo.bar=3`), options of an adapter the run does not use
    (`+adapters.tda.lr=3` without +tda), prior options for an algorithm that uses no prior. (Unknown options of a
    component are refused when it is built, naming its valid ones; unknown run.* options by the runner.)"""
    names = cfg.get("names") or {}
    unknown = sorted(k for k in cfg if k not in SECTIONS)
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]} (e.g. from +{unknown[0]}...=...): no component reads it; a "
                          f"run's options are problem.*, algorithm.*, dataset.*, prior.*, adapters.<name>.* and run.*")
    method = f"{names.get('algorithm')}{''.join('+' + a for a in names.get('adapters') or [])}"
    extra = sorted(set(cfg.get("adapters") or {}) - set(names.get("adapters") or []))
    if extra:
        raise ConfigError(f"adapters.{extra[0]}.*: {extra[0]!r} is not an adapter of this run (--algo {method}), so "
                          f"its options would be ignored; add it (--algo {method}+{extra[0]}) or drop the override")
    if names.get("prior") is None and cfg.get("prior"):
        first = next(iter(cfg.prior))
        raise ConfigError(f"prior.{first}: {names.get('algorithm')!r} uses no prior, so prior options would be "
                          f"ignored; drop the override")


def options(cfg: DictConfig, key: str) -> dict[str, Any]:
    """A group's options as plain keyword arguments."""
    node = cfg.get(key)
    return {} if node is None else dict(OmegaConf.to_container(node, resolve=True))
