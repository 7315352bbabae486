"""The measured tier of cs_mri (problem.data=measured): a file's own k-space, retrospectively undersampled or
prospective; fastMRI's per-volume metrics; the committed real-format fixture through both tiers."""
from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from benchmarks import registry
from benchmarks.metrics import METRIC_CONVENTION, volume_metrics
from benchmarks.batch import run_batch
from benchmarks.build import Components
from benchmarks.items import NO_TARGET
from inverse_problems.operators.coils import birdcage_maps
from inverse_problems.data.base import DataError
from inverse_problems.data.readers.fastmri import FastMRIDataset, FastMRIFile, make_header, smooth_phase, write_fastmri_h5
from inverse_problems.operators.fft import fft2c
from inverse_problems.data.phantoms.datasets import BrainT2
from inverse_problems.problems.cs_mri import CSMRIProblem
from tests.helpers import bench

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fastmri"
SIZE = 32


def export(out: Path, *extra: str, n: int = 2, coils: int = 8) -> Path:
    bench("export-data", "--dataset", "phantom-brain-t2", "--n", str(n), "--out", str(out), "--coils", str(coils),
          *extra, f"size={SIZE}")
    return out


def cg_sense(problem: CSMRIProblem, items: list[dict]) -> torch.Tensor:
    """The reconstruction in target units (as the runner reports it)."""
    inst = problem.instance(items, "cpu", None)
    recon = registry.build("algorithms", "cg-sense").reconstruct(inst.y, inst.operator, None, None, None)
    return recon.image * inst.scale.view(-1, 1, 1, 1)


def test_export_writes_known_maps_phase_and_noise(tmp_path: Path):
    clean = export(tmp_path / "clean", "--store-maps", "--phase", "1.0", n=1)
    noisy = export(tmp_path / "noisy", "--store-maps", "--phase", "1.0", "--noise-std", "0.01", "--seed", "3", n=1)
    x = BrainT2("test", size=SIZE)[0]["image"].double()
    z = torch.complex(x[0], x[1]) * torch.polar(torch.ones(SIZE, SIZE, dtype=torch.float64),
                                                smooth_phase((SIZE, SIZE), 1.0))
    maps = birdcage_maps(8, SIZE, dtype=torch.complex128)
    expected = fft2c(maps * z)
    with h5py.File(next(clean.glob("*.h5"))) as f:
        k, stored = torch.from_numpy(f["kspace"][0]), torch.from_numpy(f["sensitivity_maps"][0])
    assert torch.allclose(stored.to(torch.complex128), maps, atol=1e-6)
    assert torch.allclose(k.to(torch.complex128), expected, atol=1e-5)
    with h5py.File(next(noisy.glob("*.h5"))) as f:
        noise = torch.from_numpy(f["kspace"][0]).to(torch.complex128) - expected
    assert float(torch.view_as_real(noise).std()) == pytest.approx(0.01, rel=0.05)
    # the SENSE-1 target with the stored maps is the phased image itself (the fastMRI one its magnitude)
    item = FastMRIDataset(str(clean), size=SIZE, combine="espirit")[0]
    got = torch.complex(item["image"][0].double(), item["image"][1].double()) * item["data_scale"]
    assert item["target_convention"] == "sense1-stored-maps" and torch.allclose(got, z, atol=1e-4)
    rss = FastMRIDataset(str(clean), size=SIZE)[0]
    assert rss["target_convention"] == "fastmri-rss" and torch.allclose(rss["image"][0] * rss["data_scale"], z.abs().float(), atol=1e-4)


def test_measured_equals_simulated_with_true_maps_and_no_noise(tmp_path: Path):
    """(a) The measured tier on exported data with the true maps and no noise is the simulated tier."""
    data = FastMRIDataset(str(export(tmp_path / "d", "--store-maps")), size=SIZE, combine="espirit")
    items = [data[0], data[1]]
    images = [BrainT2("test", size=SIZE)[i]["image"] for i in range(2)]
    for it, x in zip(items, images):
        assert torch.allclose(it["image"], x, atol=1e-5)  # the same targets
    opts = dict(size=SIZE, coils=8, noise_std=0.0, coil_maps="true")
    simulated = cg_sense(CSMRIProblem(**opts), [{"id": str(i), "image": x} for i, x in enumerate(images)])
    measured = cg_sense(CSMRIProblem(**opts, data="measured"), items)
    assert (simulated - torch.stack(images)).abs().max() > 0.05  # R = 4: not the target itself
    assert torch.allclose(measured, simulated, atol=1e-4)


def test_measured_single_coil_equals_simulated(tmp_path: Path):
    data = FastMRIDataset(str(export(tmp_path / "sc", coils=1, n=1)), size=SIZE)
    with h5py.File(next((tmp_path / "sc").glob("*.h5"))) as f:
        assert f["kspace"].shape == (1, SIZE, SIZE) and "reconstruction_esc" in f
    item = data[0]
    assert item["target_convention"] == "fastmri-esc" and item["kspace"].shape == (1, SIZE, SIZE)
    x = BrainT2("test", size=SIZE)[0]["image"]
    opts = dict(size=SIZE, coils=1, noise_std=0.0)
    simulated = cg_sense(CSMRIProblem(**opts), [{"id": "a", "image": x}])
    assert torch.allclose(cg_sense(CSMRIProblem(**opts, data="measured"), [item]), simulated, atol=1e-4)


class Perturbed:
    """A dataset whose items' k-space is replaced where `where` is true by large random values."""

    def __init__(self, base: FastMRIDataset, where: torch.Tensor, seed: int) -> None:
        self.base, self.where, self.seed = base, where, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        g = torch.Generator().manual_seed(self.seed + i)
        junk = 1e3 * torch.complex(torch.randn(item["kspace"].shape, generator=g),
                                   torch.randn(item["kspace"].shape, generator=g))
        item["kspace"] = torch.where(self.where, junk, item["kspace"])
        return item


@pytest.mark.parametrize("algo", ["cg-sense", "l1-wavelet"])
def test_unacquired_samples_never_reach_the_reconstruction(tmp_path: Path, algo: str):
    """(b) Changing every unacquired sample leaves the reconstruction (ESPIRiT maps from the ACS) bit-identical;
    changing one acquired sample does not."""
    data = FastMRIDataset(str(export(tmp_path / "d", "--phase", "1.0", "--noise-std", "0.01")), size=SIZE)
    problem = CSMRIProblem(size=SIZE, coils=8, data="measured", center_fraction=0.16)
    unacquired = problem.mask == 0
    algorithm = registry.build("algorithms", algo)

    def recon(dataset) -> list[torch.Tensor]:
        rows, images, _, _ = run_batch(Components(dataset, problem, algorithm), [0, 1], 0, torch.device("cpu"))
        assert all(r["status"] == "ok" and r["tier"] == "measured" for r in rows)
        return images

    base = recon(data)
    for a, b in zip(base, recon(Perturbed(data, unacquired, 7))):
        assert torch.equal(a, b)
    one = torch.zeros_like(unacquired)
    one[SIZE // 2, SIZE // 2 + 1] = True  # an acquired ACS sample
    assert not torch.equal(base[0], recon(Perturbed(data, one, 7))[0])


def fastmri_reference(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """fastMRI evaluate.py's formulas written out directly: whole-volume PSNR and NMSE with data_range = max(gt);
    SSIM averaged over slices, each the mean over all 7x7 windows inside the image of skimage's formula with
    sample variances."""
    peak = gt.max()
    psnr = 10 * np.log10(peak**2 / np.mean((gt - pred) ** 2))
    nmse = np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    ssims = []
    for g, p in zip(gt, pred):
        wg, wp = sliding_window_view(g, (7, 7)), sliding_window_view(p, (7, 7))
        mg, mp = wg.mean((-1, -2)), wp.mean((-1, -2))
        vg, vp = wg.var((-1, -2), ddof=1), wp.var((-1, -2), ddof=1)
        cov = ((wg - mg[..., None, None]) * (wp - mp[..., None, None])).sum((-1, -2)) / 48
        s = (2 * mg * mp + c1) * (2 * cov + c2) / ((mg**2 + mp**2 + c1) * (vg + vp + c2))
        ssims.append(s.mean())
    return {"psnr": float(psnr), "ssim": float(np.mean(ssims)), "nmse": float(nmse)}


def test_volume_metrics_are_fastmris_formula():
    rng = np.random.default_rng(0)
    gt = rng.random((3, 16, 20)) * np.linspace(0.2, 1.0, 3)[:, None, None]
    pred = gt + 0.05 * rng.standard_normal(gt.shape)
    got, ref = volume_metrics(pred, gt), fastmri_reference(pred, gt)
    for m in ("psnr", "ssim", "nmse"):
        assert got[m] == pytest.approx(ref[m], rel=1e-10), m
    assert volume_metrics(gt, gt)["ssim"] == pytest.approx(1.0) and math.isinf(volume_metrics(gt, gt)["psnr"])
    with pytest.raises(ValueError, match="at least 7 x 7"):
        volume_metrics(gt[:, :5, :5], gt[:, :5, :5])


def run(tmp_path: Path, root: Path, name: str, *overrides: str, algo: str = "cg-sense", size: int = SIZE) -> Path:
    out = tmp_path / name
    bench("run", "--problem", "cs_mri", "--algo", algo, "--dataset", "fastmri", "--n", "8", "--batch-size", "1",
          "--quiet", "--out", str(out), f"dataset.root={root}", f"dataset.size={size}", f"problem.size={size}",
          "dataset.slices=all", *overrides)
    return out


def samples(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def test_per_volume_metrics_of_a_run_equal_fastmris_formula(tmp_path: Path):
    """(c) summary.json's per-volume metrics are fastMRI's formula on the saved volume (in the file's units)."""
    root = export(tmp_path / "d", "--slices-per-file", "3", "--noise-std", "0.005", n=3)
    out = run(tmp_path, root, "run", "problem.data=measured", "problem.center_fraction=0.16")
    rows = samples(out)
    assert len(rows) == 3 and {r["volume"] for r in rows} == {"brain-t2-test-00000-vol3"}
    assert all(r["tier"] == "measured" and r["target_convention"] == "fastmri-rss" for r in rows)
    stack = lambda key: np.stack([np.sqrt((np.load(out / r[key]).astype(np.float64) ** 2).sum(0)) * r["data_scale"]  # noqa: E731
                                  for r in sorted(rows, key=lambda r: r["slice"])])
    ref = fastmri_reference(stack("reconstruction"), stack("target"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tier"] == "measured" and summary["metric_convention"] == f"per-slice ({METRIC_CONVENTION['fastmri']}) + per-volume (fastMRI)"
    (vol,) = summary["volumes"]
    assert vol["slices"] == 3
    for m in ("psnr", "ssim", "nmse"):
        assert vol[m] == pytest.approx(ref[m], rel=1e-6) and summary["volume_metrics"][m]["mean"] == vol[m]


def test_prospective_files_use_their_mask_and_write_a_submission(tmp_path: Path):
    root = export(tmp_path / "p", "--prospective", "2", "--slices-per-file", "2", n=2)
    with h5py.File(next(root.glob("*.h5"))) as f:
        assert "mask" in f and "reconstruction_rss" not in f
    out = run(tmp_path, root, "run", "problem.data=measured")
    rows = samples(out)
    assert [r["status"] for r in rows] == ["ok", "ok"] and all(r["reason"] == NO_TARGET for r in rows)
    assert all(r["psnr"] is None and "target" not in r for r in rows)
    assert all(r["problem_acceleration"] == pytest.approx(2.0) for r in rows)  # the file's mask, not problem's R = 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_no_target"] == 2 and "excluded from every metric" in summary["no_target"]
    assert summary["metrics"]["psnr"]["n"] == 0
    with h5py.File(out / "submission" / "brain-t2-test-00000-vol2.h5") as f:
        rec = f["reconstruction"][()]
    assert rec.shape == (2, SIZE, SIZE) and rec.dtype == np.float32
    mag = np.sqrt((np.load(out / rows[0]["reconstruction"]) ** 2).sum(0))
    assert np.allclose(rec[rows[0]["slice"]], mag)  # data_scale 1: the file's units
    assert bench("report", str(out)).returncode == 0  # no target to draw: those samples are left out of the figure
    sim = run(tmp_path, root, "sim")  # the simulated tier needs a target image
    assert all(r["status"] == "failed" and "problem.data=measured" in r["reason"] for r in samples(sim))


def test_bad_measured_input_fails_clearly(tmp_path: Path):
    k = fft2c(birdcage_maps(8, 16, dtype=torch.complex64) * 1.0)[None]
    write_fastmri_h5(tmp_path / "m" / "mask.h5", k, extra={"mask": np.ones(15, np.float32)})
    with pytest.raises(DataError, match=r"mask\.h5: key 'mask' has shape \(15,\); it must match the k-space: "
                                        r"\(W,\) = \(16,\)"):
        FastMRIFile(tmp_path / "m" / "mask.h5")
    narrow = np.zeros(16, np.float32)
    narrow[[2, 8, 12]] = 1
    write_fastmri_h5(tmp_path / "n" / "narrow.h5", k * torch.from_numpy(narrow), extra={"mask": narrow})
    with pytest.raises(DataError, match=r"narrow\.h5: key 'mask'.*too narrow for ESPIRiT with 8 coils.*at least 4 "
                                        r"central columns"):
        FastMRIDataset(str(tmp_path / "n"), size=16)[0]
    write_fastmri_h5(tmp_path / "h" / "hdr.h5", k, header=make_header((16, 16, 1), (32, 16, 1)))
    with pytest.raises(DataError, match=r"hdr\.h5: key 'ismrmrd_header': reconSpace matrixSize 32x16 exceeds"):
        FastMRIFile(tmp_path / "h" / "hdr.h5")
    with pytest.raises(ValueError, match="no noise is added"):
        CSMRIProblem(size=16, data="measured", snr_db=20.0)
    with pytest.raises(ValueError, match="data must be one of"):
        CSMRIProblem(size=16, data="real")
    items = [FastMRIDataset(str(export(tmp_path / "e", n=1)), size=SIZE)[0]]
    narrow_acs = CSMRIProblem(size=SIZE, coils=2, data="measured", center_fraction=0.04)  # coils: the data's, 8
    with pytest.raises(ValueError, match=r"data=measured \(8 coils in the data, items brain-t2-test-00000-s000\).*"
                                         r"too small for ESPIRiT"):
        narrow_acs.instance(items, "cpu")
    single = FastMRIDataset(str(export(tmp_path / "s", n=1, coils=1)), size=SIZE)[0]
    with pytest.raises(ValueError, match=r"k-space of shapes \[\(1, 32, 32\), \(8, 32, 32\)\].*--batch-size 1"):
        CSMRIProblem(size=SIZE, data="measured").instance(items + [single], "cpu")
    res = bench("run", "--problem", "cs_mri", "--algo", "cg-sense", "--n", "1", "--quiet", "--out",
                str(tmp_path / "r"), "problem.size=32", "dataset.size=32", "problem.data=measured", check=False)
    assert res.returncode != 0 and "needs a dataset of measurements" in res.stderr


@pytest.mark.parametrize("folder,overrides,convention", [
    ("multicoil", ("problem.data=measured",), "fastmri-rss"),
    ("multicoil", ("problem.data=measured", "problem.coil_maps=true", "dataset.combine=espirit"),
     "sense1-stored-maps"),
    ("multicoil", (), "fastmri-rss"),
    ("singlecoil", ("problem.data=measured", "problem.coils=1"), "fastmri-esc"),
])
def test_committed_fixture_runs_through_both_tiers(tmp_path: Path, folder: str, overrides: tuple, convention: str):
    """The real-format fixture (benchmarks/experiments/make_fastmri_fixture.py): an 80 x 46 encoded matrix with a
    40 x 40 recon FOV, stored maps, phase and noise; single-coil files; whole volumes."""
    out = run(tmp_path, FIXTURE / folder, "run", "problem.center_fraction=0.16", *overrides)
    rows = samples(out)
    tier = "measured" if "problem.data=measured" in overrides else "simulated"
    assert len(rows) == 2 and all(r["status"] == "ok" and r["tier"] == tier for r in rows)
    assert all(r["target_convention"] == convention and r["psnr"] > 15 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tier"] == tier and len(summary["volumes"]) == 1


def test_committed_prospective_fixture(tmp_path: Path):
    out = run(tmp_path, FIXTURE / "prospective", "run", "problem.data=measured")
    assert [r["reason"] for r in samples(out)] == [NO_TARGET] * 2
    with h5py.File(out / "submission" / "brain-t2-test-00004-vol2.h5") as f:
        assert f["reconstruction"].shape == (2, SIZE, SIZE)


def test_leaderboard_rows_say_tier_target_and_metric_convention(tmp_path: Path):
    from benchmarks import leaderboard

    root = FIXTURE / "multicoil"
    run(tmp_path, root, "runs/measured", "problem.data=measured", "problem.center_fraction=0.16")
    run(tmp_path, root, "runs/simulated", "problem.center_fraction=0.16")
    board = leaderboard.build([tmp_path / "runs"])
    leaderboard.validate(board)
    rows = {e["tier"]: e for e in board["entries"]}
    assert set(rows) == {"measured", "simulated"}
    assert rows["measured"]["target_convention"] == "fastmri-rss"
    assert rows["measured"]["metric_convention"] == f"per-slice ({METRIC_CONVENTION['fastmri']}) + per-volume (fastMRI)"
    assert rows["measured"]["metrics"]["volume_psnr"]["n"] == 1
    md = leaderboard.markdown(board)
    head = [c.strip() for c in md.splitlines()[0].strip("|").split("|")]
    assert {"tier", "target", "vol PSNR", "vol SSIM"} <= set(head)
    cells = {line.split(" | ")[head.index("tier")] for line in md.splitlines()[2:]}
    assert cells == {"measured", "simulated"}


def ismrmrd_header(encoded: tuple[int, int], recon: tuple[int, int], fov_x: tuple[float, float], centre: int,
                   trajectory: str = "cartesian") -> str:
    def space(m: tuple[int, int], fx: float) -> str:
        return (f"<matrixSize><x>{m[0]}</x><y>{m[1]}</y><z>1</z></matrixSize>"
                f"<fieldOfView_mm><x>{fx}</x><y>200</y><z>5</z></fieldOfView_mm>")
    return (f'<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>'
            f"<encodedSpace>{space(encoded, fov_x[0])}</encodedSpace><reconSpace>{space(recon, fov_x[1])}</reconSpace>"
            f"<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{encoded[1] - 1}</maximum>"
            f"<center>{centre}</center></kspace_encoding_step_1></encodingLimits>"
            f"<trajectory>{trajectory}</trajectory></encoding></ismrmrdHeader>")


def write_ismrmrd(path: Path, k: np.ndarray, header: str, columns: list[int] | None = None) -> Path:
    """k (slices, coils, X, Y) as ISMRMRD readout lines (a noise line first, every other line reversed)."""
    ismrmrd = pytest.importorskip("ismrmrd")
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(header)
    noise = ismrmrd.Acquisition.from_array(np.ones((k.shape[1], 8), np.complex64) * 99)
    noise.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    ds.append_acquisition(noise)
    for s in range(k.shape[0]):
        for y in columns if columns is not None else range(k.shape[3]):
            line = k[s, :, :, y]
            reverse = y % 2 == 1
            acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(line[:, ::-1] if reverse else line))
            if reverse:
                acq.set_flag(ismrmrd.ACQ_IS_REVERSE)
            acq.idx.kspace_encode_step_1, acq.idx.slice = y, s
            acq.center_sample = k.shape[2] // 2
            ds.append_acquisition(acq)
    ds.close()
    return path


def test_ismrmrd_raw_reads_as_the_fastmri_file(tmp_path: Path):
    """A Cartesian ISMRMRD file (readout oversampled 2x, reversed lines, a noise line) gives the items of the same
    data written as fastMRI; skipped columns make it prospective; non-Cartesian files are refused."""
    from inverse_problems.data.readers.ismrmrd import IsmrmrdFile

    fm = export(tmp_path / "fm", "--slices-per-file", "2", "--phase", "1.0", "--encoded", "64", "32")
    with h5py.File(next(fm.glob("*.h5"))) as f:
        k = f["kspace"][()]
    # fastMRI's own convention keeps the oversampled readout (encoded x 64, recon 32); ISMRMRD says so in the FOV
    raw = write_ismrmrd(tmp_path / "raw" / "scan.h5", k, ismrmrd_header((64, 32), (32, 32), (400.0, 200.0), 16))
    f = IsmrmrdFile(raw)
    assert (f.n_slices, f.coils, f.shape, f.file_mask) == (2, 8, (32, 32), None)
    for combine in ("rss", "espirit"):
        a = FastMRIDataset(str(fm), size=SIZE, slices="all", combine=combine)
        b = FastMRIDataset(str(tmp_path / "raw"), size=SIZE, slices="all", combine=combine)
        for i in range(2):
            assert torch.allclose(a[i]["image"], b[i]["image"], atol=1e-4)
            assert torch.allclose(a[i]["kspace"], b[i]["kspace"], atol=1e-4 * float(a[i]["kspace"].abs().max()))
    half = write_ismrmrd(tmp_path / "pr" / "scan.h5", k, ismrmrd_header((64, 32), (32, 32), (400.0, 200.0), 16),
                         columns=[c for c in range(32) if c % 2 == 0 or 12 <= c < 20])
    item = FastMRIDataset(str(tmp_path / "pr"), size=SIZE)[0]
    assert item["image"] is None and float(item["mask"][0].sum()) == 20
    radial = write_ismrmrd(tmp_path / "rad" / "scan.h5", k[:1],
                           ismrmrd_header((64, 32), (32, 32), (400.0, 200.0), 16, trajectory="radial"))
    with pytest.raises(DataError, match=r"scan\.h5: key 'dataset/xml': the trajectory is 'radial'; only Cartesian"):
        IsmrmrdFile(radial)


def test_inversebench_target_and_reconstruction_share_their_maps(tmp_path: Path):
    """dataset.calib = problem.espirit_calib: the SENSE-1 target is the combination of the fully sampled coil images
    with exactly the maps the reconstruction estimates from the ACS of the undersampled data."""
    from inverse_problems.operators.fft import ifft2c

    item = FastMRIDataset(str(export(tmp_path / "d", "--phase", "1.0", "--noise-std", "0.01", n=1)), size=SIZE,
                          combine="espirit", calib=8)[0]
    assert item["target_convention"] == "sense1-espirit"
    inst = CSMRIProblem(size=SIZE, data="measured", center_fraction=0.25, espirit_calib=8).instance([item], "cpu")
    maps = inst.operator.maps[0]
    coil_images = ifft2c(item["kspace"])
    sense1 = (maps.conj() * coil_images).sum(0) / (maps.abs() ** 2).sum(0).clamp_min(1e-12)
    target = torch.complex(item["image"][0], item["image"][1]) * item["data_scale"]
    assert torch.allclose(sense1, target, atol=1e-4 * float(target.abs().max()))
    other = CSMRIProblem(size=SIZE, data="measured", center_fraction=0.25).instance([item], "cpu").operator.maps[0]
    assert not torch.allclose(other, maps, atol=1e-3)  # the whole ACS (8 x 32) gives other maps
