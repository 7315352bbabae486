"""Pieces shared by the particle and derivative-free solvers (FPS, MCG-diff, DPG, SCG, EnKG, DPS-GSG).

Particles of a batch are held as (B, J, C, H, W): J per sample. Denoiser and operator calls flatten them
particle-major (row j B + b), so sample b's rows never mix with another sample's and every draw comes from sample b's
generator (randn on a (B, J, ...) tensor: row b from generator b). The operator is used through `forward` only.
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import noise_level, randn, spectral_measurement
from inverse_problems.operators.base import SVD, ForwardOperator
from inverse_problems.operators.forward_only import flat_measurement
from inverse_problems.operators.random import Randomness, rand
from priors.base import Prior


def flatten(x: Tensor) -> Tensor:
    """(B, J, ...) -> (J B, ...), particle-major."""
    return x.transpose(0, 1).reshape(-1, *x.shape[2:])


def unflatten(x: Tensor, b: int) -> Tensor:
    """(J B, ...) -> (B, J, ...)."""
    return x.reshape(-1, b, *x.shape[1:]).transpose(0, 1)


def denoise_particles(alg: Algorithm, prior: Prior, x: Tensor, sigma: Tensor | float, chunk: int = 64) -> Tensor:
    """D(x, sigma) for particles x (B, J, ...), sigma a float or (B,), in chunks of `chunk` particles; counts J NFE
    per sample (one network evaluation per particle)."""
    b, j = x.shape[:2]
    s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1).expand(b)
    out = []
    for start in range(0, j, chunk):
        part = x[:, start:start + chunk]
        alg.nfe += part.shape[1]
        out.append(unflatten(prior.denoise(flatten(part), s.repeat(part.shape[1])), b))
    return torch.cat(out, dim=1)


def shared(operator: ForwardOperator) -> bool:
    """True if one operator serves every sample of the batch (a batch-1 input gives a batch-1 output)."""
    with torch.no_grad():
        return operator.forward(torch.zeros((1, *operator.image_shape), device=operator.device)).shape[0] == 1


def forward_particles(operator: ForwardOperator, x: Tensor, chunk: int = 256) -> Tensor:
    """A x for particles x (B, J, ...) as (B, J, m) real (complex measurements as real and imaginary parts), by
    `forward` only: one call per chunk of particles where the operator is shared, else one call per particle."""
    b, j = x.shape[:2]
    if shared(operator):
        out = [unflatten(flat_measurement(operator.forward(flatten(x[:, s:s + chunk]))), b)
               for s in range(0, j, chunk)]
        return torch.cat(out, dim=1)
    return torch.stack([flat_measurement(operator.forward(x[:, k])) for k in range(j)], dim=1)


def data_loss(operator: ForwardOperator, x: Tensor, y: Tensor, chunk: int = 256) -> Tensor:
    """(B, J) ||y - A x_j||^2 per particle (InverseBench's `forward_op.loss`), by forward calls only."""
    r = forward_particles(operator, x, chunk) - flat_measurement(y).unsqueeze(1)
    return r.pow(2).sum(-1)


def resample(log_w: Tensor, generator: Randomness) -> Tensor:
    """(B, J) multinomial resampling indices from per-sample log-weights (B, J): J uniform draws per sample from its
    own generator, through the inverse of the weights' CDF."""
    w = torch.softmax(log_w.double(), dim=1)
    cdf = w.cumsum(1)
    cdf = cdf / cdf[:, -1:]
    u = rand(log_w.shape, generator, log_w.device).double()
    return torch.searchsorted(cdf, u).clamp_max(log_w.shape[1] - 1)


def pick(x: Tensor, idx: Tensor) -> Tensor:
    """x (B, J, ...) gathered along J by idx (B, K)."""
    return x[torch.arange(x.shape[0], device=x.device).unsqueeze(1), idx]


def ancestral(x: Tensor, x0: Tensor, s: float, s_next: float, generator: Randomness) -> Tensor:
    """DDPM's posterior q(x' | x, x0) in EDM variables: x' = x0 + (s'^2/s^2)(x - x0) + s' sqrt(1 - s'^2/s^2) z (exact
    on the VP chain; DPS's step)."""
    ratio = s_next**2 / s**2
    out = x0 + ratio * (x - x0)
    return out + s_next * (1 - ratio) ** 0.5 * randn(x, generator) if s_next > 0 else out


def particle_noise(b: int, j: int, shape: tuple[int, ...], generator: Randomness, device: torch.device) -> Tensor:
    """(B, J, *shape) standard normal draws, row b from sample b's generator."""
    return randn(torch.empty((b, j, *shape), device=device), generator)


OUTPUTS = ("particle", "mean")


def vp_sde_sigmas(n: int, t_min: float = 1e-3, beta_d: float = 19.9, beta_min: float = 0.1) -> Tensor:
    """EDM sigmas of the VP SDE at t = 1 ... t_min (n points, linear in t; InverseBench's 'vp' timesteps), then 0."""
    t = torch.linspace(1.0, t_min, n, dtype=torch.float64)
    return torch.cat([(torch.exp(beta_d * t**2 / 2 + beta_min * t) - 1).sqrt(), torch.zeros(1, dtype=torch.float64)]).float()


class SpectralSMC(Algorithm):
    """Shared set-up of the SVD-basis particle samplers: spectral data, particle lifting, output choice."""

    needs_svd = True
    derivative_free = True

    def __init__(self, n_particles: int, output: str, dense_max: int, chunk: int) -> None:
        super().__init__()
        if n_particles < 1 or chunk < 1:
            raise ValueError(f"need n_particles >= 1 and chunk >= 1, got {n_particles} and {chunk}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS} (a draw from the final particles, or their mean), "
                             f"got {output!r}")
        self.n_particles, self.output, self.dense_max, self.chunk = n_particles, output, dense_max, chunk

    def operator_use(self) -> str:
        return "needs the operator's SVD: a linear operator"

    def spectral_data(self, y: Tensor, operator: ForwardOperator) -> tuple[SVD, Tensor, Tensor, Tensor]:
        """The SVD, the observed mask (B, n), ȳ = S^+ U^T y and c = sigma_y / s (floored at 1e-4, as the official)."""
        b = y.shape[0]
        svd = self.spectral(operator, b)
        s, obs, y_bar = spectral_measurement(svd, y)
        c = noise_level(operator, b, y.device).clamp_min(1e-4).view(-1, 1) / torch.where(obs, s, torch.ones_like(s))
        return svd, obs, y_bar, c

    def clean(self, prior: Prior, svd: SVD, x_bar: Tensor, s: float, i: int, n: int, y: Tensor,
              operator: ForwardOperator, callback: StepCallback | None) -> Tensor:
        """x̄0 = V^T D(V x̄, sigma) for particles (B, J, n); the callback sees the particles' mean x̂0 and may shift it."""
        b = x_bar.shape[0]
        x = unflatten(svd.V(flatten(x_bar)), b)
        x0 = denoise_particles(self, prior, x, s, self.chunk)
        mean = x0.mean(1)
        sigma = torch.full((b,), s, device=y.device)
        x0 = x0 + (self.step(callback, Step(i, n, sigma, x.mean(1), mean, y, operator, prior)) - mean).unsqueeze(1)
        return unflatten(svd.Vt(flatten(x0)), b)

    def finish(self, svd: SVD, x_bar: Tensor, shape: tuple[int, ...]) -> Tensor:
        b = x_bar.shape[0]
        return svd.V(x_bar[:, 0] if self.output == "particle" else x_bar.mean(1)).reshape(b, *shape)

    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        svd, x_bar = self.particles(y, operator, prior, generator, callback)
        return self.finish(svd, x_bar, tuple(operator.image_shape))

    def particles(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
                  callback: StepCallback | None = None) -> tuple[SVD, Tensor]:
        """The SVD and the final particles (B, J, n) in its basis."""
        raise NotImplementedError

    def check_particles(self, i: int, x_bar: Tensor) -> Tensor:
        b, j = x_bar.shape[:2]
        return self.monitor.check(i, x_bar.reshape(b, j, 1, -1)).reshape(x_bar.shape)
