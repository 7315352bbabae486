"""The real-anatomy test set of other subjects (inverse_problems/data/real_brain.py)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from inverse_problems.data import real_brain
from inverse_problems.data.real_brain import RealBrainDataset, to_item_image

needs_dipy = pytest.mark.skipif(importlib.util.find_spec("dipy") is None,
                                reason="real-brain's dipy slices need dipy: pip install dipy")
needs_pydicom = pytest.mark.skipif(importlib.util.find_spec("pydicom") is None,
                                   reason="real-brain's MR_small slice needs pydicom: pip install pydicom")


def test_train_is_refused():
    with pytest.raises(ValueError, match="never used for training"):
        RealBrainDataset("train")
    with pytest.raises(ValueError, match="unknown split"):
        RealBrainDataset("dev")
    with pytest.raises(ValueError, match="for split 'val'"):
        RealBrainDataset("val", sources=("dipy-b0",))


@needs_dipy
def test_val_split_is_disjoint_from_test_and_interleaved():
    val, test = RealBrainDataset("val", size=32), RealBrainDataset("test", size=32, sources=("dipy-t1-coronal", "dipy-b0"))
    assert len(val) == 22
    ids = [val[i]["id"] for i in range(len(val))]
    assert ids[:2] == ["real-dipy-piesno-00", "real-dipy-aniso-00"] and len(set(ids)) == 22
    images = torch.stack([val[i]["image"] for i in range(len(val))])
    for j in range(len(test)):
        assert (images - test[j]["image"]).abs().flatten(1).amax(1).min() > 1e-3   # no test slice in val


def test_item_image_crops_the_centre_square_and_has_zero_phase():
    a = np.full((8, 12), 100.0)
    a[:, 2:10] = 3.0                                   # the centre 8 x 8 square
    img = to_item_image(a, 8)
    assert img.shape == (2, 8, 8) and img.dtype == torch.float32
    assert torch.allclose(img[0], torch.ones(8, 8)) and img[1].abs().max() == 0


def test_missing_package_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(real_brain.importlib.util, "find_spec", lambda name, *a: None if name == "dipy" else real(name, *a))
    with pytest.raises(ImportError, match="pip install dipy"):
        RealBrainDataset(sources=("dipy-b0",))
    with pytest.raises(ValueError, match="unknown real-brain sources"):
        RealBrainDataset(sources=("brainweb",))


@needs_pydicom
def test_pydicom_slice():
    ds = RealBrainDataset(size=32, sources=("pydicom-mr-small",))
    assert len(ds) == 1
    item = ds[0]
    assert item["id"] == "real-pydicom-mr-small-00"
    mag = item["image"].pow(2).sum(0).sqrt()
    assert torch.quantile(mag.flatten(), 0.99).item() == pytest.approx(1.0, abs=1e-5)


@needs_dipy
@needs_pydicom
def test_all_sources_deterministic_and_normalised():
    ds = RealBrainDataset(size=32)
    assert len(ds) == 12                               # 1 T1 coronal + 10 b0 axial (dipy) + 1 MR_small (pydicom)
    ids = [ds[i]["id"] for i in range(len(ds))]
    assert len(set(ids)) == len(ids) and ids[0] == "real-dipy-t1-coronal-00"
    for i in range(len(ds)):
        img = ds[i]["image"]
        assert img.shape == (2, 32, 32) and img[1].abs().max() == 0
        assert torch.quantile(img[0].flatten(), 0.99).item() == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(RealBrainDataset(size=32)[3]["image"], ds[3]["image"])
    with pytest.raises(IndexError):
        ds[12]
