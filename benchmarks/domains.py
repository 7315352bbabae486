"""Source and target domains: the warning that a `--shift` run is in distribution for the trained network it tests
(the network's training facts name the dataset and the problem and dataset options it was trained with)."""
from __future__ import annotations

import warnings
from typing import Any

from omegaconf import DictConfig, OmegaConf

from benchmarks.config import component_defaults


# dataset options that pick which items or how many, not how they look: they do not move a run off the training data
SAMPLING_OPTIONS = {"split", "length", "seed", "slices", "slab"}


def acquisition_changes(cfg: DictConfig, training: dict[str, Any]) -> list[str]:
    """The problem and dataset options of this run that differ from those a network was trained with (its training
    facts' `problem_options`/`dataset_options` over the components' defaults), e.g. the scanner shift's coils."""
    changed = []
    for group, key, facts in (("problems", "problem", "problem_options"), ("datasets", "dataset", "dataset_options")):
        node, name = cfg.get(key), training.get(key)
        if node is None or not name:
            continue
        try:
            trained = {**component_defaults(group, str(name)), **(training.get(facts) or {})}
        except LookupError:  # trained on a component not installed here: its defaults are unknown
            trained = dict(training.get(facts) or {})
        for k, v in OmegaConf.to_container(node, resolve=True).items():
            if key == "dataset" and k in SAMPLING_OPTIONS:
                continue
            if k in trained and trained[k] != v:
                changed.append(f"{key}.{k}")
    return changed


def warn_in_distribution_shift(cfg: DictConfig, algorithm: Any) -> None:
    """Warn when `--shift` tests a trained network on its own training data: the same dataset with the problem and
    dataset options it was trained with (a shift without a `networks:` block names a change from the diffusion
    prior's domain, which may be none for the network, or `algorithm.model` chose a source trained on the target)."""
    shift = cfg.names.get("shift")
    base = getattr(algorithm, "algorithm", algorithm)  # AdaptedAlgorithm wraps the solver
    training = getattr(base, "training", None)
    trained_on = training.get("dataset") if isinstance(training, dict) else None
    if shift and trained_on and trained_on == cfg.names.dataset and not acquisition_changes(cfg, training):
        warnings.warn(f"shift {shift!r} tests on {trained_on!r}, the dataset the network was trained on: this run is "
                      f"in distribution for it; the D2SA shifts of the shipped source networks are `--shift "
                      f"anatomy|contrast|acceleration|scanner` at their default model (`bench list shifts`)",
                      stacklevel=2)

