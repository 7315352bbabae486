"""The `mrsi` problem: dynamic deuterium metabolic imaging (DMI) by Cartesian chemical-shift imaging.

Images are real metabolite maps (B, M, H, W) (M = 4: water, Glc, Glx, Lac; concentrations); data are complex
k-t samples (B, N_t, H, W) (inverse_problems.operators.mrsi). A dataset item may carry the physics of its frame (the
phantom-dmi dataset does): `b0_ppm` (H, W) B0 map, `drift_hz`, `linewidth_hz`, `phase_rad` and `noise_scale`
(a multiplier of noise_std: SNR drifting over the scan); missing keys mean 0 (1 for noise_scale).

The data are made with all of it. The reconstruction is given the B0 map (a separately measured field map)
but not the frame's drift, extra linewidth or phase: its operator starts at 0 for those, the unknowns that
test-time adaptation estimates; `oracle_physics=true` gives it the true values (the oracle of the drift
shift). Per-sample scale: the 99th percentile of the CSI fit of y (`measurement_scale`), from y alone.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import torch
from torch import Tensor

from inverse_problems.problems.base import Problem, ProblemInstance, check_int, check_number
from inverse_problems.operators.linalg import per_sample
from inverse_problems.operators.masks import MASK_TYPES, make_mask, realised_acceleration
from inverse_problems.operators.mrsi import METABOLITES, MRSI, SHIFTS_PPM, T2STAR_MS, check_bandwidth, larmor_mhz
from inverse_problems.operators.random import Randomness

FRAME_KEYS = {"drift_hz": 0.0, "linewidth_hz": 0.0, "phase_rad": 0.0, "noise_scale": 1.0}


def map_metrics(recon: Tensor, target: Tensor, names: Sequence[str] = METABOLITES) -> dict[str, float]:
    """Per-metabolite NRMSE = ||x_m - x*_m|| / ||x*_m|| and PSNR = 10 log10(max x*_m^2 / mean (x_m - x*_m)^2) of
    one sample's maps (M, H, W); None where the target map is all zero (NRMSE and PSNR undefined)."""
    out: dict[str, Any] = {}
    for name, xm, tm in zip(names, recon.detach().double().cpu(), target.detach().double().cpu()):
        err = (xm - tm).pow(2)
        ref, peak = float(tm.pow(2).sum().sqrt()), float(tm.abs().max())
        out[f"nrmse_{name}"] = float(err.sum().sqrt()) / ref if ref > 0 else None
        mse = float(err.mean())
        out[f"psnr_{name}"] = (10 * math.log10(peak**2 / mse) if mse > 0 else math.inf) if peak > 0 else None
    return out


ROIS = ("tumour", "gm", "wm")


def snr_db(recon: Tensor, target: Tensor) -> float | None:
    """Reconstruction SNR over all maps, 10 log10(||x*||^2 / ||x - x*||^2) dB; None for an all-zero target."""
    ref = float(target.double().pow(2).sum())
    err = float((recon.double() - target.double()).pow(2).sum())
    return None if ref == 0 else (math.inf if err == 0 else 10 * math.log10(ref / err))


def roi_means(maps: Tensor, item: dict[str, Any]) -> dict[str, list[float]]:
    """{roi: [mean of each metabolite map over the ROI]} for the item's non-empty ROI masks (`roi_<name>`)."""
    out = {}
    for roi in ROIS:
        mask = item.get(f"roi_{roi}")
        if isinstance(mask, Tensor) and bool(mask.any()):
            m = mask.to(maps.device).bool()
            out[roi] = [float(v) for v in maps.detach().double()[:, m].mean(1)]
    return out


def kinetic_metrics(records: list[dict[str, Any]], names: Sequence[str] = METABOLITES) -> dict[str, float | None]:
    """Per-run kinetic metrics from per-frame ROI means (records of `MRSIProblem.sample_record`):

    - kinetic_error_<m>: for each subject and each tissue ROI (tumour, GM, WM) seen in all its frames, the relative
      curve error ||c_rec - c_true||_2 / ||c_true||_2 over the subject's frames of metabolite m's ROI mean; the mean
      over ROIs and subjects (subjects with at least two frames: a curve);
    - lac_glx_tumour / lac_glx_tumour_true / lac_glx_tumour_error: the Lac/Glx ratio of the tumour ROI means at each
      subject's last frame, reconstructed, true and |rec - true| / true, mean over subjects with a tumour.
    None where no subject qualifies."""
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("subject") is not None and r.get("frame") is not None:
            by_subject.setdefault(str(r["subject"]), []).append(r)
    errors: dict[str, list[float]] = {m: [] for m in names}
    ratio, ratio_true, ratio_err = [], [], []
    for recs in by_subject.values():
        recs = sorted(recs, key=lambda r: r["frame"])
        if len(recs) >= 2:
            for roi in ROIS:
                if not all(roi in r["roi_true"] for r in recs):
                    continue
                true = torch.tensor([r["roi_true"][roi] for r in recs], dtype=torch.float64)  # (frames, M)
                rec = torch.tensor([r["roi_recon"][roi] for r in recs], dtype=torch.float64)
                ref = true.norm(dim=0)
                for k, m in enumerate(names):
                    if float(ref[k]) > 0:
                        errors[m].append(float((rec[:, k] - true[:, k]).norm() / ref[k]))
        last = recs[-1]
        if "tumour" in last["roi_true"]:
            lac, glx = names.index("lac"), names.index("glx")
            t, r = last["roi_true"]["tumour"], last["roi_recon"]["tumour"]
            if t[glx] > 0 and r[glx] != 0:
                ratio.append(r[lac] / r[glx])
                ratio_true.append(t[lac] / t[glx])
                ratio_err.append(abs(ratio[-1] - ratio_true[-1]) / ratio_true[-1] if ratio_true[-1] else math.inf)

    def mean(v: list[float]) -> float | None:
        v = [x for x in v if math.isfinite(x)]
        return sum(v) / len(v) if v else None

    out: dict[str, float | None] = {f"kinetic_error_{m}": mean(errors[m]) for m in names}
    out.update(lac_glx_tumour=mean(ratio), lac_glx_tumour_true=mean(ratio_true), lac_glx_tumour_error=mean(ratio_err))
    return out


class MRSIProblem(Problem):
    """Dynamic 2H MRSI y(k, t) = M(k) F[sum_m x_m phi_m](k) + n (inverse_problems.operators.mrsi).

    Options: size, n_t, dwell_ms, field_t (7.0 or 3.0 T, ...), acceleration, center_fraction, mask (random |
    equispaced | gaussian1d | poisson2d | vd2d; 2-D masks undersample both phase-encode axes, as CSI does),
    mask_seed, noise_std (per real k-t component, in the units of maps in mM), b0_max_ppm (the largest |B0| the
    spectral grid must hold; with the shifts it sets the minimum bandwidth), oracle_physics, t2star_ms, forward_only
    (hand the reconstruction the signal model without adjoint or gradient: only the derivative-free solvers run).
    """

    def __init__(self, size: int = 32, n_t: int = 96, dwell_ms: float = 2.6, field_t: float = 7.0,
                 acceleration: float = 4.0, center_fraction: float = 0.25, mask: str = "vd2d", mask_seed: int = 0,
                 noise_std: float = 0.02, b0_max_ppm: float = 0.3, oracle_physics: bool = False,
                 t2star_ms: Sequence[float] = T2STAR_MS, forward_only: bool = False) -> None:
        self.forward_only = bool(forward_only)  # hand the reconstruction the signal model without its gradient
        size, n_t = check_int("size", size, 2), check_int("n_t", n_t, 2)
        dwell_ms = check_number("dwell_ms", dwell_ms)
        field_t = check_number("field_t", field_t)
        if dwell_ms <= 0 or field_t <= 0:
            raise ValueError(f"dwell_ms and field_t must be > 0, got {dwell_ms} and {field_t}")
        acceleration = check_number("acceleration", acceleration, 1.0)
        center_fraction = check_number("center_fraction", center_fraction)
        noise_std = check_number("noise_std", noise_std, 0.0)
        b0_max_ppm = check_number("b0_max_ppm", b0_max_ppm, 0.0)
        if mask not in MASK_TYPES:
            raise ValueError(f"unknown mask {mask!r}; choose one of {', '.join(MASK_TYPES)}")
        t2star_ms = tuple(float(t) for t in t2star_ms)
        if len(t2star_ms) != len(SHIFTS_PPM):
            raise ValueError(f"t2star_ms needs one value per metabolite {METABOLITES}, got {t2star_ms}")
        check_bandwidth(dwell_ms, SHIFTS_PPM, field_t, 2 * b0_max_ppm * larmor_mhz(field_t))
        self.image_shape = (len(SHIFTS_PPM), size, size)
        self.n_t, self.dwell_ms, self.field_t, self.t2star_ms = n_t, dwell_ms, field_t, t2star_ms
        self.mask = make_mask(mask, (size, size), acceleration, center_fraction, mask_seed)
        self.noise_std, self.b0_max_ppm, self.oracle_physics = noise_std, b0_max_ppm, bool(oracle_physics)

    def _operator(self, b0_hz: Tensor | None, frames: dict[str, Tensor] | None, noise_std: float | Tensor,
                  device: torch.device | str, batch: int) -> MRSI:
        frames = frames or {}
        return MRSI(self.mask.to(device), self.n_t, self.dwell_ms, self.field_t, SHIFTS_PPM, self.t2star_ms,
                    b0_hz=b0_hz, drift=frames.get("drift_hz", 0.0), linewidth=frames.get("linewidth_hz", 0.0),
                    phase=frames.get("phase_rad", 0.0), noise_std=noise_std, batch=batch).to(device)

    def frame_physics(self, items: list[dict[str, Any]], device: torch.device | str
                      ) -> tuple[Tensor | None, dict[str, Tensor]]:
        """The items' B0 maps in Hz (B, H, W) (None if no item has one) and per-frame values (B,) each."""
        size = self.image_shape[1:]
        maps = [it.get("b0_ppm") for it in items]
        b0 = None
        if any(isinstance(m, Tensor) for m in maps):
            b0 = torch.stack([m.float() if isinstance(m, Tensor) else torch.zeros(size) for m in maps])
            if tuple(b0.shape[1:]) != tuple(size):
                raise ValueError(f"the items' b0_ppm maps are {tuple(b0.shape[1:])}, the problem's images {size}")
            b0 = (b0 * larmor_mhz(self.field_t)).to(device)
        frames = {k: torch.tensor([float(it.get(k, d)) for it in items], device=device) for k, d in FRAME_KEYS.items()}
        return b0, frames

    def acquisition_operator(self, x: Tensor, generator: Randomness = None,
                             frames: dict[str, Tensor] | None = None, b0_hz: Tensor | None = None) -> MRSI:
        """The true operator: the frames' drift, linewidth, phase and noise (none given: the nominal one)."""
        noise: float | Tensor = self.noise_std
        if frames is not None:
            noise = self.noise_std * frames["noise_scale"]
        return self._operator(b0_hz, frames, noise, x.device, x.shape[0])

    def reconstruction_operator(self, y: Tensor, true_operator: MRSI) -> MRSI:
        """The B0 map (measured separately) and the noise level; drift, linewidth and phase at 0 unless oracle."""
        op = copy.deepcopy(true_operator)
        if not self.oracle_physics:
            with torch.no_grad():
                for name in ("drift", "linewidth", "phase"):
                    getattr(op, name).zero_()
            op._remember_initial()
        return op

    def instance(self, items: list[dict[str, Any]], device: torch.device | str, generator: Randomness = None
                 ) -> ProblemInstance:
        """Simulate the batch with each item's own frame physics (see the module)."""
        x = torch.stack([it["image"] for it in items]).to(device)
        b0, frames = self.frame_physics(items, device)
        return self.simulate(x, generator, frames, b0)

    def simulate(self, x: Tensor, generator: Randomness = None, frames: dict[str, Tensor] | None = None,
                 b0_hz: Tensor | None = None) -> ProblemInstance:
        """Problem.simulate with the frames' physics passed to the true operator."""
        true_op = self.acquisition_operator(x, generator, frames, b0_hz)
        true_op.check_image(x)
        y = true_op.measure(x, generator)
        op = self.reconstruction_operator(y, true_op)
        scale = self.measurement_scale(y, op)
        op.set_noise_std(op.noise_std.detach() / scale)
        return ProblemInstance(y / per_sample(scale, y), self.handed(op), true_op, scale, self.info(true_op))

    @torch.no_grad()
    def measurement_scale(self, y: Tensor, operator: MRSI, percentile: float = 0.99) -> Tensor:
        """(B,) the `percentile` quantile of |x_fit| per sample, x_fit the per-voxel line-shape fit of the zero-filled
        data (MRSI.fit: the CSI estimate of the maps, from y alone); floored at 1e-12. Unlike |A^H y| it is in
        the maps' own units (A^H y weighs each metabolite by its basis energy)."""
        x = operator.fit(y).abs().flatten(1)
        return torch.quantile(x.float(), percentile, dim=1).clamp_min(1e-12)

    def info(self, operator: MRSI) -> dict[str, Any]:
        return {"acceleration": realised_acceleration(operator.mask), "field_t": operator.field_t,
                "n_t": operator.n_t, "bandwidth_hz": operator.bandwidth_hz()}

    metrics_version = "mrsi-1"

    def metrics(self, recon: Tensor, target: Tensor, item: dict[str, Any]) -> dict[str, Any]:
        """Per-metabolite map NRMSE and PSNR (`map_metrics`) and the maps' SNR (`snr_db`) of one sample, target
        units."""
        return {**map_metrics(recon, target), "snr_db": snr_db(recon, target)}

    def sample_record(self, recon: Tensor, target: Tensor, item: dict[str, Any]) -> dict[str, Any]:
        """Subject, frame, time and the ROI means (tumour, GM, WM) of the reconstructed and the true maps."""
        return {"subject": item.get("patient", item.get("subject")), "frame": item.get("frame"),
                "time_min": item.get("time_min"), "roi_recon": roi_means(recon, item),
                "roi_true": roi_means(target, item)}

    channel_names = METABOLITES

    @torch.no_grad()
    def voxel_spectrum(self, maps: Tensor, row: int, col: int) -> tuple[Tensor, Tensor]:
        """The noiseless spectrum of voxel (row, col) of maps (M, H, W) with the nominal line shapes (no B0, drift,
        linewidth or phase): (frequencies in ppm (N_t,), real part of the centred DFT over t of sum_m x_m g_m(t))."""
        op = MRSI(torch.ones(1, 1), self.n_t, self.dwell_ms, self.field_t, SHIFTS_PPM, self.t2star_ms)
        fid = op.fid(maps[None, :, row:row + 1, col:col + 1].float().cpu())[0, :, 0, 0]
        spectrum = torch.fft.fftshift(torch.fft.fft(fid))
        hz = torch.fft.fftshift(torch.fft.fftfreq(self.n_t, self.dwell_ms / 1000.0))
        mid = 0.5 * (max(SHIFTS_PPM) + min(SHIFTS_PPM))
        return hz / larmor_mhz(self.field_t) + mid, spectrum.real

    @classmethod
    def run_metrics(cls, records: list[dict[str, Any]]) -> dict[str, float | None]:
        """Kinetic-curve error per metabolite and the tumour's Lac/Glx ratio at the last frame (`kinetic_metrics`)."""
        return kinetic_metrics(records)
