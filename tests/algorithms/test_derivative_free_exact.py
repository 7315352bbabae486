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
    (1/J) sum_k (x_k - mean)(x_k - mean)^T and lr = scale / ||C||_F (float precision). Mutations: the residual's sign
    (y - G instead of G - y) or the transposed coefficient matrix move it by O(1). (Centring the particles is
    redundant, sum_k C_jk = 0, and the 1/J cancels in lr: neither is checked.)"""
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


def _correlated(h: int = 4, noise: float = 0.05):
    """Random inpainting of a 4 x 4 image under a smooth stationary prior (spectrum |k|^-3, Fourier-diagonal): the
    observed pixels inform the unobserved ones only through the prior's correlations, which is what the particles'
    weights must get right (a sampler without them is biased)."""
    from inverse_problems.operators.inpainting import Inpainting
    from priors.analytic import GaussianPrior

    g = torch.Generator().manual_seed(0)
    ky, kx = torch.fft.fftfreq(h).view(-1, 1), torch.fft.fftfreq(h).view(1, -1)
    spec = (torch.sqrt(kx**2 + ky**2).clamp_min(1 / h) * h) ** -3.0
    prior = GaussianPrior(torch.zeros(1, h, h), (0.05 * spec * h * h / spec.sum()).expand(1, h, h).clone(), "fourier")
    mask = (torch.rand((h, h), generator=g) < 0.5).float()
    return prior, Inpainting(mask, 1, noise_std=noise), g


def smc_errors(make, counts: tuple[int, ...], runs: int = 256) -> dict[int, tuple[float, float]]:
    """{J: (rms normalised mean error, rms relative variance error)} of `runs` independent runs' outputs (one particle
    each: a posterior draw) against the exact posterior, for each particle count J."""
    from priors.analytic import gaussian_posterior

    prior, op, g = _correlated()
    y1 = op.measure(prior.sample(1, g), g)
    m, cov = gaussian_posterior(prior, op, y1)
    var = cov.diagonal().double().reshape(m.shape[1:])
    y = y1.expand(runs, *y1.shape[1:]).contiguous()
    out = {}
    for j in counts:
        s = make(j).reconstruct(y, op, prior, torch.Generator().manual_seed(1)).image.double()
        out[j] = (float(((s.mean(0) - m[0]) / var.sqrt()).pow(2).mean().sqrt()),
                  float((s.var(0) / var - 1).pow(2).mean().sqrt()))
    return out


def assert_converges(err: dict[int, tuple[float, float]], mean_at_most: float, var_at_most: float) -> None:
    """The trend: the mean error falls with each count (J = 1, 4, 32) and by 40 % from the first to the last, the
    variance error falls from the first to the last; at J = 32 both are near the Monte-Carlo floor of 256 runs (mean
    ~0.06, variance ~0.09) plus the sampler's discretisation bias (measured, below)."""
    (m1, v1), (m4, _), (m32, v32) = (err[j] for j in sorted(err))
    assert m1 > m4 > m32 and m32 < 0.6 * m1, err
    assert v32 < v1, err
    assert m32 < mean_at_most and v32 < var_at_most, err


def test_fps_converges_to_the_posterior_as_particles_grow() -> None:
    """FPS (official 100 steps, eta 0.85): measured mean error 0.40 / 0.32 / 0.14 and variance error 0.42 / 0.25 / 0.20
    at J = 1 / 4 / 32. Without the weights (every particle kept) the trend vanishes. Its floor: the per-step likelihood
    N(ȳ_k; x_k, c^2) treats the measurement sequence's noise as fresh at each step, so with noise the particle limit is
    narrower than the posterior as the steps grow (measured variance ratio 0.86 at 100 steps, 0.38 at 400, J = 64)."""
    from algorithms.diffusion.fps import FPS

    err = smc_errors(lambda j: FPS(n_particles=j), (1, 4, 32))
    print("fps", err)
    assert_converges(err, 0.2, 0.3)


def test_mcg_diff_converges_to_the_posterior_as_particles_grow() -> None:
    """MCG-diff (official 200 steps): measured mean error 0.28 / 0.23 / 0.11 and variance error 0.30 / 0.27 / 0.24 at
    J = 1 / 4 / 32; the variance floor is the 200-step prior chain's (0.78 median ratio; 0.97 at 500 steps)."""
    from algorithms.diffusion.mcg_diff import MCGDiff

    err = smc_errors(lambda j: MCGDiff(n_particles=j), (1, 4, 32))
    print("mcg-diff", err)
    assert_converges(err, 0.2, 0.3)


def test_dpg_policy_gradient_is_the_smoothed_reward_gradient_within_its_variance() -> None:
    """Stein's identity: E[(w_j - b_j) e_j] / r = grad_mu E_e[w(mu + r e)] (the leave-one-out baseline b_j is independent
    of e_j), so DPG's estimate is unbiased for -grad of the smoothed reward. Compared with the pathwise (autograd)
    gradient of the same smoothed reward over 40 000 draws (4 000 for the estimate); the squared error over the estimator's own variance (from
    its per-draw terms) is about 1 (measured ~1.0 on 4 points). Dropping the minus sign or the 1/r moves it by
    orders of magnitude."""
    from algorithms.diffusion.dpg import policy_gradient

    _, op, fo, x, y, g = _quadratic(b=4)
    loss = lambda p: data_loss(fo, p, y)
    ref = loss(x.unsqueeze(1)).squeeze(1)
    z, r, n = ref.clone(), torch.full((4,), 0.05), 4000
    est = policy_gradient(x, r, z, ref, loss, n, g)
    big = 40000
    e = torch.randn((4, big, *x.shape[1:]), generator=g)
    mu = x.clone().requires_grad_(True)
    pts = mu.unsqueeze(1) + r.view(4, 1, 1, 1, 1) * e
    res = (op.forward(pts.flatten(0, 1)) - y.repeat_interleave(big, 0)).pow(2).flatten(1).sum(1).reshape(4, big)
    reward = torch.exp(-(res - ref.view(-1, 1)) / z.view(-1, 1)).mean(1)
    want = -torch.autograd.grad(reward.sum(), mu)[0]
    # the estimator's variance: per-draw terms (w - b)(-e/r) re-drawn with the same law
    e2 = torch.randn((4, n, *x.shape[1:]), generator=g)
    w = torch.exp(-(loss(x.unsqueeze(1) + r.view(4, 1, 1, 1, 1) * e2) - ref.view(-1, 1)) / z.view(-1, 1))
    b = (w.sum(1, keepdim=True) - w) / (n - 1)
    terms = (w - b).view(4, n, 1, 1, 1) * (-e2 / r.view(4, 1, 1, 1, 1))
    expected = terms.var(1).flatten(1).sum(1) / n
    ratio = float(((est - want).pow(2).flatten(1).sum(1) / expected).mean())
    print("dpg", ratio)
    assert 0.6 < ratio < 1.6, ratio


def test_scg_keeps_the_noise_a_gradient_step_would_choose() -> None:
    """For a loss linear across the candidates (step 1e-3 around the point: L(mu + s e) = L(mu) + s grad.e + O(s^2)),
    the kept noise among n is e_best = -kappa_n u + (orthogonal noise), u = grad/||grad|| by autograd and kappa_n =
    E[max of n standard normals] (2.07 for n = 32, computed here): over M = 2000 selections the mean lies within the
    Monte-Carlo error (Var(max) + d - 1)/M of -kappa_n u (ratio ~1). argmax instead of argmin puts it at +kappa_n u."""
    from algorithms.diffusion.scg import best_candidate

    prior, op, fo, x, y, g = _quadratic(b=1)
    n, m, s, sigma = 32, 2000, 1e-3, 0.5
    mu = x.clone().requires_grad_(True)
    grad = torch.autograd.grad((op.forward(prior.denoise(mu, sigma)) - y).pow(2).sum(), mu)[0]
    u = (grad / grad.norm()).flatten()
    e = torch.randn((m, n, *x.shape[1:]), generator=g)
    with torch.no_grad():
        clean = prior.denoise((x.unsqueeze(1) + s * e).flatten(0, 1), sigma).reshape(m, n, *x.shape[1:])
        losses = data_loss(fo, clean, y.expand(m, *y.shape[1:]))
    kept = e[torch.arange(m).unsqueeze(1), best_candidate(losses)][:, 0].flatten(1)
    maxima = torch.randn((200000, n), generator=g).amax(1)
    kappa, var_max = float(maxima.mean()), float(maxima.var())
    d = kept.shape[1]
    ratio = float((kept.mean(0) + kappa * u).pow(2).sum() / ((var_max + d - 1) / m))
    print("scg", kappa, ratio)
    assert 0.6 < ratio < 1.5, ratio
