"""One registry-driven battery of checks over every operator configuration.

Each case is a registered problem with options (one list, CASES; every problem the project registers has at least
one case, or test_every_registered_problem_is_in_the_battery fails naming it); its true (acquisition) and reconstruction operators go
through the same checks: shapes/dtypes, adjointness, the operator norm (power iteration against the
dense matrix and, where known in closed form, against that value), the SVD where one exists, and
seeded measurement. Operators with adaptable parameters are also checked perturbed and after reset.
"""
from __future__ import annotations

import pytest
import torch

from benchmarks import registry
from inverse_problems.data.base import GaussianFieldDataset
from inverse_problems.operators.dense import dense_svd
from inverse_problems.operators.linalg import batch_dot

S = 16  # small images: the dense matrix has 2*16*16 = 512 columns
CASES = [  # (problem, options, known ||A|| or None)
    ("cs_mri", dict(coils=1, mask="random", acceleration=4, center_fraction=0.125), 1.0),
    ("cs_mri", dict(coils=1, mask="equispaced", acceleration=2, center_fraction=0.125), 1.0),
    ("cs_mri", dict(coils=1, mask="gaussian1d", acceleration=4, center_fraction=0.125), 1.0),
    ("cs_mri", dict(coils=1, mask="poisson2d", acceleration=8, center_fraction=0.125), 1.0),
    ("cs_mri", dict(coils=1, mask="vd2d", acceleration=16, center_fraction=0.125), 1.0),
    ("cs_mri", dict(coils=4, mask="random", acceleration=2, center_fraction=0.25), None),
    ("cs_mri", dict(coils=4, mask="equispaced", acceleration=4, center_fraction=0.25), None),
    ("cs_mri", dict(coils=3, mask="poisson2d", acceleration=4, center_fraction=0.4), None),
    ("cs_mri", dict(coils=4, mask="vd2d", acceleration=8, center_fraction=0.2, coil_maps="true"), None),
    ("lowfield", dict(k=2, fwhm=2.0), 1.0),
    ("lowfield", dict(k=4, fwhm=1.0), 1.0),
    ("lowfield", dict(k=1, fwhm=3.0, fwhm_recon=2.0), 1.0),
    ("lowfield", dict(k=2, fwhm=0.0, noise_std=0.05), 1.0),
    ("inpainting", dict(channels=1, keep=0.5), 1.0),
    ("inpainting", dict(channels=2, keep=0.3), 1.0),
    ("mrsi", dict(n_t=16, acceleration=2, mask="vd2d"), 1.0),  # no B0 map: ||A|| = 1 exactly (inverse_problems.operators.mrsi)
    # natural images (tests/inverse_problems/test_natural.py has their exact references)
    ("inpainting-box", dict(channels=3, box=0.5), 1.0),
    ("inpainting-box", dict(channels=3, box=0.25, position="random", mask_seed=3), 1.0),
    ("inpainting-random", dict(channels=3, keep=0.3), 1.0),
    ("super-resolution", dict(channels=3, factor=4), None),
    ("super-resolution", dict(channels=1, factor=2, noise_std=0.0), None),
    ("deblur-gaussian", dict(channels=3, sigma=3.0, kernel_size=61), None),
    ("deblur-gaussian", dict(channels=2, sigma=1.0, kernel_size=5), None),
    ("deblur-motion", dict(channels=3, kernel_size=7, intensity=0.5), None),
    ("deblur-motion", dict(channels=1, kernel_size=31, intensity=1.0, kernel_seed=4), None),
    # 4-D interpolation: frame selection, a partial identity (tests/inverse_problems/test_interp4d.py)
    ("interp4d", dict(frames=4), 1.0),
    ("interp4d", dict(frames=5, protocol="stride:2", noise_std=0.01), 1.0),
    ("interp4d", dict(frames=4, protocol="random:0.5", mask_seed=2), 1.0),
]


def ids(case: tuple) -> str:
    return case[0] + "-" + "-".join(f"{k}={v}" for k, v in case[1].items())


def rand_like_measurement(op, batch: int, g: torch.Generator) -> torch.Tensor:
    shape = (batch, *op.measurement_shape)
    if op.measurement_dtype.is_complex:
        return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    return torch.randn(shape, generator=g)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def dense_norm(op) -> float:
    """||A||_2 from the dense matrix (float64 SVD) of a batch-1 operator."""
    n = op.image_shape[0] * op.image_shape[1] * op.image_shape[2]
    with torch.no_grad():
        cols = op(torch.eye(n).reshape(n, *op.image_shape))
    cols = torch.view_as_real(cols) if cols.is_complex() else cols
    return float(torch.linalg.matrix_norm(cols.reshape(n, -1).double(), ord=2))


def check_operator(op, batch: int, g: torch.Generator) -> None:
    x = torch.randn((batch, *op.image_shape), generator=g)
    y = rand_like_measurement(op, batch, g)
    with torch.no_grad():
        ax, ahy = op(x), op.adjoint(y)
    # shapes and dtypes
    assert ax.shape == (batch, *op.measurement_shape) and ax.dtype == op.measurement_dtype
    assert ahy.shape == x.shape and ahy.dtype == torch.float32
    # adjointness <A x, y> = <x, A^H y>, per sample, relative to the Cauchy-Schwarz bound ||A x|| ||y||
    # (a float32 inner product that happens to be near 0 has no relative accuracy of its own)
    lhs, rhs = batch_dot(ax, y), batch_dot(x, ahy)
    bound = (batch_dot(ax, ax) * batch_dot(y, y)).sqrt()
    assert float(((lhs - rhs).abs() / bound).max()) < 1e-6
    # normal = A^H A
    with torch.no_grad():
        assert rel(op.normal(x), op.adjoint(ax)) < 1e-5
        assert rel(op.normal_map()(x), op.adjoint(ax)) < 1e-5  # the precomputed form the CG/Langevin loops use
    svd = op.svd()
    if svd is not None:
        check_svd(svd, x, ax, g, 1e-5)
    # the exact dense SVD (DDRM's route where there is no closed form) passes the same identities, to the
    # accuracy of a float32 eigendecomposition (singular values below 1e-3 max count as 0), and agrees with
    # the closed form's singular values
    dense = dense_svd(op, batch)
    check_svd(dense, x, ax, g, 5e-3)
    if svd is not None:
        closed = svd.s.expand(batch, -1).sort(dim=1).values
        ours = dense.s.sort(dim=1).values
        big = closed > 1e-2
        assert torch.allclose(ours[big], closed[big], rtol=1e-3, atol=1e-4)
    # the SVD from the per-row eigenbasis (multi-coil MRI under a line mask: DDRM's route there) passes the same
    # identities and has the dense SVD's singular values, null space included
    eigen = op.eigen_svd() if hasattr(op, "eigen_svd") else None
    if eigen is not None:
        check_svd(eigen, x, ax, g, 5e-3)
        ours, theirs = eigen.s.expand(batch, -1).sort(dim=1).values, dense.s.sort(dim=1).values
        assert torch.allclose(ours, theirs, rtol=1e-3, atol=1e-4 * float(theirs.max()))


def check_svd(svd, x: torch.Tensor, ax: torch.Tensor, g: torch.Generator, tol: float) -> None:
    batch = x.shape[0]
    with torch.no_grad():
        vt = svd.Vt(x)
        assert vt.shape == (batch, x[0].numel()) and svd.s.shape[-1] == x[0].numel()
        assert rel(svd.U(svd.s * vt), ax) < tol                       # A = U diag(s) V^T
        assert rel(svd.V(vt), x) < 1e-5                              # V V^T = I
        assert rel(svd.Vt(svd.V(vt)), vt) < 1e-5                     # V^T V = I
        assert rel(batch_dot(vt, vt), batch_dot(x, x)) < 1e-5         # V^T isometric
        assert rel(svd.Ut(ax), svd.s * vt) < tol                      # U^T A x = s V^T x
        z = torch.randn(vt.shape, generator=g) * (svd.s > 0)
        assert rel(batch_dot(svd.U(z), svd.U(z)), batch_dot(z, z)) < tol  # U isometric on range


def test_every_registered_problem_is_in_the_battery() -> None:
    from tests.helpers import assert_covered

    assert_covered("problems", [name for name, _, _ in CASES], "the operator battery (test_operators.CASES)")


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_operator(case: tuple) -> None:
    name, opts, known = case
    problem = registry.build("problems", name, size=S, **opts)
    c = problem.image_shape[0]
    data = GaussianFieldDataset(size=S, channels=c)
    x = torch.stack([data[i]["image"] for i in range(2)])
    g = torch.Generator().manual_seed(1)
    inst = problem.simulate(x, torch.Generator().manual_seed(0))
    assert inst.y.shape == (2, *inst.operator.measurement_shape) and not inst.y.requires_grad
    assert inst.scale.shape == (2,) and bool((inst.scale > 0).all())
    for op in (inst.true_operator, inst.operator):
        check_operator(op, 2, g)
    if name in ("cs_mri", "lowfield"):
        assert inst.info["acceleration"] == pytest.approx(
            opts.get("acceleration", opts.get("k", 1) ** 2), rel=0.05)

    # seeded measurement: same seed, same numbers; another seed, other noise
    op = inst.true_operator
    y1 = op.measure(x, torch.Generator().manual_seed(5))
    y2 = op.measure(x, torch.Generator().manual_seed(5))
    assert torch.equal(y1, y2)
    if hasattr(op, "mask") and y1.is_complex():  # MRI: zeros off the mask
        assert float((y1.abs() * (op.mask == 0)).max()) == 0.0
    if float(op.noise_std.detach().max()) > 0:
        assert not torch.equal(y1, op.measure(x, torch.Generator().manual_seed(6)))

    # operator norm: power iteration vs the dense matrix vs the closed form
    one = problem.simulate(x[:1], torch.Generator().manual_seed(0))
    for op in (one.true_operator, one.operator):
        ref = dense_norm(op)
        power = float(op.squared_norm(1, n_iter=300, generator=g).sqrt())
        assert ref * 0.98 <= power <= ref * (1 + 1e-4)
        if known is not None:
            assert ref == pytest.approx(known, rel=1e-5)
        else:
            assert ref <= 1 + 1e-5  # RSS-normalised maps: A^H A <= I

    # adaptable parameters: perturbed, the checks still hold; reset restores the operator
    op = inst.operator
    params = op.adaptable_parameters() if hasattr(op, "adaptable_parameters") else {}
    if params:
        before = op(x).detach()
        with torch.no_grad():
            for p in params.values():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        check_operator(op, 2, g)
        loss = op(x).abs().pow(2).sum()
        grads = torch.autograd.grad(loss, [p for n, p in params.items() if n != "noise_std"])
        assert all(gr is not None and bool(torch.isfinite(gr).all()) and float(gr.abs().max()) > 0 for gr in grads)
        op.reset_adaptation()
        assert torch.equal(op(x).detach(), before)


@pytest.mark.parametrize("mask_kind", ["rows", "columns", "2d"])
def test_mri_normal_map_fused(mask_kind: str) -> None:
    """MultiCoilMRI.normal_map (maps and shifts precomputed, 1-D transforms for line masks) equals A^H (A x) with
    adapted coil maps and phase, for lines along either axis and a 2-D mask; `fourier_axes` names the axes."""
    from inverse_problems.operators.coils import birdcage_maps
    from inverse_problems.operators.mri import MultiCoilMRI

    g = torch.Generator().manual_seed(3)
    lines = (torch.rand(17, generator=g) < 0.4).float()
    mask = {"rows": lines.expand(17, 17), "columns": lines[:, None].expand(17, 17),
            "2d": (torch.rand(17, 17, generator=g) < 0.4).float()}[mask_kind].clone()
    op = MultiCoilMRI(birdcage_maps(3, 17, 1.5), mask, correction_size=4, batch=2)  # odd size: shifts differ
    with torch.no_grad():
        op.coil_correction.normal_(0, 0.2, generator=g)
        op.phase.uniform_(-3, 3, generator=g)
        x = torch.randn((2, 2, 17, 17), generator=g)
        ref = op.adjoint(op.forward(x))
        assert op.fourier_axes() == {"rows": (-1,), "columns": (-2,), "2d": (-2, -1)}[mask_kind]
        assert rel(op.normal_map()(x), ref) < 1e-6
        assert rel(op.normal(x), ref) < 1e-6


@pytest.mark.parametrize("mask_kind", ["rows", "columns"])
def test_mri_prox_solver_is_the_exact_minimiser(mask_kind: str) -> None:
    """MultiCoilMRI.prox_solver (per-row eigendecomposition of A^H A for line masks) returns the solution of
    (A^H A + rho I) x = A^H y + rho z, checked against a float64 dense solve of the same normal operator, from
    rho far below the smallest non-zero eigenvalue (where few CG iterations stop short) to rho = 10; with adapted
    maps and phase, and rebuilt when they change."""
    from inverse_problems.operators.coils import birdcage_maps
    from inverse_problems.operators.mri import MultiCoilMRI

    g = torch.Generator().manual_seed(4)
    lines = (torch.rand(12, generator=g) < 0.4).float()
    lines[5:7] = 1
    mask = (lines.expand(12, 12) if mask_kind == "rows" else lines[:, None].expand(12, 12)).clone()
    op = MultiCoilMRI(birdcage_maps(3, 12, 1.5), mask, correction_size=3, batch=2)
    with torch.no_grad():
        op.coil_correction.normal_(0, 0.2, generator=g)
        op.phase.uniform_(-3, 3, generator=g)
        n = 2 * 12 * 12
        eye = torch.eye(n).reshape(n, 2, 12, 12)
        dense = torch.stack([op.normal(eye[i:i + 1].expand(2, -1, -1, -1)) for i in range(n)], -1)  # (2, 2, H, W, n)
        dense = dense.reshape(2, n, n).double()
        aty, z = torch.randn((2, 2, 12, 12), generator=g), torch.randn((2, 2, 12, 12), generator=g)
        aty = op.normal(aty)  # a right-hand side in A^H A's range, as A^H y is
        for rho in (1e-6, 1e-2, 10.0):
            r = torch.tensor([rho, 3 * rho])
            want = torch.linalg.solve(dense + torch.diag_embed(r.double()[:, None].expand(2, n)),
                                      (aty + r.view(-1, 1, 1, 1) * z).reshape(2, n, 1).double())
            got = op.prox_solver()(aty, z, r)
            assert rel(got.reshape(2, n).double(), want[..., 0]) < 2e-4
        first = op.prox_solver()
        op.coil_correction.add_(0.3)  # a changed parameter (a global phase leaves A^H A as it is): rebuilt
        r = torch.tensor([0.1, 0.1])
        moved = op.prox_solver()(aty, z, r)
        assert rel(first(aty, z, r), moved) > 1e-3
        rhs = aty + r.view(-1, 1, 1, 1) * z
        assert rel(op.normal(moved) + r.view(-1, 1, 1, 1) * moved, rhs) < 1e-4  # aty left A^H A's range: loose


def test_mri_prox_solver_absent_for_2d_masks() -> None:
    from inverse_problems.operators.coils import birdcage_maps
    from inverse_problems.operators.mri import MultiCoilMRI

    mask = (torch.rand(12, 12, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    assert MultiCoilMRI(birdcage_maps(2, 12, 1.5), mask).prox_solver() is None
