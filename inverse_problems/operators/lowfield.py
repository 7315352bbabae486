"""Low-field MRI degradation y = PSF(L_k(x)) + n (DiffDeuR, Lin et al.; see METHODS.md).

L_k keeps the central round(N/k) frequencies of each axis of the centred k-space (1/k^2 of k-space) and
zero-fills the rest; PSF is a Gaussian blur of full width at half maximum `fwhm` pixels, applied as
its (periodic) transfer function H(nu) = exp(-2 pi^2 sigma^2 |nu|^2), sigma = fwhm / (2 sqrt(2 ln 2)),
nu in cycles per pixel. Choice: the measurement lives on the full (zero-padded) grid, as a real
2-channel image (B, 2, H, W) like x, so that zero-filled output, metrics and image-domain adapters
compare it directly to the target; noise is white on that grid, `noise_std` per real component.

A = F^H D F with D = diag(T(nu) H(nu)) real and >= 0, so the exact SVD is V = U = F^H (real
2-channel representation) and s = T H on both channels. `fwhm` and `noise_std` are nn.Parameters
(adaptable); the forward is differentiable in fwhm.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from inverse_problems.operators.base import SVD, ForwardOperator
from inverse_problems.operators.complex import to_complex, to_real
from inverse_problems.operators.fft import centred_frequencies, fft2c, ifft2c
from inverse_problems.operators.mri import AdaptableMixin

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def truncation_mask(size: tuple[int, int], k: float) -> Tensor:
    """(H, W) {0, 1}: the central round(H/k) x round(W/k) block of centred k-space (fastMRI centring)."""
    if k < 1:
        raise ValueError(f"the truncation factor k must be >= 1, got {k}")
    mask = torch.zeros(size)
    rows, cols = (max(1, round(n / k)) for n in size)
    r0, c0 = (size[0] - rows + 1) // 2, (size[1] - cols + 1) // 2
    mask[r0:r0 + rows, c0:c0 + cols] = 1
    return mask


class LowField(AdaptableMixin, ForwardOperator):
    """y = F^H T H F x + n: k-space truncation by k, Gaussian PSF of `fwhm` pixels, white Gaussian noise."""

    def __init__(self, size: tuple[int, int] | int, k: float = 2.0, fwhm: float | Tensor = 2.0,
                 noise_std: float | Tensor = 0.0) -> None:
        super().__init__(noise_std)
        size = (size, size) if isinstance(size, int) else tuple(size)
        self.k = k
        self.image_shape = (2, *size)
        self.measurement_shape = self.image_shape
        self.register_buffer("truncation", truncation_mask(size, k))
        self.register_buffer("nu2", centred_frequencies(size[0])[:, None] ** 2 + centred_frequencies(size[1])[None] ** 2)
        if torch.as_tensor(fwhm).lt(0).any():
            raise ValueError(f"fwhm must be >= 0 pixels, got {fwhm}")
        self.fwhm = nn.Parameter(torch.as_tensor(fwhm, dtype=torch.float32).clone())
        self._adaptable = ("fwhm", "noise_std")
        self._remember_initial()

    def transfer(self) -> Tensor:
        """T(nu) H(nu): (H, W), or (B, H, W) for a per-sample fwhm."""
        sigma = self.fwhm * FWHM_TO_SIGMA
        sigma2 = (sigma**2).reshape(-1, 1, 1) if sigma.ndim else sigma**2
        return self.truncation * torch.exp(-2 * math.pi**2 * sigma2 * self.nu2)

    def _filter(self, x: Tensor, gain: Tensor) -> Tensor:
        return to_real(ifft2c(gain * fft2c(to_complex(x))))

    def forward(self, x: Tensor) -> Tensor:
        self.check_image(x)
        return self._filter(x, self.transfer())

    def adjoint(self, y: Tensor) -> Tensor:
        """A^H = F^H T H F (real, symmetric transfer: A is self-adjoint), written out."""
        return self._filter(y, self.transfer())

    def normal(self, x: Tensor) -> Tensor:
        return self._filter(x, self.transfer() ** 2)

    def pinv(self, y: Tensor, n_iter: int = 0, tol: float = 0.0, damping: float = 0.0) -> Tensor:
        """Closed form (A^H A + damping)^+ A^H y = F^H [s / (s^2 + damping)] F y, 0 where s = 0."""
        s = self.transfer()
        gain = torch.where(s > 1e-6, s / (s**2 + damping).clamp_min(1e-12), torch.zeros_like(s))
        return self._filter(y, gain)

    def svd(self) -> SVD:
        _, h, w = self.image_shape
        s = self.transfer()
        s = s.unsqueeze(-3).expand(*s.shape[:-2], 2, h, w).reshape(*s.shape[:-2], -1)

        def to_spectral(x: Tensor) -> Tensor:
            return to_real(fft2c(to_complex(x.reshape(-1, 2, h, w)))).flatten(1)

        def from_spectral(z: Tensor) -> Tensor:
            return to_real(ifft2c(to_complex(z.reshape(-1, 2, h, w))))

        return SVD(V=from_spectral, Vt=to_spectral, U=from_spectral, Ut=lambda y: to_spectral(y) * (s > 0), s=s)

    @property
    def kept_fraction(self) -> float:
        return float(self.truncation.mean())
