"""Spatial-spectral MRSI (chemical-shift imaging) of deuterium metabolites: y(k, t) = M(k) F[s(., t)](k) + n.

Metabolite maps x in R^{M x H x W} (concentrations, real; M = 4: water, Glc, Glx, Lac) give the free-induction
decay of every voxel

    s(r, t) = sum_m x_m(r) phi_m(r, t),
    phi_m(r, t) = exp(i theta) exp((2 pi i (f_m + df(r) + delta) - 1/T2*_m - pi lw) t) / ||Phi_0||,

sampled at t_j = j * dwell, j = 0..N_t-1, and y(k, t_j) = M(k) F s(., t_j) + n with F the centred unitary 2-D
DFT over the two phase-encode axes, M a Cartesian undersampling mask (inverse_problems.operators.masks) and n complex
Gaussian noise of `noise_std` per real component on the acquired samples (CSI: Brown et al., PNAS 79:3523
(1982); deuterium metabolic imaging: De Feyter et al., Sci. Adv. 4:eaat7314 (2018)).

- f_m: chemical shift of metabolite m in Hz at the field's 2H Larmor frequency (6.536 MHz/T: 45.75 MHz at
  7.0 T, 19.61 MHz at 3.0 T), relative to the receiver frequency, which sits at the middle of the shifts
  (water 4.7, Glc 3.8, Glx 2.4, Lac 1.3 ppm). The sampled band [-BW/2, BW/2), BW = 1/dwell, then holds every
  peak without aliasing when BW >= span of the shifts + the B0 range 2 max |df| (checked: `check_bandwidth`).
- df(r): a B0 map in Hz (a separate, measured field map: known to the reconstruction).
- T2*_m: per-metabolite decay times (the nominal line shapes).
- Adaptable (nn.Parameters, per sample or shared; 0 = the nominal operator): `drift` delta (Hz, a global
  frequency offset: B0 drift over the scan), `linewidth` lw (Hz, extra Lorentzian broadening), `phase`
  theta (rad, zero-order phase) and `noise_std`.
- ||Phi_0||: the norm of the nominal N_t x M basis matrix (no B0, no drift, no extra width, no phase) on
  real maps, i.e. the spectral norm of the real 2 N_t x M matrix [Re Phi_0; Im Phi_0]. The factor
  exp(i theta + 2 pi i (df(r) + delta) t) is unitary in t per voxel and the extra damping is a contraction,
  so ||A|| <= 1 always, with equality for df = 0, lw = 0.

Data are complex (B, N_t, H, W) on the full k-space grid, exactly zero off the mask (as cs_mri's).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.fft import fft2c, ifft2c
from inverse_problems.operators.mri import AdaptableMixin

GAMMA_2H_MHZ_PER_T = 6.536  # deuterium gyromagnetic ratio / 2 pi
METABOLITES = ("water", "glc", "glx", "lac")
SHIFTS_PPM = (4.7, 3.8, 2.4, 1.3)  # water (HDO), glucose, glutamate + glutamine, lactate
T2STAR_MS = (30.0, 35.0, 35.0, 40.0)  # within the 30-40 ms stated for 2H metabolites in brain


def larmor_mhz(field_t: float) -> float:
    """2H Larmor frequency in MHz at `field_t` tesla."""
    return GAMMA_2H_MHZ_PER_T * field_t


def shifts_hz(shifts_ppm: Sequence[float], field_t: float) -> Tensor:
    """(M,) frequencies in Hz relative to the receiver at the middle of the shifts: (ppm - mid) * Larmor MHz."""
    ppm = torch.as_tensor(shifts_ppm, dtype=torch.float64)
    mid = 0.5 * (ppm.max() + ppm.min())
    return ((ppm - mid) * larmor_mhz(field_t)).float()


def minimum_bandwidth_hz(shifts_ppm: Sequence[float], field_t: float, b0_range_hz: float) -> float:
    """The narrowest spectral band holding every peak unaliased: span of the shifts + the B0 range (Hz)."""
    return (max(shifts_ppm) - min(shifts_ppm)) * larmor_mhz(field_t) + b0_range_hz


def check_bandwidth(dwell_ms: float, shifts_ppm: Sequence[float], field_t: float, b0_range_hz: float) -> None:
    """Refuse a spectral grid whose bandwidth 1/dwell is below the span of the shifts + the B0 range."""
    bw = 1000.0 / dwell_ms
    need = minimum_bandwidth_hz(shifts_ppm, field_t, b0_range_hz)
    if bw < need:
        span = need - b0_range_hz
        raise ValueError(
            f"the spectral bandwidth 1/dwell = {bw:.1f} Hz (dwell {dwell_ms:g} ms) is below the minimum {need:.1f} Hz "
            f"(span of the chemical shifts {span:.1f} Hz at {field_t:g} T + B0 range {b0_range_hz:.1f} Hz): the peaks "
            f"alias; use dwell_ms <= {1000.0 / need:.3f}")


class MRSI(AdaptableMixin, ForwardOperator):
    """y = M F (sum_m x_m phi_m) + n: Cartesian chemical-shift imaging of M metabolite maps (see the module).

    mask: (H, W) {0, 1}; b0_hz: (H, W) or (B', H, W) B0 map in Hz (None: 0); drift, linewidth, phase: initial
    values, floats or (B',) tensors; `batch` sets B' of the adaptable parameters where no tensor does.
    """

    measurement_dtype = torch.complex64

    def __init__(self, mask: Tensor, n_t: int = 96, dwell_ms: float = 2.6, field_t: float = 7.0,
                 shifts_ppm: Sequence[float] = SHIFTS_PPM, t2star_ms: Sequence[float] = T2STAR_MS,
                 b0_hz: Tensor | None = None, drift: float | Tensor = 0.0, linewidth: float | Tensor = 0.0,
                 phase: float | Tensor = 0.0, noise_std: float | Tensor = 0.0, batch: int = 1) -> None:
        super().__init__(noise_std)
        if mask.ndim != 2:
            raise ValueError(f"mask must be (H, W), got {tuple(mask.shape)}")
        if len(shifts_ppm) != len(t2star_ms) or not shifts_ppm:
            raise ValueError(f"one T2* per chemical shift: got {len(shifts_ppm)} shifts and {len(t2star_ms)} T2*")
        if n_t < 1 or dwell_ms <= 0 or min(t2star_ms) <= 0 or field_t <= 0:
            raise ValueError(f"n_t >= 1, dwell_ms > 0, field_t > 0 and T2* > 0 needed; got n_t={n_t}, "
                             f"dwell_ms={dwell_ms}, field_t={field_t}, t2star_ms={tuple(t2star_ms)}")
        h, w = mask.shape
        dev = mask.device
        b0 = torch.zeros((1, h, w), device=dev) if b0_hz is None else torch.as_tensor(b0_hz, dtype=torch.float32)
        b0 = b0.to(dev).reshape(-1, h, w)
        check_bandwidth(dwell_ms, shifts_ppm, field_t, 2 * float(b0.abs().max()))
        self.n_t, self.dwell_ms, self.field_t = n_t, dwell_ms, field_t
        self.shifts_ppm, self.t2star_ms = tuple(shifts_ppm), tuple(t2star_ms)
        self.image_shape = (len(shifts_ppm), h, w)
        self.measurement_shape = (n_t, h, w)
        self.register_buffer("mask", mask.float())
        self.register_buffer("b0_hz", b0)
        self.register_buffer("times", torch.arange(n_t, device=dev, dtype=torch.float32) * (dwell_ms / 1000.0))
        # exp(2 pi i df(r) t), (B', N_t, H, W): the B0 map's part of the modulation, fixed, computed once
        angle = 2 * math.pi * b0[:, None] * self.times.view(1, -1, 1, 1)
        self.register_buffer("b0_phase", torch.polar(torch.ones_like(angle), angle), persistent=False)
        rates = 1000.0 / torch.as_tensor(t2star_ms, dtype=torch.float32)
        t = self.times.cpu()[None]
        nominal = torch.exp(torch.complex(-rates[:, None] * t, 2 * math.pi * shifts_hz(shifts_ppm, field_t)[:, None] * t))
        # the norm on real maps: of the 2 N_t x M real matrix [Re Phi_0; Im Phi_0]
        norm = torch.linalg.matrix_norm(torch.view_as_real(nominal.T.to(torch.complex128)).permute(0, 2, 1)
                                        .reshape(-1, len(shifts_ppm)), ord=2).float()
        # (M, N_t): g_m(t) = exp((2 pi i f_m - R_m) t) / ||Phi_0||
        self.register_buffer("lines", (nominal / norm).to(dev))
        values = {"drift": drift, "linewidth": linewidth, "phase": phase}
        nb = max([batch, b0.shape[0]] + [torch.as_tensor(v).numel() for v in values.values()])
        for name, v in values.items():
            v = torch.as_tensor(v, dtype=torch.float32, device=dev).reshape(-1)
            setattr(self, name, nn.Parameter(v.expand(nb).clone()))
        self._adaptable = ("drift", "linewidth", "phase", "noise_std")
        self._remember_initial()

    @property
    def metabolites(self) -> int:
        return self.image_shape[0]

    def bandwidth_hz(self) -> float:
        return 1000.0 / self.dwell_ms

    def modulation(self) -> Tensor:
        """h(r, t) = exp(i theta + (2 pi i (df(r) + delta) - pi lw) t), (B', N_t, H, W) complex; differentiable in
        delta, lw and theta. Computed as exp(2 pi i df(r) t) (the fixed `b0_phase`) times the global factor
        exp(i theta + (2 pi i delta - pi lw) t) of each sample, (B', N_t, 1, 1)."""
        t = self.times.view(1, -1)
        damp = math.pi * self.linewidth.view(-1, 1) * t
        angle = 2 * math.pi * self.drift.view(-1, 1) * t + self.phase.view(-1, 1)
        glob = torch.exp(torch.complex(-damp.expand_as(angle), angle))
        return self.b0_phase * glob[:, :, None, None]

    def fid(self, x: Tensor) -> Tensor:
        """s(r, t) = sum_m x_m(r) phi_m(r, t): the voxel signals, (B, N_t, H, W) complex."""
        b, m, h, w = x.shape
        mix = (self.lines.T @ x.reshape(b, m, h * w).to(self.lines.dtype)).view(b, self.n_t, h, w)  # matmul: no einsum
        return self.modulation() * mix

    def forward(self, x: Tensor) -> Tensor:
        self.check_image(x)
        return fft2c(self.fid(x)) * self.mask

    def measure(self, x: Tensor, generator=None) -> Tensor:
        """M (A x + n): noisy on the acquired samples, exactly zero elsewhere."""
        return super().measure(x, generator) * self.mask

    def voxel_signals(self, y: Tensor) -> Tensor:
        """F^H M y: the zero-filled voxel FIDs, (B, N_t, H, W) complex (the CSI pipeline's first step)."""
        return ifft2c(y * self.mask)

    def adjoint(self, y: Tensor) -> Tensor:
        """x_m(r) = Re sum_t conj(phi_m(r, t)) (F^H M y)(r, t), written out (real maps: the real part)."""
        return self.analysis(self.voxel_signals(y)).real.to(torch.float32)

    def analysis(self, s: Tensor) -> Tensor:
        """Phi^H s: c_m(r) = sum_t conj(phi_m(r, t)) s(r, t) of voxel FIDs s (B, N_t, H, W), (B, M, H, W) complex."""
        z = s.to(self.lines.dtype) * self.modulation().conj()
        b, n_t, h, w = z.shape
        return (self.lines.conj() @ z.reshape(b, n_t, h * w)).view(b, -1, h, w)

    @torch.no_grad()
    def fit(self, y: Tensor, damping: float = 0.0) -> Tensor:
        """The per-voxel linear least-squares fit of the line shapes to the zero-filled voxel FIDs z = F^H M y (the
        CSI pipeline): `fit_signals(voxel_signals(y))`, with Re Phi^H z = A^H y. Exact for fully sampled noiseless
        data."""
        return self.fit_signals(self.voxel_signals(y), damping)

    @torch.no_grad()
    def fit_signals(self, s: Tensor, damping: float = 0.0) -> Tensor:
        """Real maps x(r) = (Re Phi(r)^H Phi(r) + damping I)^{-1} Re Phi(r)^H s(r, .) fitted to voxel FIDs s
        (B, N_t, H, W) complex, with Phi(r) the N_t x M basis of the current parameters; (B, M, H, W) real."""
        phi = self.basis()  # (B', M, N_t, H, W)
        gram = torch.einsum("bmthw,bnthw->bhwmn", phi.conj(), phi).real.double()
        gram = gram + damping * torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        rhs = self.analysis(s).real.double().permute(0, 2, 3, 1).unsqueeze(-1)  # (B, H, W, M, 1)
        x = torch.linalg.solve(gram.expand(rhs.shape[0], *gram.shape[1:]), rhs)
        return x.squeeze(-1).permute(0, 3, 1, 2).float()

    def basis(self) -> Tensor:
        """phi_m(r, t) of the current parameters, (B', M, N_t, H, W) complex."""
        return self.lines[None, :, :, None, None] * self.modulation()[:, None]


__all__ = ["MRSI", "METABOLITES", "SHIFTS_PPM", "T2STAR_MS", "check_bandwidth", "larmor_mhz", "minimum_bandwidth_hz",
           "shifts_hz"]
