"""Issue 24, seam 3: dataset items are `Item`s (every registered dataset says so) and the runner's components
travel as one `Components` object."""
from __future__ import annotations

import typing

import pytest
import torch

from adaptation.base import AdaptedAlgorithm
from benchmarks import registry
from benchmarks.build import Components, build_components
from benchmarks.config import Selection, compose_config
from inverse_problems.data.base import Item
from inverse_problems.data.phantoms.dmi import DMIItem
from inverse_problems.data.phantoms.sequences import SequenceItem


@pytest.mark.parametrize("name", registry.names("datasets"))
def test_every_registered_dataset_returns_items(name):
    cls = registry.load("datasets", name)
    returned = typing.get_type_hints(cls.__getitem__)["return"]
    assert isinstance(returned, type) and issubclass(returned, dict) and Item.__required_keys__ <= returned.__required_keys__
    assert set(Item.__annotations__) <= set(returned.__annotations__)


def test_items_hold_only_their_declared_keys():
    for name, options, kind in (("phantom-brain-t2", {"size": 16, "length": 4, "slices": 2}, Item),
                                ("phantom-dmi", {"size": 8, "subjects": 1, "n_frames": 2}, DMIItem),
                                ("grf", {"size": 8, "length": 2}, Item),
                                ("phantom-cardiac-4d", {"size": 8, "frames": 3, "subjects": 2}, SequenceItem),
                                ("phantom-lung-4d", {"size": 8, "frames": 3, "subjects": 2}, SequenceItem)):
        item = registry.build("datasets", name, split="test", **options)[1]
        assert kind.__required_keys__ <= set(item) <= set(kind.__annotations__), name


def test_build_components_gives_components():
    cfg = compose_config(Selection("inpainting", "zero-filled", ["air"]), ["dataset.size=16", "problem.size=16"])
    comp = build_components(cfg, torch.device("cpu"))
    assert isinstance(comp, Components) and comp.prior is None and len(comp.adapters) == 1
    assert isinstance(comp.algorithm, AdaptedAlgorithm) and tuple(comp.dataset[0]["image"].shape[-2:]) == (16, 16)
