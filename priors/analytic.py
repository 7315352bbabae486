"""Gaussian prior with an exact denoiser and the exact posterior under a linear Gaussian model.

x0 ~ N(mu, Sigma) with Sigma = B^T diag(lam) B for an orthonormal basis B (pixels or the
orthonormal 2-D DFT, i.e. a stationary covariance). Then (Tweedie, exact):
    D(x, sigma) = mu + B^T diag(lam / (lam + sigma^2)) B (x - mu).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

from priors.base import Prior, sigma_like

BASES = ("pixel", "fourier")


def _fwd(x: Tensor, basis: str) -> Tensor:
    if basis == "pixel":
        return x
    return torch.fft.fft2(x, norm="ortho")


def _inv(z: Tensor, basis: str) -> Tensor:
    if basis == "pixel":
        return z
    return torch.fft.ifft2(z, norm="ortho").real


class GaussianPrior(Prior):
    """Gaussian prior N(mu, B^T diag(lam) B), diagonal in a pixel or Fourier basis, with exact denoiser."""

    def __init__(self, mean: Tensor, variance: Tensor, basis: str = "fourier") -> None:
        super().__init__()
        if basis not in BASES:
            raise ValueError(f"unknown basis {basis!r}; choose one of {BASES}")
        if mean.ndim != 3 or variance.shape != mean.shape:
            raise ValueError(f"mean and variance must both be (C, H, W), got {tuple(mean.shape)} and {tuple(variance.shape)}")
        if basis == "fourier":
            # a real field with a stationary covariance has a Hermitian-symmetric spectrum variance
            variance = 0.5 * (variance + torch.roll(torch.flip(variance, (-2, -1)), (1, 1), (-2, -1)))
        self.basis = basis
        self.register_buffer("mean", mean.float())
        self.register_buffer("variance", variance.float().clamp_min(0))
        self.channels = mean.shape[0]
        self.resolution = (mean.shape[1], mean.shape[2])
        self.sigma_min, self.sigma_max = 1e-4, 1e4

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        s2 = sigma_like(sigma, x).view(-1, 1, 1, 1) ** 2
        gain = self.variance / (self.variance + s2)
        return self.mean + _inv(gain * _fwd(x - self.mean, self.basis), self.basis)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact draws x0 = mu + B^T sqrt(lam) B eps: real white noise filtered in the basis."""
        eps = torch.randn((n, *self.mean.shape), generator=generator, device=self.mean.device)
        return self.mean + _inv(self.variance.sqrt() * _fwd(eps, self.basis), self.basis)

    def covariance(self) -> Tensor:
        """The dense (n, n) covariance, n = C*H*W, for small exact checks."""
        n = self.mean.numel()
        eye = torch.eye(n, device=self.mean.device).reshape(n, *self.mean.shape)
        return self.denoise_linear(eye).reshape(n, n)

    def denoise_linear(self, e: Tensor) -> Tensor:
        """Apply Sigma = B^T diag(lam) B to a batch."""
        return _inv(self.variance * _fwd(e, self.basis), self.basis)

    @classmethod
    def fit(cls, images: Iterable[Tensor] | Tensor, basis: str = "fourier") -> "GaussianPrior":
        """Maximum-likelihood fit of mean and per-coefficient variance to (N, C, H, W) images."""
        x = images if isinstance(images, Tensor) else torch.stack(list(images))
        mean = x.mean(0)
        coeff = _fwd(x - mean, basis)
        var = (coeff.abs() ** 2).mean(0)
        return cls(mean, var, basis)


def gaussian_posterior(prior: GaussianPrior, operator, y: Tensor) -> tuple[Tensor, Tensor]:
    """Exact posterior N(m, P) of x0 given y = A x0 + n, n ~ N(0, sigma_y^2 I) per real component.

    P = (Sigma^-1 + A^H A / sigma_y^2)^-1 and m = mu + Sigma A^H (A Sigma A^H + sigma_y^2 I)^-1 (y - A mu),
    computed densely (small images only) from A's action on the image basis. Returns m (B, C, H, W)
    and the covariance P (n, n) (shared by the batch, noise_std must be a scalar).
    """
    shape = prior.mean.shape
    n = prior.mean.numel()
    eye = torch.eye(n, device=y.device).reshape(n, *shape)
    a_cols = operator.forward(eye)  # column j = A e_j
    a_mat = a_cols.reshape(n, -1).T  # (m, n), complex or real
    if a_mat.is_complex():
        a_mat = torch.cat([a_mat.real, a_mat.imag], 0)
        y_vec = torch.cat([y.real.reshape(y.shape[0], -1), y.imag.reshape(y.shape[0], -1)], 1)
    else:
        y_vec = y.reshape(y.shape[0], -1)
    a_mat = a_mat.double()
    sigma_y = float(operator.noise_std.reshape(-1)[0])
    cov = prior.covariance().double()
    mu = prior.mean.reshape(-1).double()
    gram = a_mat @ cov @ a_mat.T + (sigma_y**2) * torch.eye(a_mat.shape[0], dtype=torch.float64, device=y.device)
    gain = cov @ a_mat.T @ torch.linalg.pinv(gram, hermitian=True)
    mean = mu + (y_vec.double() - (a_mat @ mu)) @ gain.T
    post_cov = cov - gain @ a_mat @ cov
    return mean.float().reshape(y.shape[0], *shape), post_cov.float()


def gaussian_from_dataset(dataset, n: int = 256, basis: str = "fourier") -> GaussianPrior:
    """Gaussian prior (exact denoiser) fitted by maximum likelihood to a dataset's first n images."""
    n = min(n, len(dataset))
    return GaussianPrior.fit(torch.stack([dataset[i]["image"] for i in range(n)]), basis)
