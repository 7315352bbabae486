"""Test-time adaptation: TDA (physical and network), AIR, prior-affine, honest evaluation."""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import Tensor, nn

from algorithms.base import Algorithm, Reconstruction, Step
from priors.schedules import karras_sigmas
from tests.helpers import HQS, ListDataset, PhaseMRI, PhaseProblem, phase_prior, sampling_mask


# ---------------------------------------------------------------------------------------------- tests
import math  # noqa: E402

import pytest  # noqa: E402

from adaptation.sampler.air import AIR, air_weights  # noqa: E402
from adaptation.base import DEGRADATION, AdaptedAlgorithm, Adapter, adaptable_parameters  # noqa: E402
from adaptation.sampler.losses import total_variation  # noqa: E402
from adaptation.sampler.prior_affine import AffinePrior, PriorAffine  # noqa: E402
from adaptation.sampler.tda import TDA, ConvAdapter, NetworkAdaptedOperator, NetworkTDA  # noqa: E402
from benchmarks.batch import run_batch  # noqa: E402
from benchmarks.build import Components  # noqa: E402
from inverse_problems.problems.base import ProblemInstance  # noqa: E402
from inverse_problems.operators.inpainting import Inpainting  # noqa: E402
from inverse_problems.operators.linalg import batch_dot  # noqa: E402
from priors.base import Prior  # noqa: E402


def rel_err(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)


@pytest.fixture(scope="module")
def phase_setup():
    prior = phase_prior(16)
    x = prior.sample(2, torch.Generator().manual_seed(1))
    return prior, x, PhaseProblem(16, true_phase=0.4)


def test_phase_operator_adjoint_is_exact():
    op = PhaseMRI(sampling_mask(16), phase=0.7)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 16, 16, generator=g)
    y = torch.complex(torch.randn(2, 1, 16, 16, generator=g), torch.randn(2, 1, 16, 16, generator=g))
    assert torch.allclose(batch_dot(op(x), y), batch_dot(x, op.adjoint(y)), rtol=1e-4, atol=1e-4)


def test_tda_physical_recovers_global_phase(phase_setup):
    prior, x, problem = phase_setup
    inst = problem.simulate(x, torch.Generator().manual_seed(0))
    assert float(inst.operator.phase) == 0.0
    tda = TDA(kind="physical", lr=0.05, iters=3, sigma_max=math.inf)
    rec = AdaptedAlgorithm(HQS(30), [tda]).reconstruct(inst.y, inst.operator, prior, torch.Generator().manual_seed(0))
    # adapted in place on the operator the solver used, and recorded in the trace
    assert abs(float(inst.operator.phase) - 0.4) < 0.02
    (entry,) = [t for t in rec.trace if t["adapter"] == "tda"]
    assert entry["initial"]["phase"] == 0.0 and abs(entry["final"]["phase"] - 0.4) < 0.02
    assert entry["steps_adapted"] == 30 and entry["loss_last"] < 0.1 * entry["loss_first"]
    adapted = rel_err(rec.image * inst.scale.view(-1, 1, 1, 1), x)

    plain = problem.simulate(x, torch.Generator().manual_seed(0))
    unadapted = rel_err(HQS(30).reconstruct(plain.y, plain.operator, prior, torch.Generator().manual_seed(0)).image
                        * plain.scale.view(-1, 1, 1, 1), x)
    assert float(adapted.mean()) < float(unadapted.mean()) - 0.08


def test_tda_sigma_threshold_and_every(phase_setup):
    prior, x, problem = phase_setup
    inst = problem.simulate(x, torch.Generator().manual_seed(0))
    tda = TDA(lr=0.05, every=2, sigma_max=0.5)
    steps = 20
    AdaptedAlgorithm(HQS(steps), [tda]).reconstruct(inst.y, inst.operator, prior, torch.Generator().manual_seed(0))
    sig = karras_sigmas(steps, 2.0, 0.01)[:steps]
    expected = sum(1 for i in range(steps) if i % 2 == 0 and sig[i] <= 0.5)
    assert tda.history[-1]["steps_adapted"] == expected > 0


def test_tda_per_parameter_threshold_and_lr(phase_setup):
    prior, x, problem = phase_setup
    inst = problem.simulate(x, torch.Generator().manual_seed(0))
    tda = TDA(lr=0.05, sigma_max=math.inf, param_sigma_max={"phase": -1.0})  # never below its threshold: frozen
    AdaptedAlgorithm(HQS(6), [tda]).reconstruct(inst.y, inst.operator, prior, torch.Generator().manual_seed(0))
    assert float(inst.operator.phase) == 0.0 and tda.history[-1]["steps_adapted"] == 0  # nothing below threshold
    inst = problem.simulate(x, torch.Generator().manual_seed(0))
    tda = TDA(lr=1e-9, param_lr={"phase": 0.05}, iters=3, sigma_max=math.inf)
    AdaptedAlgorithm(HQS(30), [tda]).reconstruct(inst.y, inst.operator, prior, torch.Generator().manual_seed(0))
    assert abs(float(inst.operator.phase) - 0.4) < 0.02
    with pytest.raises(ValueError, match="valid: phase"):
        TDA(param_lr={"fwhm": 0.1}).prepare(inst.y, inst.operator, None)


@pytest.mark.parametrize("problem", ["cs_mri", "lowfield"])
def test_tda_default_config_fits_every_mri_operator(problem):
    """The shipped TDA config names no operator-specific parameter: it runs on both MRI problems, and the
    problem's configs/problem yaml sets the coil-map correction's smaller step (param_lr_scale)."""
    from benchmarks.config import Selection, compose_config
    from benchmarks.build import build_components

    cfg = compose_config(Selection(problem, "zero-filled", ["tda"]), ["problem.size=32", "dataset.size=32"])
    comp = build_components(cfg, torch.device("cpu"))
    tda = comp.adapters[0]
    x = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    inst = comp.problem.simulate(x, torch.Generator().manual_seed(1))
    tda.adapting = True
    tda.prepare(inst.y, inst.operator, None)
    lrs = {k: g["lr"] for k, g in zip([k for k in tda._params if k != "noise_std"], tda._opt.param_groups)}
    if problem == "cs_mri":
        assert set(tda._params) == {"coil_correction", "phase", "noise_std"}
        assert math.isclose(lrs["coil_correction"], 0.1 * tda.lr) and math.isclose(lrs["phase"], tda.lr)
    else:
        assert set(tda._params) == {"fwhm", "noise_std"} and math.isclose(lrs["fwhm"], tda.lr)
    # thresholds: param_sigma_max (lowfield's yaml: fwhm and noise_std at every step) > the adapter's sigma_max (1.0)
    hints = cfg.adapters.tda.param_sigma_max
    assert tda._sigma_max_of == {k: hints.get(k, 1.0) for k in tda._params}
    assert tda.threshold() == (math.inf if problem == "lowfield" else 1.0)
    tda = TDA(sigma_max=0.5, param_sigma_max={"noise_std": 2.0})
    tda.prepare(inst.y, inst.operator, None)
    assert tda._sigma_max_of["noise_std"] == 2.0 and all(v == 0.5 for k, v in tda._sigma_max_of.items() if k != "noise_std")


def test_tda_physical_needs_adaptable_parameters():
    op = Inpainting(torch.ones(8, 8))
    with pytest.raises(ValueError, match="kind=network"):
        TDA(kind="physical").prepare(torch.zeros(1, 1, 8, 8), op, None)
    op2 = PhaseMRI(sampling_mask(8))
    with pytest.raises(ValueError, match="valid: phase"):
        TDA(parameters=["fwhm"]).prepare(torch.zeros(1, 1, 8, 8, dtype=torch.complex64), op2, None)
    with pytest.raises(ValueError, match="unknown TDA kind"):
        TDA(kind="magic")


def test_tda_noise_level_is_maximum_likelihood():
    mask = torch.ones(8, 8)
    op = Inpainting(mask, noise_std=0.0)
    op.noise_std = nn.Parameter(torch.tensor(0.0))
    assert set(adaptable_parameters(op)) == {"noise_std"}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 8, 8, generator=g)
    y = x + 0.2 * torch.randn(x.shape, generator=g)
    tda = TDA()
    tda.prepare(y, op, None)
    tda._estimate_noise(x, y)
    expected = ((y - x) ** 2).flatten(1).mean(1).sqrt().mean()
    assert torch.allclose(op.noise_std.detach(), expected, rtol=1e-5)


def test_tda_adapts_a_noise_level_alone(phase_setup):
    """parameters=[noise_std]: no gradient step, but the ML noise level is still set at every step."""
    prior, x, problem = phase_setup
    inst = problem.simulate(x, torch.Generator().manual_seed(0))
    op = inst.operator
    op.noise_std = nn.Parameter(torch.tensor(1e-3))
    op.adaptable_parameters = lambda: {"phase": op.phase, "noise_std": op.noise_std}
    tda = TDA(parameters=["noise_std"], sigma_max=math.inf)
    AdaptedAlgorithm(HQS(6), [tda]).reconstruct(inst.y, inst.operator, prior, torch.Generator().manual_seed(0))
    assert tda.history[-1]["steps_adapted"] == 6 and float(inst.operator.phase) == 0.0
    assert float(inst.operator.noise_std) > 1e-3  # the residual of a 0.4 rad phase error, not the initial value


def test_conv_adapter_starts_as_identity_and_adjoint_is_exact():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, 2, 12, 12, generator=g)
    for act in ("none", "leaky_relu"):
        net = ConvAdapter(2, (8, 16), 3, act, torch.Generator().manual_seed(1))
        assert torch.equal(net(u), u)
    net = ConvAdapter(2, (8, 16), 3, "none", torch.Generator().manual_seed(1))
    with torch.no_grad():
        net.out.weight.normal_(generator=g)
    base = PhaseMRI(sampling_mask(12), 0.3)
    for where in ("input", "output"):
        op = NetworkAdaptedOperator(base, net, where)
        y = torch.complex(torch.randn(2, 1, 12, 12, generator=g), torch.randn(2, 1, 12, 12, generator=g))
        assert torch.allclose(batch_dot(op(u), y), batch_dot(u, op.adjoint(y)), rtol=1e-4, atol=1e-3)
    with pytest.raises(TypeError, match="activation=none"):
        ConvAdapter(2, (4,), 3, "leaky_relu").adjoint(u)


def test_tda_network_identity_at_start_and_fits_unknown_blur():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(2, 1, 24, 24, generator=g), 3, 1, 1)
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).view(1, 1, 3, 3) / 16
    y = torch.nn.functional.conv2d(x, kernel, padding=1)
    base = Inpainting(torch.ones(24, 24))
    tda = TDA(kind="network", hidden=(4,), lr=1e-2, iters=1, lambda_identity=0.0)
    op, _ = tda.prepare(y, base, None)
    assert isinstance(op, NetworkAdaptedOperator) and torch.equal(op(x), base(x))
    sig = torch.full((2,), 0.01)
    for i in range(300):
        tda.on_step(Step(i, 300, sig, x, x, y, op, None))
    rec = tda.refine(Reconstruction(x, 0, 0.0, torch.zeros(2, dtype=torch.bool), [None, None]), y, op, None)
    entry = rec.trace[-1]
    assert entry["loss_last"] < 0.05 * entry["loss_first"]
    with torch.no_grad():
        assert float(rel_err(op(x), y).max()) < 0.02  # the solver's operator now blurs like the data


def test_tda_network_nonlinear_with_discriminator_runs_through_air():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 16, 16, generator=g)
    y = 0.8 * x
    base = Inpainting(torch.ones(16, 16))
    tda = TDA(kind="network", hidden=(4,), activation="leaky_relu", lambda_adv=0.1, lambda_tv=0.1, disc_width=4)
    air = AIR(scale=1.0)
    AdaptedAlgorithm(HQS(4), [tda, air])  # hands AIR the degradation TDA provides
    op, _ = tda.prepare(y, base, None)
    assert op is base  # a nonlinear g does not replace the solver's operator
    air.prepare(y, op, None)
    before = [p.detach().clone() for p in tda.disc.parameters()]
    step = Step(10, 12, torch.full((2,), 0.01), x, x, y, op, None)
    tda.on_step(step)
    assert any(not torch.equal(a, b) for a, b in zip(before, tda.disc.parameters()))
    out = air.on_step(step)
    # AIR steps through TDA's g: the same update as by hand
    u = x.clone().requires_grad_(True)
    r = tda.degrade(u, op) - y
    (grad,) = torch.autograd.grad(0.5 * (r**2).sum(), u)
    assert torch.allclose(out, x - grad / air.lipschitz, atol=1e-6)


def test_air_staged_weights():
    n = 30
    w = [air_weights(i, n, ramp_to=2.0, early=1 / 3, tv_weight=0.1, tv_steps=0.1) for i in range(n)]
    assert [round(a, 6) for a, _ in w[:10]] == [round(2.0 * i / 10, 6) for i in range(10)]
    assert all(a == 1.0 for a, _ in w[10:])
    assert [t for _, t in w] == [0.0] * 27 + [0.1] * 3
    assert all(t == 0.0 for _, t in (air_weights(i, n) for i in range(n)))


def test_air_guidance_is_the_exact_gradient_step():
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(8, 8, generator=g) < 0.5).float()
    op = Inpainting(mask)
    x, y = torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g) * mask
    air = AIR(scale=0.5, tv_weight=0.05, tv_steps=0.1)
    air.prepare(y, op, None)
    assert abs(air.lipschitz - 1.0) < 1e-4  # ||M|| = 1
    assert air.on_step(Step(0, 9, torch.ones(2), x, x, y, op, None)) is None  # ramp starts at 0
    mid = air.on_step(Step(5, 9, torch.ones(2), x, x, y, op, None))
    assert torch.allclose(mid, x - 0.5 / air.lipschitz * mask * (mask * x - y), atol=1e-6)
    last = air.on_step(Step(8, 9, torch.ones(2), x, x, y, op, None))
    u = x.clone().requires_grad_(True)
    (gtv,) = torch.autograd.grad(total_variation(u).sum(), u)
    assert torch.allclose(last, x - 0.5 / air.lipschitz * (mask * (mask * x - y) + 0.05 * gtv), atol=1e-6)
    rec = air.refine(Reconstruction(x, 0, 0.0, torch.zeros(2, dtype=torch.bool), [None, None]), y, op, None)
    assert rec.trace[-1]["w_data"] == [0.0, 1.0, 1.0] and rec.trace[-1]["w_tv"] == [0.0, 0.0, 0.05]


def test_tda_air_improves_phase_shift(phase_setup):
    prior, x, problem = phase_setup
    inst = problem.simulate(x, torch.Generator().manual_seed(0))
    alg = AdaptedAlgorithm(HQS(30), [TDA(lr=0.05, iters=3), AIR(scale=0.5)])
    rec = alg.reconstruct(inst.y, inst.operator, prior, torch.Generator().manual_seed(0))
    assert abs(float(inst.operator.phase) - 0.4) < 0.03
    assert [t["adapter"] for t in rec.trace] == ["tda", "air"]
    assert float(rel_err(rec.image * inst.scale.view(-1, 1, 1, 1), x).mean()) < 0.4


class ScaledPrior(Prior):
    """D(x, sigma) = gain * (x or a remembered image) + shift: a denoiser off by a known affine map."""

    def __init__(self, gain: float, shift: float, channels: int = 1, image: Tensor | None = None) -> None:
        super().__init__()
        self.gain, self.shift, self.channels, self.image = gain, shift, channels, image

    def denoise(self, x, sigma):
        return self.gain * (x if self.image is None else self.image) + self.shift


def test_prior_affine_learns_known_affine_shift():
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(16, 16, generator=g) < 0.6).float()
    op = Inpainting(mask, channels=2)
    x = torch.rand(3, 2, 16, 16, generator=g)
    y = op(x)
    # the denoiser sees only A^+ y + noise: at tiny sigmas the affine fix alpha = 2, beta = -0.2 is exact
    adapter = PriorAffine(sigmas=(1e-3, 2e-3), holdout=0.0, ridge=0.0, damping=1e-6)
    _, adapted = adapter.prepare(y, op, ScaledPrior(0.5, 0.1, channels=2))
    assert isinstance(adapted, AffinePrior)
    assert torch.allclose(adapted.alpha, torch.tensor([2.0, 2.0]), atol=1e-2)
    assert torch.allclose(adapted.beta, torch.tensor([-0.2, -0.2]), atol=1e-2)
    assert torch.allclose(adapted.denoise(x, 0.1), x, atol=2e-2)
    rec = adapter.refine(Reconstruction(x, 5, 1.0, torch.zeros(3, dtype=torch.bool), [None] * 3), y, op, adapted)
    assert rec.nfe == 5 + 2 and rec.trace[-1]["final"]["alpha"] == pytest.approx([2.0, 2.0], abs=1e-2)

    # with held-out measurements: a denoiser that predicts them (a remembered image) passes the check
    remembered = ScaledPrior(0.5, 0.1, channels=2, image=x)
    adapter = PriorAffine(sigmas=(0.3,), holdout=0.3, ridge=0.0)
    _, adapted = adapter.prepare(y, op, remembered)
    held = adapter._record["held_out"]
    assert held["fitted"] < 1e-6 < 0.01 < held["initial"]
    assert torch.allclose(adapted.alpha, torch.tensor([2.0, 2.0]), atol=1e-4)


def test_prior_affine_keeps_identity_when_held_out_data_disagree():
    g = torch.Generator().manual_seed(1)
    op = Inpainting(torch.ones(16, 16))
    image = torch.rand(2, 1, 16, 16, generator=g) + 0.5
    keep = torch.rand(image.shape, generator=torch.Generator().manual_seed(0)) >= 0.5  # the adapter's split (seed 0)
    y = torch.where(keep, 3 * image, image)  # the fitted half says alpha = 3, the held-out half alpha = 1
    adapter = PriorAffine(sigmas=(0.5,), holdout=0.5, ridge=0.0, seed=0)
    _, adapted = adapter.prepare(y, op, ScaledPrior(1.0, 0.0, image=image))
    held = adapter._record["held_out"]
    assert held["initial"] < 1e-9 < held["fitted"]
    assert torch.equal(adapted.alpha, torch.ones(1)) and torch.equal(adapted.beta, torch.zeros(1))
    _, degenerate = adapter.prepare(y, op, ScaledPrior(0.0, 0.0))  # D = 0: alpha is unseen, stays at 1
    assert torch.allclose(degenerate.alpha, torch.ones(1))
    with pytest.raises(ValueError, match="prior"):
        adapter.prepare(y, op, None)


def test_adaptation_never_sees_the_target(phase_setup):
    """Same y, different targets: the adapted reconstruction is identical (only the metrics move)."""
    prior, x, problem = phase_setup
    fixed = problem.simulate(x, torch.Generator().manual_seed(0))

    class FixedMeasurement(PhaseProblem):
        def simulate(self, target, generator=None):
            return ProblemInstance(fixed.y.clone(), copy.deepcopy(fixed.operator), copy.deepcopy(fixed.true_operator),
                                   fixed.scale.clone(), {})

    images, psnrs = [], []
    for target in (x, x.flip(-1) + 0.3):
        comp = Components(dataset=ListDataset(target), problem=FixedMeasurement(16),
                          algorithm=AdaptedAlgorithm(HQS(10), [TDA(lr=0.05), AIR(), PriorAffine(sigmas=(0.1,))]),
                          prior=prior)
        rows, imgs, _, _ = run_batch(comp, [0, 1], seed=0, device=torch.device("cpu"))
        images.append(torch.stack(imgs))
        psnrs.append(rows[0]["psnr"])
    assert torch.equal(images[0], images[1])
    assert psnrs[0] != psnrs[1]


def test_runner_builds_adapters_from_configs():
    from benchmarks.config import Selection, compose_config
    from benchmarks.build import build_components

    cfg = compose_config(Selection("inpainting", "zero-filled", ["tda", "air", "prior-affine"]),
                         ["adapters.tda.kind=network", "adapters.tda.hidden=[4]", "dataset.size=16", "problem.size=16"])
    comp = build_components(cfg, torch.device("cpu"))
    tda, air, pa = comp.adapters
    assert isinstance(tda, NetworkTDA) and tda.kind == "network" and tda.hidden == (4,) and tda.sigma_max == 1.0
    assert isinstance(air, AIR) and math.isclose(air.early, 1 / 3)
    assert isinstance(pa, PriorAffine) and pa.sigmas == [0.5, 0.2, 0.05]
    assert isinstance(comp.algorithm, AdaptedAlgorithm) and air.handed(DEGRADATION) == tda.degrade


def test_base_adapter_is_identity():
    a = Adapter()
    op = Inpainting(torch.ones(4, 4))
    x = torch.rand(1, 1, 4, 4)
    assert a.prepare(x, op, None) == (op, None) and a.on_step(Step(0, 1, torch.ones(1), x, x, x, op)) is None


# ------------------------------------------------------------------------- registry-driven battery of every adapter
from adaptation.schemes import Scheme  # noqa: E402
from benchmarks import registry  # noqa: E402

ADAPTERS = registry.names("adapters")  # the source tree's pyproject (tests/conftest.py) and any installed plugin
# generic speed knobs: any adapter option of these names is set so (iterations, widths), whatever the adapter
FAST_OPTIONS = {"epochs": 1, "max_iters": 3, "window": 1, "start": 0, "width": 8, "frequencies": 4, "latent": 4,
                "iters": 1}


def test_the_battery_sees_every_declared_adapter():
    """The battery is parametrised by the registry at collection: every adapter pyproject.toml declares is in it."""
    from tests.helpers import source_entry_points

    assert set(source_entry_points()["adapters"]) <= set(ADAPTERS)


class FixedInstance:
    """A problem whose every batch is one fixed instance (copies), whatever the dataset's targets."""

    tier = "simulated"

    def __init__(self, image_shape: tuple[int, int, int], inst: ProblemInstance) -> None:
        self.image_shape, self.inst = image_shape, inst

    def instance(self, items, device, generator=None) -> ProblemInstance:
        i = self.inst
        return ProblemInstance(i.y.clone(), copy.deepcopy(i.operator), copy.deepcopy(i.true_operator), i.scale.clone(),
                               {})


def battery_case(cls: type) -> tuple[Algorithm, FixedInstance, Prior | None, Tensor]:
    """The wrapped algorithm an adapter declares it needs (`needs_network`: an end-to-end network on cs_mri; else
    a diffusion-style sampler on the phase-shift problem), a fixed instance, the prior, and two targets."""
    if getattr(cls, "interpolator", False):  # TTT4MII's adapters: uvi-lite on frame interpolation
        import tempfile

        from tests.helpers import interp_instance, sequences, tiny_uvi_algorithm

        x = sequences(2, frames=5, size=16)
        prob, inst = interp_instance(x)
        return tiny_uvi_algorithm(Path(tempfile.mkdtemp())), FixedInstance(prob.image_shape, inst), None, x
    if getattr(cls, "needs_network", False):
        from inverse_problems.problems.cs_mri import CSMRIProblem
        from inverse_problems.operators.random import SampleGenerators
        from tests.helpers import NetAlgorithm, TinyUNet

        prob = CSMRIProblem(size=16, coils=2, acceleration=2.0, center_fraction=0.25, coil_maps="true")
        x = torch.nn.functional.avg_pool2d(torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(0)), 3, 1, 1)
        inst = prob.simulate(x, SampleGenerators.seeded(0, ["toy-0", "toy-1"]))
        return NetAlgorithm(TinyUNet()), FixedInstance(prob.image_shape, inst), None, x
    prior = phase_prior(16)
    x = prior.sample(2, torch.Generator().manual_seed(1))
    prob = PhaseProblem(16)
    return HQS(6), FixedInstance(prob.image_shape, prob.simulate(x, torch.Generator().manual_seed(0))), prior, x


@pytest.mark.parametrize("name", ADAPTERS)
def test_adapter_battery(name):
    """Every registered adapter, on the algorithm it declares it needs: it never sees the target (same y, other
    targets: bit-identical reconstructions), leaves the wrapped algorithm's pretrained network bit-identical, and
    after reset() (the online scheme) reproduces its first reconstruction exactly."""
    import inspect

    cls = registry.load("adapters", name)
    params = inspect.signature(cls).parameters
    adapter = cls(**{k: v for k, v in FAST_OPTIONS.items() if k in params})
    algorithm, problem, prior, x = battery_case(cls)
    wrapped = AdaptedAlgorithm(algorithm, [adapter])
    net = getattr(algorithm, "net", None)
    before = {k: v.clone() for k, v in net.state_dict().items()} if net is not None else None
    scheme = Scheme("online", [adapter])
    out = []
    for target in (x, x.flip(-1) + 0.3, x):
        scheme.before_batch()
        comp = Components(dataset=ListDataset(target), problem=problem, algorithm=wrapped, prior=prior)
        _, imgs, _, _ = run_batch(comp, [0, 1], seed=0, device=torch.device("cpu"))
        out.append(torch.stack(imgs))
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    if net is not None:
        assert algorithm.net is net and all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_network_adapters_declare_their_requirement():
    """An adapter that needs a network says so (needs_network) and is refused, naming the fix, elsewhere."""
    from algorithms.classical.zero_filled import ZeroFilled

    needing = [n for n in ADAPTERS if getattr(registry.load("adapters", n), "needs_network", False)]
    assert {"dip-ttt", "fine", "nr2n", "ssdu", "mr-inr", "sst"} <= set(needing)
    for name in needing:
        with pytest.raises(ValueError, match="unet\\+"):
            AdaptedAlgorithm(ZeroFilled(), [registry.load("adapters", name)()])
