"""The field's metric conventions (benchmarks.metrics): PSNR and NMSE of the reconstruction as it is (no clipping),
fastMRI's SSIM against a NumPy transcription of skimage's structural_similarity, the convention on every line, and
`bench rescore` (a round trip from the saved images, the old file kept, every sample once)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import leaderboard
from benchmarks.metrics import LEGACY_CONVENTION, METRIC_CONVENTION, image_metrics, psnr, ssim
from tests.helpers import bench

RUN = ["--problem", "cs_mri", "--algo", "zero-filled", "--quiet", "problem.size=32", "dataset.size=32"]


def skimage_ssim(gt: np.ndarray, pred: np.ndarray, data_range: float, win: int = 7) -> float:
    """skimage.metrics.structural_similarity(gt, pred, data_range=...) with its defaults (fastMRI's call): uniform
    win x win windows, K1 0.01, K2 0.03, sample covariances, the mean over the windows inside the image."""
    gw = np.lib.stride_tricks.sliding_window_view(gt, (win, win)).reshape(-1, win * win)
    pw = np.lib.stride_tricks.sliding_window_view(pred, (win, win)).reshape(-1, win * win)
    ux, uy = gw.mean(1), pw.mean(1)
    vx, vy = gw.var(1, ddof=1), pw.var(1, ddof=1)
    vxy = ((gw - ux[:, None]) * (pw - uy[:, None])).sum(1) / (win * win - 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def test_fastmri_ssim_equals_the_numpy_reference_on_fixed_data():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(2, 2, 24, 20)).astype(np.float32)
    x = (ref + 0.3 * rng.normal(size=ref.shape)).astype(np.float32)
    rows = image_metrics(torch.from_numpy(x), torch.from_numpy(ref))
    for k in range(2):
        gm, pm = np.hypot(ref[k, 0], ref[k, 1]).astype(np.float64), np.hypot(x[k, 0], x[k, 1]).astype(np.float64)
        assert rows[k]["ssim"] == pytest.approx(skimage_ssim(gm, pm, float(gm.max())), abs=1e-6)
    try:  # where skimage is installed, the reference is skimage itself
        from skimage.metrics import structural_similarity
    except ImportError:
        return
    assert rows[0]["ssim"] == pytest.approx(structural_similarity(gm, pm, data_range=float(gm.max())), abs=1e-6)


def test_an_overshoot_of_the_target_range_lowers_psnr_and_counts_in_nmse():
    ref = torch.zeros(1, 1, 16, 16)
    ref[..., 4:12, 4:12] = 1.0
    ref[..., 0, 0] = -0.1  # a real image: both shifted by the target's minimum, range = max - min = 1.1
    exact = ref.clone()
    over = ref.clone()
    over[..., 6:10, 6:10] = 3.0  # far above the target's range: clipping would hide it
    clipped = over.clamp(max=1.0)
    m_over, m_clip, m_exact = (image_metrics(v, ref)[0] for v in (over, clipped, exact))
    mse = float(((over - ref) ** 2).mean())
    assert m_over["psnr"] == pytest.approx(-10 * math.log10(mse / 1.1**2 + 1e-8), abs=1e-5)
    assert m_over["psnr"] < m_clip["psnr"] - 5  # what the old clip hid
    assert m_exact["psnr"] == pytest.approx(80.0, abs=1e-3)  # piq's 1e-8: a perfect image scores 80 dB
    assert m_over["nmse"] == pytest.approx(float(((over - ref) ** 2).sum() / (ref**2).sum()), rel=1e-6)
    assert m_over["ssim"] < m_clip["ssim"]
    g = image_metrics(over, ref, "gaussian")[0]  # the Gaussian convention does not clip either
    assert g["psnr"] == m_over["psnr"] and g["ssim"] == pytest.approx(float(ssim(over + 0.1, ref + 0.1, 1.1)), abs=1e-7)
    assert float(psnr(over, ref, 1.0)) < float(psnr(clipped, ref, 1.0))
    with pytest.raises(ValueError, match="unknown SSIM convention 'box'"):
        image_metrics(over, ref, "box")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rescore_round_trip(tmp_path):
    out = tmp_path / "zf"
    bench("run", *RUN, "--n", "3", "--out", str(out))
    fresh = _lines(out / "samples.jsonl")
    assert {r["metric_convention"] for r in fresh} == {METRIC_CONVENTION["fastmri"]}
    assert json.loads((out / "summary.json").read_text())["metric_convention"] == \
        f"per-slice ({METRIC_CONVENTION['fastmri']})"
    # the same lines as a run scored before the convention was recorded: other numbers, no convention
    old = [{k: v for k, v in r.items() if k != "metric_convention"} | {"psnr": r["psnr"] + 1.0, "ssim": 0.5}
           for r in fresh]
    old_text = "".join(json.dumps(r) + "\n" for r in old)
    (out / "samples.jsonl").write_text(old_text)
    board = leaderboard.build([out])
    assert board["entries"][0]["metric_convention"] == f"per-slice ({LEGACY_CONVENTION})"
    # half re-scored (a run resumed after the change): the leaderboard refuses it, naming the fix
    (out / "samples.jsonl").write_text(old_text.splitlines(True)[0] + "".join(json.dumps(r) + "\n"
                                                                               for r in fresh[1:]))
    with pytest.warns(leaderboard.LeaderboardWarning, match="2 metric conventions.*bench rescore"):
        with pytest.raises(leaderboard.LeaderboardError):
            leaderboard.build([out])
    (out / "samples.jsonl").write_text(old_text)
    shutil_targets = out / "targets" / "000001.npy"
    shutil_targets.unlink()  # a run from before targets were saved: rebuilt from the dataset and the sample id
    res = bench("rescore", str(out))
    assert "3 sample(s) re-scored" in res.stdout and "1 target(s) rebuilt" in res.stdout
    new = _lines(out / "samples.jsonl")
    assert [r["index"] for r in new] == [r["index"] for r in fresh]  # every sample once, in order
    for a, b in zip(new, fresh):
        assert a == b  # the numbers of a fresh run, to the bit
    assert (out / "samples.jsonl.before-rescore").read_text() == old_text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["psnr"]["mean"] == pytest.approx(sum(r["psnr"] for r in fresh) / 3)
    assert "rescored_at" in summary and (out / "summary.json.before-rescore").exists()
    bench("rescore", str(tmp_path))  # again, as a folder of runs: the same numbers, the original kept
    assert _lines(out / "samples.jsonl") == fresh
    assert (out / "samples.jsonl.before-rescore").read_text() == old_text


def test_rescore_refuses_a_run_without_its_reconstructions(tmp_path):
    out = tmp_path / "norec"
    bench("run", *RUN, "--n", "1", "--out", str(out), "run.save_reconstructions=false")
    before = (out / "samples.jsonl").read_text()
    res = bench("rescore", str(out), check=False)
    assert res.returncode == 2 and "no saved reconstruction" in res.stderr and "re-run" in res.stderr
    assert (out / "samples.jsonl").read_text() == before and not (out / "samples.jsonl.before-rescore").exists()
    res = bench("rescore", str(tmp_path / "norec" / "reconstructions"), check=False)
    assert res.returncode == 2 and "neither a run directory nor a folder holding run directories" in res.stderr
    res = bench("rescore", str(tmp_path), check=False)  # a folder of runs: each re-scored (here refused, untouched)
    assert res.returncode == 2 and "no saved reconstruction" in res.stderr
