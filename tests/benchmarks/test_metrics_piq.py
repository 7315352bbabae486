"""The suite's own PSNR and Gaussian-window SSIM (benchmarks.metrics) against piq's on the same inputs (in range: piq
refuses others; the suite's metrics do not clip), and piq imported lazily."""
from __future__ import annotations

import subprocess
import sys

import piq
import pytest
import torch

from benchmarks.metrics import image_metrics, psnr, ssim
from inverse_problems.operators.complex import magnitude


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (1, 3, 64, 48), (1, 1, 300, 300), (1, 2, 600, 520)])
def test_psnr_and_ssim_equal_piq(shape):
    g = torch.Generator().manual_seed(sum(shape))
    y = torch.rand(shape, generator=g) * 2.5
    x = (y + 0.3 * torch.randn(shape, generator=g)).clamp(0, 2.5)
    for a, b in ((x, y), (y, y), (x.double(), y.double())):
        torch.testing.assert_close(psnr(a, b, 2.5), piq.psnr(a, b, data_range=2.5, reduction="none"), rtol=0, atol=0)
        torch.testing.assert_close(ssim(a, b, 2.5), piq.ssim(a, b, data_range=2.5, reduction="none"), rtol=0, atol=0)
    assert float(ssim(y, y, 2.5).min()) == pytest.approx(1.0, abs=1e-6)
    assert float(ssim(x, y, 2.5).max()) < 0.99


def test_image_metrics_match_piq_where_piq_applies():
    """In range, the unclipped PSNR is piq's; the Gaussian convention's SSIM is piq's (in range: piq refuses others)."""
    g = torch.Generator().manual_seed(0)
    ref = torch.randn((2, 2, 32, 32), generator=g)
    x = ref + 0.2 * torch.randn((2, 2, 32, 32), generator=g)
    rows = image_metrics(x, ref, "gaussian")
    for k in range(2):
        rm, xm = magnitude(ref[k:k + 1]), magnitude(x[k:k + 1])
        rng = float(rm.max())
        inside = bool(xm.max() <= rng)
        if inside:  # nothing to clip: piq's numbers are the convention's
            assert rows[k]["psnr"] == float(piq.psnr(xm, rm, data_range=rng))
            assert rows[k]["ssim"] == float(piq.ssim(xm, rm, data_range=rng))
        else:  # the overshoot counts: below piq's score of the clipped image
            assert rows[k]["psnr"] < float(piq.psnr(xm.clamp(0, rng), rm, data_range=rng))
            torch.testing.assert_close(torch.tensor(rows[k]["psnr"]), psnr(xm, rm, rng)[0], rtol=0, atol=0)
            torch.testing.assert_close(torch.tensor(rows[k]["ssim"]), ssim(xm, rm, rng)[0], rtol=0, atol=0)
    y = torch.rand((1, 2, 32, 32), generator=g)
    inside = (y * 0.9, y)  # magnitudes of x within the target's: piq accepts both without clipping
    row = image_metrics(*inside, "gaussian")[0]
    rm, xm = magnitude(y), magnitude(y * 0.9)
    assert row["psnr"] == float(piq.psnr(xm, rm, data_range=float(rm.max())))
    assert row["ssim"] == float(piq.ssim(xm, rm, data_range=float(rm.max())))
    with pytest.raises(ValueError, match="window does not fit"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), 1.0)


def test_metrics_do_not_import_piq_or_torchvision():
    code = "import sys, benchmarks.metrics, benchmarks.runner; print('piq' in sys.modules, 'torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]
