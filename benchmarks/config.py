"""Compose a run's config with hydra: each component's options plus `key=value` overrides.

A component's options are its constructor's defaults overlaid by configs/<group>/<name>.yaml, so
every constructor argument is reachable as an override and a plugin without a yaml runs on its
class defaults. A shift
(configs/shift/<name>.yaml) names the dataset and overrides that realise it (for a trained end-to-end network, its
`networks:` block: `load_shift`).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Iterable

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from benchmarks import registry
from configs import CONFIG_DIR


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


SHIFT_KEYS = {"description", "problem", "dataset", "prior", "overrides", "networks"}
NETWORK_SHIFT_KEYS = {"description", "dataset", "model", "overrides"}


def load_shift(name: str, algorithm: str | None = None) -> DictConfig:
    """configs/shift/<name>.yaml. A shift names a change from a model's training domain; a trained end-to-end
    network (an algorithm whose class sets `end_to_end`) has another domain than the diffusion prior, so for it the
    shift's `networks:` block, where there is one, is laid over the shift: its `dataset` and `overrides` replace the
    shift's and its `model` (the shipped source network) is put first as `algorithm.model=...`, under the user's
    overrides (e.g. `anatomy`: brain-T2 prior -> knee PD for the diffusion solvers; D2SA's knee-PD source network ->
    brain T2 for `unet`/`varnet`)."""
    path = CONFIG_DIR / "shift" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown shift {name!r}; valid shifts: {', '.join(shift_names()) or '(none)'}")
    shift = OmegaConf.load(path)
    unknown = sorted(set(shift) - SHIFT_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; a shift takes {', '.join(sorted(SHIFT_KEYS))}")
    block = shift.get("networks")
    if block is not None:
        unknown = sorted(set(block) - NETWORK_SHIFT_KEYS)
        if unknown:
            raise ConfigError(f"{path}: `networks:` has unknown key(s) {', '.join(unknown)}; it takes "
                              f"{', '.join(sorted(NETWORK_SHIFT_KEYS))}")
    if algorithm is None or block is None or not getattr(registry.load("algorithms", algorithm), "end_to_end", False):
        return shift
    merged = OmegaConf.to_container(shift)
    net = merged.pop("networks")
    if "dataset" in net:
        merged["dataset"] = net["dataset"]
    overrides = list(net["overrides"] if "overrides" in net else merged.get("overrides") or [])
    merged["overrides"] = ([f"algorithm.model={net['model']}"] if net.get("model") else []) + overrides
    if net.get("description"):
        merged["description"] = net["description"]
    return OmegaConf.create(merged)


PLAIN = (type(None), bool, int, float, str, list, tuple, dict)
RUNNER_SET = {"datasets": {"split"}}  # options the runner sets itself


def component_defaults(group: str, name: str) -> dict[str, Any]:
    """A component's options: its constructor's plain defaults, overlaid by configs/<dir>/<name>.yaml."""
    import inspect

    node: dict[str, Any] = {}
    try:
        params = inspect.signature(registry.load(group, name)).parameters.values()
    except (TypeError, ValueError):
        params = []
    for p in params:
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in RUNNER_SET.get(group, ()) \
                and p.default is not p.empty and isinstance(p.default, PLAIN):
            node[p.name] = list(p.default) if isinstance(p.default, tuple) else p.default
    node.update(_component_yaml(group, name))
    node.pop(SEARCH, None)  # the tuning search space is not a constructor option
    return node


SEARCH = "search"


def _component_yaml(group: str, name: str) -> dict[str, Any]:
    path = CONFIG_DIR / registry.CONFIG_DIR[group] / f"{name}.yaml"
    return (OmegaConf.to_container(OmegaConf.load(path)) or {}) if path.exists() else {}


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


def problem_solver_defaults(problem: str, algorithm: str) -> dict[str, Any]:
    """The options `problem` declares for `algorithm` (its class's `solver_defaults[algorithm]`): what the harness
    lays over the algorithm's own defaults for that problem, under the shift's and the user's overrides (e.g. a
    CPU-sized DAPS budget where the official one is far too slow). Every name must be an option of the algorithm."""
    declared = getattr(registry.load("problems", problem), "solver_defaults", {}) or {}
    opts = dict(declared.get(algorithm) or {})
    known = component_defaults("algorithms", algorithm)
    unknown = sorted(set(opts) - set(known))
    if unknown:
        raise ConfigError(f"problem {problem!r} declares solver_defaults for {algorithm!r} with {', '.join(unknown)}, "
                          f"which {algorithm!r} does not take; fix the problem's solver_defaults (options of "
                          f"{algorithm!r}: {', '.join(sorted(known))})")
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
    shift = load_shift(sel.shift, sel.algorithm) if sel.shift else None
    if shift is not None and shift.get("problem") not in (None, sel.problem):
        raise ConfigError(f"shift {sel.shift!r} is defined for problem {shift.problem!r}, not {sel.problem!r}; "
                          f"see `bench list shifts`")
    dataset = sel.dataset or (shift.get("dataset") if shift else None) or getattr(problem_cls, "default_dataset", None)
    prior = sel.prior or (shift.get("prior") if shift else None) or getattr(problem_cls, "default_prior", None)
    if dataset is None:
        raise ConfigError(f"problem {sel.problem!r} has no default dataset; pass --dataset NAME (`bench list datasets`)")
    registry.load("datasets", dataset)
    if not getattr(algo_cls, "uses_prior", True):
        prior = None  # recorded as no prior, so the leaderboard does not credit one
    if prior is not None:
        registry.load("priors", prior)
    return Selection(sel.problem, sel.algorithm, list(sel.adapters), prior, dataset, sel.shift)


def compose_config(sel: Selection, overrides: Iterable[str] = ()) -> DictConfig:
    """The resolved config of one run (names under `names`, options under each group and `run`)."""
    sel = resolve(sel)
    shift = load_shift(sel.shift, sel.algorithm) if sel.shift else None
    # the problem's declared options for this algorithm sit under the shift's and the user's overrides
    algo_node = _store("algorithms", sel.algorithm, over=problem_solver_defaults(sel.problem, sel.algorithm))
    choices = [f"+problem={_store('problems', sel.problem)}", f"+algorithm={algo_node}",
               f"+dataset={_store('datasets', sel.dataset)}"]
    if sel.prior is not None:
        choices.append(f"+prior={_store('priors', sel.prior)}")
    for a in sel.adapters:
        choices.append(f"+adapter@adapters.{a}={_store('adapters', a)}")
    shift_overrides = list(shift.get("overrides", [])) if shift else []
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
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
