"""NIfTI folders: slicing, cropping/resizing, normalisation, and clear errors, on volumes the test writes."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from benchmarks import registry
from inverse_problems.data.readers.nifti import NiftiDataset, resize_square


def save(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def volume(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.1, 2.0, size=shape).astype(np.float32)


def test_slices_crop_and_normalise_exactly(tmp_path: Path):
    vol = volume((16, 20, 5))
    vol[..., 3] *= -1  # negative values: the magnitude is taken
    save(tmp_path / "a.nii.gz", vol)
    ds = NiftiDataset(str(tmp_path), size=16, axis=2, slices="all")
    assert len(ds) == 5
    item = ds[3]
    assert item["id"] == "a-a2-s003"
    ref = np.abs(vol[:, 2:18, 3])  # centre crop of the 16 x 20 slice to 16 x 16; no resize needed
    ref = ref / np.quantile(ref, 0.99, method="linear")
    x = item["image"]
    assert x.shape == (2, 16, 16) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.from_numpy(ref).float(), atol=1e-5)
    assert torch.equal(x[1], torch.zeros(16, 16))


def test_resize_and_axis(tmp_path: Path):
    save(tmp_path / "b.nii", volume((30, 24, 16), seed=1))  # axis-0 slices 24 x 16: cropped to 16, resized to 12
    ds = NiftiDataset(str(tmp_path), size=12, axis=0, slices="middle:3")
    assert len(ds) == 3 and ds[0]["id"] == "b-a0-s014"
    x = ds[1]["image"]
    assert x.shape == (2, 12, 12)
    assert float(torch.quantile(x[0].abs().flatten(), 0.99)) == pytest.approx(1.0, abs=1e-5)
    const = resize_square(torch.full((24, 30), 3.0), 10)  # antialiased resize keeps a constant
    assert const.shape == (10, 10) and torch.allclose(const, torch.full((10, 10), 3.0))


def test_four_d_singleton_and_split_folder(tmp_path: Path):
    save(tmp_path / "train" / "t.nii.gz", volume((8, 8, 3, 1)))
    save(tmp_path / "other.nii.gz", volume((8, 8, 2)))
    train = registry.build("datasets", "nifti", root=str(tmp_path), split="train", size=8, slices="all")
    assert len(train) == 3 and train[0]["image"].shape == (2, 8, 8)
    test = NiftiDataset(str(tmp_path), split="test", size=8, slices="all")  # no test/ folder: the root itself
    assert [test[i]["id"] for i in range(len(test))] == ["other-a2-s000", "other-a2-s001"]


def test_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="pass root="):
        NiftiDataset(None)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        NiftiDataset(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .nii or .nii.gz files"):
        NiftiDataset(str(tmp_path / "empty"))
    save(tmp_path / "flat" / "f.nii", volume((8, 8)))
    with pytest.raises(ValueError, match=r"f\.nii: volume has shape \(8, 8\) \(rank 2\); expected a 3-D volume"):
        NiftiDataset(str(tmp_path / "flat"))
    bad = volume((8, 8, 2))
    bad[1, 1, 1] = np.nan
    save(tmp_path / "nan" / "n.nii.gz", bad)
    ds = NiftiDataset(str(tmp_path / "nan"), size=8, slices="all")
    assert torch.isfinite(ds[0]["image"]).all()
    with pytest.raises(ValueError, match=r"n\.nii\.gz: slice 1 along axis 2 contains NaN"):
        ds[1]
    with pytest.raises(ValueError, match="axis must be 0, 1 or 2"):
        NiftiDataset(str(tmp_path / "nan"), axis=3)
    with pytest.raises(ValueError, match="bad slices"):
        NiftiDataset(str(tmp_path / "nan"), slices="7")
