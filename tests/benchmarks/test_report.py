"""`bench report`: titles that say what was measured, colour bars, and targets saved with the run."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from omegaconf import OmegaConf

from benchmarks.report import Targets, report, run_title, samples_figure
from benchmarks.build import build_dataset
from tests.helpers import bench


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "inp-tv"
    bench("run", "--problem", "inpainting", "--algo", "tv", "--out", str(out), "--n", "2", "--quiet",
          "problem.size=16", "dataset.size=16")
    return out


def test_targets_are_saved_with_the_run(run):
    """targets/<index>.npy holds the dataset's ground truth exactly (target units, C x H x W float32)."""
    cfg = OmegaConf.load(run / "config.yaml")
    dataset = build_dataset(cfg.names.dataset, cfg, cfg.run.split)
    rows = sorted(map(json.loads, (run / "samples.jsonl").read_text().splitlines()), key=lambda r: r["index"])
    assert [r["target"] for r in rows] == ["targets/000000.npy", "targets/000001.npy"]
    for r in rows:
        saved = np.load(run / r["target"])
        assert saved.dtype == np.float32 and saved.shape == (1, 16, 16)
        np.testing.assert_array_equal(saved, dataset[r["index"]]["image"].numpy())


def test_report_does_not_need_the_dataset(run, tmp_path):
    """With saved targets the report works although the dataset named in config.yaml no longer exists."""
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    cfg = OmegaConf.load(moved / "config.yaml")
    cfg.names.dataset = "no-such-dataset"
    OmegaConf.save(cfg, moved / "config.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        text = report(moved)
    assert text.startswith("tv on inpainting (no-such-dataset): prior –, shift none\n")
    assert (moved / "figures" / "samples.png").stat().st_size > 5_000


def test_report_rebuilds_missing_targets_with_a_warning(run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(run, old)
    saved = np.load(old / "targets" / "000001.npy")
    shutil.rmtree(old / "targets")
    cfg = OmegaConf.load(old / "config.yaml")
    with pytest.warns(UserWarning, match="no saved targets"):
        targets = Targets(old, cfg)
        np.testing.assert_array_equal(targets(1), saved)
    assert targets.rebuilt
    cfg.names.dataset = "no-such-dataset"
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError, match="targets/000001.npy is missing"):
        Targets(old, cfg)(1)


def test_figure_has_colour_bars_and_a_full_title(run):
    cfg = OmegaConf.load(run / "config.yaml")
    rows = [{"index": i, "psnr": 20.0 + i, "status": "ok", "reconstruction": f"reconstructions/{i:06d}.npy"}
            for i in (0, 1)]
    fig = samples_figure(run, cfg, rows, "T")
    assert len(fig.axes) == 3 * 2 + 2
    assert sorted(a.get_ylabel() for a in fig.axes[6:]) == ["intensity (target units)", "|error|"]
    error = fig.axes[5].get_images()[0].get_array()  # row 3 (|error|), sample 1
    recon = np.load(run / "reconstructions" / "000001.npy")[0]
    target = np.load(run / "targets" / "000001.npy")[0]
    np.testing.assert_allclose(error, np.abs(recon - target), rtol=1e-6)


def test_title_names_method_prior_shift_r_and_coils():
    cfg = OmegaConf.create({"names": {"problem": "cs_mri", "algorithm": "daps", "adapters": ["tda", "air"],
                                      "prior": "phantom-brain-64", "dataset": "phantom-brain-t1", "shift": "contrast"},
                            "problem": {"coils": 8, "acceleration": 4}})
    rows = [{"problem_acceleration": 3.9}, {"problem_acceleration": 4.1}]
    assert run_title(cfg, rows) == ("daps+tda+air on cs_mri (phantom-brain-t1): prior phantom-brain-64, "
                                    "shift contrast, R = 4.0, 8 coils")
    cfg.problem.coils = 1
    assert run_title(cfg, [{"problem_acceleration": 7.96}]).endswith("R = 8.0, 1 coil")
