"""Decoupled annealing posterior sampling (Zhang et al., CVPR 2025; zhangbingliang2019/DAPS).

Annealing sigma_0 > ... > sigma_{N-1} > 0 on the EDM poly-7 grid from sigma_max to sigma_min (the official
scheduler: N + 1 points, the last, sigma_min, replaced by 0); start x ~ N(0, sigma_max^2 I). Each step:
  1. x̂0: Euler on the PF-ODE dx/dsigma = (x - D(x, sigma))/sigma, `ode_steps` steps from sigma_i to 0.01;
  2. Langevin on x0 (operator forward/adjoint only, no network):
     x <- x + eta [-grad ||A x - y||^2 / tau^2 + (x̂0 - x)/sigma_i^2] + sqrt(2 eta) eps,
     K steps, eta_i = lr (1 + (i/(N+1)) (lr_min_ratio - 1)) at annealing step i (the official `get_lr(step/(N+1))`);
  3. independent re-noising x = x0 + sigma_{i+1} eps.
The Langevin target is p(x0) ∝ exp(-||A x0 - y||^2 / tau^2 - ||x0 - x̂0||^2 / (2 sigma_i^2)) as in the official
code, i.e. a Gaussian likelihood of std tau / sqrt(2). `tau_mode="fixed"` uses tau as given (the official
code, tau = 0.01 whatever the noise); `tau_mode="noise"` uses max(tau, sqrt(2) sigma_y) per sample, the exact
likelihood of the operator's noise model when that is larger.

`x0_sampler="exact"` replaces step 2 by an exact draw from that target. For a linear A it is Gaussian,
    N(m, P^-1),  P = (2/tau^2) A^T A + I/sigma_i^2,  m = P^-1 ((2/tau^2) A^T y + x̂0/sigma_i^2)
(A^T the real adjoint, `operator.adjoint`), drawn
- through the SVD A = U diag(s) V^T (closed form: single-coil MRI, low-field, inpainting; the exact dense SVD of
  inverse_problems.operators.dense for images of at most `dense_max` real coordinates): per spectral coordinate,
  p_i = 2 s_i^2/tau^2 + 1/sigma^2, x̄_i = (2 s_i (U^T y)_i/tau^2 + (V^T x̂0)_i/sigma^2)/p_i + z_i/sqrt(p_i);
- otherwise by perturb-and-MAP (Papandreou & Yuille, ICCV 2011): perturb both Gaussian factors,
  y' = y + (tau/sqrt 2) e1, z' = x̂0 + sigma e2, and solve (A^T A + rho I) x = A^T y' + rho z',
  rho = tau^2/(2 sigma^2), by conjugate gradient; Cov(rhs) = P (up to the factor tau^2/2), so x ~ N(m, P^-1)
  exactly when CG has converged (`cg_iters`, `cg_tol`).
`exact_final="mean"` (default) returns the last step's conditional mean rather than a draw from it: a draw adds
noise of std sigma_min along every direction the data do not see (the Langevin chain, started at x̂0 with a step
far below sigma_min^2, leaves those directions at x̂0). One operator application (SVD) or `cg_iters` normal calls (CG) per annealing step instead of K Langevin steps,
and the draw is the target itself rather than K steps of a chain started at x̂0 (which has not mixed along
directions the data do not see: the exact draw puts the full prior spread sigma_i there).
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import noise_level, randn
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.base import SVD
from inverse_problems.operators.linalg import conjugate_gradient, per_sample
from priors.base import Prior
from priors.sampling import pf_ode_sample
from priors.schedules import karras_sigmas

# (annealing steps, ODE steps per x̂0): the paper's 1K and 4K (NFE) budgets, and a 0.1K one for problems whose
# operator makes the official budget impractical on a CPU (chosen for such a problem in its configs/problem yaml)
BUDGETS = {"0.1k": (50, 2), "1k": (200, 5), "4k": (400, 10)}
X0_SAMPLERS = ("langevin", "exact")
EXACT_ROUTES = ("auto", "svd", "cg")


class DAPS(Algorithm):
    """DAPS: PF-ODE x̂0, Langevin on x0 given x̂0 and y, independent re-noising, on an annealed sigma grid."""

    needs_linear = False  # the Langevin sampler differentiates a non-linear forward model by autograd

    def __init__(self, budget: str | None = "1k", n_steps: int | None = None, ode_steps: int | None = None,
                 langevin_steps: int = 100, lr: float = 1e-4, lr_min_ratio: float = 0.01, tau: float = 0.01,
                 tau_mode: str = "fixed", sigma_max: float = 100.0, sigma_min: float = 0.1,
                 ode_sigma_min: float = 0.01, x0_sampler: str = "langevin", exact_route: str = "auto",
                 dense_max: int = 2048, cg_iters: int = 50, cg_tol: float = 1e-5, exact_final: str = "mean") -> None:
        super().__init__()
        if budget is not None and budget not in BUDGETS:
            raise ValueError(f"unknown budget {budget!r}; choose one of {sorted(BUDGETS)} or null with n_steps/ode_steps")
        base = BUDGETS[budget] if budget is not None else (None, None)
        self.n_steps = n_steps if n_steps is not None else base[0]
        self.ode_steps = ode_steps if ode_steps is not None else base[1]
        if self.n_steps is None or self.ode_steps is None or self.n_steps < 1 or self.ode_steps < 1:
            raise ValueError(f"need n_steps >= 1 and ode_steps >= 1 (or a budget in {sorted(BUDGETS)}), "
                             f"got {self.n_steps} and {self.ode_steps}")
        if tau_mode not in ("fixed", "noise"):
            raise ValueError(f"tau_mode must be 'fixed' (the official code) or 'noise' (max(tau, sqrt(2) sigma_y)), got {tau_mode!r}")
        if tau <= 0 or lr <= 0 or langevin_steps < 0:
            raise ValueError(f"need tau > 0, lr > 0, langevin_steps >= 0; got {tau}, {lr}, {langevin_steps}")
        if not sigma_max > sigma_min > ode_sigma_min > 0:
            raise ValueError(f"need sigma_max > sigma_min > ode_sigma_min > 0, got {sigma_max}, {sigma_min}, {ode_sigma_min}")
        if x0_sampler not in X0_SAMPLERS:
            raise ValueError(f"x0_sampler must be one of {X0_SAMPLERS} ('langevin': the official code; 'exact': the "
                             f"Gaussian x0-conditional drawn exactly), got {x0_sampler!r}")
        if exact_route not in EXACT_ROUTES:
            raise ValueError(f"exact_route must be one of {EXACT_ROUTES} ('auto': SVD where there is one, else "
                             f"perturb-and-MAP by CG), got {exact_route!r}")
        if exact_final not in ("mean", "sample"):
            raise ValueError(f"exact_final must be 'mean' (the last conditional's mean) or 'sample' (a draw), "
                             f"got {exact_final!r}")
        if cg_iters < 1 or cg_tol < 0 or dense_max < 0:
            raise ValueError(f"need cg_iters >= 1, cg_tol >= 0, dense_max >= 0; got {cg_iters}, {cg_tol}, {dense_max}")
        self.x0_sampler, self.exact_route, self.dense_max = x0_sampler, exact_route, dense_max
        self.cg_iters, self.cg_tol, self.exact_final = cg_iters, cg_tol, exact_final
        self.langevin_steps, self.lr, self.lr_min_ratio = langevin_steps, lr, lr_min_ratio
        self.tau, self.tau_mode = tau, tau_mode
        self.sigma_max, self.sigma_min, self.ode_sigma_min = sigma_max, sigma_min, ode_sigma_min

    def check(self, operator: ForwardOperator, prior: Prior | None) -> None:
        """Also refuse the exact x0 sampler (a Gaussian draw: a linear operator only) on a non-linear operator."""
        super().check(operator, prior)
        if self.x0_sampler == "exact" and not operator.linear:
            raise ValueError(f"DAPS x0_sampler='exact' needs a linear operator; {type(operator).__name__} is non-linear: "
                             f"use algorithm.x0_sampler=langevin (its gradient by autograd)")

    def annealing(self) -> list[float]:
        grid = karras_sigmas(self.n_steps + 1, self.sigma_max, self.sigma_min, append_zero=False)
        return grid[:-1].tolist() + [0.0]

    def step_size(self, i: int) -> float:
        """Langevin step at annealing step i: lr (1 + (i/(N+1)) (lr_min_ratio - 1)), N = n_steps.

        The official scheduler holds N + 1 levels (`num_steps + 1`) and passes ratio = step / (N + 1), so the last
        step's lr stays just above lr_min_ratio * lr.
        """
        return self.lr * (1 + i / (self.n_steps + 1) * (self.lr_min_ratio - 1))

    def langevin(self, x0: Tensor, y: Tensor, operator: ForwardOperator, sigma: float, lr: float, tau: Tensor,
                 generator: torch.Generator | None) -> Tensor:
        """K Langevin steps on -||A x - y||^2/tau^2 - ||x - x0||^2/(2 sigma^2), started at x0.

        grad = (2/tau^2) (A^T A x - A^T y) + (x - x0)/sigma^2, with A^T y computed once and A^T A x by
        `operator.normal_map()` (built once per chain: the operator's fused form with its coil maps precomputed).
        A non-linear operator's data gradient J^T (A(x) - y) comes from `operator.residual_gradient` (autograd).
        """
        if self.langevin_steps == 0:
            return x0
        w = per_sample(2.0 / tau**2, x0)
        if not operator.linear:
            x = x0
            for _ in range(self.langevin_steps):
                grad = w * operator.residual_gradient(x, y) + (x - x0) / sigma**2
                x = x - lr * grad + (2 * lr) ** 0.5 * randn(x, generator)
            return x
        aty = operator.adjoint(y)
        normal = operator.normal_map()
        x = x0
        for _ in range(self.langevin_steps):
            grad = w * (normal(x) - aty) + (x - x0) / sigma**2
            x = x - lr * grad + (2 * lr) ** 0.5 * randn(x, generator)
        return x

    def route(self, operator: ForwardOperator) -> str:
        """The exact sampler's route for this operator: 'svd' (closed form, or dense up to dense_max) or 'cg'."""
        if self.exact_route != "auto":
            return self.exact_route
        size = operator.image_shape[0] * operator.image_shape[1] * operator.image_shape[2]
        return "svd" if operator.svd() is not None or size <= self.dense_max else "cg"

    def exact_svd(self, x0: Tensor, y: Tensor, svd: SVD, sigma: float, tau: Tensor,
                  generator: torch.Generator | None, draw: bool = True) -> Tensor:
        """A draw from N(m, P^-1) in A's SVD basis: per coordinate p_i = 2 s_i^2/tau^2 + 1/sigma^2,
        x̄_i = (2 s_i (U^T y)_i/tau^2 + (V^T x̂0)_i/sigma^2)/p_i + z_i/sqrt(p_i)."""
        b = y.shape[0]
        s = svd.s.to(y.device)
        s = s.expand(b, -1) if s.ndim == 1 else s
        w = (2.0 / tau**2).view(-1, 1)
        prec = w * s**2 + 1.0 / sigma**2
        mean = (w * s * svd.Ut(y) + svd.Vt(x0) / sigma**2) / prec
        return svd.V(mean + randn(mean, generator) * prec.rsqrt() if draw else mean)

    def exact_cg(self, x0: Tensor, y: Tensor, operator: ForwardOperator, sigma: float, tau: Tensor,
                 generator: torch.Generator | None, draw: bool = True) -> Tensor:
        """Perturb-and-MAP: y' = y + (tau/sqrt 2) e1, z' = x̂0 + sigma e2, x = (A^T A + rho I)^-1 (A^T y' + rho z'),
        rho = tau^2/(2 sigma^2), by CG warm-started at z' (exact at convergence); without `draw`, the mean (e = 0)."""
        yp, zp = y, x0
        if draw:
            e1 = randn(y.real if y.is_complex() else y, generator)
            if y.is_complex():
                e1 = torch.complex(e1, randn(e1, generator))
            yp = y + per_sample(tau / 2**0.5, e1) * e1
            zp = x0 + sigma * randn(x0, generator)
        rho = tau**2 / (2 * sigma**2)
        rhs = operator.adjoint(yp) + per_sample(rho, zp) * zp
        normal = operator.normal_map()
        return conjugate_gradient(lambda v: normal(v) + per_sample(rho, v) * v, rhs, x0=zp,
                                  n_iter=self.cg_iters, tol=self.cg_tol)

    def sample_x0(self, x0: Tensor, y: Tensor, operator: ForwardOperator, i: int, sigma: float, tau: Tensor,
                  generator: torch.Generator | None, svd: SVD | None) -> Tensor:
        """Step 2 at annealing step i: the official Langevin chain, or the exact draw (SVD or CG route)."""
        if self.x0_sampler == "langevin":
            return self.langevin(x0, y, operator, sigma, self.step_size(i), tau, generator)
        draw = not (self.exact_final == "mean" and i == self.n_steps - 1)
        if svd is not None:
            return self.exact_svd(x0, y, svd, sigma, tau, generator, draw)
        return self.exact_cg(x0, y, operator, sigma, tau, generator, draw)

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b = y.shape[0]
        tau = torch.full((b,), self.tau, device=y.device)
        if self.tau_mode == "noise":
            tau = torch.maximum(tau, 2**0.5 * noise_level(operator, b, y.device))
        sigmas = self.annealing()
        x = sigmas[0] * randn(torch.empty((b, *operator.image_shape), device=y.device), generator)
        denoise = lambda v, s: self.denoise(prior, v, s)  # noqa: E731 - NFE-counted
        use_svd = self.x0_sampler == "exact" and self.route(operator) == "svd"
        dense = self.spectral(operator, b) if use_svd and operator.svd() is None else None  # once per run
        for i, (sg, sn) in enumerate(zip(sigmas[:-1], sigmas[1:])):
            sigma = torch.full((b,), sg, device=y.device)
            ode = karras_sigmas(self.ode_steps + 1, sg, self.ode_sigma_min, append_zero=False)
            x0 = pf_ode_sample(denoise, x, ode, heun=False)
            x0 = self.step(callback, Step(i, self.n_steps, sigma, x, x0, y, operator, prior))
            # a closed form is read at every step (test-time adaptation may change the operator); the dense SVD is
            # that of the operator as given
            svd = (operator.svd() or dense) if use_svd else None
            x0 = self.sample_x0(x0, y, operator, i, sg, tau, generator, svd)
            x = x0 + sn * randn(x0, generator) if sn > 0 else x0
            x = self.monitor.check(i, x)
        return x
