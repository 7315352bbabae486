"""Gaussian and Gaussian-mixture priors with exact denoisers and exact posteriors under a linear Gaussian model.

x0 ~ N(mu, Sigma) with Sigma = B^T diag(lam) B for an orthonormal basis B (pixels or the
orthonormal 2-D DFT, i.e. a stationary covariance). Then (Tweedie, exact):
    D(x, sigma) = mu + B^T diag(lam / (lam + sigma^2)) B (x - mu).
A mixture of such Gaussians (`GaussianMixturePrior`) denoises exactly by weighting the components'
denoisers with their posterior responsibilities at noise level sigma.
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


class GaussianMixturePrior(Prior):
    """Mixture of K Gaussians N(mu_k, B^T diag(lam_k) B) in a shared pixel or Fourier basis, exact denoiser.

    p_sigma(x) = sum_k pi_k N(x; mu_k, Sigma_k + sigma^2 I), so by Tweedie
        D(x, sigma) = sum_k r_k(x) [mu_k + B^T diag(lam_k / (lam_k + sigma^2)) B (x - mu_k)],
        r_k(x) = pi_k N(x; mu_k, Sigma_k + sigma^2 I) / sum_j (same)   (posterior responsibilities).
    """

    def __init__(self, weights: Tensor, means: Tensor, variances: Tensor, basis: str = "fourier") -> None:
        super().__init__()
        if basis not in BASES:
            raise ValueError(f"unknown basis {basis!r}; choose one of {BASES}")
        if means.ndim != 4 or variances.shape != means.shape or weights.shape != means.shape[:1]:
            raise ValueError(f"need weights (K,), means and variances (K, C, H, W); got {tuple(weights.shape)}, "
                             f"{tuple(means.shape)} and {tuple(variances.shape)}")
        if basis == "fourier":
            variances = 0.5 * (variances + torch.roll(torch.flip(variances, (-2, -1)), (1, 1), (-2, -1)))
        if bool((variances <= 0).any()):
            raise ValueError("GMM variances must be positive (add a floor, e.g. 1e-6 times their mean)")
        self.basis = basis
        self.register_buffer("log_weights", (weights.double() / weights.sum()).log().float())
        self.register_buffer("means", means.float())
        self.register_buffer("variances", variances.float())
        self.channels = means.shape[1]
        self.resolution = (means.shape[2], means.shape[3])
        self.sigma_min, self.sigma_max = 1e-4, 1e4

    @property
    def components(self) -> int:
        return self.means.shape[0]

    def component(self, k: int) -> GaussianPrior:
        """The k-th component as a GaussianPrior (same basis)."""
        return GaussianPrior(self.means[k], self.variances[k], self.basis)

    def responsibilities(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """r_k(x) for each sample, (B, K): the posterior weights of the components at noise level sigma."""
        s2 = sigma_like(sigma, x).view(-1, 1, 1, 1, 1) ** 2
        z = _fwd(x.unsqueeze(1) - self.means, self.basis)  # (B, K, C, H, W)
        var = self.variances + s2
        quad = (z.abs() ** 2 / var).flatten(2).sum(2)
        logdet = var.log().flatten(2).sum(2)
        logp = self.log_weights - 0.5 * (quad.double() + logdet.double())
        return torch.softmax(logp, dim=1).float()

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        s2 = sigma_like(sigma, x).view(-1, 1, 1, 1, 1) ** 2
        r = self.responsibilities(x, sigma)
        gain = self.variances / (self.variances + s2)
        d_k = self.means + _inv(gain * _fwd(x.unsqueeze(1) - self.means, self.basis), self.basis)
        return (r.view(*r.shape, 1, 1, 1) * d_k).sum(1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact draws: a component by its weight, then that Gaussian."""
        dev = self.means.device
        k = torch.multinomial(self.log_weights.exp().cpu(), n, replacement=True, generator=generator).to(dev)
        eps = torch.randn((n, *self.means.shape[1:]), generator=generator, device=dev)
        return self.means[k] + _inv(self.variances[k].sqrt() * _fwd(eps, self.basis), self.basis)

    @classmethod
    def fit(cls, images: Tensor, components: int = 4, basis: str = "fourier", kmeans_iters: int = 20,
            em_iters: int = 10, floor: float = 1e-4, generator: torch.Generator | None = None) -> "GaussianMixturePrior":
        """k-means++ on the pixels, per-cluster moments, then EM for the basis-diagonal mixture.

        E-step: r_nk = pi_k N(x_n; mu_k, Sigma_k) / sum_j; M-step: pi_k = mean_n r_nk, mu_k = weighted
        mean, lam_k = weighted mean of |B(x_n - mu_k)|^2 plus floor * (the data's mean variance).
        """
        x = images.float()
        n = x.shape[0]
        if not 1 <= components <= n:
            raise ValueError(f"need 1 <= components <= number of images ({n}), got {components}")
        g = generator or torch.Generator().manual_seed(0)
        flat = x.flatten(1)
        centres = flat[torch.randint(0, n, (1,), generator=g)]
        for _ in range(1, components):  # k-means++ seeding
            d2 = torch.cdist(flat, centres).min(1).values ** 2
            centres = torch.cat([centres, flat[torch.multinomial(d2 / d2.sum(), 1, generator=g)]])
        for _ in range(kmeans_iters):
            assign = torch.cdist(flat, centres).argmin(1)
            onehot = torch.nn.functional.one_hot(assign, components).float()
            counts = onehot.sum(0)
            centres = torch.where(counts[:, None] > 0, onehot.T @ flat / counts.clamp_min(1)[:, None], centres)
        resp = torch.nn.functional.one_hot(torch.cdist(flat, centres).argmin(1), components).double()
        var_floor = floor * float((_fwd(x - x.mean(0), basis).abs() ** 2).mean())
        model = None
        for it in range(em_iters + 1):
            nk = resp.sum(0).clamp_min(1e-8)
            weights = (nk / n).float()
            means = torch.einsum("nk,nd->kd", resp, flat.double()).div(nk[:, None]).float().reshape(components, *x.shape[1:])
            coeff2 = _fwd(x.unsqueeze(1) - means, basis).abs() ** 2  # (N, K, C, H, W)
            var = torch.einsum("nk,nkd->kd", resp.float(), coeff2.flatten(2)) / nk[:, None].float()
            var = var.reshape(means.shape) + var_floor
            model = cls(weights.clamp_min(1e-12), means, var, basis)
            if it == em_iters:
                break
            resp = model.responsibilities(x, 0.0).double()
        return model


def gmm_posterior(prior: GaussianMixturePrior, operator, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Exact posterior of x0 given y = A x0 + n under a GMM prior: a mixture of Gaussian posteriors.

    p(x0 | y) = sum_k w_k N(m_k, P_k) with w_k ∝ pi_k N(y; A mu_k, A Sigma_k A^H + sigma_y^2 I) and
    (m_k, P_k) the Gaussian posterior of component k (`gaussian_posterior`); dense, small images only.
    Returns the weights (B, K), component means (B, K, C, H, W) and the posterior mean (B, C, H, W).
    """
    shape = prior.means.shape[1:]
    n = prior.means[0].numel()
    eye = torch.eye(n, device=y.device).reshape(n, *shape)
    a_mat = operator.forward(eye).reshape(n, -1).T
    if a_mat.is_complex():
        a_mat = torch.cat([a_mat.real, a_mat.imag], 0)
        y_vec = torch.cat([y.real.reshape(y.shape[0], -1), y.imag.reshape(y.shape[0], -1)], 1)
    else:
        y_vec = y.reshape(y.shape[0], -1)
    a_mat, y_vec = a_mat.double(), y_vec.double()
    sigma_y = float(operator.noise_std.reshape(-1)[0])
    logw, means = [], []
    for k in range(prior.components):  # K is small; each component is a batched dense solve
        comp = prior.component(k)
        m_k, _ = gaussian_posterior(comp, operator, y)
        cov_y = a_mat @ comp.covariance().double() @ a_mat.T + sigma_y**2 * torch.eye(a_mat.shape[0], dtype=torch.float64,
                                                                                        device=y.device)
        resid = y_vec - a_mat @ comp.mean.reshape(-1).double()
        dist = torch.distributions.MultivariateNormal(torch.zeros_like(resid[0]), covariance_matrix=cov_y)
        logw.append(prior.log_weights[k].double() + dist.log_prob(resid))
        means.append(m_k)
    weights = torch.softmax(torch.stack(logw, 1), 1).float()
    comp_means = torch.stack(means, 1)
    return weights, comp_means, (weights.view(*weights.shape, 1, 1, 1) * comp_means).sum(1)


def gmm_from_dataset(dataset, components: int = 4, n: int = 256, basis: str = "fourier", em_iters: int = 10,
                     seed: int = 0) -> GaussianMixturePrior:
    """Gaussian mixture (exact denoiser) fitted to a dataset's first n images: k-means++, then EM."""
    n = min(n, len(dataset))
    images = torch.stack([dataset[i]["image"] for i in range(n)])
    return GaussianMixturePrior.fit(images, components, basis, em_iters=em_iters,
                                    generator=torch.Generator().manual_seed(seed))
