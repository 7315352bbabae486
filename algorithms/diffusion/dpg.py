"""Diffusion policy gradient, DPG (Tang, Xu, Li, Ma, Sun, ..., 2024: "Solving general noisy inverse problems via posterior
sampling: a policy gradient viewpoint"; InverseBench `algo/dpg.py`, the authors' loveisbasa/DPG). Derivative-free in
the operator: the guidance is a score-function (REINFORCE) estimate from forward calls.

Per step on the VP-SDE grid (1000 steps): x̂0 = D(x, sigma), L_ref = ||y - A x̂0||^2, Z <- 0.9 Z + 0.1 L_ref (Z_0 = L_ref),
r = max(sqrt(Z/n_pix)/2, r_min); draws x_j = x̂0 + r e_j (j = 1..n_mc) with rewards w_j = exp(-(L(x_j) - L_ref)/Z) and
leave-one-out baselines b_j = (sum_k w_k - w_j)/(n_mc - 1), so that
    g_0 = (1/n_mc) sum_j (w_j - b_j)(-(x_j - x̂0)/r^2)  estimates  -grad_{x̂0} E_e[w(x̂0 + r e)];
g = J_D(x)^T g_0 (backprop through the denoiser), momentum g <- beta b_t g_prev + (1 - beta b_t) g with
b_t = (N - i - 1)/N, and the step x' = ancestral(x, x̂0) - scale (sigma^2 - sigma'^2)/sqrt(1 + sigma^2) g/||g||
(the official guidance factor * scale on the unit direction, taken in VP coordinates and written in EDM ones).
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm, Step, StepCallback
from algorithms.diffusion.data_consistency import randn
from algorithms.diffusion.particles import ancestral, data_loss, particle_noise, vp_sde_sigmas
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.linalg import batch_norm, per_sample
from inverse_problems.operators.random import Randomness
from priors.base import Prior


def policy_gradient(x0: Tensor, r: Tensor, z: Tensor, loss_ref: Tensor, loss, n_mc: int, generator: Randomness,
                    batch: int = 256) -> Tensor:
    """DPG's estimate of -grad_{x0} E_e[exp(-(L(x0 + r e) - L_ref)/Z)] from loss values only (x0 (B, ...), r, z,
    loss_ref (B,); `loss` maps particles (B, K, ...) to (B, K))."""
    b, shape = x0.shape[0], tuple(x0.shape[1:])
    view = (b, 1, *([1] * len(shape)))
    e = particle_noise(b, n_mc, shape, generator, x0.device)
    x = x0.unsqueeze(1) + r.view(view) * e
    w = torch.cat([loss(x[:, s:s + batch]) for s in range(0, n_mc, batch)], dim=1)
    w = torch.exp(-(w - loss_ref.view(-1, 1)) / z.view(-1, 1))
    base = (w.sum(1, keepdim=True) - w) / (n_mc - 1)
    adv = (w - base).view(b, n_mc, *([1] * len(shape)))
    return (adv * (-e / r.view(view))).mean(1)


class DPG(Algorithm):
    """DPG (derivative-free): DPS-like steps guided by a policy-gradient (REINFORCE) estimate from forward calls."""

    derivative_free = True

    def __init__(self, n_steps: int = 1000, scale: float = 180.0, n_mc: int = 256, beta: float = 0.1,
                 r_min: float = 0.0, batch: int = 256) -> None:
        super().__init__()
        if n_steps < 1 or n_mc < 2 or batch < 1:
            raise ValueError(f"need n_steps >= 1, n_mc >= 2, batch >= 1; got {n_steps}, {n_mc}, {batch}")
        if scale < 0 or not 0 <= beta <= 1 or r_min < 0:
            raise ValueError(f"need scale >= 0, beta in [0, 1], r_min >= 0; got {scale}, {beta}, {r_min}")
        self.n_steps, self.scale, self.n_mc, self.beta, self.r_min, self.batch = n_steps, scale, n_mc, beta, r_min, batch

    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior, generator: torch.Generator | None,
            callback: StepCallback | None) -> Tensor:
        b, n = y.shape[0], self.n_steps
        sig = vp_sde_sigmas(n).tolist()
        x = sig[0] * randn(torch.empty((b, *operator.image_shape), device=y.device), generator)
        loss = lambda p: data_loss(operator, p, y)
        pixels = float(x[0].numel())
        z, prev = None, None
        for i, (s, s_next) in enumerate(zip(sig[:-1], sig[1:])):
            sigma = torch.full((b,), s, device=y.device)
            with torch.enable_grad():
                x_in = x.detach().requires_grad_(True)
                x0_net = self.denoise(prior, x_in, sigma)
                x0 = self.step(callback, Step(i, n, sigma, x.detach(), x0_net.detach(), y, operator, prior)).detach()
                with torch.no_grad():
                    ref = loss(x0.unsqueeze(1)).squeeze(1)
                    z = ref if z is None else 0.9 * z + 0.1 * ref
                    r = ((z / pixels).sqrt() / 2).clamp_min(max(self.r_min, 1e-12))
                    g0 = policy_gradient(x0, r, z.clamp_min(1e-30), ref, loss, self.n_mc, generator, self.batch)
                g = torch.autograd.grad(x0_net, x_in, g0)[0]
            if prev is not None:
                mix = self.beta * (n - i - 1) / n
                g, prev = mix * prev + (1 - mix) * g, g
            else:
                prev = g
            unit = g / per_sample(batch_norm(g) + 1e-7, g)
            x = ancestral(x.detach(), x0, s, s_next, generator) - self.scale * (s**2 - s_next**2) / (1 + s**2) ** 0.5 * unit
            x = self.monitor.check(i, x)
        return x.detach()
