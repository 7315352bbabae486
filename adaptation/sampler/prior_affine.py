"""Patient-level affine adaptation of the diffusion prior from measurements alone (after D2SA's affine shift).

The denoiser is replaced by D'(x, sigma) = alpha * D(x, sigma) + beta, per channel, alpha and beta fitted
before the run on all slices of the batch (one patient = one batch):

    min_{alpha, beta} sum_{sigma, b} ||M_fit (A D'(x_sigma, sigma) - y_b)||^2 / sum ||M_fit y||^2
                      + ridge * ||(alpha, beta) - (alpha_0, beta_0)||^2,
    x_sigma = A^+_fit y + sigma * eps,

where A^+_fit y is the damped least-squares image of the fitted measurements only. D' is affine in
(alpha, beta) and A is linear, so this is a 2C x 2C linear least-squares problem, solved exactly. A random
fraction `holdout` of the measured entries (never the target) is held out: the fit is kept only if it lowers
the held-out misfit relative to (alpha_0, beta_0). (alpha_0, beta_0) is the identity, or, under the mini-batch
scheme, the previous batch's fit. Zhang et al., D2SA, NeurIPS 2025.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Sequence

import torch
from torch import Tensor

from adaptation.base import Adapter
from algorithms.base import Reconstruction
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import batch_dot, conjugate_gradient
from inverse_problems.operators.random import rand, randn, spawn
from priors.base import Prior


class AffinePrior(Prior):
    """D'(x, sigma) = alpha_c * D(x, sigma) + beta_c, channel-wise, around a frozen prior."""

    def __init__(self, base: Prior, alpha: Tensor, beta: Tensor) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("alpha", alpha.detach().clone().float())
        self.register_buffer("beta", beta.detach().clone().float())
        self.channels, self.resolution = base.channels, base.resolution
        self.sigma_min, self.sigma_max = base.sigma_min, base.sigma_max

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        return self.alpha.view(1, -1, 1, 1) * self.base.denoise(x, sigma) + self.beta.view(1, -1, 1, 1)


class PriorAffine(Adapter):
    """Patient-level affine prior adaptation (alpha * D + beta per channel), fitted on the measurements."""

    def __init__(self, sigmas: Sequence[float] = (0.5, 0.2, 0.05), draws: int = 1, holdout: float = 0.1,
                 ridge: float = 1e-3, cg_iters: int = 30, damping: float = 1e-2, seed: int = 0) -> None:
        super().__init__()
        if not sigmas or any(s <= 0 for s in sigmas):
            raise ValueError(f"sigmas must be a non-empty list of positive noise levels, got {list(sigmas)}")
        if not 0 <= holdout < 1:
            raise ValueError(f"holdout is a fraction of the measured entries in [0, 1), got {holdout}")
        if draws < 1 or ridge < 0:
            raise ValueError(f"draws must be >= 1 and ridge >= 0, got draws={draws}, ridge={ridge}")
        self.sigmas, self.draws, self.holdout, self.ridge = [float(s) for s in sigmas], draws, holdout, ridge
        self.cg_iters, self.damping, self.seed = cg_iters, damping, seed
        self.history: list[dict[str, Any]] = []
        self._record: dict[str, Any] = {}

    def prepare(self, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> tuple[ForwardOperator, Prior | None]:
        if prior is None:
            raise ValueError("prior-affine adapts a diffusion prior; use it with an algorithm that has one (e.g. daps)")
        start = time.perf_counter()
        c = prior.channels
        alpha0 = self.carried.get("alpha", torch.ones(c)).to(y.device)
        beta0 = self.carried.get("beta", torch.zeros(c)).to(y.device)
        self._record = {"adapter": "prior-affine", "adapting": bool(self.adapting), "nfe": 0,
                        "initial": {"alpha": alpha0.tolist(), "beta": beta0.tolist()}}
        if self.adapting:
            alpha, beta = self._fit(y, operator, prior, alpha0, beta0)
            self.carried = {"alpha": alpha.detach().clone(), "beta": beta.detach().clone()}
        else:
            alpha, beta = alpha0, beta0
        self._record["final"] = {"alpha": alpha.tolist(), "beta": beta.tolist()}
        self._record["seconds"] = time.perf_counter() - start
        return operator, AffinePrior(prior, alpha, beta)

    @torch.no_grad()
    def _fit(self, y: Tensor, operator: ForwardOperator, prior: Prior, alpha0: Tensor,
             beta0: Tensor) -> tuple[Tensor, Tensor]:
        # under the harness: a stream per sample (seeded from the run seed, the sample and `seed`); alone: `seed`
        gen = spawn(self.generator, "prior-affine", self.seed) if self.generator is not None \
            else torch.Generator(device=y.device).manual_seed(self.seed)
        measured = (y != 0)
        keep = rand(y.shape, gen, y.device) >= self.holdout
        fit_mask, held_mask = (measured & keep).to(y.real.dtype), (measured & ~keep).to(y.real.dtype)
        rhs = operator.adjoint(fit_mask * y)
        x_fit = conjugate_gradient(lambda v: operator.adjoint(fit_mask * operator(v)) + self.damping * v, rhs,
                                   n_iter=self.cg_iters)
        c = prior.channels
        feats: list[list[Tensor]] = []  # per (sigma, draw): 2C measurement-space features, then D
        outs: list[Tensor] = []
        for sigma in self.sigmas:
            for _ in range(self.draws):
                eps = randn(x_fit.shape, gen, y.device)
                d = prior.denoise(x_fit + sigma * eps, sigma)
                self._record["nfe"] += 1
                cols = []
                for ch in range(c):
                    e = torch.zeros_like(d)
                    e[:, ch] = d[:, ch]
                    cols.append(operator(e))
                for ch in range(c):
                    e = torch.zeros_like(d)
                    e[:, ch] = 1.0
                    cols.append(operator(e))
                feats.append(cols)
                outs.append(d)
        theta0 = torch.cat([alpha0, beta0]).double()

        def normal_equations(mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            gram = torch.zeros(2 * c, 2 * c, dtype=torch.float64, device=y.device)
            vec = torch.zeros(2 * c, dtype=torch.float64, device=y.device)
            for cols in feats:
                mcols = [mask * f for f in cols]
                for i in range(2 * c):
                    vec[i] += batch_dot(mcols[i], y).sum().double()
                    for j in range(i, 2 * c):
                        gram[i, j] += batch_dot(mcols[i], mcols[j]).sum().double()
                        gram[j, i] = gram[i, j]
            yy = batch_dot(mask * y, mask * y).sum().double() * len(feats)
            return gram, vec, yy

        gram, vec, yy = normal_equations(fit_mask)
        norm = yy.clamp_min(1e-30)
        eye = torch.eye(2 * c, dtype=torch.float64, device=y.device)
        # a vanishing extra ridge keeps directions the data do not see (e.g. D = 0) at theta0
        ridge = self.ridge + 1e-9 * float(torch.diagonal(gram / norm).mean()) + 1e-12
        theta = torch.linalg.solve(gram / norm + ridge * eye, vec / norm + ridge * theta0)
        if self.holdout > 0 and bool(held_mask.any()):
            hg, hv, hy = normal_equations(held_mask)

            def held(t: Tensor) -> float:
                return float((t @ hg @ t - 2 * t @ hv + hy) / hy.clamp_min(1e-30))

            self._record["held_out"] = {"initial": held(theta0), "fitted": held(theta)}
            if held(theta) > held(theta0):
                theta = theta0
        theta = theta.float()
        return theta[:c], theta[c:]

    def refine(self, recon: Reconstruction, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> Reconstruction:
        record, self._record = self._record, {}
        self.history.append(record)
        trace = recon.trace + [record]
        return replace(recon, nfe=recon.nfe + record.get("nfe", 0), seconds=recon.seconds + record.get("seconds", 0.0),
                       trace=trace)
