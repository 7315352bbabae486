"""Problem `blackhole`: a 64x64 source seen by an EHT-2017-like array through closure phases, log closure amplitudes
and the total flux (medtta_vlbi.operator), with unknown station gains; metrics as InverseBench's eval defines them.

Metrics per sample (recon and target in peak-1 image units, clipped to [0, 1], data range 1):
- `psnr_aligned`: PSNR after the best shift of the reconstruction (bilinear; whole pixels over +-1/4 of the field,
  InverseBench's span, then 0.1-pixel steps; InverseBench searches a 30 x 30 grid, which omits the zero shift);
- `psnr_blur10/15/20`: PSNR of target and aligned reconstruction both blurred by a circular Gaussian of 10, 15,
  20 microarcsecond FWHM;
- `chi2_cp`, `chi2_lcamp`: the reduced closure chi^2 of the reconstruction rescaled to the measured flux, each
  normalised as InverseBench does (chi^2 if >= 1, else 1/chi^2: 1 is a fit at the noise level); negative pixels
  (no brightness is negative) are set to 0 first, so that the flux rescaling is defined.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inverse_problems.base import ForwardOperator, Problem, ProblemInstance, Randomness

from medtta_vlbi.array import eht_observation
from medtta_vlbi.operator import VLBIOperator

BLUR_FWHM_UAS = (10.0, 15.0, 20.0)


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """(N,) -10 log10(mean((a - b)^2) + 1e-8) of images in [0, 1] (piq's psnr, data range 1)."""
    return -10 * torch.log10(((a - b) ** 2).flatten(1).mean(1) + 1e-8)


def _shifted(recon: Tensor, shifts: Tensor) -> Tensor:
    """recon (C, H, W) translated by each (dx, dy) row of `shifts` (pixels), bilinear, zero outside: (N, C, H, W)."""
    h, w = recon.shape[-2:]
    n = shifts.shape[0]
    one, zero = torch.ones(n, dtype=recon.dtype, device=recon.device), torch.zeros(n, dtype=recon.dtype, device=recon.device)
    tx, ty = shifts[:, 0] * 2 / (w - 1), shifts[:, 1] * 2 / (h - 1)
    theta = torch.stack([torch.stack([one, zero, tx], -1), torch.stack([zero, one, ty], -1)], 1)
    grid = F.affine_grid(theta, (n, *recon.shape), align_corners=True)
    return F.grid_sample(recon[None].expand(n, *recon.shape), grid, align_corners=True)


def align(target: Tensor, recon: Tensor, max_shift: float = 16.0, fine: float = 0.1) -> Tensor:
    """The shift of recon (C, H, W) that maximises PSNR against target (both clipped to [0, 1]): whole pixels up to
    `max_shift` (a quarter of a 64-pixel field, InverseBench's span), then `fine`-pixel steps within +-0.5 pixel of
    the best (closure data carry no absolute position)."""
    t, r = target.clip(0, 1), recon.clip(0, 1)
    best = torch.zeros(2, dtype=r.dtype, device=r.device)
    for step, span in ((1.0, max_shift), (fine, 0.5)):
        k = int(round(span / step))
        g = torch.arange(-k, k + 1, dtype=r.dtype, device=r.device) * step
        gx, gy = (v.flatten() for v in torch.meshgrid(g, g, indexing="ij"))
        shifts = best + torch.stack([gx, gy], -1)
        moved = _shifted(r, shifts).clip(0, 1)
        best = shifts[int(psnr(t[None].expand_as(moved), moved).argmax())]
    return _shifted(r, best[None])[0].clip(0, 1)


def blur(image: Tensor, fwhm_uas: float, pixel_uas: float) -> Tensor:
    """A (C, H, W) image convolved with a circular Gaussian of the given FWHM (sigma = FWHM / (2 sqrt(2 ln 2)))."""
    s = fwhm_uas / pixel_uas / (2 * math.sqrt(2 * math.log(2)))
    r = int(math.ceil(4 * s))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=image.dtype, device=image.device) / s) ** 2)
    k = k / k.sum()
    c = image.shape[0]
    out = F.conv2d(image[None], k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, r), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)[0]


def normalised_chi2(chi2: float) -> float:
    """InverseBench's normalisation: chi^2 when >= 1, else 1 / chi^2 (over-fitting counts as badly as under)."""
    return chi2 if chi2 >= 1 else 1 / max(chi2, 1e-12)


class BlackHoleProblem(Problem):
    """Black-hole imaging from VLBI closure quantities with an EHT-2017-like array (synthetic observation of M87*).

    Options: image `size` and field of view `fov_uas`; the track (`hours`, one snapshot per `step_min` minutes,
    `elevation_cut_deg`); thermal noise (`bandwidth_ghz`, `integration_s`, `pixel_jy`: Jy per image unit);
    station gains (`gain_std`: amplitude errors delta_i ~ N(0, gain_std^2); `random_phases`: atmospheric phases per
    station and timestamp); the data-fit weights of closure phases, log closure amplitudes, flux and visibility
    amplitudes (InverseBench's w2, w3, w4, w1; amp_weight > 0 lets the station gains enter the fit), and `amp_sys`,
    the amplitudes' fractional systematic error.
    """

    metrics_version = "blackhole-1"

    def __init__(self, size: int = 64, fov_uas: float = 160.0, hours: float = 24.0, step_min: float = 20.0,
                 elevation_cut_deg: float = 10.0, bandwidth_ghz: float = 2.0, integration_s: float = 120.0,
                 pixel_jy: float = 0.006, gain_std: float = 0.2, random_phases: bool = True,
                 cp_weight: float = 1.0, lcamp_weight: float = 1.0, flux_weight: float = 0.5,
                 amp_weight: float = 0.0, amp_sys: float = 0.02) -> None:
        if size < 8 or fov_uas <= 0 or pixel_jy <= 0 or gain_std < 0:
            raise ValueError(f"need size >= 8, fov_uas > 0, pixel_jy > 0, gain_std >= 0; got {size}, {fov_uas}, "
                             f"{pixel_jy}, {gain_std}")
        if min(cp_weight, lcamp_weight, flux_weight, amp_weight) < 0 or cp_weight == 0 or lcamp_weight == 0:
            raise ValueError("data-fit weights must be >= 0, and cp_weight and lcamp_weight > 0")
        self.image_shape = (1, size, size)
        self.size, self.fov_uas, self.pixel_jy = size, fov_uas, pixel_jy
        self.gain_std, self.random_phases, self.amp_sys = gain_std, random_phases, amp_sys
        self.weights = (cp_weight, lcamp_weight, flux_weight, amp_weight)
        self.obs = eht_observation(hours, step_min, elevation_cut_deg, bandwidth_ghz=bandwidth_ghz,
                                   integration_s=integration_s)
        self._observed: dict[str, tuple[ForwardOperator, Tensor, int]] = {}

    def acquisition_operator(self, x: Tensor, generator: Randomness = None) -> VLBIOperator:
        return VLBIOperator(self.obs, self.size, self.fov_uas, self.pixel_jy, self.weights, x.shape[0],
                            self.gain_std, self.random_phases, self.amp_sys).to(x.device)

    def reconstruction_operator(self, y: Tensor, true_operator: ForwardOperator) -> ForwardOperator:
        """The same array and closure sigmas (from the data), station gains unknown: log_gain = 0."""
        op = copy.deepcopy(true_operator)
        op.log_gain = nn.Parameter(torch.zeros_like(true_operator.log_gain), requires_grad=False)
        return op

    @torch.no_grad()
    def measurement_scale(self, y: Tensor, operator: ForwardOperator, percentile: float = 0.99) -> Tensor:
        """1: the data are whitened, the image units fixed by `pixel_jy` (closure quantities carry no scale)."""
        return torch.ones(y.shape[0], device=y.device)

    def info(self, operator: ForwardOperator) -> dict[str, Any]:
        return operator.info()

    def instance(self, items: list[dict[str, Any]], device: torch.device | str, generator: Randomness = None
                 ) -> ProblemInstance:
        """Simulate the batch, remembering each item's operator and data for its closure chi^2 metrics."""
        inst = super().instance(items, device, generator)
        self._observed = {it["id"]: (inst.operator, inst.y, k) for k, it in enumerate(items)}
        return inst

    def metrics(self, recon: Tensor, target: Tensor, item: dict[str, Any]) -> dict[str, Any]:
        """Aligned and blurred PSNR, normalised closure chi^2 (module docstring)."""
        target, recon = target.float(), recon.float()
        moved = align(target, recon)
        pix = self.fov_uas / self.size
        out: dict[str, Any] = {"psnr_aligned": float(psnr(target.clip(0, 1)[None], moved[None]))}
        for f in BLUR_FWHM_UAS:
            a, b = blur(target.clip(0, 1), f, pix).clip(0, 1), blur(moved, f, pix).clip(0, 1)
            out[f"psnr_blur{f:g}"] = float(psnr(a[None], b[None]))
        seen = self._observed.get(item["id"])
        if seen is not None:
            op, y, k = seen
            with torch.no_grad():
                chi = self._chi2_one(op, y, k, recon.clamp_min(0))
            out["chi2_cp"], out["chi2_lcamp"] = normalised_chi2(chi["cp"]), normalised_chi2(chi["lcamp"])
        return out

    @staticmethod
    def _chi2_one(op: VLBIOperator, y: Tensor, k: int, recon: Tensor) -> dict[str, float]:
        """Sample k's closure chi^2 (its row of the batch operator's sigmas)."""
        one = copy.copy(op)
        one._buffers = dict(op._buffers)
        for name in ("sigma_cp", "sigma_ca", "sigma_amp"):
            one._buffers[name] = getattr(op, name)[k:k + 1]
        one._parameters = {"log_gain": nn.Parameter(op.log_gain[k:k + 1].detach(), requires_grad=False)}
        chi = one.chi2(recon[None].to(y.device), y[k:k + 1])
        return {n: float(v[0]) for n, v in chi.items()}
