"""Priors (issue 4): exact analytic denoisers, the VP -> EDM wrapper, save/load, the EDM sampler, shipped prior."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from inverse_problems.operators.base import ForwardOperator
from priors.analytic import GaussianMixturePrior, GaussianPrior, gaussian_posterior, gmm_posterior
from priors.diffusers_prior import DiffusersPrior
from priors.sampling import pf_ode_sample, sample_prior
from priors.schedules import karras_sigmas, t_to_sigma, vp_alphas_cumprod

torch.set_num_threads(1)


def random_gaussian(shape=(1, 16, 16), basis="fourier", seed=0) -> GaussianPrior:
    g = torch.Generator().manual_seed(seed)
    mean = 0.3 * torch.randn(shape, generator=g)
    var = 0.05 + torch.rand(shape, generator=g)
    return GaussianPrior(mean, var, basis)


def random_gmm(k=3, shape=(1, 8, 8), basis="fourier", seed=0) -> GaussianMixturePrior:
    g = torch.Generator().manual_seed(seed)
    weights = 0.2 + torch.rand(k, generator=g)
    means = torch.randn((k, *shape), generator=g)
    var = 0.02 + 0.3 * torch.rand((k, *shape), generator=g)
    return GaussianMixturePrior(weights, means, var, basis)


def dense_gmm_denoise(prior: GaussianMixturePrior, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Direct evaluation in float64: densities N(x; mu_k, S_k + s^2 I) and posterior means, dense."""
    n = x[0].numel()
    out = []
    for b in range(x.shape[0]):
        xb = x[b].reshape(-1).double()
        logp, dk = [], []
        for k in range(prior.components):
            comp = prior.component(k)
            cov = comp.covariance().double()
            noisy = cov + sigma[b].double() ** 2 * torch.eye(n, dtype=torch.float64)
            mu = comp.mean.reshape(-1).double()
            logp.append(prior.log_weights[k].double()
                        + torch.distributions.MultivariateNormal(mu, covariance_matrix=noisy).log_prob(xb))
            dk.append(mu + cov @ torch.linalg.solve(noisy, xb - mu))
        r = torch.softmax(torch.stack(logp), 0)
        out.append((r[:, None] * torch.stack(dk)).sum(0).reshape(x.shape[1:]))
    return torch.stack(out).float()


@pytest.mark.parametrize("basis", ["pixel", "fourier"])
def test_gaussian_denoiser_equals_dense_posterior_mean(basis):
    prior = random_gaussian(basis=basis)
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.05, 0.4, 2.0])
    cov = prior.covariance().double()
    n = cov.shape[0]
    ref = []
    for b in range(3):
        mu = prior.mean.reshape(-1).double()
        gain = cov @ torch.linalg.inv(cov + sigma[b].double() ** 2 * torch.eye(n, dtype=torch.float64))
        ref.append((mu + gain @ (x[b].reshape(-1).double() - mu)).reshape(1, 16, 16))
    torch.testing.assert_close(prior.denoise(x, sigma), torch.stack(ref).float(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("basis", ["pixel", "fourier"])
def test_gmm_denoiser_equals_direct_mixture_posterior(basis):
    prior = random_gmm(basis=basis)
    # points near different components and far from all, at low, middle and high noise
    g = torch.Generator().manual_seed(2)
    x = torch.stack([prior.means[0], prior.means[1], prior.means[2], torch.zeros_like(prior.means[0])])
    x = x + 0.5 * torch.randn(x.shape, generator=g)
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0])
    got = prior.denoise(x, sigma)
    torch.testing.assert_close(got, dense_gmm_denoise(prior, x, sigma), rtol=1e-4, atol=1e-4)
    r = prior.responsibilities(x, sigma)
    assert torch.allclose(r.sum(1), torch.ones(4)) and r[0, 0] > 0.5 and r[1, 1] > 0.5


def test_gmm_with_one_component_is_the_gaussian_fit():
    images = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(3)).cumsum(-1)
    gauss = GaussianPrior.fit(images, "fourier")
    gmm = GaussianMixturePrior.fit(images, components=1, basis="fourier", floor=0.0)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(gmm.denoise(x, 0.3), gauss.denoise(x, 0.3), rtol=1e-5, atol=1e-5)


def test_gmm_fit_recovers_separated_components():
    truth = random_gmm(k=2, shape=(1, 8, 8), basis="pixel", seed=5)
    with torch.no_grad():
        truth.means[1] += 4.0  # well separated
    data = truth.sample(600, torch.Generator().manual_seed(6))
    fit = GaussianMixturePrior.fit(data, components=2, basis="pixel")
    order = fit.means.mean((1, 2, 3)).argsort()
    assert torch.allclose(fit.log_weights.exp()[order], truth.log_weights.exp(), atol=0.06)
    assert (fit.means[order] - truth.means).abs().max() < 0.2
    assert ((fit.variances[order] / truth.variances).log().abs().mean()) < 0.15


class Identity(ForwardOperator):
    """y = x + n: the posterior mean is then the denoiser at sigma = noise_std, exactly."""

    def __init__(self, shape, noise_std):
        super().__init__(noise_std)
        self.image_shape = shape
        self.measurement_shape = shape

    def forward(self, x):
        return x

    def adjoint(self, y):
        return y


def test_gmm_posterior_under_identity_is_the_denoiser():
    prior = random_gmm(k=2, shape=(1, 4, 4), basis="fourier", seed=7)
    op = Identity((1, 4, 4), 0.3)
    y = prior.sample(3, torch.Generator().manual_seed(8)) + 0.3 * torch.randn(3, 1, 4, 4)
    weights, comp_means, mean = gmm_posterior(prior, op, y)
    torch.testing.assert_close(mean, prior.denoise(y, 0.3), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(weights, prior.responsibilities(y, 0.3), rtol=1e-4, atol=1e-4)
    # each component's posterior mean is the Gaussian posterior of that component
    m1, _ = gaussian_posterior(prior.component(1), op, y)
    torch.testing.assert_close(comp_means[:, 1], m1)


def test_pf_ode_converges_to_closed_form_flow_at_second_order():
    # white Gaussian N(mu, lam I): the PF-ODE moves x along x(s) = mu + sqrt((lam + s^2)/(lam + s0^2)) (x0 - mu)
    lam, mu = 0.5, 0.7
    prior = GaussianPrior(torch.full((1, 4, 4), mu), torch.full((1, 4, 4), lam), "pixel")
    x0 = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(9)) * 10
    exact = mu + math.sqrt((lam + 0.1**2) / (lam + 100.0)) * (x0 - mu)
    errors = {}
    for heun in (True, False):
        for n in (20, 40):
            sig = karras_sigmas(n, 10.0, 0.1, append_zero=False)
            errors[heun, n] = float((pf_ode_sample(prior.denoise, x0, sig, heun=heun) - exact).abs().max())
    assert errors[True, 40] < 5e-3
    assert 3.5 < errors[True, 20] / errors[True, 40] < 4.5  # Heun: 2nd order
    assert 1.7 < errors[False, 20] / errors[False, 40] < 2.3  # Euler: 1st order
    calls = []

    def counted(x, s):
        calls.append(s)
        assert s.shape == (2,)
        return prior.denoise(x, s)

    pf_ode_sample(counted, x0, karras_sigmas(5, 10.0, 0.1, append_zero=False), heun=True)
    assert len(calls) == 2 * 4
    calls.clear()
    to_zero = pf_ode_sample(counted, x0, torch.tensor([10.0, 1.0, 0.0]), heun=True)
    assert len(calls) == 3  # no Heun correction on the step to sigma = 0
    x1 = pf_ode_sample(prior.denoise, x0, torch.tensor([10.0, 1.0]), heun=True)
    torch.testing.assert_close(to_zero, prior.denoise(x1, 1.0))  # an Euler step to 0 lands on D(x, sigma)
    with pytest.raises(ValueError, match="non-increasing"):
        pf_ode_sample(prior.denoise, x0, torch.tensor([0.1, 1.0]))


def test_sample_prior_draws_from_the_gaussian():
    prior = GaussianPrior(torch.zeros(1, 8, 8), torch.full((1, 8, 8), 0.25), "pixel")
    x = sample_prior(prior, 64, steps=30, generator=torch.Generator().manual_seed(10), sigma_max=20.0)
    assert abs(float(x.std()) - 0.5) < 0.03 and abs(float(x.mean())) < 0.03


class ExactVPModel(nn.Module):
    """A 'UNet' written in VP form from a Gaussian prior's exact denoiser: (x_vp, t) -> eps, x0 or v."""

    def __init__(self, prior: GaussianPrior, prediction: str, abar: torch.Tensor):
        super().__init__()
        self.prior, self.prediction, self.abar = prior, prediction, abar
        self.dummy = nn.Parameter(torch.zeros(()))  # something to carry a dtype/device
        self.in_channels, self.sample_size = prior.channels, prior.resolution[0]

    def forward(self, x_vp, t):
        sigma = t_to_sigma(t, self.abar).double().view(-1, 1, 1, 1)
        a = 1 / (1 + sigma**2)
        x = x_vp.double() / a.sqrt()
        x0 = self.prior.denoise(x.float(), sigma.flatten().float()).double()
        eps = (x_vp.double() - a.sqrt() * x0) / (1 - a).sqrt()
        out = {"epsilon": eps, "sample": x0, "v_prediction": a.sqrt() * eps - (1 - a).sqrt() * x0}[self.prediction]
        return out.float()


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
def test_vp_to_edm_conversion_is_exact(prediction):
    gauss = random_gaussian(shape=(2, 8, 8), seed=11)
    config = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear",
              "prediction_type": prediction}
    abar = vp_alphas_cumprod()
    prior = DiffusersPrior(unet=ExactVPModel(gauss, prediction, abar), scheduler_config=config)
    assert prior.prediction_type == prediction and prior.channels == 2 and prior.resolution == (8, 8)
    assert math.isclose(prior.sigma_min, math.sqrt(1e-4 / (1 - 1e-4)), rel_tol=1e-6)
    torch.testing.assert_close(prior.alphas_cumprod, abar)
    x = gauss.sample(4, torch.Generator().manual_seed(12))
    sigma = torch.tensor([0.02, 0.3, 1.0, 20.0])
    x = x + sigma.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=torch.Generator().manual_seed(13))
    torch.testing.assert_close(prior.denoise(x, sigma), gauss.denoise(x, sigma), rtol=2e-4, atol=2e-4)
    for s in (0.05, 5.0):  # a float sigma too
        torch.testing.assert_close(prior.denoise(x, s), gauss.denoise(x, s), rtol=2e-4, atol=2e-4)


def tiny_unet(channels=2, size=16):
    from priors.training.loop import build_unet

    torch.manual_seed(0)
    return build_unet(channels, size, "tiny")


def test_save_load_round_trip_bit_for_bit(tmp_path):
    from safetensors.torch import load_file

    config = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear",
              "prediction_type": "v_prediction"}
    prior = DiffusersPrior(unet=tiny_unet(), scheduler_config=config)
    prior.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors").exists()
    again = DiffusersPrior(path=str(tmp_path / "m"))
    assert again.prediction_type == "v_prediction" and again.resolution == (16, 16) and again.channels == 2
    saved = load_file(tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors")
    for k, v in prior.unet.state_dict().items():
        assert torch.equal(v, again.unet.state_dict()[k]) and torch.equal(v, saved[k]), k
    x = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(14))
    with torch.no_grad():
        assert torch.equal(prior.denoise(x, 0.5), again.denoise(x, 0.5))
    # the bare-model layout (config.json + scheduler_config.json in one folder) and an explicit subfolder load too
    bare = DiffusersPrior(path=str(tmp_path / "m"), subfolder="unet")
    assert bare.prediction_type == "v_prediction"
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(str(tmp_path / "m"))  # a standard diffusers pipeline directory
    assert pipe.scheduler.config.prediction_type == "v_prediction"


def test_missing_path_names_path_and_command(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"nowhere.*bench train-prior"):
        DiffusersPrior(path=str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty.*bench train-prior"):
        DiffusersPrior(path=str(tmp_path / "empty"))
    from priors.shipped import phantom_brain_64

    with pytest.raises(FileNotFoundError, match=r"nowhere.*bench train-prior --dataset phantom-brain-t2"):
        phantom_brain_64(path=str(missing))


def test_shape_mismatch_is_refused_with_both_shapes():
    config = {"beta_schedule": "linear", "prediction_type": "epsilon"}
    prior = DiffusersPrior(unet=tiny_unet(2, 16), scheduler_config=config)
    prior.check_compatible((2, 16, 16))
    with pytest.raises(ValueError, match=r"\(2, 16, 16\).*\(1, 32, 32\)"):
        prior.check_compatible((1, 32, 32), "problem 'inpainting'")


def test_gmm_prior_shape_mismatch_refused_by_bench_run(plugin_path, tmp_path):
    from tests.helpers import bench

    out = tmp_path / "r"
    res = bench("run", "--problem", "inpainting", "--algo", "denoise-adjoint", "--prior", "gmm", "--n", "1",
                "prior.dataset_options.size=16", "prior.n=8", "prior.em_iters=1", "--out", str(out),
                check=False, plugin=plugin_path)
    assert res.returncode == 2, res.stderr
    assert "GaussianMixturePrior" in res.stderr and "(1, 16, 16)" in res.stderr and "(1, 32, 32)" in res.stderr
    assert not (out / "samples.jsonl").exists()


def test_gmm_prior_runs_through_bench(plugin_path, tmp_path):
    from tests.helpers import bench

    bench("run", "--problem", "inpainting", "--algo", "denoise-adjoint", "--prior", "gmm", "--n", "2",
          "prior.n=16", "prior.components=2", "--out", str(tmp_path / "r"), plugin=plugin_path)
    assert (tmp_path / "r" / "samples.jsonl").read_text().count('"status": "ok"') == 2


def test_bad_options_are_refused():
    config = {"beta_schedule": "linear", "prediction_type": "epsilon"}
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusersPrior(unet=tiny_unet(), scheduler_config=config, prediction_type="score")
    with pytest.raises(ValueError, match="dtype"):
        DiffusersPrior(unet=tiny_unet(), scheduler_config=config, dtype="float17")
    with pytest.raises(ValueError, match="path"):
        DiffusersPrior()
    with pytest.raises(ValueError, match="basis"):
        GaussianMixturePrior(torch.ones(1), torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4), "wavelet")


def test_shipped_prior_loads_from_package_data_and_denoises_phantoms():
    from inverse_problems.data.phantoms.datasets import BrainT2
    from priors.shipped import WEIGHTS, phantom_brain_64

    prior = phantom_brain_64()
    assert prior.channels == 2 and prior.resolution == (64, 64) and prior.prediction_type == "v_prediction"
    meta = json.loads((WEIGHTS / "metadata.json").read_text())
    assert meta["dataset"] == "phantom-brain-t2" and meta["size"] == 64
    assert (WEIGHTS / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size <= 20 * 2**20
    ds = BrainT2("test", 64, length=2)
    x0 = torch.stack([ds[i]["image"] for i in range(2)])
    noisy = x0 + 0.2 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(15))
    with torch.no_grad():
        den = prior.denoise(noisy, 0.2)
    assert float((den - x0).pow(2).mean()) < 0.25 * float((noisy - x0).pow(2).mean())


def test_shipped_prior_mismatch_refused_by_bench_run(plugin_path, tmp_path):
    from tests.helpers import bench

    out = tmp_path / "r"
    res = bench("run", "--problem", "inpainting", "--algo", "denoise-adjoint", "--prior", "phantom-brain-64",
                "--n", "1", "--out", str(out), check=False, plugin=plugin_path)
    assert res.returncode == 2, res.stderr
    assert "(2, 64, 64)" in res.stderr and "(1, 32, 32)" in res.stderr
    assert not (out / "samples.jsonl").exists()


def test_brain_64_loads_from_package_data_and_denoises_anatomy(tmp_path):
    """The default prior: the EDM network of priors/weights/brain-64, trained on anatomy-brain-mix; it denoises
    anatomical test phantoms of a contrast it saw, and missing weights name the command that makes them."""
    from inverse_problems.data.phantoms.anatomy import AnatomyBrainT1
    from priors.shipped import BRAIN_64, brain_64

    prior = brain_64()
    assert prior.channels == 2 and prior.resolution == (64, 64)
    meta = json.loads((BRAIN_64 / "metadata.json").read_text())
    assert meta["dataset"] == "anatomy-brain-mix" and meta["recipe"] == "edm" and meta["size"] == 64
    assert (BRAIN_64 / "model.pt").stat().st_size <= 20 * 2**20
    ds = AnatomyBrainT1("test", 64, length=2)
    x0 = torch.stack([ds[i]["image"] for i in range(2)])
    noisy = x0 + 0.2 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(15))
    with torch.no_grad():
        den = prior.denoise(noisy, 0.2)
    assert float((den - x0).pow(2).mean()) < 0.25 * float((noisy - x0).pow(2).mean())
    with pytest.raises(FileNotFoundError, match=r"nowhere.*bench train-prior --recipe edm"):
        brain_64(path=str(tmp_path / "nowhere"))


def test_knee_64_loads_from_package_data_and_denoises_knees_better_than_brains(tmp_path):
    """The knee source-domain prior: brain-64's network trained on procedural knee PD phantoms; it denoises held-out
    knee phantoms, better than the brain prior does, and missing weights name the command that makes them."""
    from inverse_problems.data.phantoms.datasets import KneePD
    from priors.shipped import KNEE_64, brain_64, knee_64

    prior = knee_64()
    assert prior.channels == 2 and prior.resolution == (64, 64)
    meta = json.loads((KNEE_64 / "metadata.json").read_text())
    assert meta["dataset"] == "phantom-knee-pd" and meta["recipe"] == "edm" and meta["size"] == 64
    assert meta["network"] == json.loads((KNEE_64 / "model.json").read_text())
    assert (KNEE_64 / "model.pt").stat().st_size <= 20 * 2**20
    ds = KneePD("test", 64, length=4)
    x0 = torch.stack([ds[i]["image"] for i in range(4)])
    noisy = x0 + 0.2 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(15))
    with torch.no_grad():
        knee, brain = prior.denoise(noisy, 0.2), brain_64().denoise(noisy, 0.2)
    err = float((knee - x0).pow(2).mean())
    assert err < 0.25 * float((noisy - x0).pow(2).mean()) and err < float((brain - x0).pow(2).mean())
    with pytest.raises(FileNotFoundError, match=r"nowhere.*--dataset phantom-knee-pd"):
        knee_64(path=str(tmp_path / "nowhere"))
