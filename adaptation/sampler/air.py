"""AIR: guidance on the clean estimate through the adapted degradation (after Gou et al., ICML 2024, TAO).

At step i of n the clean estimate u = x̂0 is replaced by u + G with

    G = -(s / L) grad_u L_AIR(u),   L_AIR(u) = w1(i) * 1/2 sum_b ||A_theta(u_b) - y_b||^2 + w4(i) * sum_b TV(u_b),

where A_theta is the adapted degradation: the step's operator (the nominal one, or a physical operator TDA adapts
in place, or A with TDA's linear conv adapter installed), or the degradation that network TDA provides, which the
chain hands AIR when it is built (`adaptation.base.DEGRADATION`; AIR never looks at its peers), L = ||A||^2 (power iteration, once per batch, per sample where the
operator is per sample) makes the step
size s dimensionless (s = 1: one full gradient step on the data term), and the gradient flows through A_theta,
not through the denoiser. TAO's staging: over the early third the data weight ramps w1 = c * i / n_early
(0 -> c), then w1 = 1 for the rest; the TV term w4 = `tv_weight` acts in the last `tv_steps` fraction only.

Placement. TAO adds G to its DDPM sampler's next iterate, x_{t-1} = mu_t(x_t, x̂0) + G + sigma_t z (its
`condition_mean`, with G taken with respect to x̂0). Here G is added to x̂0 through the step hook, before the solver's
own data step, because x̂0 is the one quantity every solver exposes; their next iterates are built differently (DDRM
per spectral coordinate with noise matched to sigma_y / s_i, DAPS from a Langevin chain, DiffPIR from a proximal step).
For an ancestral DDPM step (DPS) a shift G of x̂0 moves the next iterate by (1 - sigma_{t-1}^2 / sigma_t^2) G (EDM
variables), so the same s acts more weakly than TAO's at high noise; for DAPS and for DiffPIR with zeta = 1 the next
iterate is x0 + sigma' eps, but the Langevin chain or the proximal data step acts on the shifted x̂0 first.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from adaptation.base import DEGRADATION, Adapter, Need
from adaptation.sampler.losses import total_variation
from algorithms.base import Reconstruction, Step
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import batch_dot, per_sample
from priors.base import Prior


def air_weights(index: int, n_steps: int, ramp_to: float = 1.0, early: float = 1 / 3, tv_weight: float = 0.0,
                tv_steps: float = 0.05) -> tuple[float, float]:
    """TAO's staged weights (w1 data, w4 TV) at step `index` of `n_steps`."""
    n_early = math.ceil(early * n_steps)
    w_data = ramp_to * index / n_early if index < n_early else 1.0
    n_tv = max(1, round(tv_steps * n_steps)) if tv_weight > 0 and tv_steps > 0 else 0
    w_tv = tv_weight if index >= n_steps - n_tv else 0.0
    return w_data, w_tv


class AIR(Adapter):
    """Adaptive image restoration guidance (TAO's AIR): a staged gradient step on x̂0 through TDA's degradation."""

    name = "air"
    needs = (Need(DEGRADATION, required=False),)  # without one: the step's operator

    def __init__(self, scale: float = 0.5, ramp_to: float = 1.0, early: float = 1 / 3, tv_weight: float = 0.0,
                 tv_steps: float = 0.05, iters: int = 1, power_iters: int = 20) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"AIR scale must be positive (a step size in units of 1/||A||^2), got {scale}")
        if not 0 <= early <= 1 or not 0 <= tv_steps <= 1:
            raise ValueError(f"early and tv_steps are fractions of the steps in [0, 1], got {early}, {tv_steps}")
        if iters < 1:
            raise ValueError(f"iters must be >= 1, got {iters}")
        self.scale, self.ramp_to, self.early = scale, ramp_to, early
        self.tv_weight, self.tv_steps, self.iters, self.power_iters = tv_weight, tv_steps, iters, power_iters
        self.lipschitz: float | Tensor = 1.0  # ||A||^2: a float, or (B,) for a per-sample operator
        self.history: list[dict[str, Any]] = []
        self._record: dict[str, Any] = {}

    def weights(self, index: int, n_steps: int) -> tuple[float, float]:
        return air_weights(index, n_steps, self.ramp_to, self.early, self.tv_weight, self.tv_steps)

    def prepare(self, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> tuple[ForwardOperator, Prior | None]:
        nb = operator.noise_std.numel() if operator.noise_std.ndim else 1  # per-sample parameters: one L each
        with torch.no_grad():  # every sample's power iteration starts from one fixed vector: batch-independent
            sq = operator.squared_norm(nb, self.power_iters).clamp_min(1e-12)
        self.lipschitz = float(sq.max()) if nb == 1 else sq
        self._record = {"adapter": "air", "lipschitz": float(sq.max()) if nb == 1 else sq.tolist(),
                        "w_data": [], "w_tv": []}
        return operator, prior

    def on_step(self, step: Step) -> Tensor | None:
        w_data, w_tv = self.weights(step.index, step.n_steps)
        self._record.setdefault("w_data", []).append(w_data)
        self._record.setdefault("w_tv", []).append(w_tv)
        if w_data == 0 and w_tv == 0:
            return None
        degrade = self.handed(DEGRADATION) or (lambda x, operator: operator(x))
        u = step.x0.detach()
        with torch.enable_grad():
            for _ in range(self.iters):
                u = u.requires_grad_(True)
                r = degrade(u, step.operator) - step.y
                loss = w_data * 0.5 * batch_dot(r, r).sum()
                if w_tv > 0:
                    loss = loss + w_tv * total_variation(u).sum()
                (grad,) = torch.autograd.grad(loss, u)
                u = (u - per_sample(self.scale / self.lipschitz, grad) * grad).detach()
        return u

    def refine(self, recon: Reconstruction, y: Tensor, operator: ForwardOperator, prior: Prior | None) -> Reconstruction:
        self.history.append(self._record)
        recon.trace.append(self._record)
        self._record = {}
        return recon
