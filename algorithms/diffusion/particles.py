"""Pieces shared by the particle and derivative-free solvers (FPS, MCG-diff, DPG, SCG, EnKG, DPS-GSG).

Particles of a batch are held as (B, J, C, H, W): J per sample. Denoiser and operator calls flatten them
particle-major (row j B + b), so sample b's rows never mix with another sample's and every draw comes from sample b's
generator (randn on a (B, J, ...) tensor: row b from generator b). The operator is used through `forward` only.
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm
from algorithms.diffusion.data_consistency import randn
from inverse_problems.operators.base import ForwardOperator
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
