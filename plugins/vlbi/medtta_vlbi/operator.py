"""The VLBI measurement operator: image -> whitened closure phases, log closure amplitudes, flux (and optionally
gain-corrupted visibility amplitudes). Non-linear, so it has no adjoint and no SVD: gradient solvers differentiate
`forward` by autograd.

Visibilities by the direct Fourier transform (DTFT) of the pixel grid, for (u, v) in wavelengths and pixel offsets
(l, m) in radians:  V_k = sum_p I_p exp(-2 pi i (u_k l_p + v_k m_p)).
Station gains g_i = (1 + delta_i) e^{i phi_i(t)} corrupt the data as V_ij^obs = g_i conj(g_j) V_ij + n_ij,
n_ij ~ CN(0, 2 sigma_ij^2) (sigma_ij per real component). From the data:
    closure phase        psi = arg(V_ij V_jk V_ki),             sigma_psi^2 = sum sigma^2 / |V|^2
    log closure ampl.    L = log |V_ij| + log |V_kl| - log |V_ik| - log |V_jl|,  sigma_L^2 = sum sigma^2 / |V|^2
    flux                 F = sum_p I_p (the zero-spacing flux, taken as known; sigma_F = 2)
    amplitudes           |V_ij^obs|,                             sigma_amp^2 = sigma_ij^2 + (f |V_ij^obs|)^2
(f = `amp_sys`, a fractional systematic error of the amplitudes, as EHT imaging budgets one; closure quantities need
none, the station-based errors cancel in them).
Both closures are invariant to the gains. The measurement vector y stacks the whitened, weighted blocks
    [sqrt(w_cp) cos psi / sigma_psi, sqrt(w_cp) sin psi / sigma_psi, sqrt(w_ca) L / sigma_L,
     sqrt(w_F) F / sigma_F, sqrt(w_amp) |V| / sigma]
so that ||A(x) - y||^2 = w_cp sum 2 (1 - cos(psi - psi_x)) / sigma_psi^2 + w_ca sum (L - L_x)^2 / sigma_L^2
+ w_F (F - F_x)^2 / 4 + w_amp sum (|V| - |g_i||g_j||V_x|)^2 / sigma_amp^2: InverseBench's closure data fit (their
`loss` is twice this). The model amplitudes carry the adaptable station log-gains `log_gain` (B, S): the only
parameter the data fit sees through the amplitude term, and none through the closures.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from inverse_problems.base import ForwardOperator, Randomness, rand, randn

from medtta_vlbi.array import UAS, Observation

FLUX_SIGMA = 2.0  # image units (InverseBench's chi2_flux divides the flux residual by 2)


def dtft_matrix(uv: np.ndarray, size: int, fov_uas: float) -> tuple[Tensor, Tensor]:
    """cos and sin parts (M, H*W) of exp(-2 pi i (u l + v m)); pixel (r, c) sits at l = -(c - (W-1)/2) pix
    (east left), m = ((H-1)/2 - r) pix (north up), pix = fov / size in radians."""
    pix = fov_uas / size * UAS
    c = (np.arange(size) - (size - 1) / 2) * pix
    m, l = np.meshgrid(-c, -c, indexing="ij")
    phase = -2 * np.pi * (uv[:, :1] * l.reshape(1, -1) + uv[:, 1:] * m.reshape(1, -1))
    return torch.from_numpy(np.cos(phase)).float(), torch.from_numpy(np.sin(phase)).float()


class VLBIOperator(ForwardOperator):
    """y = whitened closure quantities of the image (see the module docstring); `log_gain` (B, S) adaptable."""

    linear = False

    def __init__(self, obs: Observation, size: int = 64, fov_uas: float = 160.0, pixel_jy: float = 0.006,
                 weights: tuple[float, float, float, float] = (1.0, 1.0, 0.5, 0.0), batch: int = 1,
                 gain_std: float = 0.2, random_phases: bool = True, amp_sys: float = 0.02) -> None:
        super().__init__(noise_std=1.0)
        self.obs, self.size, self.fov_uas, self.pixel_jy = obs, size, float(fov_uas), float(pixel_jy)
        self.image_shape = (1, size, size)
        self.w_cp, self.w_ca, self.w_flux, self.w_amp = (float(w) for w in weights)
        self.gain_std, self.random_phases, self.amp_sys = float(gain_std), random_phases, float(amp_sys)
        self.n_cp, self.n_ca, self.n_vis, self.n_st = len(obs.cphase), len(obs.lcamp), obs.n_vis, len(obs.names)
        self.measurement_shape = (2 * self.n_cp + self.n_ca + 1 + self.n_vis,)
        cos, sin = dtft_matrix(obs.uv, size, fov_uas)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.register_buffer("sigma_vis", torch.from_numpy(obs.sigma / pixel_jy).float())  # image units
        self.register_buffer("cp_index", torch.from_numpy(obs.cphase))
        self.register_buffer("cp_sign", torch.from_numpy(obs.cphase_sign).float())
        self.register_buffer("ca_index", torch.from_numpy(obs.lcamp))
        self.register_buffer("st1", torch.from_numpy(obs.station1))
        self.register_buffer("st2", torch.from_numpy(obs.station2))
        self.register_buffer("time_index", torch.from_numpy(np.unique(obs.times, return_inverse=True)[1]))
        self.register_buffer("sigma_cp", torch.ones(batch, self.n_cp))
        self.register_buffer("sigma_ca", torch.ones(batch, self.n_ca))
        self.register_buffer("sigma_amp", self.sigma_vis.expand(batch, -1).clone())
        self.log_gain = nn.Parameter(torch.zeros(batch, self.n_st), requires_grad=False)

    # physics -------------------------------------------------------------------------------------------------
    def visibilities(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Model visibilities (real, imaginary), each (B, M), by the DTFT matrix."""
        flat = x.reshape(x.shape[0], -1)
        return flat @ self.cos.T, flat @ self.sin.T

    def closures(self, re: Tensor, im: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(cos psi, sin psi, L) of visibilities given as (re, im) (B, M): bispectra through `cp_index` with the
        orientation `cp_sign` (-1: the conjugate), log closure amplitudes through `ca_index`."""
        a = re[:, self.cp_index]
        b = im[:, self.cp_index] * self.cp_sign
        zr = a[..., 0] * a[..., 1] - b[..., 0] * b[..., 1]
        zi = a[..., 0] * b[..., 1] + b[..., 0] * a[..., 1]
        zr, zi = zr * a[..., 2] - zi * b[..., 2], zr * b[..., 2] + zi * a[..., 2]
        mod = (zr**2 + zi**2 + 1e-30).sqrt()
        logamp = 0.5 * torch.log(re**2 + im**2 + 1e-30)
        la = logamp[:, self.ca_index]
        return zr / mod, zi / mod, la[..., 0] + la[..., 1] - la[..., 2] - la[..., 3]

    def gain_amplitude(self) -> Tensor:
        """|g_i| |g_j| per visibility, (B or 1, M), from `log_gain`."""
        return torch.exp(self.log_gain[:, self.st1] + self.log_gain[:, self.st2])

    def whiten(self, cos: Tensor, sin: Tensor, lca: Tensor, flux: Tensor, amp: Tensor) -> Tensor:
        """The measurement vector (B, m): weighted blocks over their sigmas (module docstring)."""
        return torch.cat([math.sqrt(self.w_cp) * cos / self.sigma_cp, math.sqrt(self.w_cp) * sin / self.sigma_cp,
                          math.sqrt(self.w_ca) * lca / self.sigma_ca, math.sqrt(self.w_flux) * flux[:, None] / FLUX_SIGMA,
                          math.sqrt(self.w_amp) * amp / self.sigma_amp], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """A(x): the whitened closure phases, log closure amplitudes, flux and gain-scaled amplitudes of x."""
        re, im = self.visibilities(x)
        cos, sin, lca = self.closures(re, im)
        amp = self.gain_amplitude() * (re**2 + im**2 + 1e-30).sqrt()
        return self.whiten(cos, sin, lca, x.reshape(x.shape[0], -1).sum(1), amp)

    def adjoint(self, y: Tensor) -> Tensor:
        raise TypeError("the VLBI closure operator is non-linear and has no adjoint; solvers differentiate forward() "
                        "by autograd (DPS, DAPS with Langevin)")

    def svd(self) -> None:
        return None

    def image_reference(self, y: Tensor) -> Tensor:
        """(B,) the image scale the measurements set: images are in peak-1 units (pixel_jy Jy per unit)."""
        return torch.ones(y.shape[0], device=y.device)

    def adaptable_parameters(self) -> dict[str, nn.Parameter]:
        return {"log_gain": self.log_gain}

    # simulation ----------------------------------------------------------------------------------------------
    def draw_gains(self, batch: int, generator: Randomness = None) -> tuple[Tensor, Tensor]:
        """True station gains: log(1 + delta_i), delta_i ~ N(0, gain_std^2) per station (clamped > -0.9), and
        phases phi_i(t) uniform in [0, 2 pi) per station and timestamp (0 with random_phases off)."""
        delta = (self.gain_std * randn((batch, self.n_st), generator, self.device)).clamp_min(-0.9)
        n_t = int(self.time_index.max()) + 1
        phases = 2 * math.pi * rand((batch, n_t, self.n_st), generator, self.device)
        return torch.log1p(delta), phases * float(self.random_phases)

    def observe(self, x: Tensor, generator: Randomness = None) -> dict[str, Tensor]:
        """Gain-corrupted noisy visibilities of x and the data products with their sigmas (module docstring);
        sets this operator's `log_gain` to the true gains drawn."""
        b = x.shape[0]
        log_gain, phases = self.draw_gains(b, generator)
        re, im = self.visibilities(x)
        ph = phases[:, self.time_index, self.st1] - phases[:, self.time_index, self.st2]
        g = torch.exp(log_gain[:, self.st1] + log_gain[:, self.st2])
        gr, gi = g * torch.cos(ph), g * torch.sin(ph)
        re, im = gr * re - gi * im, gr * im + gi * re
        noise = randn((b, 2, self.n_vis), generator, self.device) * self.sigma_vis
        re, im = re + noise[:, 0], im + noise[:, 1]
        amp = (re**2 + im**2).sqrt().clamp_min(1e-12)
        cos, sin, lca = self.closures(re, im)
        rel = (self.sigma_vis / amp) ** 2
        sigma_cp = rel[:, self.cp_index].sum(-1).sqrt()
        sigma_ca = rel[:, self.ca_index].sum(-1).sqrt()
        sigma_amp = (self.sigma_vis**2 + (self.amp_sys * amp) ** 2).sqrt()
        with torch.no_grad():
            self.log_gain = nn.Parameter(log_gain.detach().clone(), requires_grad=False)
        return {"cos": cos, "sin": sin, "lcamp": lca, "flux": x.reshape(b, -1).sum(1), "amp": amp,
                "sigma_cp": sigma_cp, "sigma_ca": sigma_ca, "sigma_amp": sigma_amp, "phases": phases}

    def measure(self, x: Tensor, generator: Randomness = None) -> Tensor:
        """Observe x (gains, thermal noise), fix the closure sigmas from those data, return the whitened y."""
        data = self.observe(x, generator)
        self.sigma_cp, self.sigma_ca = data["sigma_cp"].detach(), data["sigma_ca"].detach()
        self.sigma_amp = data["sigma_amp"].detach()
        return self.whiten(data["cos"], data["sin"], data["lcamp"], data["flux"], data["amp"]).detach()

    # data fit ------------------------------------------------------------------------------------------------
    def blocks(self, v: Tensor) -> dict[str, Tensor]:
        """A measurement vector's blocks by name (cos, sin, lcamp, flux, amp), as stacked (weighted, whitened)."""
        sizes = [self.n_cp, self.n_cp, self.n_ca, 1, self.n_vis]
        return dict(zip(("cos", "sin", "lcamp", "flux", "amp"), torch.split(v, sizes, dim=1)))

    def chi2(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Per sample (B,) reduced closure chi^2 (InverseBench's evaluate_chisq): x rescaled to the measured flux,
        chi2_cp = mean 2 (1 - cos(psi - psi_x)) / sigma_psi^2, chi2_lca = mean (L - L_x)^2 / sigma_L^2."""
        flux_y = self.blocks(y)["flux"][:, 0] * FLUX_SIGMA / max(math.sqrt(self.w_flux), 1e-12)
        x = x * (flux_y / x.reshape(x.shape[0], -1).sum(1).clamp_min(1e-12)).view(-1, 1, 1, 1)
        r = {k: v for k, v in self.blocks(self.forward(x) - y).items()}
        cp = (r["cos"] ** 2 + r["sin"] ** 2).mean(1) / max(self.w_cp, 1e-12)
        ca = (r["lcamp"] ** 2).mean(1) / max(self.w_ca, 1e-12)
        return {"cp": cp, "lcamp": ca}

    def measured_count(self) -> int:
        """Real data the fit weights: closure phases, log closure amplitudes, flux, amplitudes (where weighted)."""
        return (self.n_cp if self.w_cp else 0) + (self.n_ca if self.w_ca else 0) + (1 if self.w_flux else 0) + \
            (self.n_vis if self.w_amp else 0)

    def data_misfit(self, x: Tensor, y: Tensor) -> Tensor:
        """(B,) the data fit per measured datum, ||A(x) - y||^2 / m (about 1 at the noise level)."""
        r = self.forward(x) - y
        return (r**2).sum(1) / max(self.measured_count(), 1)

    def info(self) -> dict[str, Any]:
        return {"n_vis": self.n_vis, "n_cphase": self.n_cp, "n_lcamp": self.n_ca,
                "stations": ",".join(self.obs.names[i] for i in sorted(set(self.obs.station1) | set(self.obs.station2)))}
