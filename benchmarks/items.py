"""A dataset's items as the harness reads them (inverse_problems.data.base.Item): what counts as unreadable, an
item's shape, the first readable item (the setup's checks) and an item checked for use (`load_item`).

An item that cannot be read, holds NaN/Inf or has the wrong shape is `Unusable`: the runner records it as a failed
line (status failed, reason) and goes on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from benchmarks.config import ConfigError
from inverse_problems.data.base import DataError, Item

NO_TARGET = "no target (prospective data: the file has no reference): reconstruction written, excluded from metrics"
LOAD_ERRORS: tuple[type[BaseException], ...] = (DataError, ValueError, OSError, EOFError, KeyError)


@dataclass(frozen=True)
class Unusable:
    """An item that cannot be used: its id where known, and why."""

    id: str | None
    reason: str


def image_shape(item: Item) -> tuple[int, ...]:
    """The item's image shape; for a measurement without a target (prospective data) (2, H, W) of its k-space."""
    if item.get("image") is None and isinstance(item.get("kspace"), torch.Tensor):
        return (2, *item["kspace"].shape[-2:])
    return tuple(item["image"].shape)


def first_readable(dataset: Dataset[Item], shown: int = 8) -> Item:
    """The first item that loads, however many bad ones come before it (a bad item is the run's business: a failed
    line naming it, not a refused run); only a dataset with no readable item is refused, naming its first `shown`."""
    errors = []
    for i in range(len(dataset)):
        try:
            return dataset[i]
        except LOAD_ERRORS as exc:
            if len(errors) < shown:
                errors.append(f"item {i}: {exc}")
    raise ConfigError("the dataset's first items cannot be read: " + "; ".join(errors) if errors
                      else "the dataset is empty")


def load_item(dataset: Dataset[Item], i: int, shape: tuple[int, ...], tier: str = "simulated") -> Item | Unusable:
    """Item i, or `Unusable` (its id where known, and why: unreadable, NaN/Inf, wrong shape)."""
    try:
        item = dataset[i]
        image = item["image"]
    except LOAD_ERRORS as exc:  # a DataError names the file and key (and the item's id)
        return Unusable(getattr(exc, "item_id", None), f"item {i} could not be read: {type(exc).__name__}: {exc}")
    if image is None:  # a measurement without a reference (prospective data): reconstructed, not scored
        if not isinstance(item.get("kspace"), torch.Tensor):
            return Unusable(item.get("id"), f"item {i} ({item.get('id')}) has neither an image nor measurements")
        if tier != "measured":
            return Unusable(item.get("id"), f"item {i} ({item.get('id')}) has no target image (prospective data): "
                                            f"it can only be reconstructed from its own k-space: problem.data=measured")
        image = torch.view_as_real(item["kspace"])
    if tuple(image_shape(item)) != tuple(shape):
        return Unusable(item.get("id"), f"item {i} ({item.get('id')}) has shape {image_shape(item)}, the problem "
                                        f"takes {tuple(shape)}")
    if not bool(torch.isfinite(image).all()):
        return Unusable(item.get("id"), f"item {i} ({item.get('id')}) holds NaN or Inf values")
    return item
