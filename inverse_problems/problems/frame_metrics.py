"""Per-frame metrics of 4-D interpolation, after UVI-Net's evaluation (Kim et al., CVPR 2024) and TTT4MII's
(Zhang et al.): images on [0, 1], frames scored one by one, never clipped.

- PSNR = 10 log10(1 / mean((x - x*)^2)) (peak 1);
- `lncc9`: VoxelMorph's local normalised cross-correlation (Balakrishnan et al., TMI 38:1788 (2019), its NCC loss
  without the sign): with box sums over a w-window (w = 9, zero padding, stride 1) of I, J, I^2, J^2, IJ and
  u = sum / w^d, cross = S_IJ - u_J S_I - u_I S_J + u_I u_J w^d, var_I = S_II - 2 u_I S_I + u_I^2 w^d (J alike),
  lncc = mean(cross^2 / (var_I var_J + 1e-5)); the suite's `ncc` is a global Pearson correlation, another metric;
- SSIM (Wang et al., TIP 13:600 (2004)) with an 11-tap Gaussian window (sigma 1.5), zero-padded 'same' convolution
  and the mean over the whole map, C1 = 0.01^2, C2 = 0.03^2 (data range 1), as pytorch-ssim computes it: 2-D per
  frame of a 2-D+t sequence, 3-D (11^3 window) for a volume;
- NMSE x 100 = 100 ||x - x*||^2 / ||x*||^2.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

FRAME_METRICS = ("psnr", "lncc9", "ssim", "nmse100")


def _box(x: Tensor, win: int) -> Tensor:
    """Zero-padded box sums over a win^d window of (N, C, *spatial) images, d = 2 or 3 (an average pool that counts
    the padding, times the window's size)."""
    pool = F.avg_pool2d if x.ndim == 4 else F.avg_pool3d
    return pool(x, win, stride=1, padding=win // 2, count_include_pad=True) * float(win ** (x.ndim - 2))


def lncc(x: Tensor, ref: Tensor, win: int = 9) -> Tensor:
    """(N,) VoxelMorph's local squared NCC of (N, *spatial) images (2-D or 3-D), window `win`, in their dtype
    (differentiable: a registration loss)."""
    i, j = x[:, None], ref[:, None]
    n = float(win ** (x.ndim - 1))
    s_i, s_j, s_ii, s_jj, s_ij = _box(torch.cat([i, j, i * i, j * j, i * j], 1), win).unbind(1)
    s_i, s_j, s_ii, s_jj, s_ij = (v[:, None] for v in (s_i, s_j, s_ii, s_jj, s_ij))
    u_i, u_j = s_i / n, s_j / n
    cross = s_ij - u_j * s_i - u_i * s_j + u_i * u_j * n
    var_i = s_ii - 2 * u_i * s_i + u_i * u_i * n
    var_j = s_jj - 2 * u_j * s_j + u_j * u_j * n
    return (cross * cross / (var_i * var_j + 1e-5)).flatten(1).mean(1)


def _gaussian(size: int, sigma: float, d: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    g = torch.exp(-((torch.arange(size, dtype=dtype, device=device) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    out = g
    for _ in range(d - 1):
        out = out[..., None] * g
    return out[None, None]


def ssim(x: Tensor, ref: Tensor, size: int = 11, sigma: float = 1.5) -> Tensor:
    """(N,) SSIM of (N, *spatial) images on [0, 1] (2-D or 3-D), Gaussian window, zero-padded 'same' maps."""
    i, j = x[:, None].double(), ref[:, None].double()
    d = x.ndim - 1
    w = _gaussian(size, sigma, d, i.dtype, i.device)
    conv = (lambda v: F.conv2d(v, w, padding=size // 2)) if d == 2 else (lambda v: F.conv3d(v, w, padding=size // 2))
    mu_i, mu_j = conv(i), conv(j)
    s_ii, s_jj, s_ij = conv(i * i) - mu_i**2, conv(j * j) - mu_j**2, conv(i * j) - mu_i * mu_j
    c1, c2 = 0.01**2, 0.03**2
    m = (2 * mu_i * mu_j + c1) * (2 * s_ij + c2) / ((mu_i**2 + mu_j**2 + c1) * (s_ii + s_jj + c2))
    return m.flatten(1).mean(1)


def frame_metrics(recon: Tensor, target: Tensor, win: int = 9) -> dict[str, list[float]]:
    """{metric: [value of each frame]} of recon and target (F, H, W) (frames) or (F, D, H, W) (volumes)."""
    x, r = recon.detach().double().cpu(), target.detach().double().cpu()
    mse = (x - r).pow(2).flatten(1).mean(1)
    energy = r.pow(2).flatten(1).sum(1).clamp_min(1e-30)
    psnr = [10 * math.log10(1.0 / m) if m > 0 else math.inf for m in mse.tolist()]
    return {"psnr": psnr, "lncc9": lncc(x, r, win).tolist(), "ssim": ssim(x, r).tolist(),
            "nmse100": (100 * (x - r).pow(2).flatten(1).sum(1) / energy).tolist()}


def mean_se(values: list[float]) -> tuple[float | None, float | None]:
    """The mean and its standard error s / sqrt(n) (s the sample standard deviation) of finite values; (None, None)
    without any, SE None for one value."""
    v = [a for a in values if math.isfinite(a)]
    if not v:
        return None, None
    mean = sum(v) / len(v)
    if len(v) < 2:
        return mean, None
    var = sum((a - mean) ** 2 for a in v) / (len(v) - 1)
    return mean, math.sqrt(var / len(v))
