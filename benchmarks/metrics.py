"""Per-sample image metrics on un-scaled images, magnitude for complex (2-channel) data, by the field's conventions.

The convention (`METRIC_CONVENTION`, written on every line of samples.jsonl as `metric_convention`; lines without
it were scored by `LEGACY_CONVENTION`, and `bench rescore` re-scores them from their saved images):

- PSNR and NMSE of the reconstruction as it is: nothing is clipped to the target's range (an overshoot costs PSNR).
  PSNR = -10 log10(mean((x - ref)^2) / range^2 + 1e-8) (piq's formula: 80 dB for a perfect image, never infinite);
  NMSE = ||x - ref||^2 / ||ref||^2; NCC the Pearson correlation.
- SSIM by fastMRI's convention (Zbontar et al. 2018; fastmri/evaluate.py, skimage's structural_similarity
  defaults): a 7 x 7 uniform window, K1 = 0.01, K2 = 0.03, sample (co)variances (N / (N - 1)), the mean over the
  windows inside the image, per channel of the magnitude image, in float64. A problem may declare another
  convention by a class attribute `ssim_convention = "gaussian"` (the natural-image problems do): Wang et al.
  2004's 11 x 11 Gaussian window (sigma 1.5), computed as piq.ssim does (images average-pooled by
  round(min(H, W)/256) when that is > 1; tests/benchmarks/test_metrics_piq.py checks it equal to piq's).
- The data range is taken from the target: its maximum magnitude for complex data, max - min for real data (both
  images shifted by the target's minimum). Only LPIPS (piq, VGG16) sees the reconstruction clipped to
  [0, range], as its network requires; it is computed only when its weights are already in the torch hub cache
  (offline without them it is null, with one warning). Importing piq (and torchvision with it, seconds at
  start-up) waits until LPIPS needs it.

`LEGACY_CONVENTION` (runs before the convention was recorded): PSNR and SSIM on the reconstruction clipped to
[0, range], SSIM with the Gaussian window; NMSE and NCC unclipped as now.

`volume_metrics` is fastMRI's per-volume convention (fastmri/evaluate.py): per volume of magnitude slices,
NMSE = ||gt - pred||^2 / ||gt||^2, PSNR = 10 log10(max(gt)^2 / mean((gt - pred)^2)) over the whole volume, SSIM
the mean over slices of `window_ssim` with data_range = the volume's max(gt).
"""
from __future__ import annotations

import math
import os
import warnings
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from inverse_problems.operators.complex import magnitude

IMAGE_METRICS = ("psnr", "ssim", "nmse", "ncc", "lpips")
SSIM_CONVENTIONS = ("fastmri", "gaussian")
METRIC_CONVENTION = {"fastmri": "v2: unclipped PSNR/NMSE, fastMRI SSIM (7x7 uniform)",
                     "gaussian": "v2: unclipped PSNR/NMSE, Gaussian SSIM (11x11, piq)"}
LEGACY_CONVENTION = "v1: PSNR/SSIM of the clipped reconstruction, Gaussian SSIM (11x11, piq)"
LPIPS_FILES = ("lpips_weights.pt", "vgg16-397923af.pth")


def _lpips_available() -> bool:
    ckpt = os.path.join(torch.hub.get_dir(), "checkpoints")
    return all(os.path.exists(os.path.join(ckpt, f)) for f in LPIPS_FILES)


@lru_cache(maxsize=1)
def _lpips_model() -> torch.nn.Module | None:
    if not _lpips_available():
        warnings.warn(
            "LPIPS is null: its weights (" + ", ".join(LPIPS_FILES) + ") are not in "
            f"{os.path.join(torch.hub.get_dir(), 'checkpoints')}; put them there to compute it offline",
            RuntimeWarning, stacklevel=3,
        )
        return None
    import piq  # imports torchvision: only when LPIPS is computed

    return piq.LPIPS(reduction="none").eval()


def psnr(x: Tensor, y: Tensor, data_range: float) -> Tensor:
    """(B,) piq.psnr's formula, -10 log10(mean((x - y)^2)/range^2 + 1e-8), of (B, C, H, W) images (any values)."""
    mse = ((x / data_range - y / data_range) ** 2).mean(dim=(1, 2, 3))
    return -10 * torch.log10(mse + 1e-8)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    g = coords**2
    g = (-(g[None] + g[:, None]) / (2 * sigma**2)).exp()
    return (g / g.sum())[None]


def ssim(x: Tensor, y: Tensor, data_range: float, kernel_size: int = 11, kernel_sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """(B,) piq.ssim (downsample=True) of (B, C, H, W) images (any values; piq asks for [0, range]): the mean over channels and valid
    windows of (2 mu_x mu_y + c1)(2 s_xy + c2) / ((mu_x^2 + mu_y^2 + c1)(s_x^2 + s_y^2 + c2)), c = K^2."""
    x, y = x / float(data_range), y / float(data_range)
    f = max(1, round(min(x.shape[-2:]) / 256))
    if f > 1:
        x, y = F.avg_pool2d(x, kernel_size=f), F.avg_pool2d(y, kernel_size=f)
    if x.shape[-1] < kernel_size or x.shape[-2] < kernel_size:
        raise ValueError(f"SSIM's {kernel_size} x {kernel_size} window does not fit images of {tuple(x.shape[-2:])}")
    c = x.shape[1]
    kernel = _gaussian_window(kernel_size, kernel_sigma, x.dtype, x.device).repeat(c, 1, 1, 1)
    conv = lambda t: F.conv2d(t, weight=kernel, stride=1, padding=0, groups=c)  # noqa: E731
    mu_x, mu_y = conv(x), conv(y)
    mu_xx, mu_yy, mu_xy = mu_x**2, mu_y**2, mu_x * mu_y
    s_xx, s_yy, s_xy = conv(x**2) - mu_xx, conv(y**2) - mu_yy, conv(x * y) - mu_xy
    c1, c2 = k1**2, k2**2
    cs = (2.0 * s_xy + c2) / (s_xx + s_yy + c2)
    ss = (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs
    return ss.mean(dim=(-1, -2)).mean(1)


def metric_convention(ssim_convention: str = "fastmri") -> str:
    """The name written on each line (`metric_convention`) for a problem's SSIM convention."""
    if ssim_convention not in SSIM_CONVENTIONS:
        raise ValueError(f"unknown SSIM convention {ssim_convention!r}; a problem's ssim_convention is one of "
                         f"{', '.join(SSIM_CONVENTIONS)}")
    return METRIC_CONVENTION[ssim_convention]


def line_conventions(rows: list[dict]) -> list[str]:
    """The metric conventions of a run's scored lines (status ok), sorted; a line without one: LEGACY_CONVENTION."""
    return sorted({str(r.get("metric_convention") or LEGACY_CONVENTION) for r in rows if r.get("status") == "ok"})


def fastmri_ssim(x: Tensor, ref: Tensor, data_range: float) -> float:
    """fastMRI's SSIM of one (C, H, W) image against its target: `window_ssim` per channel (float64), averaged."""
    if min(ref.shape[-2:]) < 7:
        raise ValueError(f"fastMRI's SSIM needs images of at least 7 x 7 pixels, got {tuple(ref.shape[-2:])}")
    return float(window_ssim(ref.double(), x.double(), data_range).mean())


def image_metrics(x: Tensor, ref: Tensor, ssim_convention: str = "fastmri") -> list[dict[str, float | None]]:
    """Metrics of each reconstruction x against its target ref, both (B, C, H, W), un-scaled (module docstring)."""
    metric_convention(ssim_convention)
    xm, rm = magnitude(x.detach().float()).cpu(), magnitude(ref.detach().float()).cpu()
    lpips = _lpips_model()
    rows = []
    signed = x.shape[1] != 2
    for xi, ri in zip(xm, rm):
        xi, ri = xi[None], ri[None]
        if signed:
            low = ri.min()
            xi, ri = xi - low, ri - low
        data_range = float(ri.max().clamp_min(1e-12))
        err = ((xi - ri) ** 2).sum()
        ref_energy = ((ri + low) ** 2).sum() if signed else (ri**2).sum()
        xz, rz = xi - xi.mean(), ri - ri.mean()
        ncc = (xz * rz).sum() / (xz.norm() * rz.norm()).clamp_min(1e-30)
        row: dict[str, float | None] = {
            "psnr": float(psnr(xi, ri, data_range)),
            "ssim": (fastmri_ssim(xi[0], ri[0], data_range) if ssim_convention == "fastmri"
                     else float(ssim(xi, ri, data_range))),
            "nmse": float(err / ref_energy.clamp_min(1e-30)),
            "ncc": float(ncc),
            "lpips": None,
        }
        if lpips is not None:
            xc = xi.clamp(0, data_range)  # LPIPS's network takes images in [0, 1]: the one clipped metric
            with torch.no_grad():
                rgb = (lambda v: v) if xc.shape[1] == 3 else (lambda v: v.mean(1, keepdim=True).repeat(1, 3, 1, 1))
                row["lpips"] = float(lpips(rgb(xc / data_range), rgb(ri / data_range)))
        rows.append(row)
    return rows


VOLUME_METRICS = ("psnr", "ssim", "nmse")


def window_ssim(gt: Tensor, pred: Tensor, data_range: float, win: int = 7, k1: float = 0.01,
                k2: float = 0.03) -> Tensor:
    """(S,) mean SSIM of each slice of (S, H, W) float64 images over every win x win window inside the image."""
    x, y = gt[:, None], pred[:, None]
    mean = lambda t: F.avg_pool2d(t, win, stride=1)  # noqa: E731 - windows inside the image only
    n = win * win
    ux, uy = mean(x), mean(y)
    vx = (mean(x * x) - ux * ux) * n / (n - 1)
    vy = (mean(y * y) - uy * uy) * n / (n - 1)
    vxy = (mean(x * y) - ux * uy) * n / (n - 1)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def volume_metrics(pred: np.ndarray | Tensor, gt: np.ndarray | Tensor) -> dict[str, float]:
    """fastMRI's per-volume PSNR, SSIM and NMSE of magnitude volumes (S, H, W) (see the module docstring)."""
    p = torch.as_tensor(np.asarray(pred), dtype=torch.float64)
    g = torch.as_tensor(np.asarray(gt), dtype=torch.float64)
    if g.ndim != 3 or p.shape != g.shape:
        raise ValueError(f"volume_metrics takes two (slices, H, W) volumes of one shape, got {tuple(p.shape)} and "
                         f"{tuple(g.shape)}")
    if min(g.shape[-2:]) < 7:
        raise ValueError(f"fastMRI's SSIM needs images of at least 7 x 7 pixels, got {tuple(g.shape[-2:])}")
    peak = float(g.max())
    mse = float(((g - p) ** 2).mean())
    return {"psnr": 10 * math.log10(peak**2 / mse) if mse > 0 else math.inf,
            "ssim": float(window_ssim(g, p, peak).mean()),
            "nmse": float(((g - p) ** 2).sum() / (g**2).sum())}


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory since the last reset: CUDA max allocated, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
