"""The 4-D loaders on tiny files written here by nibabel and pydicom: `acdc` (Info.cfg's ED/ES, UVI-Net's split,
frames picked between ED and ES with their times, min-max per frame) and `4dlung` (phase volumes sorted by number, HU
window; DICOM series)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inverse_problems.data.base import DataError
from inverse_problems.data.readers.acdc import ACDCDataset, pick_frames
from inverse_problems.data.readers.lung4d import Lung4DDataset


def write_acdc(root: Path, patients: dict[int, tuple[int, int, int]]) -> None:
    """patientNNN/{Info.cfg, patientNNN_4d.nii.gz}: {n: (ED, ES, frames)}, volumes (12, 10, 3, frames) whose frame t
    is t + 1 + a ramp (so each frame's identity survives min-max only through the pattern it has)."""
    import nibabel as nib

    for n, (ed, es, nt) in patients.items():
        folder = root / "training" / f"patient{n:03d}"
        folder.mkdir(parents=True)
        (folder / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: NOR\nHeight: 180.0\nNbFrame: {nt}\n")
        x = np.arange(12, dtype=np.float32).reshape(12, 1, 1, 1)
        t = np.arange(nt, dtype=np.float32).reshape(1, 1, 1, nt)
        vol = np.broadcast_to(x * (t + 1) + 100 * t, (12, 10, 3, nt)).astype(np.float32)
        nib.save(nib.Nifti1Image(np.ascontiguousarray(vol), np.eye(4)), str(folder / f"patient{n:03d}_4d.nii.gz"))


def test_pick_frames() -> None:
    assert pick_frames(1, 12, 12) == list(range(12))
    assert pick_frames(1, 9, 5) == [0, 2, 4, 6, 8]
    assert pick_frames(2, 8, 3) == [1, 4, 7]
    with pytest.raises(ValueError, match="fewer"):
        pick_frames(1, 4, 5)


def test_acdc(tmp_path) -> None:
    write_acdc(tmp_path, {3: (1, 9, 12), 95: (2, 8, 10), 99: (1, 3, 10)})
    train = ACDCDataset(str(tmp_path), "train", size=8, frames=5)
    assert [it["id"] for it in (train[0], train[2])] == ["patient003-s00", "patient003-s02"] and len(train) == 3
    item = train[1]
    assert item["image"].shape == (5, 8, 8) and item["patient"] == "patient003" and item["slice"] == 1
    assert item["times"].tolist() == [0, 2, 4, 6, 8]
    img = item["image"].flatten(1)
    assert torch.allclose(img.min(1).values, torch.zeros(5)) and torch.allclose(img.max(1).values, torch.ones(5))
    test = ACDCDataset(str(tmp_path), "test", size=8, frames=5, slices="middle")
    assert [p.name for p in test.patients] == ["patient095", "patient099"] and len(test) == 2
    assert test[0]["times"].tolist() == [0, 2, 3, 5, 6]  # frames 2..8 (1-based): 2, 3.5, 5, 6.5, 8 -> 1, 3, 4, 6, 7
    with pytest.raises(DataError, match="fewer"):
        test[1]  # ED..ES of patient099 holds 3 frames
    folders = ACDCDataset(str(tmp_path), "train", size=8, frames=5, split_mode="folders")
    assert len(folders) == 9  # every patient is under training/
    with pytest.raises(FileNotFoundError):
        ACDCDataset(str(tmp_path / "none"))


def test_acdc_runs_as_interp4d(tmp_path) -> None:
    """An ACDC item through the problem and interp-linear: the frame times reach the operator (unequal spacing)."""
    from algorithms.classical.interpolation import InterpLinear
    from inverse_problems.problems.interp4d import Interp4DProblem

    write_acdc(tmp_path, {95: (2, 8, 10)})
    item = ACDCDataset(str(tmp_path), "test", size=8, frames=5, slices="middle")[0]
    inst = Interp4DProblem(size=8, frames=5).instance([item], "cpu", torch.Generator().manual_seed(0))
    assert inst.operator.times.tolist() == [[0, 2, 3, 5, 6]]
    out = InterpLinear().reconstruct(inst.y, inst.operator).image * inst.scale.view(-1, 1, 1, 1)
    y = item["image"]
    assert torch.allclose(out[0, 1], (4 * y[0] + 2 * y[4]) / 6, atol=1e-5)


def write_lung(root: Path, patients: int = 3, phases: int = 8) -> None:
    import nibabel as nib

    for p in range(patients):
        folder = root / f"P{p}"
        folder.mkdir()
        for k in range(phases):
            vol = np.full((9, 7, 11), -1000.0 + 100 * k + 10 * p, dtype=np.float32)
            vol[1:8, :, 2:9] = 40.0
            nib.save(nib.Nifti1Image(vol, np.eye(4)), str(folder / f"phase_{10 * k}.nii.gz"))


def test_lung_4d(tmp_path) -> None:
    write_lung(tmp_path)
    test = Lung4DDataset(str(tmp_path), "test", size=9, first=1, last=4, test_patients=1)  # 9: the crop, not resized
    assert len(test) == 1 and test.channels == 4
    item = test[0]
    assert item["id"] == "P2-a1-s003" and item["image"].shape == (4, 9, 9) and item["patient"] == "P2"
    background = [float(f[0, 0]) for f in item["image"]]  # HU -1000 + 100 k + 20 on [-1000, 500]
    assert background == pytest.approx([(100 * k + 20) / 1500 for k in range(1, 5)], abs=1e-5)
    assert item["image"][:, 1:8, 1:8].flatten().tolist() == pytest.approx([1040 / 1500] * 196, abs=1e-5)
    train = Lung4DDataset(str(tmp_path), "train", size=6, test_patients=1, slices="all")
    assert {train[k]["patient"] for k in range(len(train))} == {"P0", "P1"} and len(train) == 14
    with pytest.raises(DataError, match="phases"):
        Lung4DDataset(str(tmp_path), "test", size=6, last=9, test_patients=1)


def write_dicom_lung(root: Path, phases: int = 6) -> np.ndarray:
    """Patient folder D0 of CT series (TCIA-like: study/series folders), one per phase `Gated, 10k.0%`, written in
    shuffled phase and slice order; returns the (x, y, z) HU volume of phase k = 0 (the others add 50 k HU)."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    g = np.random.default_rng(0)
    base = g.integers(-1000, 400, size=(8, 6, 5)).astype(np.float64)  # (x, y, z)
    for k in [3, 0, 5, 1, 4, 2][:phases]:
        folder = root / "D0" / "study" / f"series{k}"
        folder.mkdir(parents=True)
        uid = generate_uid()
        for z in [2, 0, 4, 1, 3]:
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
            ds.SeriesInstanceUID, ds.SeriesDescription = uid, f"P1^P100^S0^I0, Gated, {10 * k}.0%"
            ds.ImagePositionPatient = [0.0, 0.0, 2.5 * z]
            ds.Rows, ds.Columns = 6, 8
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
            ds.PixelData = (base[:, :, z].T + 1024 + 50 * k).astype(np.uint16).tobytes()  # rows = y
            pydicom.dcmwrite(str(folder / f"{z:03d}.dcm"), ds, enforce_file_format=True)
    return base


def test_lung_4d_from_dicom(tmp_path) -> None:
    """DICOM series through pydicom: phases ordered by the description's percentage, slices by z, HU by the rescale."""
    base = write_dicom_lung(tmp_path)
    ds = Lung4DDataset(str(tmp_path), "test", size=6, first=0, last=5, axis=2, slices="all", test_patients=1,
                       hu_window=[-1500, 1500])
    assert len(ds) == 5 and ds[0]["patient"] == "D0"
    item = ds[3]  # slice z = 3: its (8, 6) plane centre-cropped to 6 x 6 (x = 1..6), not resized
    expect = torch.stack([torch.from_numpy(((base[1:7, :, 3] + 50 * k + 1500) / 3000)) for k in range(6)]).float()
    assert torch.allclose(item["image"], expect, atol=1e-5)
