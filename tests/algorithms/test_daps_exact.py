"""DAPS `x0_sampler=exact` against the closed-form x0-conditional.

For a linear A, p(x0 | x̂0, y) ∝ exp(-||A x0 - y||^2/tau^2 - ||x0 - x̂0||^2/(2 sigma^2)) is the posterior of the
Gaussian prior N(x̂0, sigma^2 I) under a likelihood of noise std tau/sqrt(2): priors.analytic.gaussian_posterior
gives its mean m and covariance C in Kalman-gain form, independently of the solver's route. N draws of one
problem are whitened by C (w = L^-1 (x - m), C = L L^T): exact draws give w ~ N(0, I), so the sample mean of w
is within a few 1/sqrt(N) of 0 and its covariance within a few sqrt(2/N) of I; a wrong factor in tau or sigma
moves a variance by O(1) and fails.
"""
from __future__ import annotations

import copy

import pytest
import torch

from algorithms.diffusion.daps import DAPS
from inverse_problems.operators.coils import birdcage_maps
from inverse_problems.operators.dense import dense_svd
from inverse_problems.operators.inpainting import Inpainting
from inverse_problems.operators.lowfield import LowField
from inverse_problems.operators.masks import random_mask
from inverse_problems.operators.mri import MultiCoilMRI, SingleCoilMRI
from inverse_problems.operators.mrsi import MRSI
from inverse_problems.operators.random import SampleGenerators
from priors.analytic import GaussianPrior, gaussian_posterior

H, N = 4, 6000


def _operators():
    g = torch.Generator().manual_seed(0)
    mask = random_mask((H, H), acceleration=2.0, center_fraction=0.25, seed=0)
    return {
        "inpainting": Inpainting((torch.rand((H, H), generator=g) < 0.5).float(), 1, noise_std=0.05),
        "single-coil": SingleCoilMRI(mask, noise_std=0.05),
        "lowfield": LowField(H, k=1.5, fwhm=1.0, noise_std=0.05),
        "multi-coil": MultiCoilMRI(birdcage_maps(3, H), mask, noise_std=0.05, correction_size=0),
        # 4 metabolite maps, 8 spectral points, a B0 map and non-zero drift/linewidth/phase: not separable per
        # k-space sample, so only the dense SVD and CG routes apply (64 real coordinates)
        "mrsi": MRSI(mask, n_t=8, b0_hz=4.0 * torch.randn((H, H), generator=g), drift=1.5, linewidth=2.0, phase=0.3,
                     noise_std=0.05),
    }


# (operator, route): closed-form SVD, exact dense SVD, perturb-and-MAP by CG (also where an SVD exists)
CASES = [("inpainting", "svd"), ("single-coil", "svd"), ("lowfield", "svd"), ("multi-coil", "svd"), ("multi-coil", "eigen"),
         ("multi-coil", "cg"), ("single-coil", "cg"), ("inpainting", "cg"), ("mrsi", "svd"), ("mrsi", "cg")]


def closed_form(op, x_hat: torch.Tensor, y: torch.Tensor, sigma: float, tau: float):
    """m (n,) and C (n, n) in double: the posterior of N(x̂0, sigma^2 I) given y with noise std tau/sqrt(2)."""
    prior = GaussianPrior(x_hat[0], torch.full_like(x_hat[0], sigma**2), "pixel")
    lik = copy.deepcopy(op)
    lik.set_noise_std(tau / 2**0.5)
    m, cov = gaussian_posterior(prior, lik, y[:1])
    return m.reshape(-1).double(), cov.double()


def draws(name: str, route: str, sigma: float, tau: float, seed: int = 0):
    op = _operators()[name]
    g = torch.Generator().manual_seed(seed + 10)
    shape = (1, *op.image_shape)
    x_true, x_hat = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    y1 = op.measure(x_true, g)
    daps = DAPS(x0_sampler="exact", exact_route=route, cg_iters=200, cg_tol=1e-7)
    x_hat_n = x_hat.expand(N, *shape[1:]).contiguous()
    y = y1.expand(N, *y1.shape[1:]).contiguous()
    tau_t = torch.full((N,), tau)
    svd = (op.svd() or dense_svd(op, N)) if route == "svd" else None
    with torch.no_grad():
        x = daps.sample_x0(x_hat_n, y, op, 0, sigma, tau_t, torch.Generator().manual_seed(seed), svd)
    return x.reshape(N, -1).double(), closed_form(op, x_hat, y1, sigma, tau)


SETTINGS = [(0.3, 0.2), (1.0, 0.05)]
# CG on MRSI at (1.0, 0.05) (rho = tau^2/(2 sigma^2) ~ 1e-3: hundreds of iterations on 6000 draws) runs as slow
PARAMS = [pytest.param(n, r, s, t, marks=[pytest.mark.slow] if (n, r, s) == ("mrsi", "cg", 1.0) else [])
          for n, r in CASES for s, t in SETTINGS]


@pytest.mark.parametrize("name,route,sigma,tau", PARAMS)
def test_exact_draws_have_the_closed_form_mean_and_covariance(name, route, sigma, tau):
    x, (m, cov) = draws(name, route, sigma, tau)
    chol = torch.linalg.cholesky(cov + 1e-12 * torch.eye(cov.shape[0], dtype=cov.dtype))
    w = torch.linalg.solve_triangular(chol, (x - m).T, upper=False).T  # (N, n), ~ N(0, I) if exact
    n = w.shape[1]
    assert w.mean(0).abs().max() < 5 / N**0.5, w.mean(0).abs().max()
    emp = torch.cov(w.T)
    assert (emp - torch.eye(n, dtype=emp.dtype)).abs().max() < 7 * (2 / N) ** 0.5, (emp - torch.eye(n)).abs().max()
    # the data matter: the posterior is narrower than the prior along measured directions
    assert torch.linalg.eigvalsh(cov).min() < 0.5 * sigma**2


def test_langevin_scaling_matches_the_exact_target():
    """The official Langevin chain, run long with a small step, reaches the same mean as the exact sampler
    (the two target the same density: data term ||A x - y||^2/tau^2, prior term ||x - x̂0||^2/(2 sigma^2))."""
    op = _operators()["single-coil"]
    g = torch.Generator().manual_seed(3)
    shape = (1, *op.image_shape)
    x_hat, y1 = torch.randn(shape, generator=g), op.measure(torch.randn(shape, generator=g), g)
    sigma, tau = 0.5, 0.5
    m, cov = closed_form(op, x_hat, y1, sigma, tau)
    n = 2000
    daps = DAPS(langevin_steps=600)
    with torch.no_grad():
        x = daps.langevin(x_hat.expand(n, *shape[1:]), y1.expand(n, *y1.shape[1:]), op, sigma, 0.02,
                          torch.full((n,), tau), torch.Generator().manual_seed(0))
    x = x.reshape(n, -1).double()
    std = cov.diagonal().sqrt()
    assert ((x.mean(0) - m) / std).abs().max() < 0.25  # step-size bias of unadjusted Langevin at lr 0.02, plus MC
    assert ((x.var(0) / cov.diagonal()) - 1).abs().max() < 0.35


@pytest.mark.parametrize("name", ["single-coil", "multi-coil"])
def test_exact_sampler_draws_per_sample(name):
    """With per-sample generators, sample k's reconstruction does not depend on the batch it is in."""
    op = _operators()[name]
    prior = GaussianPrior(torch.zeros(op.image_shape), 0.5 * torch.ones(op.image_shape), "pixel")
    g = torch.Generator().manual_seed(5)
    y = op.measure(prior.sample(3, g), g)
    ids = ["a", "b", "c"]
    make = lambda: DAPS(budget=None, n_steps=4, ode_steps=2, x0_sampler="exact", exact_route="auto",  # noqa: E731
                        dense_max=0)
    whole = make().reconstruct(y, op, prior, SampleGenerators.seeded(0, ids)).image
    for k, i in enumerate(ids):
        one = make().reconstruct(y[k:k + 1], op, prior, SampleGenerators.seeded(0, [i])).image
        torch.testing.assert_close(one[0], whole[k], rtol=0, atol=1e-6)
    assert not torch.allclose(whole[0], make().reconstruct(y, op, prior, SampleGenerators.seeded(1, ids)).image[0])


def test_routes_and_errors():
    ops = _operators()
    assert DAPS(x0_sampler="exact").route(ops["single-coil"]) == "svd"
    assert DAPS(x0_sampler="exact", dense_max=0).route(ops["multi-coil"]) == "eigen"  # a line mask
    assert DAPS(x0_sampler="chain").route(ops["multi-coil"]) == "eigen"
    assert DAPS(x0_sampler="chain").route(ops["single-coil"]) == "svd"
    assert DAPS(x0_sampler="chain").route(ops["mrsi"]) == "langevin"  # no basis: the chain step by step
    assert DAPS(x0_sampler="exact", exact_route="cg").route(ops["single-coil"]) == "cg"
    assert ops["mrsi"].svd() is None and DAPS(x0_sampler="exact").route(ops["mrsi"]) == "svd"  # 64: dense
    assert DAPS(x0_sampler="exact", dense_max=63).route(ops["mrsi"]) == "cg"
    assert DAPS(budget="0.1k").n_steps == 50 and DAPS(budget="0.1k").ode_steps == 2
    assert (DAPS().n_steps, DAPS().ode_steps) == (200, 5)  # the official 1K budget stays the default
    assert DAPS().x0_sampler == "langevin"  # the official chain stays the default
    with pytest.raises(ValueError, match="x0_sampler must be one of"):
        DAPS(x0_sampler="gibbs")
    with pytest.raises(ValueError, match="exact_route must be one of"):
        DAPS(exact_route="qr")
    with pytest.raises(ValueError, match="cg_iters >= 1"):
        DAPS(cg_iters=0)


def test_exact_sampler_takes_one_operator_pass_per_step_on_the_svd_route():
    """The SVD route applies A's SVD once per annealing step: no K-step chain (counted through the calls of the
    normal operators that `normal_map` hands out, the form the chain and CG use)."""
    op = _operators()["single-coil"]
    calls = {"normal": 0}
    orig = op.normal_map

    def counting_map():
        normal = orig()

        def counting(x):
            calls["normal"] += 1
            return normal(x)
        return counting

    op.normal_map = counting_map
    prior = GaussianPrior(torch.zeros(op.image_shape), torch.ones(op.image_shape), "pixel")
    y = op.measure(prior.sample(2, torch.Generator().manual_seed(0)))
    DAPS(budget=None, n_steps=3, ode_steps=1, x0_sampler="exact").reconstruct(y, op, prior, torch.Generator())
    assert calls["normal"] == 0
    DAPS(budget=None, n_steps=3, ode_steps=1, langevin_steps=4).reconstruct(y, op, prior, torch.Generator())
    assert calls["normal"] == 12


def chain_law(op, x_hat: torch.Tensor, y: torch.Tensor, sigma: float, tau: float, lr: float, k: int):
    """Mean (n,) and covariance (n, n) in double of K unadjusted Langevin steps from x̂0, by dense linear algebra:
    x_K = B^K x̂0 + sum_{j<K} B^j lr b, Cov = 2 lr sum_{j<K} B^2j, B = I - lr P, P = (2/tau^2) A^T A + I/sigma^2,
    b = (2/tau^2) A^T y + x̂0/sigma^2 (A^T A assembled column by column from `operator.normal`)."""
    n = x_hat.numel()
    eye = torch.eye(n).reshape(n, *x_hat.shape[1:])
    with torch.no_grad():
        gram = op.normal(eye).reshape(n, n).T.double()
        aty = op.adjoint(y).reshape(-1).double()
    w = 2.0 / tau**2
    prec = w * gram + torch.eye(n, dtype=torch.float64) / sigma**2
    step = torch.eye(n, dtype=torch.float64) - lr * prec
    b = w * aty + x_hat.reshape(-1).double() / sigma**2
    m, cov, power = x_hat.reshape(-1).double(), torch.zeros(n, n, dtype=torch.float64), torch.eye(n, dtype=torch.float64)
    for _ in range(k):
        m = step @ m + lr * b
        cov = cov + 2 * lr * power @ power.T
        power = step @ power
    return m, cov


@pytest.mark.parametrize("name", ["single-coil", "multi-coil", "inpainting"])
@pytest.mark.parametrize("sigma,tau,lr", [(0.3, 0.2, 2e-3), (1.0, 0.05, 4e-4)])
def test_chain_sampler_has_the_k_step_chains_mean_and_covariance(name, sigma, tau, lr):
    """x0_sampler=chain (one draw in A^T A's eigenbasis: the SVD, or multi-coil's per-row eigenbasis) and the
    official step-by-step chain both have the dense K-step law: whitened draws ~ N(0, I) to Monte Carlo error."""
    op = _operators()[name]
    g = torch.Generator().manual_seed(11)
    shape = (1, *op.image_shape)
    x_true, x_hat = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    y1 = op.measure(x_true, g)
    k = 30
    m, cov = chain_law(op, x_hat, y1, sigma, tau, lr, k)
    x_hat_n, y = x_hat.expand(N, *shape[1:]).contiguous(), y1.expand(N, *y1.shape[1:]).contiguous()
    tau_t = torch.full((N,), tau)
    chol = torch.linalg.cholesky(cov + 1e-14 * torch.eye(cov.shape[0], dtype=cov.dtype))
    chain = DAPS(x0_sampler="chain", langevin_steps=k)
    assert chain.route(op) == ("eigen" if name == "multi-coil" else "svd")
    with torch.no_grad():
        one_draw = chain.spectral_draw(x_hat_n, y, op, op.svd() or op.row_eigenbasis(), sigma, lr, tau_t,
                                       torch.Generator().manual_seed(1), exact=False)
        stepwise = DAPS(langevin_steps=k).langevin(x_hat_n, y, op, sigma, lr, tau_t, torch.Generator().manual_seed(2))
    for x in (one_draw, stepwise):
        wht = torch.linalg.solve_triangular(chol, (x.reshape(N, -1).double() - m).T, upper=False).T
        assert wht.mean(0).abs().max() < 5 / N**0.5, wht.mean(0).abs().max()
        emp = torch.cov(wht.T)
        assert (emp - torch.eye(emp.shape[0], dtype=emp.dtype)).abs().max() < 7 * (2 / N) ** 0.5
    # the chain has not mixed: its covariance differs from the exact target's
    _, target = closed_form(op, x_hat, y1, sigma, tau)
    assert (cov - target).abs().max() > 0.1 * target.diagonal().max()


def test_chain_sampler_in_daps_draws_per_sample_and_skips_the_chain():
    """In a whole DAPS run on the multi-coil line-mask operator: no normal-operator calls (no step-by-step chain),
    and sample k's reconstruction does not depend on the batch it is in."""
    op = _operators()["multi-coil"]
    calls = {"normal": 0}
    orig = op.normal_map

    def counting_map():
        calls["normal"] += 1
        return orig()

    op.normal_map = counting_map
    prior = GaussianPrior(torch.zeros(op.image_shape), 0.5 * torch.ones(op.image_shape), "pixel")
    g = torch.Generator().manual_seed(5)
    y = op.measure(prior.sample(3, g), g)
    ids = ["a", "b", "c"]
    make = lambda: DAPS(budget=None, n_steps=4, ode_steps=2, x0_sampler="chain")  # noqa: E731
    whole = make().reconstruct(y, op, prior, SampleGenerators.seeded(0, ids)).image
    assert calls["normal"] == 0
    for k, i in enumerate(ids):
        one = make().reconstruct(y[k:k + 1], op, prior, SampleGenerators.seeded(0, [i])).image
        torch.testing.assert_close(one[0], whole[k], rtol=0, atol=1e-5)
