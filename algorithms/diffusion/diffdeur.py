"""DiffDeuR (Lin, Du, Wu, Tian, Yu, Zhang, Wei; diffusion + INR for low-field MRI; no public code).

Half-quadratic splitting on DiffPIR's quadratic VP-linear grid (t_k = T - 1 - floor(T sqrt(k/(n-1))), the last
at t = 0: large strides at high noise, dense near t = 0), with the fidelity step solved by an INR f_theta (random
Fourier features -> SIREN over pixel coordinates, one network per sample), warm-started from the previous step:
    z = D(x_t, sigma_t)                                                        (prior step)
    f = argmin_theta ||y - A f_theta||^2 + mu s_t^2 ||f_theta - z||^2         (Adam, <= inr_iters, patience)
    x_{t-1} = f + sigma_{t-1} (sqrt(1 - zeta) (x_t - f)/sigma_t + sqrt(zeta) eps)
Each sample keeps its best iterate (lowest objective) and stops on its own once it has gone `patience`
iterations without a relative improvement of `tol` (its network and Adam moments frozen from then on, so a
sample's fit does not depend on the others in its batch); the loop ends when every sample has stopped. Unlike
DiffPIR's last step, the last step (t = 0) fits the INR too and returns that fit (there is no official code; the
README records the comparison).

s_t in the weight is the VP (DDPM) noise std sqrt(1 - abar_t) = sigma_t / sqrt(1 + sigma_t^2) of our EDM
sigma_t, since DiffDeuR works in DDPM variables: the weight is at most mu, so the data count from the first step.
Read with the EDM sigma (up to 157) the weight was 2.5e4 at the start and above 1 until sigma < 1: the fidelity
step returned z, and the data entered only in the last steps (lowfield, val: 15.58 dB, data misfit 0.22).
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import hqs_renoise, randn, vp_grid
from priors.schedules import vp_noise_std
from algorithms.diffusion.inr import FourierSIREN, ModelwiseAdam, pixel_grid
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import batch_dot
from priors.base import Prior


class DiffDeuR(Algorithm):
    """DiffDeuR: Tweedie denoising + INR-fitted fidelity step (HQS), DiffPIR-style re-noising."""

    def __init__(self, n_steps: int = 20, mu: float = 1.0, zeta: float = 0.5, inr_iters: int = 500,
                 patience: int = 5, tol: float = 1e-4, inr_lr: float = 1e-3, n_freq: int = 64,
                 freq_scale: float = 4.0, width: int = 128, depth: int = 3, w0: float = 30.0) -> None:
        super().__init__()
        if n_steps < 1 or inr_iters < 1 or patience < 1:
            raise ValueError(f"n_steps, inr_iters and patience must be >= 1, got {n_steps}, {inr_iters}, {patience}")
        if mu < 0 or not 0 <= zeta <= 1:
            raise ValueError(f"need mu >= 0 and 0 <= zeta <= 1, got mu={mu}, zeta={zeta}")
        self.n_steps, self.mu, self.zeta = n_steps, mu, zeta
        self.inr_iters, self.patience, self.tol, self.inr_lr = inr_iters, patience, tol, inr_lr
        self.inr_options = dict(n_freq=n_freq, scale=freq_scale, width=width, depth=depth, w0=w0)
        self.inr_iterations = 0  # total Adam iterations of the last run (for cost accounting)

    def fit(self, inr: FourierSIREN, opt: ModelwiseAdam, coords: Tensor, y: Tensor,
            operator: ForwardOperator, z: Tensor, weight: float) -> Tensor:
        """Fit the INRs to ||y - A f||^2 + weight ||f - z||^2 per sample; returns each sample's best f."""
        c, h, w = operator.image_shape
        best = torch.full((z.shape[0],), float("inf"), device=z.device)
        best_f, wait = z.clone(), torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        active = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
        with torch.enable_grad():
            for _ in range(self.inr_iters):
                f = inr.image(coords, c, h, w)
                r = operator.forward(f) - y
                loss = batch_dot(r, r) + weight * batch_dot(f - z, f - z)
                opt.zero_grad()
                loss.sum().backward()
                opt.step(active)
                self.inr_iterations += 1
                value = loss.detach()
                better = active & (value < best * (1 - self.tol))
                best = torch.where(better, value, best)
                best_f = torch.where(better.view(-1, 1, 1, 1), f.detach(), best_f)
                wait = torch.where(better, torch.zeros_like(wait), wait + active.long())
                active = active & (wait < self.patience)
                if not bool(active.any()):
                    break
        return best_f

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b = y.shape[0]
        c, h, w = operator.image_shape
        self.inr_iterations = 0
        inr = FourierSIREN(b, 2, c, generator=generator, device=y.device, **self.inr_options)
        opt = ModelwiseAdam(inr.parameters(), lr=self.inr_lr)
        coords = pixel_grid(h, w, y.device)
        sigmas = vp_grid(self.n_steps, "quad").tolist()
        x = sigmas[0] * randn(torch.empty((b, c, h, w), device=y.device), generator)
        for i, (sg, sn) in enumerate(zip(sigmas[:-1], sigmas[1:])):
            sigma = torch.full((b,), sg, device=y.device)
            z = self.denoise(prior, x, sigma)
            z = self.step(callback, Step(i, self.n_steps, sigma, x, z, y, operator, prior))
            f = self.fit(inr, opt, coords, y, operator, z, self.mu * vp_noise_std(sg) ** 2)
            x = self.monitor.check(i, hqs_renoise(f, x, sigma, sn, self.zeta, generator))
        return x
