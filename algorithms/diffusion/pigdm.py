"""Pseudoinverse-guided diffusion models, ΠGDM (Song, Vahdat, Mardani, Kautz, ICLR 2023; no official release:
the authors' implementation in NVlabs/RED-diff `algos/pgdm.py` and InverseBench's `algo/pigdm.py`).

p(x0 | x_t) is taken as N(x̂0, r_t^2 I) with r_t^2 = sigma^2 / (1 + sigma^2) (exact for unit-variance white data), so
p(y | x_t) = N(A x̂0, r_t^2 A A^H + sigma_y^2 I). The guidance is the vector-Jacobian product
    g = J^T A^H (A A^H + (sigma_y^2 / r_t^2) I)^-1 (y - A x̂0),     J = d x̂0 / d x      (backprop through the denoiser)
i.e. r_t^2 grad log p(y | x_t); noiseless it is J^T A^+ (y - A x̂0), the paper's pseudo-inverse guidance. Each step is
a DDIM step from sigma to sigma' plus the guidance with weight w (the code's `grad_term_weight`; the authors' VP step
sqrt(abar_s) sqrt(abar_t) w g_vp is w g in EDM variables):
    x' = x̂0 + sqrt(1 - eta^2) (sigma'/sigma) (x - x̂0) + eta sigma' z + w g
on the VP-linear grid with DDRM's uniform stride (the authors' `ts`), then sigma' = 0. The inverse is closed form in
A's SVD where the operator has one: A^H (A A^H + c)^-1 r = V [s_i / (s_i^2 + c)] U^T r; otherwise it is
(A^H A + c I)^-1 A^H r by conjugate gradient (`cg_iters`; c = 0: the minimum-norm least-squares solution).
sigma_y is the operator's noise level, read at every step.
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import noise_level, randn, vp_grid
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import conjugate_gradient, per_sample
from priors.base import Prior


def pinv_guidance(operator: ForwardOperator, r: Tensor, c: Tensor, cg_iters: int = 50, cg_tol: float = 1e-6) -> Tensor:
    """A^H (A A^H + c I)^-1 r for a measurement-space r and c (B,) >= 0: closed form in the SVD, else CG on the normal
    equations (A^H A + c I) u = A^H r started at 0 (which converges to the minimum-norm solution when c = 0)."""
    svd = operator.svd()
    if svd is not None:
        s = svd.s.to(r.device)
        s = s.expand(r.shape[0], -1) if s.ndim == 1 else s
        den = s**2 + c.view(-1, 1)
        return svd.V(torch.where(s > 0, s / torch.where(s > 0, den, torch.ones_like(den)), torch.zeros_like(s)) * svd.Ut(r))
    normal = operator.normal_map()
    return conjugate_gradient(lambda v: normal(v) + per_sample(c, v) * v, operator.adjoint(r), n_iter=cg_iters, tol=cg_tol)


class PiGDM(Algorithm):
    """ΠGDM: DDIM steps plus the pseudo-inverse guidance J^T A^H (A A^H + sigma_y^2/r_t^2)^-1 (y - A x̂0) (backprop)."""

    def __init__(self, n_steps: int = 100, eta: float = 0.2, weight: float = 1.0, cg_iters: int = 50,
                 cg_tol: float = 1e-6) -> None:
        super().__init__()
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if not 0 <= eta <= 1:
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        if weight < 0 or cg_iters < 1:
            raise ValueError(f"need weight >= 0 and cg_iters >= 1, got {weight} and {cg_iters}")
        self.n_steps, self.eta, self.weight, self.cg_iters, self.cg_tol = n_steps, eta, weight, cg_iters, cg_tol

    def guidance(self, x: Tensor, sigma: Tensor, y: Tensor, operator: ForwardOperator, prior: Prior,
                 callback: StepCallback | None = None, index: int = 0) -> tuple[Tensor, Tensor]:
        """(x̂0, g) at noise level sigma (B,): the (possibly callback-replaced) clean estimate and
        g = J^T A^H (A A^H + sigma_y^2 (1 + sigma^2)/sigma^2 I)^-1 (y - A x̂0), J the denoiser's Jacobian at x."""
        b = x.shape[0]
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x0_net = self.denoise(prior, x_in, sigma)
            x0 = self.step(callback, Step(index, self.n_steps, sigma, x.detach(), x0_net.detach(), y, operator, prior))
            x0_used = x0_net + (x0 - x0_net).detach()  # the callback's value, the network's Jacobian
            with torch.no_grad():
                c = noise_level(operator, b, y.device) ** 2 * (1 + sigma**2) / sigma**2  # sigma_y^2 / r_t^2
                v = pinv_guidance(operator, y - operator.forward(x0), c, self.cg_iters, self.cg_tol)
            grad = torch.autograd.grad((v * x0_used).sum(), x_in)[0]
        return x0.detach(), grad

    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b = y.shape[0]
        sig = vp_grid(self.n_steps, "uniform").tolist()
        x = sig[0] * randn(torch.empty((b, *operator.image_shape), device=y.device), generator)
        for i, (sg, sn) in enumerate(zip(sig[:-1], sig[1:])):
            x0, grad = self.guidance(x, torch.full((b,), sg, device=y.device), y, operator, prior, callback, i)
            x = x0 + (1 - self.eta**2) ** 0.5 * (sn / sg) * (x.detach() - x0) + self.weight * grad
            if sn > 0:
                x = x + self.eta * sn * randn(x, generator)
            x = self.monitor.check(i, x)
        return x.detach()
