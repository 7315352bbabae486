"""RED-diff: regularisation by denoising diffusion, a variational solver (Mardani, Song, Kautz, Vahdat, ICLR 2024;
NVlabs/RED-diff `algos/reddiff.py`, InverseBench `algo/reddiff.py`).

The reconstruction mu is optimised, not sampled. At each step of a descending noise grid, with eps ~ N(0, I) and
x_t = mu + sigma eps (EDM variables; the official x_t = sqrt(abar) mu + sqrt(1 - abar) eps in VP coordinates is the same
point), the gradient
    grad = obs_weight * 2 A^H (A mu - y) + lam_t * sg[eps_hat - eps],     eps_hat = (x_t - D(x_t, sigma)) / sigma
(the gradient of obs_weight ||A mu - y||^2 plus the score-matching regulariser lam_t sg[eps_hat - eps] . mu, no
backprop through the denoiser) drives one Adam step (betas 0.9, 0.99, the official ones). For a Gaussian prior
N(m, Sigma), E_eps[eps_hat - eps] = sigma (Sigma + sigma^2 I)^-1 (mu - m): the expected step is that of the objective
obs_weight ||A mu - y||^2 + (lam_t sigma / 2) (mu - m)^T (Sigma + sigma^2 I)^-1 (mu - m).
lam_t = lam (`lam_schedule="constant"`, InverseBench), lam sigma ("linear": the official `denoise_term_weight`, sigma
being the official 1/SNR = sqrt(1 - abar)/sqrt(abar)) or lam sqrt(sigma) ("sqrt"). The grid is DDRM's uniform stride
of the VP-linear schedule (the official `ts`), visited from the top. mu starts at A^+ y (the official initialisation:
closed form in the SVD, else the operator's pseudo-inverse by CG) or at 0 (`init="zeros"`, InverseBench).
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import randn, vp_grid
from inverse_problems.operators.base import ForwardOperator
from priors.base import Prior

SCHEDULES = {"constant": lambda s: 1.0, "linear": lambda s: s, "sqrt": lambda s: s**0.5}
BETAS = (0.9, 0.99)  # the official Adam betas


def pseudo_inverse(operator: ForwardOperator, y: Tensor) -> Tensor:
    """A^+ y: V S^+ U^T y where the operator has an SVD, else its least-squares solve by CG (`operator.pinv`)."""
    svd = operator.svd()
    if svd is None:
        return operator.pinv(y)
    s = svd.s.to(y.device)
    s = s.expand(y.shape[0], -1) if s.ndim == 1 else s
    return svd.V(torch.where(s > 0, svd.Ut(y) / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s)))


class REDDiff(Algorithm):
    """RED-diff: Adam on the image against the data misfit plus the denoiser's score-matching regulariser (variational)."""

    def __init__(self, n_steps: int = 1000, lr: float = 0.02, lam: float = 0.25, lam_schedule: str = "constant",
                 obs_weight: float = 1.0, init: str = "pinv") -> None:
        super().__init__()
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if lr <= 0 or lam < 0 or obs_weight < 0:
            raise ValueError(f"need lr > 0, lam >= 0, obs_weight >= 0; got {lr}, {lam}, {obs_weight}")
        if lam_schedule not in SCHEDULES:
            raise ValueError(f"lam_schedule must be one of {sorted(SCHEDULES)}, got {lam_schedule!r}")
        if init not in ("pinv", "zeros"):
            raise ValueError(f"init must be 'pinv' (A^+ y, the official start) or 'zeros' (InverseBench), got {init!r}")
        self.n_steps, self.lr, self.lam, self.lam_schedule = n_steps, lr, lam, lam_schedule
        self.obs_weight, self.init = obs_weight, init

    def gradient(self, mu: Tensor, y: Tensor, operator: ForwardOperator, x0: Tensor, eps: Tensor, sigma: float) -> Tensor:
        """obs_weight * 2 A^H (A mu - y) + lam_t (eps_hat - eps), with x0 = D(mu + sigma eps, sigma)."""
        eps_hat = (mu + sigma * eps - x0) / sigma
        data = 2 * operator.adjoint(operator.forward(mu) - y)
        return self.obs_weight * data + self.lam * SCHEDULES[self.lam_schedule](sigma) * (eps_hat - eps)

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b = y.shape[0]
        shape = (b, *operator.image_shape)
        mu = pseudo_inverse(operator, y) if self.init == "pinv" else torch.zeros(shape, device=y.device)
        m, v = torch.zeros_like(mu), torch.zeros_like(mu)
        for i, sg in enumerate(vp_grid(self.n_steps, "uniform").tolist()[:-1]):
            sigma = torch.full((b,), sg, device=y.device)
            eps = randn(mu, generator)
            x_t = mu + sg * eps
            x0 = self.denoise(prior, x_t, sigma)
            x0 = self.step(callback, Step(i, self.n_steps, sigma, x_t, x0, y, operator, prior))
            g = self.gradient(mu, y, operator, x0, eps, sg)
            m = BETAS[0] * m + (1 - BETAS[0]) * g
            v = BETAS[1] * v + (1 - BETAS[1]) * g**2
            m_hat, v_hat = m / (1 - BETAS[0] ** (i + 1)), v / (1 - BETAS[1] ** (i + 1))
            mu = self.monitor.check(i, mu - self.lr * m_hat / (v_hat.sqrt() + 1e-8))
        return mu
