"""Classical reconstructions without a learned prior, batched in torch (CPU and GPU).

- `cg-sense`: Tikhonov least squares by conjugate gradient (Pruessmann et al., MRM 2001).
- `l1-wavelet`: min_x 1/2 ||A x - y||^2 + lam ||W x||_1, W an orthonormal Haar transform, by FISTA
  (Beck & Teboulle, SIAM J. Imaging Sci. 2009); CS-MRI after Lustig et al., MRM 2007. Each iteration
  thresholds in a randomly shifted wavelet frame (cycle spinning, as BART's pics does), which removes
  Haar's block artefacts: about +7 dB over the fixed frame on a 64 px phantom at R = 4.
- `tv`: min_x 1/2 ||A x - y||^2 + lam TV(x), isotropic TV, by primal-dual hybrid gradient
  (Chambolle & Pock, JMIV 2011).
For complex images (C = 2) the sparsity penalties act on complex magnitudes (real and imaginary
parts thresholded jointly). Weights are in the scaled units the algorithm sees (image ~ 1).
These methods have no sampler steps: adapters act through their prepare/refine hooks only.
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import per_sample
from inverse_problems.operators.random import randint
from priors.base import Prior


def haar_levels(shape: tuple[int, int], levels: int) -> int:
    """The number of Haar levels (<= levels) that H and W allow; at least one."""
    h, w = shape
    n = 0
    while n < levels and h % 2 == 0 and w % 2 == 0 and h >= 2 and w >= 2:
        h, w, n = h // 2, w // 2, n + 1
    if n == 0:
        raise ValueError(f"the Haar wavelet needs even image sides, got {shape}; use a size divisible by 2**levels")
    return n


def haar(x: Tensor, levels: int) -> tuple[Tensor, list[Tensor]]:
    """Orthonormal 2-D Haar transform: (approximation, [details (B, C, 3, h, w) per level, finest first])."""
    a, details = x, []
    for _ in range(levels):
        x00, x01, x10, x11 = a[..., 0::2, 0::2], a[..., 0::2, 1::2], a[..., 1::2, 0::2], a[..., 1::2, 1::2]
        details.append(torch.stack([x00 - x01 + x10 - x11, x00 + x01 - x10 - x11, x00 - x01 - x10 + x11], 2) / 2)
        a = (x00 + x01 + x10 + x11) / 2
    return a, details


def ihaar(a: Tensor, details: list[Tensor]) -> Tensor:
    """Inverse (= transpose) of `haar`."""
    for d in reversed(details):
        lh, hl, hh = d.unbind(2)
        out = a.new_empty((*a.shape[:-2], 2 * a.shape[-2], 2 * a.shape[-1]))
        out[..., 0::2, 0::2] = (a + lh + hl + hh) / 2
        out[..., 0::2, 1::2] = (a - lh + hl - hh) / 2
        out[..., 1::2, 0::2] = (a + lh - hl - hh) / 2
        out[..., 1::2, 1::2] = (a - lh - hl + hh) / 2
        a = out
    return a


def roll_per_sample(x: Tensor, shifts: Tensor) -> Tensor:
    """torch.roll over the last two dimensions by a shift (dy, dx) of its own per sample, shifts (B, 2):
    out[b, ..., i, j] = x[b, ..., (i - dy_b) mod H, (j - dx_b) mod W]."""
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    lead = [1] * (x.ndim - 3)
    rows = (torch.arange(h, device=x.device) - shifts[:, :1].to(x.device)) % h
    cols = (torch.arange(w, device=x.device) - shifts[:, 1:].to(x.device)) % w
    x = torch.gather(x, -2, rows.view(b, *lead, h, 1).expand(x.shape))
    return torch.gather(x, -1, cols.view(b, *lead, 1, w).expand(x.shape))


def soft_threshold(z: Tensor, t: Tensor, joint_channels: bool) -> Tensor:
    """prox of t||.||_1: shrink magnitudes by t (per sample, (B,)); joint over dim 1 for complex pairs."""
    mag = z.pow(2).sum(1, keepdim=True).sqrt() if joint_channels else z.abs()
    return z * (1 - per_sample(t, z) / mag.clamp_min(1e-12)).clamp_min(0)


def gradient(x: Tensor) -> Tensor:
    """Forward differences with Neumann boundary: (B, C, 2, H, W) = (d/dy, d/dx)."""
    g = x.new_zeros((x.shape[0], x.shape[1], 2, *x.shape[2:]))
    g[:, :, 0, :-1] = x[:, :, 1:] - x[:, :, :-1]
    g[:, :, 1, :, :-1] = x[..., 1:] - x[..., :-1]
    return g


def gradient_adjoint(g: Tensor) -> Tensor:
    """The adjoint of `gradient` (minus the divergence), written out."""
    out = g.new_zeros((g.shape[0], g.shape[1], *g.shape[3:]))
    out[:, :, :-1] -= g[:, :, 0, :-1]
    out[:, :, 1:] += g[:, :, 0, :-1]
    out[..., :-1] -= g[:, :, 1, :, :-1]
    out[..., 1:] += g[:, :, 1, :, :-1]
    return out


class CGSense(Algorithm):
    """CG-SENSE: argmin_x ||A x - y||^2 + lam ||x||^2 by conjugate gradient (closed form where the operator has one)."""

    uses_prior = False

    def __init__(self, lam: float = 0.0, n_iter: int = 10, tol: float = 1e-6) -> None:
        super().__init__()
        if lam < 0 or n_iter < 1:
            raise ValueError(f"cg-sense needs lam >= 0 and n_iter >= 1, got lam={lam}, n_iter={n_iter}")
        self.lam, self.n_iter, self.tol = lam, n_iter, tol

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: torch.Generator | None,
            callback=None) -> Tensor:
        return operator.pinv(y, n_iter=self.n_iter, tol=self.tol, damping=self.lam)


class L1Wavelet(Algorithm):
    """l1-wavelet CS: argmin_x 1/2 ||A x - y||^2 + lam ||W x||_1 (orthonormal Haar, details only) by FISTA."""

    uses_prior = False

    def __init__(self, lam: float = 0.003, n_iter: int = 100, levels: int = 4, cycle_spin: bool = True,
                 power_iter: int = 30) -> None:
        super().__init__()
        if lam < 0 or n_iter < 1 or levels < 1:
            raise ValueError(f"l1-wavelet needs lam >= 0, n_iter >= 1, levels >= 1; got {lam}, {n_iter}, {levels}")
        self.lam, self.n_iter, self.levels, self.power_iter = lam, n_iter, levels, power_iter
        self.cycle_spin = cycle_spin

    def prox(self, v: Tensor, t: Tensor, levels: int, shifts: Tensor | None = None) -> Tensor:
        """Soft thresholding of the Haar details of v circularly shifted by `shifts` ((B, 2), one shift per
        sample; None: no shift), shifted back."""
        if shifts is None:
            a, details = haar(v, levels)
            return ihaar(a, [soft_threshold(d, t, v.shape[1] == 2) for d in details])
        a, details = haar(roll_per_sample(v, shifts), levels)
        out = ihaar(a, [soft_threshold(d, t, v.shape[1] == 2) for d in details])
        return roll_per_sample(out, -shifts)

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: torch.Generator | None,
            callback=None) -> Tensor:
        levels = haar_levels(operator.image_shape[1:], self.levels)
        step = 1.0 / (1.01 * operator.squared_norm(y.shape[0], self.power_iter, generator)).clamp_min(1e-12)
        x = operator.adjoint(y)
        z, t = x, 1.0
        for i in range(self.n_iter):
            v = z - per_sample(step, z) * operator.adjoint(operator(z) - y)
            shifts = randint(0, 2**levels, (y.shape[0], 2), generator, y.device) if self.cycle_spin else None
            x_new = self.prox(v, step * self.lam, levels, shifts)
            t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
            z = x_new + ((t - 1) / t_new) * (x_new - x)
            x, t = self.monitor.check(i, x_new), t_new
        return x


class TotalVariation(Algorithm):
    """TV: argmin_x 1/2 ||A x - y||^2 + lam sum_p |grad x(p)| (isotropic) by Chambolle-Pock PDHG."""

    uses_prior = False
    channelwise = False  # True: one isotropic TV per channel (sum_c lam_c TV(x_c)); False: vectorial TV over channels

    def __init__(self, lam: float = 0.01, n_iter: int = 200, power_iter: int = 30) -> None:
        super().__init__()
        if lam < 0 or n_iter < 1:
            raise ValueError(f"tv needs lam >= 0 and n_iter >= 1, got lam={lam}, n_iter={n_iter}")
        self.lam, self.n_iter, self.power_iter = lam, n_iter, power_iter

    def weights(self, y: Tensor, operator: ForwardOperator) -> Tensor:
        """The TV weight per sample and channel, broadcastable to the dual variable (B, C, 2, H, W): lam."""
        return torch.full((y.shape[0], 1, 1, 1, 1), float(self.lam), device=y.device)

    def primal_prox(self, x: Tensor) -> Tensor:
        """The projection onto the primal constraint set (none: identity)."""
        return x

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: torch.Generator | None,
            callback=None) -> Tensor:
        norm_k = (operator.squared_norm(y.shape[0], self.power_iter, generator) * 1.01 + 8.0).sqrt()
        tau = sigma = 1.0 / norm_k  # tau * sigma * ||K||^2 = 1 with K = [A; grad], ||grad||^2 <= 8
        lam = self.weights(y, operator)
        dims = (2,) if self.channelwise else (1, 2)
        x = self.primal_prox(operator.adjoint(y))
        x_bar = x
        p = gradient(x) * 0
        q = torch.zeros_like(y)
        for i in range(self.n_iter):
            q = (q + per_sample(sigma, q) * (operator(x_bar) - y)) / (1 + per_sample(sigma, q))
            p = p + per_sample(sigma, p) * gradient(x_bar)
            mag = p.pow(2).sum(dim=dims, keepdim=True).sqrt()
            p = torch.where(lam > 0, p / (mag / lam.clamp_min(1e-30)).clamp_min(1), torch.zeros_like(p))
            x_new = self.primal_prox(x - per_sample(tau, x) * (operator.adjoint(q) + gradient_adjoint(p)))
            x_bar = 2 * x_new - x
            x = self.monitor.check(i, x_new)
        return x
