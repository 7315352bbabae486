"""One registry-driven battery over every registered dataset: items are {"id": str, "image": (C, H, W) float32} as
inverse_problems.data.base says (finite, non-empty: read_item's checks), with the dataset's declared channels and
size, unique ids, the same item from a second instance (deterministic), and an IndexError past the end. Every
dataset the project registers has a case in CASES, or test_every_registered_dataset_is_in_the_battery fails naming
it."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import registry
from inverse_problems.data.base import read_item
from tests.helpers import FIXTURES, assert_covered

torch.set_num_threads(1)
PHANTOM = dict(size=16, length=2)


def nifti_folder(tmp: Path) -> dict:
    import nibabel as nib

    volume = np.random.default_rng(0).uniform(0.1, 2.0, size=(12, 12, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(tmp / "a.nii.gz"))
    return dict(root=str(tmp), size=8, slices="all")


def image_folder(tmp: Path) -> dict:
    from PIL import Image

    g = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(g.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(tmp / f"img{i}.png")
    return dict(root=str(tmp), size=8)


def acdc_folder(tmp: Path) -> dict:
    from tests.inverse_problems.test_loaders_4d import write_acdc

    if not (tmp / "training").exists():
        write_acdc(tmp, {91: (1, 9, 10), 92: (2, 10, 12)})
    return dict(root=str(tmp), size=8, frames=5)


def lung_folder(tmp: Path) -> dict:
    from tests.inverse_problems.test_loaders_4d import write_lung

    if not (tmp / "P0").exists():
        write_lung(tmp)
    return dict(root=str(tmp), size=6, test_patients=1, slices="all")


def real_brain(tmp: Path) -> dict:
    if importlib.util.find_spec("pydicom") is None:
        pytest.skip("real-brain's one offline slice without dipy needs pydicom: pip install pydicom")
    return dict(size=16, sources=["pydicom-mr-small"])


# name -> options of registry.build("datasets", name, ...), given a scratch folder (small, offline)
CASES = {
    "grf": lambda tmp: dict(size=8, length=3),
    "phantom-brain-t2": lambda tmp: PHANTOM,
    "phantom-brain-t1": lambda tmp: PHANTOM,
    "phantom-brain-flair": lambda tmp: PHANTOM,
    "phantom-knee-pd": lambda tmp: PHANTOM,
    "anatomy-brain-t2": lambda tmp: PHANTOM,
    "anatomy-brain-t1": lambda tmp: PHANTOM,
    "anatomy-brain-flair": lambda tmp: PHANTOM,
    "anatomy-brain-mix": lambda tmp: PHANTOM,
    "phantom-dmi": lambda tmp: dict(size=8, subjects=1, n_frames=2),
    "phantom-cardiac-4d": lambda tmp: dict(size=16, frames=4, subjects=2),
    "phantom-lung-4d": lambda tmp: dict(size=16, frames=4, subjects=2),
    "acdc": acdc_folder,
    "4dlung": lung_folder,
    "fastmri": lambda tmp: dict(root=str(FIXTURES / "fastmri" / "multicoil"), size=16),
    "nifti": nifti_folder,
    "images": image_folder,
    "real-brain": real_brain,
}


def test_every_registered_dataset_is_in_the_battery():
    assert_covered("datasets", CASES, "the dataset battery (tests/inverse_problems/test_dataset_battery.py CASES)")


def same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("name", list(CASES))
def test_dataset(name, tmp_path):
    options = CASES[name](tmp_path)
    ds = registry.build("datasets", name, **options)
    n = len(ds)
    assert n >= 1, name
    items = [read_item(ds, i) for i in range(min(n, 3))]  # finite, non-empty float images, or a DataError
    for item in items:
        assert isinstance(item["id"], str) and item["id"], name
        image = item["image"]
        assert isinstance(image, torch.Tensor) and image.dtype == torch.float32 and image.ndim == 3, name
        if hasattr(ds, "channels"):
            assert image.shape[0] == ds.channels, name
        if hasattr(ds, "size"):
            assert tuple(image.shape[1:]) == tuple(ds.size), name
    ids = [item["id"] for item in items]
    assert len(set(ids)) == len(ids), f"{name}: ids repeat: {ids}"
    again = registry.build("datasets", name, **CASES[name](tmp_path))
    assert same(again[0], items[0]), f"{name}: item 0 differs between two instances built alike"
    with pytest.raises(IndexError):
        ds[n]
