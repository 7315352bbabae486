"""Source and target domains, one rule for every model.

A run's *target domain* is its dataset (with its options) measured by its problem (with its options); a `--shift`
names only a target. A model's *source domain* (`priors.domain.SourceDomain`) is where it was trained: a network's
training facts, a shipped prior's metadata.json (images: no problem, so its reference acquisition is the problem's
default), none for an analytic prior. A run is *in distribution* for its model when the target is the source: the
same dataset, and no dataset option (other than which items are drawn) or problem option differs from those the model
was trained with (its recorded options over the components' defaults). The runner warns when a `--shift` run is in
distribution; the leaderboard credits no shift to such a run (`benchmarks.leaderboard.shift_changed_config`)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from benchmarks.config import component_defaults
from priors.domain import SourceDomain

# dataset options that pick which items or how many, not how they look: they do not move a run off the training data
SAMPLING_OPTIONS = {"split", "length", "seed", "slices", "slab"}


def source_domain(model: Any) -> SourceDomain | None:
    """The source domain a model declares (`source_domain`: a network's from its training facts, a shipped prior's
    from its metadata.json); an adapted algorithm's is its solver's; None for a model fitted to no data set."""
    base = getattr(model, "algorithm", model)  # AdaptedAlgorithm wraps the solver
    domain = getattr(base, "source_domain", None)
    if domain is None and isinstance(getattr(base, "training", None), dict):  # a network written before the property
        domain = SourceDomain.from_facts(base.training)
    return domain if isinstance(domain, SourceDomain) else None


def _trained(group: str, name: str | None, recorded: dict[str, Any]) -> dict[str, Any]:
    if not name:
        return dict(recorded)
    try:
        return {**component_defaults(group, str(name)), **recorded}
    except LookupError:  # trained on a component not installed here: its defaults are unknown
        return dict(recorded)


def domain_changes(cfg: DictConfig, source: SourceDomain) -> list[str]:
    """What moves this run's target domain off a model's source domain: `dataset` (another dataset), `problem`
    (another problem), or each `dataset.KEY` / `problem.KEY` whose value differs from the one trained with (for a
    source without a problem, a prior's, the problem's defaults: the unshifted acquisition)."""
    names = cfg.names
    if names.get("dataset") != source.dataset:
        return ["dataset"]
    if source.problem is not None and source.problem != names.get("problem"):
        return ["problem"]
    changed = []
    for key, group, trained in (
            ("problem", "problems", _trained("problems", names.get("problem"), source.problem_options)),
            ("dataset", "datasets", _trained("datasets", source.dataset, source.dataset_options))):
        node = cfg.get(key)
        if node is None:
            continue
        for k, v in OmegaConf.to_container(node, resolve=True).items():
            if key == "dataset" and k in SAMPLING_OPTIONS:
                continue
            if k in trained and trained[k] != v:
                changed.append(f"{key}.{k}")
    return changed


def in_distribution(cfg: DictConfig, source: SourceDomain | None) -> bool:
    """Whether a run's target domain is its model's source domain (never for a model without one)."""
    return source is not None and not domain_changes(cfg, source)


def run_model(cfg: DictConfig, algorithm: Any = None, prior: Any = None) -> tuple[str, SourceDomain | None]:
    """The model whose domain a run tests and its source: the trained network where the algorithm declares one,
    else the prior ("network" / "prior", the domain or None)."""
    network = source_domain(algorithm) if algorithm is not None else None
    if network is not None:
        return "network", network
    if prior is None:
        return "prior", None
    return "prior", source_domain(prior) or _prior_path_domain(cfg)


def _prior_path_domain(cfg: DictConfig) -> SourceDomain | None:
    """The metadata.json beside a prior's `prior.path` (a checkpoint of `bench train-prior` loaded by class)."""
    path = (cfg.get("prior") or {}).get("path")
    return SourceDomain.beside(path) if path else None


def config_source_domain(cfg: DictConfig) -> tuple[str, SourceDomain | None]:
    """`run_model` from a run's resolved config alone (no model built; for the leaderboard): a network's
    `algorithm.path` or shipped `algorithm.model` json, a prior's `prior.path` folder or shipped weights folder
    (priors/weights/<name>/metadata.json)."""
    from benchmarks import registry

    names = cfg.names
    try:
        algo_cls = registry.load("algorithms", names.algorithm)
    except LookupError:
        return "network", None
    if getattr(algo_cls, "end_to_end", False):
        from algorithms.networks.models import DEFAULT_MODEL, shipped_path

        node = cfg.get("algorithm") or {}
        arch = getattr(algo_cls, "arch", "")
        try:
            where = Path(node.get("path")) if node.get("path") else shipped_path(
                arch, node.get("model") or DEFAULT_MODEL[arch])
        except (LookupError, ValueError, OSError):
            return "network", None
        return "network", SourceDomain.read(where.with_suffix(".json"))
    prior = names.get("prior")
    if not prior:
        return "prior", None
    # a shipped prior's weights folder is priors/weights/<name> (its factory reads the same metadata.json)
    return "prior", _prior_path_domain(cfg) or SourceDomain.beside(
        Path(__file__).resolve().parents[1] / "priors" / "weights" / str(prior))


def warn_in_distribution_shift(cfg: DictConfig, algorithm: Any, prior: Any = None) -> None:
    """Warn when `--shift` tests a model (the trained network, else the diffusion prior) on its own source domain:
    the shift's target is where the model was trained, so the run measures no shift for it."""
    shift = cfg.names.get("shift")
    family, source = run_model(cfg, algorithm, prior)
    if shift and in_distribution(cfg, source):
        hint = ("choose a source model trained elsewhere (`algorithm.model=`; a shift's default source models are in "
                "configs/sources.yaml, e.g. D2SA's anatomy shift of the knee-PD networks is `--shift knee-to-brain`)"
                if family == "network" else "choose a prior trained elsewhere (`--prior`, `bench list priors`)")
        warnings.warn(f"shift {shift!r} tests on {source.dataset!r} with the options the {family} was trained with: "
                      f"this run is in distribution for it; {hint}", stacklevel=2)
