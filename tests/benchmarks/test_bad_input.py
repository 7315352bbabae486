"""Bad input (issue 11): corrupt data files, wrong-typed options, exploded samples, corrupt priors, unsafe pickles.

Every file here is built by the test itself; each case asserts the error names the file (or key) at fault.
"""
from __future__ import annotations

import gzip
import math
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

from inverse_problems.data.base import DataError, GaussianFieldDataset, read_item
from inverse_problems.data.readers.fastmri import FastMRIDataset, FastMRIFile, make_header, write_fastmri_h5
from inverse_problems.operators.fft import fft2c
from inverse_problems.data.readers.nifti import NiftiDataset

torch.set_num_threads(1)


def kspace(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Centred k-space of a smooth random complex image (so every resampled size has signal)."""
    g = torch.Generator().manual_seed(seed)
    img = torch.complex(torch.rand(shape, generator=g) + 0.5, 0.1 * torch.randn(shape, generator=g))
    return fft2c(img).to(torch.complex64)


def nifti(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


# ---------------------------------------------------------------- data files
def test_nan_in_the_third_fastmri_file_is_one_failed_item(tmp_path: Path):
    for j in range(3):
        k = kspace((1, 2, 16, 16), seed=j)
        if j == 2:
            k[0, 1, 4, 4] = complex(float("nan"), 0)
        write_fastmri_h5(tmp_path / f"f{j}.h5", k)
    ds = FastMRIDataset(str(tmp_path), size=16)
    assert len(ds) == 3
    assert torch.isfinite(read_item(ds, 0)["image"]).all() and torch.isfinite(read_item(ds, 1)["image"]).all()
    with pytest.raises(DataError, match=r"f2\.h5: key 'kspace' slice 0 contains NaN or Inf") as info:
        read_item(ds, 2)
    assert info.value.path.endswith("f2.h5") and info.value.item_id == "f2-s000"


def test_all_zero_kspace_names_the_file(tmp_path: Path):
    write_fastmri_h5(tmp_path / "zero.h5", torch.zeros(1, 2, 16, 16, dtype=torch.complex64))
    with pytest.raises(DataError, match=r"zero\.h5: key 'kspace' slice 0 is all zero.*dataset\.slices"):
        FastMRIDataset(str(tmp_path), size=16)[0]


def test_absurd_declared_shape_is_refused_before_reading(tmp_path: Path):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:  # a few KB on disk, 26.8 GiB declared (chunked, never written)
        f.create_dataset("kspace", shape=(1, 1, 60000, 60000), dtype=np.complex64, chunks=(1, 1, 64, 64))
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"huge\.h5: key 'kspace'.*\(1, 60000, 60000\).*26\.8 GiB.*limit of 4 GiB"
                                        r".*dataset\.max_slice_gb"):
        FastMRIFile(path)
    # alone in its folder the dataset is refused at once; beside a good file it is one failed item
    with pytest.raises(DataError, match=r"none of the 1 file\(s\) can be read.*huge\.h5"):
        FastMRIDataset(str(tmp_path), size=8)
    write_fastmri_h5(tmp_path / "good.h5", kspace((1, 2, 16, 16)))
    ds = FastMRIDataset(str(tmp_path), size=8)
    assert len(ds) == 2 and read_item(ds, 0)["id"] == "good-s000"
    with pytest.raises(DataError, match=r"huge\.h5.*26\.8 GiB") as info:
        ds[1]
    assert info.value.item_id == "huge"
    # the limit is an option
    assert FastMRIFile(path, max_slice_gb=64).shape == (60000, 60000)


def test_truncated_h5_names_the_file(tmp_path: Path):
    good = write_fastmri_h5(tmp_path / "full.h5", kspace((4, 2, 32, 32)))
    data = good.read_bytes()
    (tmp_path / "cut").mkdir()
    cut = tmp_path / "cut" / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.h5: .*(truncated|corrupt)"):
        f = FastMRIFile(cut)  # opening or reading the slice fails, never a bare OSError
        f.kspace(3)


def test_kspace_smaller_than_the_size_is_refused_not_upsampled(tmp_path: Path):
    write_fastmri_h5(tmp_path / "small.h5", kspace((1, 2, 4, 4)), header=make_header((4, 4, 1), (4, 4, 1)))
    ds = FastMRIDataset(str(tmp_path), size=32)
    with pytest.raises(DataError, match=r"small\.h5: k-space .* is 4x4, smaller than the requested size 32x32.*"
                                        r"largest size this file gives is 4: set dataset\.size=4"):
        ds[0]
    assert FastMRIDataset(str(tmp_path), size=4)[0]["image"].shape == (2, 4, 4)


def test_truncated_nifti_gz_is_a_data_error_naming_the_file(tmp_path: Path):
    vol = np.random.default_rng(0).uniform(0.5, 1.0, (32, 32, 8)).astype(np.float32)
    full = nifti(tmp_path / "src" / "v.nii.gz", vol).read_bytes()
    raw = gzip.decompress(full)
    assert len(raw) > 352 + vol.nbytes // 2
    folder = tmp_path / "cut"
    folder.mkdir()
    (folder / "v.nii.gz").write_bytes(full[: len(full) // 2])  # the header survives, the data is cut
    ds = NiftiDataset(str(folder), size=16, slices="all")
    assert torch.isfinite(ds[0]["image"]).all()  # the early slices are still there
    with pytest.raises(DataError, match=r"v\.nii\.gz: slice 7 along axis 2 cannot be read \(EOFError.*truncated"):
        ds[7]
    # an uncompressed file shorter than its header declares is refused on open
    (folder / "v.nii.gz").unlink()
    (folder / "w.nii").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"w\.nii: the file has \d+ bytes but its header declares \d+.*truncated"):
        NiftiDataset(str(folder), size=16)
    # random bytes
    (folder / "w.nii").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"w\.nii: cannot read as NIfTI"):
        NiftiDataset(str(folder), size=16)


def test_nifti_errors_zero_small_and_huge(tmp_path: Path):
    vol = np.ones((8, 8, 3), np.float32)
    vol[..., 1] = 0
    nifti(tmp_path / "a" / "z.nii", vol)
    ds = NiftiDataset(str(tmp_path / "a"), size=8, slices="all")
    with pytest.raises(DataError, match=r"z\.nii: slice 1 along axis 2 is all zero"):
        ds[1]
    with pytest.raises(DataError, match=r"z\.nii: slice 1 along axis 2 is 8x8, smaller than the requested size "
                                        r"16x16.*dataset\.size=8"):
        NiftiDataset(str(tmp_path / "a"), size=16)[0]
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((30000, 30000, 1))  # NIfTI dimensions are int16
    hdr.set_data_dtype(np.float64)
    (tmp_path / "b").mkdir()
    with open(tmp_path / "b" / "h.nii", "wb") as f:
        hdr.write_to(f)
        f.write(b"\0" * 4)
    with pytest.raises(DataError, match=r"h\.nii: one slice along axis 2 declares shape \(30000, 30000\).*6\.7 GiB"):
        NiftiDataset(str(tmp_path / "b"), size=16)


def test_read_item_checks_any_dataset():
    class Broken(GaussianFieldDataset):
        def __getitem__(self, i):
            item = super().__getitem__(i)
            if i == 1:
                item["image"][0, 0, 0] = math.inf
            if i == 2:
                raise EOFError("compressed file ended")
            return item

    ds = Broken(size=8, length=3)
    assert read_item(ds, 0)["image"].shape == (1, 8, 8)
    with pytest.raises(DataError, match=r"Broken item 1 \(grf-test-00001\): 'image' contains 1 NaN or Inf"):
        read_item(ds, 1)
    with pytest.raises(DataError, match=r"Broken item 2: cannot read it \(EOFError: compressed file ended\)"):
        read_item(ds, 2)
    with pytest.raises(IndexError):
        read_item(ds, 3)


# ---------------------------------------------------------------- option values
@pytest.mark.parametrize("group,name,opts,message", [
    ("problems", "cs_mri", {"acceleration": "abc"}, "problem.acceleration: expected a number, got 'abc'"),
    ("problems", "cs_mri", {"coils": 2.5}, "problem.coils: expected an integer, got 2.5"),
    ("problems", "cs_mri", {"coils": True}, "problem.coils: expected an integer, got True"),
    ("problems", "cs_mri", {"snr_db": "loud"}, "problem.snr_db: expected a number or null, got 'loud'"),
    ("problems", "cs_mri", {"acceleration": float("nan")}, "problem.acceleration: expected a number, got nan"),
    ("algorithms", "dps", {"vp_step": 1}, "algorithm.vp_step: expected true or false, got 1"),
    ("datasets", "fastmri", {"crop": [320]}, "dataset.crop: expected a list of 2 integers or null, got [320]"),
    ("adapters", "tda", {"lr": [0.1]}, "adapters.tda.lr: expected a number, got [0.1]"),
])
def test_wrong_typed_option_names_the_key(group, name, opts, message):
    from benchmarks import registry

    with pytest.raises(registry.OptionError) as info:
        registry.build(group, name, **opts)
    assert str(info.value).startswith(message)


def test_option_values_are_conformed_without_loss():
    from benchmarks import registry

    p = registry.build("problems", "cs_mri", size=16, coils=3.0, acceleration="4", center_fraction=0.1)
    assert p.coils == 3 and isinstance(p.coils, int)
    assert registry.conform("1e-3", float) == 0.001 and registry.conform(2, float | None) == 2
    assert registry.conform([320, 320.0], tuple[int, int] | None) == (320, 320)
    assert registry.conform("middle", str | int) == "middle" and registry.conform(3, str | int) == 3
    assert registry.conform(2024, str | None) == "2024"  # a folder named 2024 that YAML read as a number


def test_constructors_refuse_rounding_when_called_directly():
    from inverse_problems.problems.cs_mri import CSMRIProblem
    from inverse_problems.problems.lowfield import LowFieldProblem

    with pytest.raises(TypeError, match=r"coils must be an integer >= 1, got 2\.5"):
        CSMRIProblem(size=16, coils=2.5)
    with pytest.raises(TypeError, match=r"acceleration must be a finite number, got 'abc'"):
        CSMRIProblem(size=16, acceleration="abc")
    with pytest.raises(TypeError, match=r"size must be an integer >= 2, got 32\.0"):
        LowFieldProblem(size=32.0)


def test_bench_run_reports_a_bad_option_as_a_usage_error(tmp_path):
    from tests.helpers import bench

    res = bench("run", "--problem", "cs_mri", "--algo", "zero-filled", "problem.acceleration=abc", "--n", "1",
                "--out", str(tmp_path / "r"), "--quiet", check=False)
    assert res.returncode == 2
    assert "bench run: error: problem.acceleration: expected a number, got 'abc'" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "r" / "samples.jsonl").exists()


# ---------------------------------------------------------------- unsafe pickles
class Exploit:
    """Unpickling this runs os.system (here: creates a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_malicious_checkpoint_is_refused_on_resume(tmp_path):
    from tests.helpers import bench

    out, marker = tmp_path / "p", tmp_path / "pwned"
    (out / "checkpoint").mkdir(parents=True)
    torch.save({"model": Exploit(marker), "step": 1}, out / "checkpoint" / "state.pt")
    res = bench("train-prior", "--dataset", "grf", "--size", "16", "--model", "tiny", "--n-images", "4",
                "--batch-size", "2", "--steps", "2", "--out", str(out), "--resume", "channels=2", "length=4",
                check=False)
    assert res.returncode == 2, res.stderr
    assert f"{out / 'checkpoint' / 'state.pt'}: refused to load" in res.stderr and "weights_only" in res.stderr
    assert "Traceback" not in res.stderr
    assert not marker.exists()


def test_every_torch_load_in_the_project_is_weights_only():
    import re

    root = Path(__file__).resolve().parents[2]
    calls = []
    for path in root.rglob("*.py"):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(([^()]|\([^()]*\))*\)", text):
            calls.append((path.name, m.group(0)))
    assert calls, "no torch.load found: the scan is broken"
    unsafe = [c for c in calls if "weights_only=True" not in c[1]]
    assert not unsafe, unsafe


# ---------------------------------------------------------------- exploded samples
def tiny_inpainting(b: int = 3):
    from inverse_problems.operators.inpainting import Inpainting
    from priors.analytic import GaussianPrior

    g = torch.Generator().manual_seed(0)
    prior = GaussianPrior(torch.zeros(1, 8, 8), 0.05 * torch.ones(1, 8, 8), "pixel")
    op = Inpainting((torch.rand((8, 8), generator=g) < 0.5).float(), 1, 0.05)
    return prior, op, op.measure(prior.sample(b, g), g)


def test_dps_with_a_huge_step_ends_as_exploded_samples():
    from algorithms.base import measurement_reference
    from algorithms.diffusion.dps import DPS

    prior, op, y = tiny_inpainting()
    ok = DPS(n_steps=12, zeta=0.5).reconstruct(y, op, prior, torch.Generator().manual_seed(3))
    assert not ok.failed.any() and ok.failure == [None] * 3
    bad = DPS(n_steps=12, zeta=1e4).reconstruct(y, op, prior, torch.Generator().manual_seed(3))
    assert bad.failed.all() and (bad.image == 0).all()
    ref = measurement_reference(y, op)
    for k, why in enumerate(bad.failure):
        assert why.startswith("exploded: |x| = ") and f"vs measurement scale {float(ref[k]):#.3g}" in why
        assert float(why.split()[3]) > 50 * float(ref[k])  # the reported size is above the limit it names


def test_monitor_is_relative_to_the_reference_and_the_noise_level():
    from algorithms.base import DivergenceMonitor

    x = torch.ones(2, 2, 4, 4)
    x[1] *= 60.0
    mon = DivergenceMonitor(2, reference=torch.tensor([1.0, 2.0]), sigma_max=0.0)
    out = mon.final(x.clone())
    assert mon.failed.tolist() == [False, False]  # 60 is below 50 x 2
    mon = DivergenceMonitor(2, reference=1.0, sigma_max=0.0)
    out = mon.final(x.clone())
    assert mon.failed.tolist() == [False, True] and (out[1] == 0).all() and (out[0] == 1).all()
    assert mon.failure[1] == "exploded: |x| = 84.85 vs measurement scale 1.00 (limit 50 x; a step size too large?)"
    # a noisy iterate at sigma_max = 80 is not divergence; 100 x (1 + 80) is
    mon = DivergenceMonitor(2, reference=1.0, sigma_max=80.0)
    mon.check(0, 80 * 4 * x.clone())
    assert mon.failed.tolist() == [False, True] and mon.failure[1].startswith("diverged at step 0: |x| = 2.715e+04 exceeded 8100")



# ---------------------------------------------------------------- corrupt priors
def saved_prior(tmp_path: Path) -> Path:
    from priors.diffusers_prior import DiffusersPrior
    from priors.training.loop import build_unet

    torch.manual_seed(0)
    config = {"beta_schedule": "linear", "prediction_type": "v_prediction"}
    DiffusersPrior(unet=build_unet(2, 16, "tiny"), scheduler_config=config).save_pretrained(tmp_path / "m")
    return tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors"


def test_prior_with_nan_or_inf_weights_is_refused_naming_the_file(tmp_path):
    from safetensors.torch import load_file, save_file

    from priors.diffusers_prior import DiffusersPrior

    weights = saved_prior(tmp_path)
    state = load_file(weights)
    key = sorted(state)[3]
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    save_file(state, weights)
    with pytest.raises(ValueError, match=rf"{weights}: 1 weight tensor\(s\) contain NaN or Inf \(first: {key}\)"):
        DiffusersPrior(path=str(tmp_path / "m"))


def test_prior_with_random_bytes_is_refused_naming_the_file(tmp_path):
    from priors.diffusers_prior import DiffusersPrior

    weights = saved_prior(tmp_path)
    weights.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match=rf"{weights}: cannot load the diffusers UNet .*corrupt"):
        DiffusersPrior(path=str(tmp_path / "m"))


def test_missing_diffusers_path_fails_at_once_naming_it(tmp_path, monkeypatch):
    import time

    from priors.diffusers_prior import DiffusersPrior

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to find offline
    for path in ("runs/prior", "./runs/prior", str(tmp_path / "no" / "where")):
        start = time.perf_counter()
        with pytest.raises(FileNotFoundError) as info:
            DiffusersPrior(path=path)
        assert time.perf_counter() - start < 10, "looked on the network"
        msg = str(info.value)
        assert str((tmp_path / path).resolve() if not Path(path).is_absolute() else path) in msg, msg
        assert "prior.path=DIR" in msg
    with pytest.raises(ValueError, match=r"needs `path`.*prior\.path=DIR"):
        DiffusersPrior()
