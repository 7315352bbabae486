"""The suite's solvers against their reference code, run outside the project (issue 28, "faithful").

tests/fixtures/inversebench_reference.json holds outputs of devzhk/InverseBench's `algo/*.py` (CSGM, LGD),
NVlabs/RED-diff's `algos/reddiff.py` and `algos/pgdm.py` (RED-diff, the ΠGDM authors' code) and HJ-harry/score-MRI's
`sampling.py` (commits and torch version recorded in it), made by benchmarks/experiments/inversebench_reference.py
(`--inversebench PATH --red-diff PATH --score-mri PATH`) on that script's problems: random inpainting of a 16 x 16
image (noise 0.05) with a pixel-diagonal Gaussian prior, and noiseless single-coil MRI with a stationary one, whose
exact denoisers stand in for the reference's network. What is exact:
  - CSGM: with InverseBench's random draws replayed (the uniform start and one normal draw per Langevin step from the
    recorded generator), the suite's CSGM at InverseBench's MRI configuration must give InverseBench's final image
    pixel for pixel (to float32 rounding over 3465 steps): the whole update rule, the ladder, the start level and the
    normalised data term, not a statistic;
  - DDNM: InverseBench's DDNM+ (time travel L = 1, eta 0.85) on the noiseless problem, with its draws replayed and its
    VE grid handed to the suite's DDNM (which uses the official VP grid), must give the same image pixel for pixel:
    the range-null-space correction, the DDIM direction from the corrected x̂0, the noise and the time travel
    (InverseBench also draws the re-noising at step 0, multiplied by 0: the replay skips that draw);
  - RED-diff: with the official draws replayed (two a step, the unused noise_x0 first), the suite's `reddiff` at the
    official `reddiff.yaml` values must give the official final mu pixel for pixel. The official losses are means
    (the data term over H's outputs, the observed pixels; the noise term over all pixels) where the suite's gradient
    is obs_weight 2 A^H(A mu - y) + lam_t (eps_hat - eps): Adam is blind to a common factor, so the official
    obs_weight 1 is the suite's (1/2)(pixels / observed pixels);
  - ΠGDM: the authors' PGDM (in the RED-diff repository, `pgdm.yaml`: eta 0, weight 1, noiseless pseudo-inverse
    guidance J^T A^+(y - A x̂0)) with its start replayed must give the suite's `pigdm` at eta 0 pixel for pixel. The
    authors start at A^+ y + sigma_T z (in EDM units), the suite at sigma_T z (deviations table): the replay hands the
    suite's start the draw z + A^+ y / sigma_T;
  - score-MRI: the official single-coil sampler (`get_pc_fouriercs_RI`: the predictor on the real and imaginary parts
    separately, k-space replacement, the last x_mean) with its draws replayed (a real start; per level the real part's
    draw, then the imaginary part's) must give the suite's `score-mri` without corrector, pixel for pixel, on
    noiseless single-coil MRI. The corrector is left out of the replay: the official one normalises its step over each
    part, the suite's over the whole complex image (deviations table), so its draws scale differently;
  - LGD: InverseBench's LGD is Euler-Maruyama on the VP SDE, the suite's the ancestral step of the same process on the
    DDPM table's grid (docs/solvers.md, deviations), so the draws cannot be replayed. Over 384 runs at InverseBench's
    1000 steps, with its guidance scale converted (zeta = scale / sqrt(n_mc): InverseBench divides by the root of the
    summed, not the mean, loss), the per-pixel means must agree within Monte-Carlo error and the unobserved pixels
    (which the guidance does not touch) must have the same variance. The observed pixels' variance is not pinned: it
    is steep in zeta (measured: zeta 0.1 gives 4.7x InverseBench's, the converted 0.173 gives 0.5x, 0.3 gives 0.17x),
    so the grids' small difference in guidance per step moves it by a factor; only that factor's range is checked.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import algorithms.diffusion.csgm as csgm_module
import algorithms.diffusion.ddnm as ddnm_module
import algorithms.diffusion.pigdm as pigdm_module
import algorithms.diffusion.reddiff as reddiff_module
import algorithms.diffusion.score_mri as score_mri_module
import benchmarks.experiments.inversebench_reference as inversebench_reference
from algorithms.diffusion.csgm import CSGM
from algorithms.diffusion.ddnm import DDNM
from algorithms.diffusion.lgd import LGD
from algorithms.diffusion.pigdm import PiGDM
from algorithms.diffusion.reddiff import REDDiff
from algorithms.diffusion.score_mri import ScoreMRI
from inverse_problems.operators.inpainting import Inpainting
from priors.analytic import GaussianPrior

REFERENCE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "inversebench_reference.json").read_text())
H = REFERENCE["problem"]["H"]


def problem() -> tuple[GaussianPrior, Inpainting, torch.Tensor]:
    """The reference script's inpainting problem (its recipe, in plain torch) as the suite's prior and operator."""
    p = inversebench_reference.problem()
    op = Inpainting(p["mask"], 1, noise_std=inversebench_reference.NOISE)
    return GaussianPrior(p["mean"], p["var"], "pixel"), op, p["y"]


def csgm_replay(monkeypatch: pytest.MonkeyPatch, **options) -> torch.Tensor:
    """The suite's CSGM at InverseBench's configuration with its draws: the start from torch.rand, then one normal draw
    per Langevin step."""
    cfg = REFERENCE["csgm"]["config"]
    prior, op, y = problem()
    noise = torch.Generator().manual_seed(inversebench_reference.NOISE_SEED)
    monkeypatch.setattr(csgm_module, "rand", lambda shape, generator, device: torch.rand(shape, generator=noise))
    monkeypatch.setattr(csgm_module, "randn", lambda like, generator: torch.randn(like.shape, generator=noise))
    algorithm = CSGM(**{"n_levels": cfg["num_steps"], "start_iter": cfg["start_iter"],
                        "steps_each": cfg["n_steps_each"], "step_lr": cfg["step_lr"], "mse": cfg["mse"],
                        "sigma_begin": cfg["sigma_begin"], "sigma_end": cfg["sigma_end"], **options})
    return algorithm.reconstruct(y, op, prior).image


def test_csgm_ladder_is_inversebench_s() -> None:
    levels = CSGM().levels()  # the levels visited after start_iter (1155)
    assert [levels[0], levels[1800 - 1156], levels[-1]] == pytest.approx(REFERENCE["csgm"]["sigmas"], rel=1e-9)


def ddnm_replay(monkeypatch: pytest.MonkeyPatch, **options) -> torch.Tensor:
    """The suite's DDNM on InverseBench's grid with its draws, on the noiseless problem."""
    ref = REFERENCE["ddnm"]
    prior, op, y = problem()
    op.set_noise_std(0.0)
    noise = torch.Generator().manual_seed(inversebench_reference.NOISE_SEED)
    calls = []

    def draw(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if len(calls) == 1:  # InverseBench's re-noising draw at step 0 (L = 0 there), unused
            torch.randn(like.shape, generator=noise)
        calls.append(1)
        return torch.randn(like.shape, generator=noise)

    monkeypatch.setattr(ddnm_module, "randn", draw)
    monkeypatch.setattr(ddnm_module, "vp_grid", lambda n, spacing: torch.tensor(ref["sigmas"]))
    algorithm = DDNM(**{"n_steps": ref["config"]["scheduler_config"]["num_steps"], "eta": ref["config"]["eta"],
                        "travel": ref["config"]["L"], **options})
    return algorithm.reconstruct(y, op, prior).image


def reddiff_replay(monkeypatch: pytest.MonkeyPatch, lam: float | None = None) -> torch.Tensor:
    """The suite's RED-diff at the official configuration, with the official draws (noise_x0, then noise_xt)."""
    ref = REFERENCE["reddiff"]
    cfg = ref["config"]
    prior, op, y = problem()
    noise = torch.Generator().manual_seed(inversebench_reference.NOISE_SEED)

    def second_draw(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        torch.randn(like.shape, generator=noise)  # the official noise_x0, unused at sigma_x0 = 0
        return torch.randn(like.shape, generator=noise)

    monkeypatch.setattr(reddiff_module, "randn", second_draw)
    algorithm = REDDiff(n_steps=cfg["num_steps"], lr=cfg["lr"], lam=cfg["grad_term_weight"] if lam is None else lam,
                        lam_schedule=cfg["denoise_term_weight"],
                        obs_weight=cfg["obs_weight"] / (2 * ref["observed_fraction"]))
    return algorithm.reconstruct(y, op, prior).image


def test_reddiff_replays_the_official_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pixel for pixel up to float32 rounding, which Adam amplifies where a pixel's gradient is near zero (its step is
    g / sqrt(v): the sign of a tiny g decides it): measured median 6e-6, largest 1.1e-3 at one unobserved pixel."""
    x = reddiff_replay(monkeypatch)
    d = (x - torch.tensor(REFERENCE["reddiff"]["x"]).reshape(x.shape)).abs()
    assert float(d.median()) < 2e-5 and float(d.max()) < 3e-3, (float(d.median()), float(d.max()))


def test_reddiff_replay_notices_a_perturbed_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 10 % change of the regulariser's weight moves the median pixel 18 times the replay's own difference."""
    x = reddiff_replay(monkeypatch, lam=0.9 * REFERENCE["reddiff"]["config"]["grad_term_weight"])
    assert float((x - torch.tensor(REFERENCE["reddiff"]["x"]).reshape(x.shape)).abs().median()) > 5e-5


def pigdm_replay(monkeypatch: pytest.MonkeyPatch, **options) -> torch.Tensor:
    """The suite's ΠGDM at eta 0 on the noiseless problem, started where the authors' code starts."""
    ref = REFERENCE["pigdm"]
    prior, op, y = problem()
    op.set_noise_std(0.0)
    noise = torch.Generator().manual_seed(inversebench_reference.NOISE_SEED)
    start = torch.randn(y.shape, generator=noise) + op.pinv(y) / ref["start_sigma"]
    draws = iter([start])
    monkeypatch.setattr(pigdm_module, "randn", lambda like, generator: next(draws, torch.zeros_like(like)))
    algorithm = PiGDM(**{"n_steps": ref["config"]["num_steps"], "eta": 0.0, **options})
    return algorithm.reconstruct(y, op, prior).image


def score_mri_replay(monkeypatch: pytest.MonkeyPatch, **options) -> torch.Tensor:
    """The suite's score-MRI, predictor only, on the reference's single-coil problem with the official draws."""
    from inverse_problems.operators.mri import SingleCoilMRI

    cfg = REFERENCE["score-mri"]["config"]
    q = inversebench_reference.mri_problem()
    prior = GaussianPrior(torch.zeros(2, H, H), q["spec"].expand(2, H, H).clone(), "fourier")
    op = SingleCoilMRI(q["mask"], noise_std=0.0)
    y = op.forward(q["x"][None])
    noise = torch.Generator().manual_seed(inversebench_reference.NOISE_SEED)
    calls = []

    def parts(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        real = torch.randn((1, 1, H, H), generator=noise)  # the start is real (the official prior_sampling)
        imag = torch.zeros_like(real) if not calls else torch.randn((1, 1, H, H), generator=noise)
        calls.append(1)
        return torch.cat([real, imag], 1)

    monkeypatch.setattr(score_mri_module, "randn", parts)
    algorithm = ScoreMRI(**{"n_steps": cfg["N"], "sigma_min": cfg["sigma_min"], "sigma_max": cfg["sigma_max"],
                            "corrector_steps": 0, **options})
    return algorithm.reconstruct(y, op, prior).image


# name: (replay, tolerance on the largest pixel difference, a perturbed option, the difference it must at least make).
# Measured: the replays agree to 1.0e-7 (CSGM), 3.9e-6 (DDNM), 4.5e-7 (ΠGDM) and 6.4e-6 (score-MRI); the perturbations
# move the image by 9000 (DDNM: eta 0.8), 2600 (ΠGDM: weight 0.9) and 850 (score-MRI: half a data step) times that.
REPLAYS = {"csgm": (csgm_replay, 2e-5, {"mse": 0.33}, 1e-2), "ddnm": (ddnm_replay, 5e-5, {"eta": 0.8}, 1e-2),
           "pigdm": (pigdm_replay, 5e-5, {"weight": 0.9}, 1e-3),
           "score-mri": (score_mri_replay, 5e-5, {"lam": 0.5}, 1e-3)}


def largest_difference(name: str, x: torch.Tensor) -> float:
    return float((x - torch.tensor(REFERENCE[name]["x"]).reshape(x.shape)).abs().max())


@pytest.mark.parametrize("name", sorted(REPLAYS))
def test_replays_the_reference(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    replay, tolerance, _, _ = REPLAYS[name]
    assert largest_difference(name, replay(monkeypatch)) < tolerance


@pytest.mark.parametrize("name", sorted(REPLAYS))
def test_the_replay_notices_a_perturbed_update(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    replay, _, perturbed, moved = REPLAYS[name]
    assert largest_difference(name, replay(monkeypatch, **perturbed)) > moved


@pytest.mark.slow
def test_lgd_matches_inversebench_in_distribution() -> None:
    ref = REFERENCE["lgd"]
    prior, op, y = problem()
    n, n_mc = ref["n"], ref["config"]["num_samples"]
    zeta = ref["config"]["guidance_scale"] / math.sqrt(n_mc)
    algorithm = LGD(n_steps=ref["config"]["diffusion_scheduler_config"]["num_steps"], zeta=zeta, n_mc=n_mc)
    xs = algorithm.reconstruct(y.expand(n, -1, -1, -1).contiguous(), op, prior, torch.Generator().manual_seed(3)).image
    m_ref = torch.tensor(ref["mean"]).reshape(xs.shape[1:])
    v_ref = torch.tensor(ref["var"]).reshape(xs.shape[1:])
    z = (xs.mean(0) - m_ref) / ((xs.var(0) + v_ref) / n).sqrt()  # ~ N(0, 1) per pixel when the means agree
    assert float(z.pow(2).mean().sqrt()) < 1.6, float(z.pow(2).mean().sqrt())
    observed = op.mask.bool().expand_as(v_ref)
    ratio = xs.var(0) / v_ref
    assert 0.85 < float(ratio[~observed].median()) < 1.15, float(ratio[~observed].median())
    assert 0.3 < float(ratio[observed].median()) < 1.5, float(ratio[observed].median())
