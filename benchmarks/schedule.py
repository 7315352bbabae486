"""Which samples run together: fixed batches of run.batch_size (0..B-1, B..2B-1, ...), or one patient's slices per
batch when an adapter is patient-level (docs/design.md: it sees all of a patient's slices first). Either way a partition
of 0..n-1 fixed by the data and run.batch_size alone, so a resume reruns a partly written batch whole (the same
composition) and many processes split the batches (process r takes batches r, r+W, r+2W, ...).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

from torch.utils.data import Dataset

from adaptation.base import Adapter
from benchmarks.items import LOAD_ERRORS
from inverse_problems.data.base import Item


def batches_of(n: int, batch_size: int) -> list[list[int]]:
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def patient_of(dataset: Dataset[Item], i: int) -> str:
    """Item i's patient id: the dataset's `patient_of(i)` where it has one (no rendering), else the item's `patient`,
    else its id (an item without a patient is a patient of its own; an unreadable one too)."""
    fn = getattr(dataset, "patient_of", None)
    if callable(fn):
        return str(fn(i))
    try:
        item = dataset[i]
    except LOAD_ERRORS:
        return f"unreadable item {i}"
    return str(item.get("patient") or item.get("id") or f"item {i}")


def patient_batches(dataset: Dataset[Item], n: int) -> list[list[int]]:
    """The indices 0..n-1 grouped by patient (docs/design.md: patient-level adapters see all of a patient's slices
    first), each group in index order, the groups in order of their first index: a partition of 0..n-1 that does
    not depend on run.batch_size, so every number is the same whatever the batch size, and a resume reruns a
    partly written patient whole."""
    groups: dict[str, list[int]] = {}
    for i in range(n):
        groups.setdefault(patient_of(dataset, i), []).append(i)
    return list(groups.values())


def run_batches(dataset: Dataset[Item], adapters: Sequence[Adapter], n: int, batch_size: int) -> list[list[int]]:
    """The runner's batches: one patient each when an adapter is patient-level (patient_batches), else fixed
    boundaries of run.batch_size. A patient cut by run.n keeps the slices below n (warned)."""
    if not any(getattr(a, "patient_level", False) for a in adapters):
        return batches_of(n, batch_size)
    batches = patient_batches(dataset, n)
    if n < len(dataset) and batches and patient_of(dataset, n) == patient_of(dataset, batches[-1][0]):
        warnings.warn(f"run.n={n} cuts the last patient: its slices from index {n} on are left out (the patient-level "
                      f"adapters see {len(batches[-1])} of them); raise --n to a whole number of patients")
    return batches
