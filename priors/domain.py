"""A model's source domain: the dataset (and its options) and the problem (and its options) it was trained on.

Every model declares one: a shipped prior from its weights' metadata.json (images only, so no problem: its reference
acquisition is the problem's default), a trained network from its checkpoint's `training` facts, an analytic prior
none (it was fitted to no data set, so no target is its own). Imports no torch."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SourceDomain:
    """Where a model was trained: `dataset` with `dataset_options`, measured by `problem` with `problem_options`
    (None: images, no acquisition, e.g. a diffusion prior)."""

    dataset: str
    dataset_options: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    problem_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_facts(cls, facts: dict[str, Any] | None) -> "SourceDomain | None":
        """From training facts (a network checkpoint's `training`, a prior's metadata.json); None without a dataset."""
        if not isinstance(facts, dict) or not facts.get("dataset"):
            return None
        return cls(str(facts["dataset"]), dict(facts.get("dataset_options") or {}),
                   facts.get("problem") or None, dict(facts.get("problem_options") or {}))

    @classmethod
    def read(cls, path: str | Path) -> "SourceDomain | None":
        """From a metadata.json or a network's <model>.json (its `training` block); None where there is none."""
        path = Path(path)
        if not path.is_file():
            return None
        facts = json.loads(path.read_text(encoding="utf-8"))
        return cls.from_facts(facts.get("training", facts) if isinstance(facts, dict) else None)

    @classmethod
    def beside(cls, path: str | Path) -> "SourceDomain | None":
        """From the metadata.json in a weights folder (or beside a weights file), as `bench train-prior` writes it."""
        path = Path(path)
        return cls.read((path if path.is_dir() else path.parent) / "metadata.json")
