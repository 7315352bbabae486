"""The VLBI plugin's physics (plugins/vlbi): closure invariances, the DTFT, minimal independent closure sets, the
noise calibration, the gains that TDA adapts, and the refusals of solvers that need a linear operator."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medtta_vlbi.array import UAS, eht_observation
from medtta_vlbi.operator import VLBIOperator
from medtta_vlbi.problem import BlackHoleProblem, align, psnr
from medtta_vlbi.sources import SyntheticEHT


@pytest.fixture(scope="module")
def obs():
    return eht_observation(hours=12.0, step_min=60.0)


def _images(n: int = 2, size: int = 32) -> torch.Tensor:
    ds = SyntheticEHT("test", size=size, fov_uas=160.0, morphology="all")
    return torch.stack([ds[i]["image"] for i in range(n)])


def test_closures_are_invariant_to_station_gains_to_float_precision(obs):
    op = VLBIOperator(obs, size=32).double()
    x = _images().double()
    re, im = op.visibilities(x)
    g = torch.Generator().manual_seed(1)
    n_t = int(op.time_index.max()) + 1
    amp = torch.exp(0.5 * torch.randn(2, op.n_st, generator=g, dtype=torch.float64))
    phase = 2 * math.pi * torch.rand(2, n_t, op.n_st, generator=g, dtype=torch.float64)
    ph = phase[:, op.time_index, op.st1] - phase[:, op.time_index, op.st2]
    ga = amp[:, op.st1] * amp[:, op.st2]
    re2, im2 = ga * (re * torch.cos(ph) - im * torch.sin(ph)), ga * (im * torch.cos(ph) + re * torch.sin(ph))
    c1, s1, l1 = op.closures(re, im)
    c2, s2, l2 = op.closures(re2, im2)
    psi1, psi2 = torch.atan2(s1, c1), torch.atan2(s2, c2)
    assert torch.remainder(psi1 - psi2 + math.pi, 2 * math.pi).sub(math.pi).abs().max() < 1e-9
    assert (l1 - l2).abs().max() < 1e-9
    assert (psi1.abs() > 1e-3).any()  # not trivially zero


def test_dtft_matches_a_direct_sum(obs):
    size, fov = 16, 160.0
    op = VLBIOperator(obs, size=size, fov_uas=fov).double()
    x = torch.rand(1, 1, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    re, im = op.visibilities(x)
    pix = fov / size * UAS
    for k in (0, 7, obs.n_vis - 1):
        u, v = obs.uv[k]
        total = 0j
        for r in range(size):
            for c in range(size):
                l, m = -(c - (size - 1) / 2) * pix, ((size - 1) / 2 - r) * pix
                total += float(x[0, 0, r, c]) * complex(math.cos(-2 * math.pi * (u * l + v * m)),
                                                        math.sin(-2 * math.pi * (u * l + v * m)))
        # the matrix is stored in float32: agreement to its precision
        assert abs(complex(float(re[0, k]), float(im[0, k])) - total) < 1e-6 * max(1.0, abs(total))
    # the intra-site baseline (ALMA-APEX, ~2.6 km) sees nearly the total flux, the pixel sum
    k = int(np.flatnonzero((obs.station1 == 0) & (obs.station2 == 1))[0])
    assert abs(complex(float(re[0, k]), float(im[0, k]))) == pytest.approx(float(x.sum()), rel=0.01)


def test_closure_sets_are_minimal_and_independent(obs):
    times = np.unique(obs.times)
    cp_rows, ca_rows = 0, 0
    for t in times:
        sel = np.flatnonzero(obs.times == t)
        stations = sorted(set(obs.station1[sel]) | set(obs.station2[sel]))
        n, nb = len(stations), len(sel)
        assert nb == n * (n - 1) // 2
        col = {int(k): j for j, k in enumerate(sel)}
        cps = [r for r in range(len(obs.cphase)) if obs.cphase[r, 0] in col]
        cas = [r for r in range(len(obs.lcamp)) if obs.lcamp[r, 0] in col]
        cp = np.zeros((len(cps), nb))
        for i, r in enumerate(cps):
            for j in range(3):
                cp[i, col[int(obs.cphase[r, j])]] += obs.cphase_sign[r, j]
        ca = np.zeros((len(cas), nb))
        for i, r in enumerate(cas):
            for j, s in enumerate((1, 1, -1, -1)):
                ca[i, col[int(obs.lcamp[r, j])]] += s
        # counts of a minimal set (eht-imaging's count='min'), all independent
        assert len(cps) == (n - 1) * (n - 2) // 2 and np.linalg.matrix_rank(cp) == len(cps)
        assert len(cas) == n * (n - 3) // 2 and (len(cas) == 0 or np.linalg.matrix_rank(ca) == len(cas))
        # ... and complete: they span the whole closure space (baselines minus the station terms)
        idx = {s: i for i, s in enumerate(stations)}
        phase_design = np.zeros((nb, n))
        gain_design = np.zeros((nb, n))
        for j, k in enumerate(sel):
            a, b = idx[obs.station1[k]], idx[obs.station2[k]]
            phase_design[j, a], phase_design[j, b] = 1, -1
            gain_design[j, a], gain_design[j, b] = 1, 1
        assert np.abs(cp @ phase_design).max() == 0 and (len(cas) == 0 or np.abs(ca @ gain_design).max() == 0)
        assert len(cps) == nb - np.linalg.matrix_rank(phase_design)
        assert len(cas) == nb - np.linalg.matrix_rank(gain_design)
        cp_rows, ca_rows = cp_rows + len(cps), ca_rows + len(cas)
    assert cp_rows == len(obs.cphase) and ca_rows == len(obs.lcamp)


def test_the_truth_fits_the_data_at_the_noise_level():
    problem = BlackHoleProblem(size=32, hours=12.0, step_min=30.0)
    x = _images(2)
    inst = problem.simulate(x, torch.Generator().manual_seed(0))
    chi = inst.operator.chi2(x, inst.y)
    assert 0.6 < float(chi["cp"].mean()) < 1.5 and 0.6 < float(chi["lcamp"].mean()) < 1.5
    assert float(inst.operator.chi2(torch.ones_like(x), inst.y)["cp"].mean()) > 5  # a flat image does not fit


def test_gains_enter_only_through_the_amplitude_term_and_can_be_recovered():
    x = _images(1)
    for amp_weight in (0.0, 1.0):
        problem = BlackHoleProblem(size=32, hours=12.0, step_min=30.0, gain_std=0.3, amp_weight=amp_weight)
        inst = problem.simulate(x, torch.Generator().manual_seed(3))
        op, true = inst.operator, inst.true_operator.log_gain.detach()
        p = op.log_gain
        p.requires_grad_(True)
        opt = torch.optim.Adam([p], lr=0.05)
        for _ in range(300):
            loss = ((op(x) - inst.y) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        seen = sorted(set(op.st1.tolist()) | set(op.st2.tolist()))
        err = (p.detach() - true)[0, seen].abs().max()
        if amp_weight == 0:
            assert float(p.detach().abs().max()) == 0.0  # closures only: the gains drop out
        else:
            assert float(err) < 0.05, (p.detach(), true)


def test_solvers_that_need_a_linear_operator_are_refused():
    from algorithms.diffusion.daps import DAPS
    from algorithms.diffusion.ddrm import DDRM
    from algorithms.diffusion.diffpir import DiffPIR

    problem = BlackHoleProblem(size=16, hours=6.0, step_min=60.0, fov_uas=160.0)
    inst = problem.simulate(torch.rand(1, 1, 16, 16), torch.Generator().manual_seed(0))
    for algo, words in ((DDRM(), "SVD"), (DiffPIR(), "adjoint"), (DAPS(x0_sampler="exact"), "x0_sampler=langevin")):
        with pytest.raises(ValueError, match=words):
            algo.check(inst.operator, torch.nn.Identity())
    DAPS().check(inst.operator, torch.nn.Identity())  # the Langevin sampler differentiates forward: accepted


def test_residual_gradient_is_the_autograd_gradient_of_the_data_fit():
    problem = BlackHoleProblem(size=16, hours=6.0, step_min=60.0)
    x = torch.rand(1, 1, 16, 16, dtype=torch.float32, generator=torch.Generator().manual_seed(2)) + 0.1
    inst = problem.simulate(x, torch.Generator().manual_seed(0))
    op = inst.operator
    z = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    g = op.residual_gradient(z, inst.y)
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
    f = lambda v: 0.5 * float(((op(v) - inst.y) ** 2).sum())  # noqa: E731
    eps = 1e-3
    numeric = (f(z + eps * d) - f(z - eps * d)) / (2 * eps)
    assert abs(numeric - float((g * d).sum())) < 0.05 * abs(numeric) + 1e-3


def test_aligned_psnr_undoes_a_shift_and_sources_are_seeded():
    x = SyntheticEHT("test", morphology="rings")[0]["image"]
    assert float(psnr(x[None], align(x, torch.roll(x, 3, -1))[None])) > 60
    assert torch.equal(SyntheticEHT("test")[5]["image"], SyntheticEHT("test")[5]["image"])
    kinds = {SyntheticEHT("test", morphology="all")[i]["morphology"] for i in range(40)}
    assert kinds == {"crescent", "mring", "disk", "double"}
