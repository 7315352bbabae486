"""Behaviour of the diffusion solvers: NFE counts, seeding, divergence handling, step callbacks, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.base import Step
from algorithms.diffusion.csgm import CSGM
from algorithms.diffusion.daps import DAPS
from algorithms.diffusion.ddnm import DDNM
from algorithms.diffusion.lgd import LGD
from algorithms.diffusion.pigdm import PiGDM
from algorithms.diffusion.pnpdm import PnPDM
from algorithms.diffusion.reddiff import REDDiff
from algorithms.diffusion.score_mri import ScoreMRI
from algorithms.diffusion.data_consistency import prox_data, vp_grid, vp_timesteps
from algorithms.diffusion.ddrm import DDRM
from algorithms.diffusion.diffdeur import DiffDeuR
from algorithms.diffusion.diffpir import DiffPIR
from algorithms.diffusion.dpg import DPG
from algorithms.diffusion.dps import DPS
from algorithms.diffusion.dps_gsg import DPSGSG
from algorithms.diffusion.enkg import EnKG
from algorithms.diffusion.fps import FPS
from algorithms.diffusion.mcg_diff import MCGDiff
from algorithms.diffusion.scg import SCG
from algorithms.diffusion.inr import FourierSIREN, pixel_grid
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.inpainting import Inpainting
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
    "daps-exact": (lambda: DAPS(budget=None, n_steps=6, ode_steps=3, x0_sampler="exact"), 18),
    "diffpir": (lambda: DiffPIR(n_steps=10), 9),  # the last step (t = 0) calls no network (the official code)
    "diffdeur": (lambda: DiffDeuR(n_steps=4, inr_iters=5, width=16, n_freq=8), 4),
    "ddnm": (lambda: DDNM(n_steps=6), 11),  # time travel L = 1: every step but the first is taken twice
    "pigdm": (lambda: PiGDM(n_steps=6), 6),
    "reddiff": (lambda: REDDiff(n_steps=6, lr=0.1), 6),  # Adam moves mu by <= lr a step: a larger lr for 6 steps
    "pnpdm": (lambda: PnPDM(n_iters=3, n_levels=10), 22),  # prior-step levels below each rho_k
    "lgd": (lambda: LGD(n_steps=6), 6),
    "score-mri": (lambda: ScoreMRI(n_steps=6), 12),  # predictor + one corrector per level
    "csgm": (lambda: CSGM(n_levels=8, start_iter=4, steps_each=1), 3),
    # the derivative-free solvers (issue 30); particle methods count one NFE per particle or candidate
    "enkg": (lambda: EnKG(n_steps=6, n_particles=4, n_updates=1), 44),  # 6 steps x 4 + 5 guided x 1 ODE step x 4
    "dps-gsg": (lambda: DPSGSG(n_steps=6, n_queries=16), 6),
    "fps": (lambda: FPS(n_steps=6, n_particles=4), 24),
    "mcg-diff": (lambda: MCGDiff(n_steps=6, n_particles=4), 24),
    "dpg": (lambda: DPG(n_steps=6, n_mc=8, scale=1.0), 6),
    "scg": (lambda: SCG(n_steps=6, n_candidates=3), 18),  # 6 + 4 guided steps x 3 candidates
}


def test_every_registered_diffusion_solver_is_in_the_battery():
    """Every algorithm the project registers that uses a prior and is not a trained network is in SOLVERS (the
    prior-free ones go through test_classical's registry-driven battery, the networks through test_networks')."""
    from algorithms.networks.models import NetworkAlgorithm
    from benchmarks import registry
    from tests.helpers import assert_covered, project_names

    classes = {n: registry.load("algorithms", n) for n in project_names("algorithms")}
    solvers = [n for n, c in classes.items() if getattr(c, "uses_prior", True)
               and not (isinstance(c, type) and issubclass(c, NetworkAlgorithm))]
    assert_covered("algorithms", SOLVERS, "the solver battery (test_solvers.SOLVERS)", names=solvers)


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


def official_diffpir_timesteps(n: int, T: int = 1000) -> list[int]:
    """DiffPIR's `skip_type='quad'` as its main scripts compute it: seq = int(sqrt(linspace(0, T^2, n))), last - 1;
    step i runs at the timestep whose sigma is sigmas[seq[i]] = reduced_alpha_cumprod[T - 1 - seq[i]]."""
    seq = [int(v) for v in np.sqrt(np.linspace(0, T**2, n))]
    seq[-1] -= 1
    return [T - 1 - s for s in seq]


@pytest.mark.parametrize("n", [20, 100])
def test_quad_grid_visits_the_official_diffpir_timesteps(n):
    t = vp_timesteps(n, "quad").tolist()
    assert t == official_diffpir_timesteps(n)
    assert torch.equal(vp_grid(n, "quad")[:-1], vp_sigma_table()[torch.tensor(t)].float())
    if n == 100:  # large strides at high noise, dense near t = 0
        assert t[:4] == [999, 899, 857, 825] and t[-3:] == [10, 5, 0]
    else:
        assert t == [999, 770, 675, 602, 541, 487, 438, 393, 351, 311, 274, 239, 205, 172, 141, 111, 82, 54, 26, 0]


def test_grids():
    table = vp_sigma_table().float()
    u = vp_grid(20, "uniform")
    assert len(u) == 21 and u[-1] == 0 and torch.isclose(u[0], table[950]) and torch.isclose(u[-2], table[0])
    assert vp_timesteps(20, "uniform").tolist() == list(reversed(range(0, 1000, 1000 // 20)))  # DDRM's range, reversed
    assert vp_timesteps(30, "uniform").tolist() == list(reversed(range(0, 1000, 33)))[1:]  # the first 30 of 31
    q = vp_grid(100, "quad")
    assert len(q) == 101 and torch.isclose(q[0], table[999]) and torch.isclose(q[1], table[899])
    assert (q[1:] < q[:-1]).all()
    d = DAPS().annealing()
    assert len(d) == 201 and d[0] == pytest.approx(100.0) and d[-1] == 0 and 0.1 < d[-2] < 0.12
    with pytest.raises(ValueError, match="spacing"):
        vp_timesteps(10, "cubic")


@pytest.mark.parametrize("name,n", [("diffpir", 20), ("diffdeur", 5)])
def test_hqs_solvers_visit_the_quad_grid_in_order(name, n):
    """DiffPIR and DiffDeuR query the denoiser at the official timesteps, from t = 999 down."""
    prior, op, y = setup(b=1)
    seen = []
    alg = DiffPIR(n_steps=n) if name == "diffpir" else DiffDeuR(n_steps=n, inr_iters=2, width=8, n_freq=4)
    alg.reconstruct(y, op, prior, torch.Generator().manual_seed(0), callback=lambda s: seen.append(float(s.sigma[0])))
    t = official_diffpir_timesteps(n)
    visited = t[:-1] if name == "diffpir" else t  # DiffPIR's last step (t = 0) calls no network
    assert seen == pytest.approx(vp_sigma_table()[torch.tensor(visited)].tolist(), rel=1e-6)


def test_diffpir_last_step_returns_the_previous_iterate():
    """The official last step (t = 0) takes no data step and no re-noising: the result is the iterate at t = 0 made
    by the step before. Replayed by hand from the start (zeta = 0 makes every step after the start deterministic)."""
    prior, op, y = setup(b=2)
    n, lam = 6, 0.5
    first = []
    r = DiffPIR(n_steps=n, lam=lam, zeta=0.0).reconstruct(
        y, op, prior, torch.Generator().manual_seed(0), callback=lambda s: first.append(s.x.clone()) if not first else None)
    sig = vp_sigma_table()[torch.tensor(official_diffpir_timesteps(n))].float().tolist()
    x = first[0]
    for s, s_next in zip(sig[:-1], sig[1:]):
        z = prior.denoise(x, torch.full((2,), s))
        x0 = prox_data(op, y, z, torch.full((2,), lam * 0.05**2 / s**2))
        x = x0 + s_next * (x - x0) / s
    assert r.nfe == n - 1
    assert torch.allclose(r.image, x, atol=1e-5)
    assert not torch.allclose(r.image, prior.denoise(x, torch.full((2,), sig[-1])), atol=1e-4)


def test_daps_langevin_step_decays_as_the_official_code():
    """eta_i = lr (1 + (i/(N+1)) (lr_min_ratio - 1)): the official MCMC sampler's get_lr(step / (N + 1))."""
    used = []

    class Recording(DAPS):
        def langevin(self, x0, y, operator, sigma, lr, tau, generator):
            used.append(lr)
            return x0

    n, lr, ratio = 8, 1e-4, 0.01
    prior, op, y = setup(b=1)
    Recording(budget=None, n_steps=n, ode_steps=1, lr=lr, lr_min_ratio=ratio).reconstruct(
        y, op, prior, torch.Generator().manual_seed(0))
    assert len(used) == n
    for i in (0, n // 2, n - 1):
        assert used[i] == pytest.approx(lr * (1 + i / (n + 1) * (ratio - 1)), rel=1e-12)
    assert used[-1] > ratio * lr * 1.5  # the official schedule never reaches lr_min_ratio * lr


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


def test_diffpir_direct_data_step_equals_converged_cg_and_refuses_without_solver():
    """DiffPIR data_step='direct' (multi-coil line mask) gives CG's result once CG has converged; an operator
    without a direct solver or SVD is refused before compute, naming the fix; a bad value names the choices."""
    from inverse_problems.operators.coils import birdcage_maps
    from inverse_problems.operators.mri import MultiCoilMRI

    g = torch.Generator().manual_seed(5)
    lines = (torch.rand(16, generator=g) < 0.35).float()
    lines[7:9] = 1
    op = MultiCoilMRI(birdcage_maps(3, 16, 1.5), lines.expand(16, 16).clone(), noise_std=0.05, correction_size=0)
    op.requires_grad_(False)
    prior = GaussianPrior(torch.zeros(2, 16, 16), torch.full((2, 16, 16), 0.3), "pixel")
    y = op.measure(prior.sample(2, torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1))
    run = lambda algo: algo.reconstruct(y, op, prior, torch.Generator().manual_seed(2)).image  # noqa: E731
    # lam large enough that rho = lam sigma_n^2 / sigma_t^2 lets float32 CG converge at every step
    direct = run(DiffPIR(n_steps=4, lam=1e4, data_step="direct"))
    cg = run(DiffPIR(n_steps=4, lam=1e4, cg_iters=2000))
    assert float((direct - cg).abs().max() / cg.abs().max()) < 1e-3
    mask2d = (torch.rand(16, 16, generator=g) < 0.5).float()
    with pytest.raises(ValueError, match="data_step=cg"):
        DiffPIR(n_steps=4, data_step="direct").reconstruct(y, MultiCoilMRI(birdcage_maps(3, 16, 1.5), mask2d), prior)
    with pytest.raises(ValueError, match="cg: conjugate gradient"):
        DiffPIR(data_step="exact")
