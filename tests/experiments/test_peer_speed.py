"""benchmarks/experiments/peer_speed.py's pieces (needs the optional extra `peers`: DeepInverse): the two MRI operators
agree, the measurement maps into DeepInverse's [0, 1] convention exactly, and the wrapped denoiser is the suite's
denoiser under that map."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("deepinv")

from benchmarks.experiments import peer_speed as ps  # noqa: E402
from inverse_problems.problems.cs_mri import CSMRIProblem  # noqa: E402
from priors.analytic import GaussianPrior  # noqa: E402


def _instance():
    x = torch.randn((3, 2, 16, 16), generator=torch.Generator().manual_seed(0))
    inst = CSMRIProblem(size=16, coils=1, center_fraction=0.25).simulate(x, torch.Generator().manual_seed(1))
    return x, inst


def test_operators_agree_and_measurements_map_to_unit_images():
    x, inst = _instance()
    op = inst.operator.requires_grad_(False)
    physics = ps.deepinv_physics(op)
    assert ps.operator_difference(op, physics) < 1e-6
    c = torch.tensor([1.0, 2.0, 3.5])
    xs = x / inst.scale.view(-1, 1, 1, 1)
    with torch.no_grad():
        y_clean = op.forward(xs)  # noiseless: y_u must be exactly A u for u = (x / c + 1) / 2
        u = (xs / c.view(-1, 1, 1, 1) + 1) / 2
        assert torch.allclose(ps.to_unit(y_clean, physics, c), physics.A(u), atol=1e-5)


def test_suite_denoiser_is_the_prior_under_the_unit_map():
    prior = GaussianPrior(torch.zeros(2, 16, 16), torch.full((2, 16, 16), 0.5), "pixel")
    c = torch.tensor([1.0, 3.0])
    den = ps.SuiteDenoiser(prior, c)
    x = torch.randn((2, 2, 16, 16), generator=torch.Generator().manual_seed(2))
    s_u = torch.tensor([0.3, 0.7])  # noise std on u = (x / c + 1) / 2 is that on x over 2 c
    u = (x / c.view(-1, 1, 1, 1) + 1) / 2
    out = den(u, s_u)
    want = (prior.denoise(x, 2 * c * s_u) / c.view(-1, 1, 1, 1) + 1) / 2
    assert torch.allclose(out, want, atol=1e-6)
    assert den.calls == 1
    den(u, 0.2)  # a scalar noise level is broadcast
    assert den.calls == 2
