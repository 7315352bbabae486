"""PnP-DM: split Gibbs sampling with a diffusion prior (Wu, Sun, Chen, Zhang, Yue, Bouman, NeurIPS 2024;
zihuiwu/PnP-DM-public, InverseBench `algo/pnpdm.py`).

The joint pi(x, z) ∝ p(x) N(z; x, rho^2 I) p(y | z) is sampled by alternating, with rho_k = max(rho rho_decay^k, rho_min):
  1. likelihood step, z ~ p(z | x, y) ∝ N(y; A z, sigma_y^2) N(z; x, rho^2): Gaussian for a linear A, drawn exactly (the
     official `proximal_generator` of its linear tasks): in A's SVD per spectral coordinate
     p_i = s_i^2/sigma_y^2 + 1/rho^2, z̄_i = (s_i (U^T y)_i/sigma_y^2 + x̄_i/rho^2)/p_i + e_i/sqrt(p_i); without an SVD by
     perturb-and-MAP, (A^H A + (sigma_y^2/rho^2) I) z = A^H (y + sigma_y e1) + (sigma_y^2/rho^2)(x + rho e2) by CG;
  2. prior step, x ~ p(x | x + rho eps = z): the reverse SDE dx = -2 sigma score dsigma + sqrt(2 sigma) dW started at z
     at noise level rho, by the official Euler-Maruyama steps (`edm_sde`, sigma(t) = t)
     x' = x + 2 (s - s')/s (x̂0 - x) + sqrt(2 s (s - s')) e   (no noise on the last step, to s' = 0)
     down rho, then the levels of the EDM poly-7 grid (`n_levels` from `level_max` to `level_min`, the official 100 from
     80 to 0.002) below rho, then 0. The official code starts at the first grid level below rho; here the first step
     is from rho itself, the level z was drawn at.
At fixed rho the x-marginal of pi is the posterior under the likelihood N(y; A x, sigma_y^2 I + rho^2 A A^H): annealing
rho to rho_min makes it the posterior up to rho_min. sigma_y is the operator's noise level (at least `sigma_y_min`),
read at every iteration. The start is A^H y (the official A^+ y where A's rows are orthonormal).
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import noise_level, randn
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import conjugate_gradient, per_sample
from priors.base import Prior
from priors.schedules import karras_sigmas


def likelihood_draw(operator: ForwardOperator, x: Tensor, y: Tensor, rho: float, sigma_y: Tensor,
                    generator: torch.Generator | None, cg_iters: int = 50, cg_tol: float = 1e-6) -> Tensor:
    """z ~ N(m, C), C^-1 = A^H A / sigma_y^2 + I / rho^2, m = C (A^H y / sigma_y^2 + x / rho^2): closed form in the SVD,
    else perturb-and-MAP by CG (exact at convergence)."""
    svd = operator.svd()
    if svd is not None:
        s = svd.s.to(y.device)
        s = s.expand(y.shape[0], -1) if s.ndim == 1 else s
        w = 1.0 / sigma_y.view(-1, 1) ** 2
        prec = w * s**2 + 1.0 / rho**2
        mean = (w * s * svd.Ut(y) + svd.Vt(x) / rho**2) / prec
        return svd.V(mean + randn(mean, generator) * prec.rsqrt())
    e1 = randn(y.real if y.is_complex() else y, generator)
    if y.is_complex():
        e1 = torch.complex(e1, randn(e1, generator))
    yp = y + per_sample(sigma_y, e1) * e1
    xp = x + rho * randn(x, generator)
    c = sigma_y**2 / rho**2
    normal = operator.normal_map()
    return conjugate_gradient(lambda v: normal(v) + per_sample(c, v) * v, operator.adjoint(yp) + per_sample(c, xp) * xp,
                              x0=xp, n_iter=cg_iters, tol=cg_tol)


class PnPDM(Algorithm):
    """PnP-DM: split Gibbs sampler, an exact Gaussian likelihood draw then a reverse-SDE prior draw, rho annealed."""

    def __init__(self, n_iters: int = 100, rho: float = 10.0, rho_decay: float = 0.93, rho_min: float = 0.02,
                 n_levels: int = 100, level_max: float = 80.0, level_min: float = 0.002, sigma_y_min: float = 1e-3,
                 cg_iters: int = 50, cg_tol: float = 1e-6) -> None:
        super().__init__()
        if n_iters < 1 or n_levels < 2 or cg_iters < 1:
            raise ValueError(f"need n_iters >= 1, n_levels >= 2, cg_iters >= 1; got {n_iters}, {n_levels}, {cg_iters}")
        if not (rho >= rho_min > 0 and 0 < rho_decay <= 1):
            raise ValueError(f"need rho >= rho_min > 0 and 0 < rho_decay <= 1; got {rho}, {rho_min}, {rho_decay}")
        if not (level_max > level_min > 0 and sigma_y_min > 0):
            raise ValueError(f"need level_max > level_min > 0 and sigma_y_min > 0; got {level_max}, {level_min}, {sigma_y_min}")
        self.n_iters, self.rho, self.rho_decay, self.rho_min = n_iters, rho, rho_decay, rho_min
        self.n_levels, self.level_max, self.level_min, self.sigma_y_min = n_levels, level_max, level_min, sigma_y_min
        self.cg_iters, self.cg_tol = cg_iters, cg_tol

    def rhos(self) -> list[float]:
        return [max(self.rho * self.rho_decay**k, self.rho_min) for k in range(self.n_iters)]

    def prior_levels(self, rho: float) -> list[float]:
        """rho, the grid's levels below it, then 0: the prior step's noise levels (one denoiser call each but the 0)."""
        grid = karras_sigmas(self.n_levels, self.level_max, self.level_min, append_zero=False).tolist()
        return [rho] + [s for s in grid if s < rho] + [0.0]

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b = y.shape[0]
        x = operator.adjoint(y)
        for k, rho in enumerate(self.rhos()):
            sigma_y = noise_level(operator, b, y.device).clamp_min(self.sigma_y_min)
            z = likelihood_draw(operator, x, y, rho, sigma_y, generator, self.cg_iters, self.cg_tol)
            x = z
            levels = self.prior_levels(rho)
            for sg, sn in zip(levels[:-1], levels[1:]):
                x0 = self.denoise(prior, x, torch.full((b,), sg, device=y.device))
                x = x + 2 * (sg - sn) / sg * (x0 - x)
                if sn > 0:
                    x = x + (2 * sg * (sg - sn)) ** 0.5 * randn(x, generator)
            x = self.step(callback, Step(k, self.n_iters, torch.full((b,), rho, device=y.device), z, x, y, operator, prior))
            x = self.monitor.check(k, x)
        return x
