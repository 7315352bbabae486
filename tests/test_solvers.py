"""Behaviour of the diffusion solvers: NFE counts, seeding, divergence handling, step callbacks, errors."""
from __future__ import annotations

import pytest
import torch

from algorithms.base import Step
from algorithms.daps import DAPS
from algorithms.data_consistency import prox_data, vp_grid
from algorithms.ddrm import DDRM
from algorithms.diffdeur import DiffDeuR
from algorithms.diffpir import DiffPIR
from algorithms.dps import DPS
from algorithms.inr import FourierSIREN, pixel_grid
from inverse_problems.base import ForwardOperator
from inverse_problems.inpainting import Inpainting
from priors.analytic import GaussianPrior
from priors.schedules import vp_sigma_table

H = 8


class NaNForOne(GaussianPrior):
    """A Gaussian prior whose denoiser returns NaN for sample `bad` (once sigma < `below`)."""

    bad, below = 1, 1.0

    def denoise(self, x, sigma):
        out = super().denoise(x, sigma)
        s = torch.as_tensor(sigma).reshape(-1)
        if float(s[0]) < self.below:
            out = out.clone()
            out[self.bad] = float("nan")
        return out


class MaskNoSVD(ForwardOperator):
    """Inpainting without an SVD (forces the CG path / the needs-SVD error)."""

    def __init__(self, mask, noise_std=0.05):
        super().__init__(noise_std)
        self.register_buffer("mask", mask)
        self.image_shape = (1, *mask.shape)
        self.measurement_shape = self.image_shape

    def forward(self, x):
        return x * self.mask

    def adjoint(self, y):
        return y * self.mask


def setup(prior_cls=GaussianPrior, b: int = 3):
    g = torch.Generator().manual_seed(0)
    prior = prior_cls(torch.zeros(1, H, H), 0.05 * torch.ones(1, H, H), "pixel")
    mask = (torch.rand((H, H), generator=g) < 0.5).float()
    op = Inpainting(mask, 1, 0.05)
    y = op.measure(prior.sample(b, g), g)
    return prior, op, y


SOLVERS = {
    "dps": (lambda: DPS(n_steps=12), 12),
    "ddrm": (lambda: DDRM(n_steps=10), 10),
    "daps": (lambda: DAPS(budget=None, n_steps=6, ode_steps=3, langevin_steps=5), 18),
    "diffpir": (lambda: DiffPIR(n_steps=10), 10),
    "diffdeur": (lambda: DiffDeuR(n_steps=4, inr_iters=5, width=16, n_freq=8), 4),
}


@pytest.mark.parametrize("name", list(SOLVERS))
def test_nfe_seed_and_shape(name):
    make, nfe = SOLVERS[name]
    prior, op, y = setup()
    r1 = make().reconstruct(y, op, prior, torch.Generator().manual_seed(3))
    r2 = make().reconstruct(y, op, prior, torch.Generator().manual_seed(3))
    r3 = make().reconstruct(y, op, prior, torch.Generator().manual_seed(4))
    assert r1.nfe == nfe
    assert r1.image.shape == y.shape and torch.isfinite(r1.image).all()
    assert torch.equal(r1.image, r2.image)
    assert not torch.equal(r1.image, r3.image)
    assert not r1.failed.any()


@pytest.mark.parametrize("name", list(SOLVERS))
def test_divergence_stops_only_the_bad_sample(name):
    make, _ = SOLVERS[name]
    prior, op, y = setup(NaNForOne)
    r = make().reconstruct(y, op, prior, torch.Generator().manual_seed(0))
    assert r.failed.tolist() == [False, True, False]
    assert r.failure[1].startswith("diverged at step ") and "non-finite" in r.failure[1]
    assert int(r.failure[1].split()[3].rstrip(":")) >= 0
    assert torch.isfinite(r.image).all() and (r.image[1] == 0).all()
    assert r.image[0].abs().sum() > 0 and r.image[2].abs().sum() > 0


@pytest.mark.parametrize("name", list(SOLVERS))
def test_callback_replacement_is_used(name):
    """A callback that replaces x0 by a constant image pulls the result to it; the steps are all seen."""
    make, _ = SOLVERS[name]
    prior, op, y = setup()
    seen = []
    target = torch.full_like(y, 3.0)

    def cb(step: Step):
        seen.append((step.index, step.n_steps, tuple(step.sigma.shape), step.x0.shape == y.shape))
        return target

    free = make().reconstruct(y, op, prior, torch.Generator().manual_seed(0))
    r = make().reconstruct(y, op, prior, torch.Generator().manual_seed(0), callback=cb)
    n = seen[0][1]
    assert [s[0] for s in seen] == list(range(n)) and all(s[2] == (3,) and s[3] for s in seen)
    unobserved = op.mask == 0
    # on unobserved pixels the data cannot pull back: the replaced x0 (3.0) moves the result towards it
    # (DiffDeuR least: its last fidelity step weighs z by mu sigma_t^2 ~ 1e-4 and 5 INR iterations)
    assert (r.image[..., unobserved] - 3.0).abs().mean() < (free.image[..., unobserved] - 3.0).abs().mean() - 0.1


def test_ddrm_refuses_operator_without_svd_above_dense_max():
    prior, op, y = setup()
    with pytest.raises(ValueError, match="no closed form.*dense_max=8 .*single-coil cs_mri"):
        DDRM(dense_max=8).reconstruct(y, MaskNoSVD(op.mask), prior)
    assert DDRM().reconstruct(y, MaskNoSVD(op.mask), prior).failed.sum() == 0  # small: the exact dense route


def test_prox_data_svd_and_cg_agree_with_dense_solution():
    prior, op, y = setup()
    z = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    rho = torch.tensor([0.1, 1.0, 10.0])
    exact = (op.mask * y + rho.view(-1, 1, 1, 1) * z) / (op.mask + rho.view(-1, 1, 1, 1))
    assert torch.allclose(prox_data(op, y, z, rho), exact, atol=1e-6)
    assert torch.allclose(prox_data(MaskNoSVD(op.mask), y, z, rho), exact, atol=1e-5)


def test_grids():
    table = vp_sigma_table().float()
    u = vp_grid(20, "uniform")
    assert len(u) == 21 and u[-1] == 0 and torch.isclose(u[0], table[950]) and torch.isclose(u[-2], table[0])
    q = vp_grid(100, "quad")
    assert len(q) == 101 and torch.isclose(q[0], table[999]) and torch.isclose(q[1], table[994])
    assert (q[1:] <= q[:-1]).all()
    d = DAPS().annealing()
    assert len(d) == 201 and d[0] == pytest.approx(100.0) and d[-1] == 0 and 0.1 < d[-2] < 0.12


def test_daps_budgets_and_errors():
    assert (DAPS(budget="4k").n_steps, DAPS(budget="4k").ode_steps) == (400, 10)
    assert (DAPS().n_steps, DAPS().ode_steps) == (200, 5)
    with pytest.raises(ValueError, match="budget"):
        DAPS(budget="2k")
    with pytest.raises(ValueError, match="tau_mode"):
        DAPS(tau_mode="auto")


def test_dps_without_guidance_samples_the_prior():
    """zeta = 0: DPS is DDPM ancestral sampling written in EDM variables; with the exact Gaussian denoiser its
    samples have the prior's mean 0 and variance 0.05 (up to Monte-Carlo error ~ 0.05 * sqrt(2/N) and the
    1000-step discretisation: the variance is 0.0436 at 200 steps, 0.0487 at 1000)."""
    prior, op, y = setup(b=1024)
    r = DPS(n_steps=1000, zeta=0.0).reconstruct(y, op, prior, torch.Generator().manual_seed(0))
    var = r.image.var(0)
    assert r.nfe == 1000
    assert abs(float(var.mean()) / 0.05 - 1) < 0.05
    assert float(r.image.mean(0).abs().max()) < 5 * (0.05 / 1024) ** 0.5


def test_inr_models_are_independent_and_fit():
    g = torch.Generator().manual_seed(0)
    inr = FourierSIREN(2, 2, 1, n_freq=16, scale=2.0, width=32, depth=2, generator=g)
    coords = pixel_grid(H, H)
    target = torch.stack([torch.linspace(-1, 1, H).expand(H, H), torch.zeros(H, H)]).unsqueeze(1)
    opt = torch.optim.Adam(inr.parameters(), lr=1e-3)
    before = inr.image(coords, 1, H, H).detach()
    for _ in range(300):
        loss = ((inr.image(coords, 1, H, H) - target) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = inr.image(coords, 1, H, H).detach()
    assert ((after - target) ** 2).mean() < 0.05 * ((before - target) ** 2).mean()
    # the gradient of one model's loss does not touch the other model's weights
    opt.zero_grad()
    inr.image(coords, 1, H, H)[0].sum().backward()
    assert inr.out_weight.grad[1].abs().max() == 0 and inr.out_weight.grad[0].abs().max() > 0
