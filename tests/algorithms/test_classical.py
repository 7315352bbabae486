"""Classical baselines: CG-SENSE accuracy, l1-wavelet and TV against zero-filled, building blocks."""
from __future__ import annotations

import pytest
import torch

from algorithms.classical.compressed_sensing import CGSense, L1Wavelet, TotalVariation, gradient, gradient_adjoint, haar, ihaar
from algorithms.classical.zero_filled import ZeroFilled
from benchmarks.metrics import image_metrics
from inverse_problems.operators.complex import to_complex
from inverse_problems.operators.fft import ifft2c
from inverse_problems.operators.inpainting import Inpainting
from inverse_problems.operators.masks import make_mask
from inverse_problems.problems.cs_mri import CSMRIProblem
from inverse_problems.problems.lowfield import LowFieldProblem


def phantom(size: int, shift: float = 0.0, smooth: bool = False) -> torch.Tensor:
    """A piecewise-constant complex (2-channel) phantom: ellipses and a square, smooth phase if asked."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    img = 0.6 * (((yy / 0.85) ** 2 + (xx / 0.7) ** 2) < 1).float()
    img += 0.4 * ((((yy - 0.2 + shift) / 0.3) ** 2 + ((xx + 0.25) / 0.15) ** 2) < 1).float()
    img -= 0.3 * ((((yy + 0.3) / 0.2) ** 2 + ((xx - 0.2 - shift) / 0.25) ** 2) < 1).float()
    img += 0.3 * (((yy.abs() < 0.1) & ((xx - 0.3).abs() < 0.1))).float()
    phase = 0.5 * xx if smooth else torch.zeros_like(xx)
    return torch.stack([img * torch.cos(phase), img * torch.sin(phase)])


def psnr(recon: torch.Tensor, inst, x: torch.Tensor) -> list[float]:
    return [m["psnr"] for m in image_metrics(recon * inst.scale.view(-1, 1, 1, 1), x)]


def test_cg_sense_recovers_noiseless_image_at_r2() -> None:
    x = torch.stack([phantom(32, 0.0, True), phantom(32, 0.1, True)])
    # equispaced R = 2 (classic SENSE); random 1-D masks cluster lines and need ~300 iterations for the same
    problem = CSMRIProblem(size=32, coils=8, acceleration=2, mask="equispaced", noise_std=0.0, coil_maps="true")
    inst = problem.simulate(x, torch.Generator().manual_seed(0))
    rec = CGSense(lam=0.0, n_iter=50, tol=1e-7).reconstruct(inst.y, inst.operator)
    out = rec.image * inst.scale.view(-1, 1, 1, 1)
    nmse = (out - x).pow(2).flatten(1).sum(1) / x.pow(2).flatten(1).sum(1)
    assert float(nmse.max()) < 1e-4
    assert rec.nfe == 0 and not bool(rec.failed.any())
    # zero-filled is far off at R = 2 (the test has teeth)
    zf = ZeroFilled().reconstruct(inst.y, inst.operator).image * inst.scale.view(-1, 1, 1, 1)
    assert float(((zf - x).pow(2).sum() / x.pow(2).sum())) > 1e-2


def test_cg_sense_tikhonov_matches_closed_form() -> None:
    """Single-coil: (A^H A + lam I)^-1 A^H y = F^H (M / (M + lam)) y, checked against CG on the normal equations."""
    x = phantom(32)[None]
    inst = CSMRIProblem(size=32, coils=1, acceleration=4, noise_std=0.01).simulate(x, torch.Generator().manual_seed(0))
    op = inst.operator
    closed = CGSense(lam=0.1).reconstruct(inst.y, op).image
    from inverse_problems.operators.linalg import conjugate_gradient
    cg = conjugate_gradient(lambda v: op.normal(v) + 0.1 * v, op.adjoint(inst.y), n_iter=50, tol=1e-8)
    assert torch.allclose(closed, cg, atol=1e-5)


@pytest.mark.filterwarnings("ignore:LPIPS is null")
@pytest.mark.parametrize("problem", [
    CSMRIProblem(size=32, coils=1, acceleration=4, mask="random", noise_std=0.005),
    CSMRIProblem(size=32, coils=1, acceleration=4, mask="vd2d", center_fraction=0.1, noise_std=0.005),
    LowFieldProblem(size=32, k=2, fwhm=2.0, noise_std=0.01),
], ids=["cs_mri-random", "cs_mri-vd2d", "lowfield"])
def test_l1_wavelet_and_tv_beat_zero_filled(problem) -> None:
    x = torch.stack([phantom(32), phantom(32, 0.1)])
    inst = problem.simulate(x, torch.Generator().manual_seed(0))
    zf = psnr(ZeroFilled().reconstruct(inst.y, inst.operator).image, inst, x)
    l1 = psnr(L1Wavelet(n_iter=60).reconstruct(inst.y, inst.operator, None, torch.Generator().manual_seed(0)).image,
              inst, x)
    tv = psnr(TotalVariation(n_iter=100).reconstruct(inst.y, inst.operator, None,
                                                     torch.Generator().manual_seed(0)).image, inst, x)
    for b in range(2):
        assert l1[b] > zf[b] + 1.0
        assert tv[b] > zf[b] + 1.0


def test_zero_filled_is_rss_for_multicoil_and_adjoint_otherwise() -> None:
    x = torch.stack([phantom(32, 0.0, True)])
    inst = CSMRIProblem(size=32, coils=4, acceleration=2, center_fraction=0.25).simulate(x, torch.Generator().manual_seed(0))
    zf = ZeroFilled().reconstruct(inst.y, inst.operator).image
    expect = ifft2c(inst.y * inst.operator.mask).abs().pow(2).sum(1).sqrt()
    assert torch.allclose(zf[:, 0], expect, atol=1e-6) and float(zf[:, 1].abs().max()) == 0
    single = CSMRIProblem(size=32, coils=1).simulate(x, torch.Generator().manual_seed(0))
    zf1 = ZeroFilled().reconstruct(single.y, single.operator).image
    assert torch.allclose(to_complex(zf1), ifft2c(single.y[:, 0] * single.operator.mask), atol=1e-6)
    inp = Inpainting(torch.ones(8, 8), channels=1)
    y = torch.randn(2, 1, 8, 8)
    assert torch.equal(ZeroFilled().reconstruct(y, inp).image, y)


def test_real_single_channel_images() -> None:
    """The penalties also handle real images (C = 1): inpainting with TV and l1 beats the masked image."""
    img = phantom(32)[:1][None]
    mask = (torch.rand(32, 32, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    op = Inpainting(mask, channels=1)
    y = op(img)
    err = lambda r: float((r - img).pow(2).sum())  # noqa: E731
    assert err(TotalVariation(lam=0.02).reconstruct(y, op).image) < 0.5 * err(y)
    assert err(L1Wavelet(lam=0.02).reconstruct(y, op, None, torch.Generator().manual_seed(0)).image) < 0.7 * err(y)


def test_haar_is_orthonormal_and_gradient_adjoint_exact() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 16, 16, generator=g, dtype=torch.float64)
    a, d = haar(x, 3)
    assert [t.shape[-1] for t in d] == [8, 4, 2] and a.shape[-1] == 2
    assert torch.allclose(ihaar(a, d), x, atol=1e-12)
    energy = a.pow(2).sum() + sum(t.pow(2).sum() for t in d)
    assert float(energy / x.pow(2).sum()) == pytest.approx(1.0, abs=1e-12)
    p = torch.randn(2, 2, 2, 16, 16, generator=g, dtype=torch.float64)
    assert float((gradient(x) * p).sum()) == pytest.approx(float((x * gradient_adjoint(p)).sum()), rel=1e-12)
    step = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    step[..., 2:] = 1
    assert float(gradient(step)[:, :, 1].sum()) == 4.0 and float(gradient(step)[:, :, 0].abs().sum()) == 0.0


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="lam >= 0"):
        CGSense(lam=-1)
    with pytest.raises(ValueError, match="lam >= 0"):
        L1Wavelet(lam=-1)
    with pytest.raises(ValueError, match="n_iter >= 1"):
        TotalVariation(n_iter=0)
    op = Inpainting(torch.ones(7, 7))
    with pytest.raises(ValueError, match="even image sides"):
        L1Wavelet().reconstruct(torch.zeros(1, 1, 7, 7), op)


def _operator_for(algo) -> tuple[object, torch.Tensor]:
    """A small operator that has every attribute the algorithm declares in `operator_needs` (its capability), and
    a measurement: inpainting where it suffices, else frame selection (4-D interpolation: 5 frames of 16 px) or a
    2H MRSI operator with a B0 map (8 px, 16 points)."""
    from inverse_problems.operators.frames import FrameSelection
    from inverse_problems.operators.mrsi import MRSI

    g = torch.Generator().manual_seed(0)
    inpaint = Inpainting((torch.rand((8, 8), generator=g) < 0.6).float(), 1, 0.02)
    if all(hasattr(inpaint, m) for m in algo.operator_needs):
        x = torch.rand((2, 1, 8, 8), generator=g)
        return inpaint, inpaint.measure(x, g)
    frames = FrameSelection(torch.tensor([[1, 0, 0, 1, 1], [1, 0, 1, 0, 1]], dtype=torch.bool), (16, 16), 0.01)
    if all(hasattr(frames, m) for m in algo.operator_needs):
        x = torch.rand((2, 5, 16, 16), generator=g)
        return frames, frames.measure(x, g)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 8), indexing="ij")
    op = MRSI(make_mask("vd2d", (8, 8), 2, 0.25, 0), n_t=16, b0_hz=4.0 * xx * yy, noise_std=0.01)
    x = torch.rand((2, 4, 8, 8), generator=g) * torch.tensor([10.0, 3, 3, 1.5]).view(4, 1, 1) / 10
    return op, op.measure(x, g)


def prior_free_algorithms() -> dict[str, type]:
    """Every registered algorithm that uses no prior and is not a trained network (those have batteries of their own:
    tests/algorithms/test_solvers.py and test_networks.py; test_every_registered_algorithm_has_a_battery)."""
    from algorithms.networks.models import NetworkAlgorithm
    from benchmarks import registry

    classes = {n: registry.load("algorithms", n) for n in registry.names("algorithms")}
    return {n: c for n, c in classes.items() if not getattr(c, "uses_prior", True)
            and not (isinstance(c, type) and issubclass(c, NetworkAlgorithm))}


def test_every_prior_free_algorithm_is_seeded_finite_and_refuses_operators_by_capability():
    """The registry-driven battery of the classical baselines: on an operator that has what the algorithm
    declares it needs (`operator_needs`), two runs with one seed give the same image of the right shape, finite,
    no sample failed, no NFE; on one that lacks it, the algorithm is refused before compute, naming what is missing."""
    algos = prior_free_algorithms()
    assert {"cg-sense", "tv", "csi-fit", "mrsi-lowrank", "mrsi-tv"} <= set(algos)
    for name, cls in algos.items():
        algo = cls()
        op, y = _operator_for(algo)
        r1 = algo.reconstruct(y, op, None, torch.Generator().manual_seed(1))
        r2 = cls().reconstruct(y, op, None, torch.Generator().manual_seed(1))
        assert r1.image.shape == (y.shape[0], *op.image_shape), name
        assert torch.isfinite(r1.image).all() and not r1.failed.any() and r1.nfe == 0, name
        assert torch.equal(r1.image, r2.image), name
        if algo.operator_needs:
            other = Inpainting(torch.ones(8, 8))
            missing = [m for m in algo.operator_needs if not hasattr(other, m)]
            with pytest.raises(ValueError, match=missing[0]):
                cls().reconstruct(torch.zeros(1, 1, 8, 8), other)
