"""The interp4d problem: frame protocols, the frame-selection operator's SVD, per-item acquired frames, and the
missing-frame metrics against a NumPy transcription of the reference evaluation (UVI-Net / TTT4MII: PSNR peak 1,
VoxelMorph's local NCC, pytorch-ssim's Gaussian SSIM, NMSE x 100)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inverse_problems.operators.frames import FrameSelection, kept_frames, parse_protocol
from inverse_problems.problems.frame_metrics import frame_metrics, lncc, mean_se, ssim
from inverse_problems.problems.interp4d import Interp4DProblem

torch.set_num_threads(1)


# --- a NumPy transcription of the reference evaluation, written from its formulas ---------------------------------

def np_window_sums(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Zero-padded 'same' correlation of a 2-D image with an odd square kernel, by explicit shifts."""
    r = kernel.shape[0] // 2
    pad = np.pad(img, r)
    out = np.zeros_like(img)
    h, w = img.shape
    for dy in range(kernel.shape[0]):
        for dx in range(kernel.shape[1]):
            out += kernel[dy, dx] * pad[dy:dy + h, dx:dx + w]
    return out


def np_lncc(i: np.ndarray, j: np.ndarray, win: int = 9) -> float:
    """VoxelMorph's NCC loss (without its sign): local sums over a win x win window, cc = cross^2 / (I_var J_var +
    1e-5), mean over the image."""
    ones = np.ones((win, win))
    s = lambda a: np_window_sums(a, ones)  # noqa: E731
    i_sum, j_sum, i2_sum, j2_sum, ij_sum = s(i), s(j), s(i * i), s(j * j), s(i * j)
    n = win * win
    u_i, u_j = i_sum / n, j_sum / n
    cross = ij_sum - u_j * i_sum - u_i * j_sum + u_i * u_j * n
    i_var = i2_sum - 2 * u_i * i_sum + u_i * u_i * n
    j_var = j2_sum - 2 * u_j * j_sum + u_j * u_j * n
    return float(np.mean(cross * cross / (i_var * j_var + 1e-5)))


def np_ssim(i: np.ndarray, j: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """pytorch-ssim: a normalised Gaussian window, zero-padded 'same' filtering, C1 = 0.01^2, C2 = 0.03^2, mean map."""
    g = np.exp(-((np.arange(size) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    k = np.outer(g, g)
    f = lambda a: np_window_sums(a, k)  # noqa: E731
    mu1, mu2 = f(i), f(j)
    s11, s22, s12 = f(i * i) - mu1**2, f(j * j) - mu2**2, f(i * j) - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    return float(np.mean((2 * mu1 * mu2 + c1) * (2 * s12 + c2) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))))


def np_evaluate(pred: np.ndarray, gt: np.ndarray) -> dict[str, list[float]]:
    """Per frame: PSNR (max 1), lncc (window 9), SSIM, NMSE x 100."""
    out: dict[str, list[float]] = {"psnr": [], "lncc9": [], "ssim": [], "nmse100": []}
    for p, g in zip(pred, gt):
        out["psnr"].append(10 * math.log10(1.0 / np.mean((p - g) ** 2)))
        out["lncc9"].append(np_lncc(p, g))
        out["ssim"].append(np_ssim(p, g))
        out["nmse100"].append(100 * float(np.sum((p - g) ** 2) / np.sum(g**2)))
    return out


def test_metrics_match_the_numpy_transcription() -> None:
    g = torch.Generator().manual_seed(0)
    gt = torch.rand((3, 20, 24), generator=g, dtype=torch.float64)
    pred = (gt + 0.1 * torch.randn(gt.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours, ref = frame_metrics(pred, gt), np_evaluate(pred.numpy(), gt.numpy())
    for name in ref:
        assert ours[name] == pytest.approx(ref[name], rel=1e-9, abs=1e-12), name
    same = frame_metrics(gt, gt)
    assert all(v == math.inf for v in same["psnr"]) and same["ssim"] == pytest.approx([1.0] * 3)
    assert same["nmse100"] == [0.0] * 3 and all(0.99 < v <= 1.0 for v in same["lncc9"])


def test_volume_metrics_are_3d() -> None:
    """lncc and SSIM take (N, D, H, W) volumes too: a 3-D window, equal to the 2-D value on a constant-along-D
    volume away from the zero padding's reach (here: exactly equal for the identity, lower for a perturbation)."""
    g = torch.Generator().manual_seed(1)
    v = torch.rand((2, 12, 16, 16), generator=g, dtype=torch.float64)
    assert torch.allclose(ssim(v, v), torch.ones(2, dtype=torch.float64))
    noisy = v + 0.2 * torch.randn(v.shape, generator=g, dtype=torch.float64)
    assert bool((ssim(noisy, v) < 0.9).all()) and bool((lncc(noisy, v) < lncc(v, v)).all())


def test_mean_and_standard_error() -> None:
    assert mean_se([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1 / math.sqrt(3)))
    assert mean_se([5.0]) == (5.0, None) and mean_se([]) == (None, None)
    assert mean_se([1.0, math.inf, 3.0]) == pytest.approx((2.0, 1.0))


@pytest.mark.parametrize("protocol, expect", [
    ("endpoints", [1, 0, 0, 0, 0, 0, 1]),
    ("stride:2", [1, 0, 1, 0, 1, 0, 1]),
    ("stride:4", [1, 0, 0, 0, 1, 0, 1]),
    ("random:0", [1, 0, 0, 0, 0, 0, 1]),
    ("random:1", [1, 1, 1, 1, 1, 1, 1]),
])
def test_protocols(protocol: str, expect: list[int]) -> None:
    assert kept_frames(protocol, 7, torch.Generator().manual_seed(0)).int().tolist() == expect


@pytest.mark.parametrize("bad", ["stride:0", "stride:1.5", "random:2", "random", "ends", "endpoints:3"])
def test_bad_protocols_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="frame protocol"):
        parse_protocol(bad)
    with pytest.raises(ValueError, match="frame protocol"):
        Interp4DProblem(size=8, frames=5, protocol=bad)


def test_per_sample_svd_is_exact() -> None:
    """A (B, T) keep: each sample its own frames; A = U diag(s) V^T with s = 1 on the kept frames' pixels."""
    keep = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 1]], dtype=torch.bool)
    op = FrameSelection(keep, (3, 5), noise_std=0.0)
    x = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    svd = op.svd()
    assert svd.s.shape == (2, 60)
    assert torch.equal(svd.U(svd.s * svd.Vt(x)), op(x))
    assert torch.equal(op(x)[0, 1], torch.zeros(3, 5)) and torch.equal(op(x)[1, 1], x[1, 1])
    assert torch.equal(op.pinv(op(x)), op(x))
    y = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(1))
    assert float((op(x) * y).sum()) == pytest.approx(float((x * op.adjoint(y)).sum()), rel=1e-6)


def test_random_protocol_is_per_item_and_reproducible() -> None:
    """`random:p` draws each item's frames from (mask_seed, its id): the same in every run and batch, the metrics
    score exactly the frames not acquired, and the observed frames are the item's own."""
    problem = Interp4DProblem(size=8, frames=10, protocol="random:0.5")
    items = [{"id": f"s{i}", "image": torch.rand(10, 8, 8, generator=torch.Generator().manual_seed(i))}
             for i in range(4)]
    keeps = [problem.kept(it) for it in items]
    assert any(not torch.equal(keeps[0], k) for k in keeps[1:])
    assert all(torch.equal(problem.kept(it), k) for it, k in zip(items, keeps))
    inst = problem.instance(items, "cpu", torch.Generator().manual_seed(0))
    assert torch.equal(inst.operator.keep, torch.stack(keeps))
    alone = problem.instance(items[2:3], "cpu", torch.Generator().manual_seed(0))
    assert torch.equal(alone.operator.keep[0], keeps[2])
    recon = items[1]["image"].clone()
    recon[~keeps[1]] += 0.1
    m = problem.metrics(recon, items[1]["image"], items[1])
    assert m["psnr_missing"] == pytest.approx(20.0, abs=1e-4)
    rec = problem.sample_record(recon, items[1]["image"], items[1])
    assert len(rec["frames"]["psnr"]) == int((~keeps[1]).sum())
    run = Interp4DProblem.run_metrics([rec, rec])
    assert run["psnr_frames_mean"] == pytest.approx(20.0, abs=1e-4) and run["psnr_frames_se"] < 1e-3


def test_report_figures_name_each_channel_a_frame_and_mark_the_acquired():
    from inverse_problems.problems.interp4d import Interp4DProblem

    names = Interp4DProblem(size=8, frames=5).channel_names
    assert names == ("frame 0 (acquired)", "frame 1", "frame 2", "frame 3", "frame 4 (acquired)")
    stride = Interp4DProblem(size=8, frames=5, protocol="stride:2").channel_names
    assert [n.endswith("(acquired)") for n in stride] == [True, False, True, False, True]
