"""Denoising diffusion null-space model, DDNM and DDNM+ (Wang, Yu, Zhang, ICLR 2023; wyhuai/DDNM).

With A = U S V^T and A^+ = V S^+ U^T, a step from sigma to sigma' is, in EDM variables (x = x0 + sigma eps):
    x̂0  = D(x, sigma)
    x̂0c = x̂0 - lam A^+ (A x̂0 - y)                                  (range-null-space correction)
    x'  = x̂0c + sqrt(1 - eta^2) (sigma'/sigma) (x - x̂0c) + eta gamma z
DDNM (`noise_aware=False`): lam = 1, gamma = sigma', so A x̂0c = A A^+ y: the range of A is taken from y exactly and
only the null space from the denoiser. DDNM+ (the paper's eq. 19 in EDM variables, per singular value as the official
SVD code's `Lambda`/`Lambda_noise`): the correction brings y_bar's noise sigma_y / s_i with it, so where
sigma' >= sigma_y / s_i, lam_i = 1 and gamma_i = sqrt(sigma'^2 - (sigma_y / s_i)^2); below it lam_i = sigma' s_i / sigma_y
and gamma_i = 0; in A's null space gamma_i = sigma'. White noise z is shaped as V diag(gamma) V^T z, which does not
depend on the choice of basis within a singular value's subspace. InverseBench's ddnm.py uses
one scalar sigma_y for every coordinate, null space included (the same lam where every s_i is 0 or 1, as single-coil
MRI and inpainting; with SENSE's small singular
values it amplifies the noise by 1 / s_i and diverges). Noiseless (sigma_y = 0) DDNM+ is DDNM.
Time travel (`travel` = L, InverseBench's form of the paper's section 3.3): at step i, x is re-noised from sigma_i up
to sigma_{i-L} (L = min(travel, i)), x += sqrt(sigma_{i-L}^2 - sigma_i^2) z, and the L + 1 steps down to sigma_{i+1}
are taken again: L + 1 denoiser calls per step. The grid is the official one: VP-linear timesteps t = T - T/n, ..., 0
(DDRM's uniform stride, `vp_grid`), then sigma' = 0. A^+ comes from the operator's SVD (the exact dense one up to
`dense_max` real coordinates where there is no closed form). sigma_y is read at every step (TDA may set it).
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import noise_level, randn, spectral_measurement, vp_grid
from inverse_problems.operators.base import ForwardOperator
from priors.base import Prior


class DDNM(Algorithm):
    """DDNM(+): DDIM steps whose x̂0 takes A's range from y (A^+ y) and its null space from the denoiser."""

    needs_svd = True

    def __init__(self, n_steps: int = 100, eta: float = 0.85, travel: int = 1, noise_aware: bool = True,
                 dense_max: int = 8192) -> None:
        super().__init__()
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if not 0 <= eta <= 1:
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        if travel < 0 or travel >= max(n_steps, 1):
            raise ValueError(f"travel (time-travel length L) must be in [0, n_steps), got {travel}")
        self.n_steps, self.eta, self.travel, self.noise_aware, self.dense_max = n_steps, eta, travel, noise_aware, dense_max

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b = y.shape[0]
        svd = self.spectral(operator, b)
        s, obs, y_bar = spectral_measurement(svd, y)  # y_bar = S^+ U^T y
        sig = vp_grid(self.n_steps, "uniform").tolist()
        x = sig[0] * randn(torch.empty((b, *operator.image_shape), device=y.device), generator)
        for i in range(self.n_steps):
            back = min(self.travel, i)
            if back:  # time travel: re-noise up to sigma_{i-L}, then take the L + 1 steps again
                x = x + (sig[i - back] ** 2 - sig[i] ** 2) ** 0.5 * randn(x, generator)
            for j in range(i - back, i + 1):
                sg, sn = sig[j], sig[j + 1]
                sigma = torch.full((b,), sg, device=y.device)
                x0 = self.denoise(prior, x, sigma)
                if j == i:
                    x0 = self.step(callback, Step(i, self.n_steps, sigma, x, x0, y, operator, prior))
                sig_y = noise_level(operator, b, y.device) if self.noise_aware else torch.zeros(b, device=y.device)
                # the noise of y_bar per coordinate: sigma_y / s_i (the official SVD code's Lambda / Lambda_noise)
                sy = sig_y.view(-1, 1) / torch.where(obs, s, torch.ones_like(s))
                lam = torch.where(sn >= sy, torch.ones_like(sy), sn / sy.clamp_min(1e-30))
                gamma = torch.where(obs, (sn**2 - (lam * sy) ** 2).clamp_min(0).sqrt(), torch.full_like(sy, sn))
                x0_bar = svd.Vt(x0)
                x0 = svd.V(x0_bar - lam * torch.where(obs, x0_bar - y_bar, torch.zeros_like(x0_bar)))
                x = (x0 + (1 - self.eta**2) ** 0.5 * (sn / sg) * (x - x0)
                     + self.eta * svd.V(gamma * svd.Vt(randn(x, generator))))
            x = self.monitor.check(i, x)
        return x
