"""Behaviour of the solver roster (issue 28): NFE counts, seeding, batch independence, divergence handling, step
callbacks, capability routes and refusals, option errors, and the CLI (`bench list`, `bench run`)."""
from __future__ import annotations

import json

import pytest
import torch

from algorithms.base import Step
from algorithms.diffusion.csgm import CSGM
from algorithms.diffusion.ddnm import DDNM
from algorithms.diffusion.lgd import LGD
from algorithms.diffusion.pigdm import PiGDM, pinv_guidance
from algorithms.diffusion.pnpdm import PnPDM, likelihood_draw
from algorithms.diffusion.reddiff import REDDiff, pseudo_inverse
from algorithms.diffusion.score_mri import ScoreMRI
from inverse_problems.operators.random import SampleGenerators
from tests.algorithms.test_solvers import MaskNoSVD, NaNForOne, setup
from tests.conftest import bench

ROSTER = {  # name: (factory, NFE on the 8 x 8 problem)
    "ddnm": (lambda: DDNM(n_steps=6, travel=1), 11),  # sum over steps of min(L, i) + 1
    "ddnm-plain": (lambda: DDNM(n_steps=6, travel=0, noise_aware=False), 6),
    "pigdm": (lambda: PiGDM(n_steps=8), 8),
    "reddiff": (lambda: REDDiff(n_steps=8), 8),
    "pnpdm": (lambda: PnPDM(n_iters=3, rho=1.0, rho_decay=0.5, rho_min=0.1, n_levels=6), None),
    "lgd": (lambda: LGD(n_steps=8, zeta=0.5), 8),
    "score-mri": (lambda: ScoreMRI(n_steps=5), 10),  # one corrector + one predictor call per level
    "csgm": (lambda: CSGM(n_levels=10, start_iter=5, steps_each=2), 8),  # (10 - 1 - 5) levels x 2
}
NAMES = ("ddnm", "pigdm", "reddiff", "pnpdm", "lgd", "score-mri", "csgm")


def pnpdm_nfe(alg: PnPDM) -> int:
    return sum(len(alg.prior_levels(r)) - 1 for r in alg.rhos())


@pytest.mark.parametrize("name", list(ROSTER))
def test_nfe_seed_and_shape(name):
    make, nfe = ROSTER[name]
    prior, op, y = setup()
    r1 = make().reconstruct(y, op, prior, torch.Generator().manual_seed(3))
    r2 = make().reconstruct(y, op, prior, torch.Generator().manual_seed(3))
    r3 = make().reconstruct(y, op, prior, torch.Generator().manual_seed(4))
    assert r1.nfe == (nfe if nfe is not None else pnpdm_nfe(make()))
    assert r1.image.shape == y.shape and torch.isfinite(r1.image).all()
    assert torch.equal(r1.image, r2.image)
    assert not torch.equal(r1.image, r3.image)
    assert not r1.failed.any()


@pytest.mark.parametrize("name", list(ROSTER))
def test_a_batch_never_changes_a_number(name):
    """Per-sample generators: sample k's reconstruction is the same alone or in a batch (DESIGN.md, Randomness)."""
    make, _ = ROSTER[name]
    prior, op, y = setup(b=3)
    both = make().reconstruct(y, op, prior, SampleGenerators.seeded(0, [10, 11, 12])).image
    alone = make().reconstruct(y[1:2], op, prior, SampleGenerators.seeded(0, [11])).image
    assert torch.allclose(both[1:2], alone, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", list(ROSTER))
def test_divergence_stops_only_the_bad_sample(name):
    make, _ = ROSTER[name]
    prior, op, y = setup(NaNForOne)
    r = make().reconstruct(y, op, prior, torch.Generator().manual_seed(0))
    assert r.failed.tolist() == [False, True, False]
    assert "non-finite" in r.failure[1]
    assert torch.isfinite(r.image).all() and (r.image[1] == 0).all()
    assert r.image[0].abs().sum() > 0 and r.image[2].abs().sum() > 0


@pytest.mark.parametrize("name", list(ROSTER))
def test_callback_sees_every_step_and_its_replacement_is_used(name):
    """A callback that replaces the clean estimate by a constant image pulls the unobserved pixels to it."""
    make, _ = ROSTER[name]
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
    assert (r.image[..., unobserved] - 3.0).abs().mean() < (free.image[..., unobserved] - 3.0).abs().mean() - 0.1


def test_ddnm_needs_an_svd_and_takes_the_dense_one_when_small():
    prior, op, y = setup()
    with pytest.raises(ValueError, match="no closed form.*dense_max=8 "):
        DDNM(n_steps=4, dense_max=8).reconstruct(y, MaskNoSVD(op.mask), prior)
    dense = DDNM(n_steps=4).reconstruct(y, MaskNoSVD(op.mask), prior, torch.Generator().manual_seed(0))
    closed = DDNM(n_steps=4).reconstruct(y, op, prior, torch.Generator().manual_seed(0))
    assert torch.allclose(dense.image, closed.image, atol=1e-4)


def test_ddnm_time_travel_renoises_to_the_earlier_level():
    """With L = 2 the denoiser sees, at step i >= 2, sigma_{i-2}, sigma_{i-1}, sigma_i (the steps taken again)."""
    prior, op, y = setup(b=1)
    levels = []

    class Spy(type(prior)):
        def denoise(self, x, sigma):
            levels.append(round(float(torch.as_tensor(sigma).reshape(-1)[0]), 6))
            return super().denoise(x, sigma)

    spy = Spy(prior.mean, prior.variance, "pixel")
    r = DDNM(n_steps=5, travel=2).reconstruct(y, op, spy, torch.Generator().manual_seed(0))
    from algorithms.diffusion.data_consistency import vp_grid

    s = [round(v, 6) for v in vp_grid(5, "uniform").tolist()]
    assert levels == [s[0], s[0], s[1], s[0], s[1], s[2], s[1], s[2], s[3], s[2], s[3], s[4]]
    assert r.nfe == len(levels) == 12


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_pinv_guidance_svd_and_cg_agree(noise):
    """A^H (A A^H + c)^-1 r: the SVD closed form and CG on the normal equations (c = 0: the pseudo-inverse)."""
    prior, op, y = setup()
    r = y - op.forward(prior.sample(3, torch.Generator().manual_seed(1)))
    c = torch.full((3,), noise**2 * 4.0)
    closed = pinv_guidance(op, r, c)
    cg = pinv_guidance(MaskNoSVD(op.mask), r, c, cg_iters=200, cg_tol=1e-10)
    assert torch.allclose(closed, cg, atol=1e-5)
    assert torch.allclose(closed, op.mask * r / (1 + c.view(-1, 1, 1, 1)), atol=1e-6)


def test_pnpdm_likelihood_draw_routes_agree():
    """The SVD draw and perturb-and-MAP by CG sample the same Gaussian: equal means (no noise) and variances."""
    prior, op, y = setup(b=1)
    n = 4000
    x = prior.sample(1, torch.Generator().manual_seed(2)).expand(n, -1, -1, -1)
    yy = y.expand(n, -1, -1, -1)
    sig = torch.full((n,), 0.05)
    a = likelihood_draw(op, x, yy, 0.2, sig, torch.Generator().manual_seed(3))
    b = likelihood_draw(MaskNoSVD(op.mask), x, yy, 0.2, sig, torch.Generator().manual_seed(4), cg_iters=100, cg_tol=1e-8)
    prec = op.mask / 0.05**2 + 1 / 0.2**2
    mean = (op.mask * y / 0.05**2 + x[:1] / 0.2**2) / prec
    for d in (a, b):
        assert float(((d.mean(0) - mean[0]) * prec.sqrt()).abs().max()) < 5 / n**0.5
        assert float((d.var(0) * prec - 1).abs().max()) < 0.15


def test_reddiff_starts_at_the_pseudo_inverse():
    prior, op, y = setup()
    assert torch.allclose(pseudo_inverse(op, y), op.mask * y)
    assert torch.allclose(pseudo_inverse(MaskNoSVD(op.mask), y), op.mask * y, atol=1e-5)


def test_grids_and_budgets():
    a = PnPDM()
    rhos = a.rhos()
    assert rhos[0] == 10.0 and rhos[-1] == pytest.approx(0.02) and len(rhos) == 100
    assert pnpdm_nfe(a) == 3291
    lv = a.prior_levels(1.0)
    assert lv[0] == 1.0 and lv[-1] == 0 and all(u > v for u, v in zip(lv[:-1], lv[1:]))
    c = CSGM()
    assert len(c.levels()) * c.steps_each == 3465 and 1.2 < c.levels()[0] < 1.26 and c.levels()[-1] == pytest.approx(0.0066)
    sm = ScoreMRI()
    prior, op, y = setup()
    lv = sm.levels(prior)
    assert len(lv) == 2000 and lv[0] == pytest.approx(378.0) and lv[-1] == pytest.approx(0.01)
    prior.sigma_max = 80.0
    assert sm.levels(prior)[0] == pytest.approx(80.0)  # not above the prior's range
    assert DDNM().n_steps == 100 and DDNM().travel == 1


@pytest.mark.parametrize("make,match", [
    (lambda: DDNM(eta=1.5), "eta"), (lambda: DDNM(n_steps=3, travel=3), "travel"),
    (lambda: PiGDM(n_steps=0), "n_steps"), (lambda: PiGDM(eta=-0.1), "eta"),
    (lambda: REDDiff(lam_schedule="cubic"), "lam_schedule"), (lambda: REDDiff(init="noise"), "init"),
    (lambda: PnPDM(rho=0.01, rho_min=0.02), "rho"), (lambda: PnPDM(level_min=0.0), "level"),
    (lambda: LGD(n_mc=0), "n_mc"), (lambda: LGD(zeta=-1.0), "zeta"),
    (lambda: ScoreMRI(sigma_min=400.0), "sigma_max"), (lambda: ScoreMRI(n_steps=1), "n_steps"),
    (lambda: CSGM(data_term="exact"), "data_term"), (lambda: CSGM(start_iter=3000), "start_iter"),
])
def test_bad_options_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("name", NAMES)
def test_runs_without_an_svd_where_it_needs_none(name):
    """Every method but DDNM takes only forward/adjoint (CG where it needs an inverse); on an operator without an SVD
    it runs and keeps the data: observed pixels nearer y than the unobserved ones are to it."""
    if name == "ddnm":
        pytest.skip("DDNM needs an SVD (tested above)")
    make, _ = ROSTER[name]
    prior, op, y = setup()
    r = make().reconstruct(y, MaskNoSVD(op.mask), prior, torch.Generator().manual_seed(0))
    assert not r.failed.any() and torch.isfinite(r.image).all()


@pytest.mark.parametrize("name", NAMES)
def test_search_space_and_yaml_defaults_are_options(name):
    """`bench tune` reads each yaml's `search:` block; every key must be a constructor option (search_space checks),
    and the yaml holds only values that differ from the constructor's defaults."""
    import inspect

    import yaml

    from benchmarks import registry
    from benchmarks.config import CONFIG_DIR, search_space

    space = search_space("algorithms", name)
    assert space, name
    params = inspect.signature(registry.load("algorithms", name)).parameters
    values = {k: v for k, v in (yaml.safe_load((CONFIG_DIR / "algorithm" / f"{name}.yaml").read_text()) or {}).items()
              if k != "search"}
    assert all(k in params and params[k].default != v for k, v in values.items()), values


def test_list_shows_the_roster_with_descriptions():
    out = bench("list", "algorithms").stdout
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  ")}
    for name in NAMES:
        assert name in lines and len(lines[name].split(None, 1)[1]) > 30, out


CLI_FEW_STEPS = {
    "ddnm": ["algorithm.n_steps=3", "algorithm.travel=0"], "pigdm": ["algorithm.n_steps=3"],
    "reddiff": ["algorithm.n_steps=3"], "pnpdm": ["algorithm.n_iters=2", "algorithm.n_levels=4", "algorithm.rho=0.5"],
    "lgd": ["algorithm.n_steps=3", "algorithm.n_mc=2"], "score-mri": ["algorithm.n_steps=10"],  # 2 levels: one 378 -> 0.01 jump
    "csgm": ["algorithm.n_levels=4", "algorithm.start_iter=1", "algorithm.steps_each=1"],
}


# a CLI run costs 10-60 s here (start-up, dataset, prior fit): one in the default suite, the others with -m slow
@pytest.mark.parametrize("name", [n if n == "pigdm" else pytest.param(n, marks=pytest.mark.slow) for n in NAMES])
def test_cli_runs_on_inpainting_with_the_gaussian_prior(name, tmp_path):
    out = tmp_path / name
    bench("run", "--problem", "inpainting", "--algo", name, "--prior", "gaussian", "--n", "1", "--quiet",
          "--out", str(out), "prior.n=16", *CLI_FEW_STEPS[name])
    rows = [json.loads(ln) for ln in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["nfe"] > 0, rows


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_cli_runs_on_cs_mri_with_the_shipped_prior(name, tmp_path):
    """cs_mri's defaults (8 coils, 64 x 64, the shipped brain-64 prior); DDNM, which needs an SVD, on its single-coil
    variant (the 8-coil dense SVD costs about a minute per sample)."""
    out = tmp_path / name
    extra = ["problem.coils=1"] if name == "ddnm" else []
    bench("run", "--problem", "cs_mri", "--algo", name, "--n", "1", "--quiet", "--out", str(out), *extra,
          *CLI_FEW_STEPS[name])
    rows = [json.loads(ln) for ln in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["nfe"] > 0, rows
