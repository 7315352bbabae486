"""fastMRI h5 files: exact write/read round trip, clear errors for bad files, resampling, export via the CLI."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from benchmarks import registry
from inverse_problems.data.readers.fastmri import (FastMRIDataset, FastMRIFile, center_crop, make_header, parse_header,
                                      parse_slices, read_fastmri_h5, resample_coil_images, write_fastmri_h5)
from inverse_problems.operators.fft import fft2c
from inverse_problems.data.phantoms.datasets import BrainT2
from tests.helpers import bench

FASTMRI_LIKE_HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <studyInformation><studyTime>12:00:00</studyTime></studyInformation>
  <encoding>
    <encodedSpace><matrixSize><x>640</x><y>368</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>161</y><z>4.5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>320</x><y>320</y><z>1</z></matrixSize></reconSpace>
    <trajectory>cartesian</trajectory>
  </encoding>
</ismrmrdHeader>"""


def mag(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).sum(0).sqrt()


def random_kspace(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))


def test_write_read_round_trip_is_exact(tmp_path: Path):
    k = random_kspace((3, 4, 12, 10))
    rss = torch.rand(3, 8, 8)
    header = make_header((12, 10, 1), (8, 8, 1))
    path = write_fastmri_h5(tmp_path / "a.h5", k, rss, header)
    d = read_fastmri_h5(path)
    assert d["kspace"].dtype == torch.complex64 and torch.equal(d["kspace"], k)
    assert torch.equal(d["reconstruction_rss"], rss)
    assert d["header_xml"] == header
    assert d["header"] == {"encoded": (12, 10, 1), "recon": (8, 8, 1)}
    assert d["attrs"]["max"] == pytest.approx(float(rss.max()))
    f = FastMRIFile(path)
    assert (f.n_slices, f.coils, f.shape, f.crop_size()) == (3, 4, (12, 10), (8, 8))
    assert torch.equal(f.kspace(-1), k[2])


def test_single_coil_file_reads_as_one_coil(tmp_path: Path):
    k = random_kspace((2, 8, 8))
    path = write_fastmri_h5(tmp_path / "sc.h5", k)
    f = FastMRIFile(path)
    assert f.coils == 1 and torch.equal(f.kspace(1), k[1][None])
    assert f.header == {"encoded": None, "recon": None} and f.crop_size() == (8, 8)


def test_parse_fastmri_like_header():
    assert parse_header(FASTMRI_LIKE_HEADER) == {"encoded": (640, 368, 1), "recon": (320, 320, 1)}
    with pytest.raises(ValueError, match="not valid XML"):
        parse_header("<ismrmrdHeader><encoding>", "x.h5")


def _raw(path: Path, **datasets: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
    return path


def test_bad_files_fail_clearly(tmp_path: Path):
    good = random_kspace((1, 2, 8, 8)).numpy()
    missing = _raw(tmp_path / "missing.h5", reconstruction_rss=np.ones((1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"missing\.h5: missing key 'kspace'.*found keys: reconstruction_rss"):
        FastMRIFile(missing)
    rank = _raw(tmp_path / "rank.h5", kspace=good[0, 0])
    with pytest.raises(ValueError, match=r"rank\.h5: key 'kspace' has shape \(8, 8\) \(rank 2\); expected rank 4"):
        FastMRIFile(rank)
    real = _raw(tmp_path / "real.h5", kspace=good.real.astype(np.float32))
    with pytest.raises(ValueError, match=r"real\.h5: key 'kspace' is real-valued \(float32\); expected complex"):
        read_fastmri_h5(real)
    bad = good.copy()
    bad[0, 1, 3, 3] = np.nan
    nan = _raw(tmp_path / "nan.h5", kspace=bad)
    with pytest.raises(ValueError, match=r"nan\.h5: key 'kspace' slice 0 contains NaN"):
        read_fastmri_h5(nan)
    rss_nan = _raw(tmp_path / "rssnan.h5", kspace=good, reconstruction_rss=np.full((1, 8, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"rssnan\.h5: key 'reconstruction_rss' slice 0 contains NaN"):
        read_fastmri_h5(rss_nan)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match=r"text\.h5: not an HDF5 file"):
        FastMRIFile(tmp_path / "text.h5")
    # the dataset opens files lazily: NaNs surface when the item is read, naming the file
    folder = tmp_path / "nanfolder"
    folder.mkdir()
    _raw(folder / "vol.h5", kspace=bad)
    ds = FastMRIDataset(str(folder), size=8)
    with pytest.raises(ValueError, match=r"vol\.h5: key 'kspace' slice 0 contains NaN"):
        ds[0]


def test_resampling_exact_references():
    g = torch.Generator().manual_seed(1)
    img = torch.complex(torch.randn(2, 16, 12, generator=g), torch.randn(2, 16, 12, generator=g))
    k = fft2c(img)
    # same size: the crop in image space is exact
    assert torch.allclose(resample_coil_images(k, (8, 8), 8), center_crop(img, (8, 8)), atol=1e-5)
    # a constant image keeps its value when resampled to a lower resolution
    const = torch.full((1, 16, 16), 2.5 + 1j, dtype=torch.complex64)
    assert torch.allclose(resample_coil_images(fft2c(const), (16, 16), 4), torch.full((1, 4, 4), 2.5 + 1j), atol=1e-5)
    # zero-padding when the target is larger than the data
    assert center_crop(torch.ones(1, 2, 2), (4, 4)).sum() == 4


def test_parse_slices():
    assert parse_slices("middle", 7) == [3]
    assert parse_slices("all", 3) == [0, 1, 2]
    assert parse_slices("middle:3", 10) == [4, 5, 6]
    assert parse_slices("2:4", 10) == [2, 3]
    assert parse_slices(-1, 5) == [4]
    with pytest.raises(ValueError, match="bad slices 'top'"):
        parse_slices("top", 5)


def test_dataset_folders_and_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="pass root="):
        FastMRIDataset(None)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        FastMRIDataset(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="no .h5 files"):
        FastMRIDataset(str(tmp_path))
    for split in ("val", "test"):
        write_fastmri_h5(tmp_path / f"multicoil_{split}" / f"{split}.h5", random_kspace((5, 2, 16, 16)),
                         header=make_header((16, 16, 1), (12, 12, 1)))
    ds = FastMRIDataset(str(tmp_path), split="val", size=8, slices="all")
    assert len(ds) == 5 and ds[4]["id"] == "val-s004"
    x = ds[2]["image"]
    assert x.shape == (2, 8, 8) and torch.equal(x[1], torch.zeros(8, 8))  # rss: zero phase
    assert float(torch.quantile(mag(x).flatten(), 0.99)) == pytest.approx(1.0, abs=1e-5)
    test = registry.build("datasets", "fastmri", root=str(tmp_path), split="test", size=8)
    assert len(test) == 1 and test[0]["id"] == "test-s002"
    with pytest.raises(ValueError, match="unknown coil combination"):
        FastMRIDataset(str(tmp_path), combine="sos")


def test_export_then_read_round_trip(tmp_path: Path):
    out = tmp_path / "export"
    bench("export-data", "--dataset", "phantom-brain-t2", "--n", "2", "--out", str(out), "--coils", "4", "size=32")
    files = sorted(out.glob("*.h5"))
    assert [f.name for f in files] == ["brain-t2-test-00000.h5", "brain-t2-test-00001.h5"]
    ref = BrainT2("test", size=32)
    d = read_fastmri_h5(files[0])
    assert d["kspace"].shape == (1, 4, 32, 32) and d["header"]["recon"] == (32, 32, 1)
    assert torch.allclose(d["reconstruction_rss"][0], mag(ref[0]["image"]), atol=1e-5)
    ds = FastMRIDataset(str(out), size=32)
    for i in range(2):
        assert torch.allclose(mag(ds[i]["image"]), mag(ref[i]["image"]), atol=1e-5)
    sense = FastMRIDataset(str(out), size=32, combine="espirit")[0]["image"]
    assert torch.allclose(mag(sense), mag(ref[0]["image"]), atol=1e-3)
    assert sense[1].abs().max() > 0.01  # SENSE-1 keeps a phase
    low = FastMRIDataset(str(out), size=16)[0]["image"]
    assert low.shape == (2, 16, 16)
    bad = bench("export-data", "--dataset", "phantom-brain-t2", "--n", "0", "--out", str(out), check=False)
    assert bad.returncode == 2 and "--n must be between 1" in bad.stderr
