"""MRSI (dynamic 2H metabolic imaging): the operator's physics, the problem, the phantoms, csi-fit and the metrics.

The registry-driven battery (tests/inverse_problems/test_operators.py) covers adjointness, the dense SVD and seeding of the
registered problem; these tests check what is specific to MRSI, at 8-16 px and 16-32 spectral points.
"""
from __future__ import annotations

import math

import pytest
import torch

from algorithms.classical.csi_fit import CSIFit
from algorithms.classical.mrsi import MRSILowRank, MRSITV, line_shape_subspace
from inverse_problems.operators.dense import dense_svd
from inverse_problems.data.phantoms.dmi import PhantomDMI
from inverse_problems.operators.linalg import batch_dot
from inverse_problems.operators.masks import make_mask
from inverse_problems.operators.mrsi import MRSI, SHIFTS_PPM, larmor_mhz, minimum_bandwidth_hz, shifts_hz
from inverse_problems.problems.mrsi import MRSIProblem, kinetic_metrics, map_metrics, snr_db
from inverse_problems.operators.random import SampleGenerators


def smooth_b0(n: int, peak_hz: float) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    return peak_hz * (0.6 * x + 0.4 * y * x)


def test_signal_is_the_stated_sum_of_damped_exponentials() -> None:
    """One voxel, one metabolite, no undersampling: F^H y at that voxel is x phi_m(t) written out by hand."""
    n, n_t, dwell = 8, 16, 2.6
    b0 = smooth_b0(n, 6.0)
    op = MRSI(torch.ones(n, n), n_t=n_t, dwell_ms=dwell, b0_hz=b0, drift=1.5, linewidth=2.0, phase=0.3)
    x = torch.zeros(1, 4, n, n)
    x[0, 2, 3, 5] = 2.0  # Glx
    z = op.voxel_signals(op(x))[0, :, 3, 5]
    t = torch.arange(n_t, dtype=torch.float64) * dwell / 1000
    f = float(shifts_hz(SHIFTS_PPM, 7.0)[2]) + float(b0[3, 5]) + 1.5
    rate = 1000 / 35.0 + math.pi * 2.0
    inv_norm = float(op.lines[2, 0].real)  # g_m(0) = 1 / ||Phi_0||, the basis normalisation
    expected = 2.0 * inv_norm * torch.exp(1j * 0.3 + (2j * math.pi * f - rate) * t)
    assert torch.allclose(z.to(torch.complex128), expected, rtol=1e-4, atol=1e-6)
    # the receiver sits at the middle of the shifts: water +1.1 ppm, Lac -1.7 ppm at 45.75 MHz
    assert float(shifts_hz(SHIFTS_PPM, 7.0)[0]) == pytest.approx(1.7 * larmor_mhz(7.0), rel=1e-5)


def test_adjoint_and_norm_with_b0_and_per_sample_parameters() -> None:
    """<A x, y> = <x, A^H y> with a B0 map and per-sample drift/linewidth/phase; ||A|| <= 1 (exactly 1 without B0)."""
    g = torch.Generator().manual_seed(0)
    mask = make_mask("poisson2d", (12, 12), 3, 0.25, 1)
    op = MRSI(mask, n_t=16, b0_hz=smooth_b0(12, 10.0), drift=torch.tensor([1.0, -3.0]),
              linewidth=torch.tensor([0.0, 4.0]), phase=torch.tensor([0.2, -1.0]))
    x = torch.randn((2, 4, 12, 12), generator=g)
    y = torch.complex(torch.randn((2, 16, 12, 12), generator=g), torch.randn((2, 16, 12, 12), generator=g))
    with torch.no_grad():
        lhs, rhs = batch_dot(op(x), y), batch_dot(x, op.adjoint(y))
    assert torch.allclose(lhs, rhs, rtol=1e-5, atol=1e-3)
    assert float(op.squared_norm(2, n_iter=100).max()) <= 1 + 1e-5
    full = MRSI(torch.ones(12, 12), n_t=16)
    assert float(full.squared_norm(1, n_iter=300)) == pytest.approx(1.0, abs=1e-4)


def test_dense_svd_route_at_a_tiny_size() -> None:
    """The exact dense SVD (DDRM's route) reproduces A with a B0 map and drift at 6 x 6 x 8 points."""
    op = MRSI(make_mask("vd2d", (6, 6), 2, 0.34, 0), n_t=8, b0_hz=smooth_b0(6, 8.0), drift=2.0)
    x = torch.randn((1, 4, 6, 6), generator=torch.Generator().manual_seed(2))
    svd = dense_svd(op, 1)
    with torch.no_grad():
        ax = op(x)
        assert float((svd.U(svd.s * svd.Vt(x)) - ax).abs().max() / ax.abs().max()) < 5e-3
        assert float((svd.V(svd.Vt(x)) - x).abs().max()) < 1e-4


def test_bandwidth_too_narrow_is_refused_with_the_minimum() -> None:
    need = minimum_bandwidth_hz(SHIFTS_PPM, 7.0, 2 * 0.3 * larmor_mhz(7.0))
    with pytest.raises(ValueError, match=rf"minimum {need:.1f} Hz.*dwell_ms <= "):
        MRSIProblem(size=8, dwell_ms=1000 / need * 1.01)
    MRSIProblem(size=8, dwell_ms=1000 / need * 0.99)  # just wide enough
    with pytest.raises(ValueError, match="alias"):  # the operator checks its own B0 map's range
        MRSI(torch.ones(8, 8), n_t=8, dwell_ms=5.0, b0_hz=smooth_b0(8, 40.0))
    # at 3 T the shifts and B0 span 7/3 x fewer Hz (78 Hz against 183 Hz): a 6 ms dwell (167 Hz) holds them there only
    MRSIProblem(size=8, field_t=3.0, dwell_ms=6.0)
    with pytest.raises(ValueError, match="minimum 183.0 Hz"):
        MRSIProblem(size=8, field_t=7.0, dwell_ms=6.0)


def test_csi_fit_recovers_a_single_peak_phantom_exactly() -> None:
    """Fully sampled noiseless data of a single-peak (Lac only) phantom with a B0 map: csi-fit returns it exactly."""
    n = 8
    op = MRSI(torch.ones(n, n), n_t=32, b0_hz=smooth_b0(n, 12.0), drift=2.0, linewidth=1.0, phase=0.4)
    x = torch.zeros(1, 4, n, n)
    x[0, 3, 2:6, 3:7] = 1.5
    rec = CSIFit().reconstruct(op(x), op)
    assert not bool(rec.failed.any())
    assert torch.allclose(rec.image, x, atol=1e-5)
    # all four metabolites at once, random positive maps: still exact
    x = torch.rand((2, 4, n, n), generator=torch.Generator().manual_seed(3)) * torch.tensor([10.0, 3, 3, 1.5]).view(4, 1, 1)
    assert torch.allclose(CSIFit().reconstruct(op(x), op).image, x, rtol=1e-4, atol=1e-4)


def test_csi_fit_refuses_a_non_mrsi_operator() -> None:
    from inverse_problems.operators.inpainting import Inpainting
    with pytest.raises(ValueError, match="MRSI operator"):
        CSIFit().reconstruct(torch.zeros(1, 1, 4, 4), Inpainting(torch.ones(4, 4)))


def test_adaptable_parameters_are_differentiable_reset_and_estimable() -> None:
    """Drift, linewidth and phase carry gradients; reset restores them; gradient descent on the data misfit with
    the true maps finds a drift of 3 Hz and a linewidth of 2 Hz."""
    n = 8
    x = torch.rand((1, 4, n, n), generator=torch.Generator().manual_seed(4)) * torch.tensor([10.0, 3, 3, 1.5]).view(4, 1, 1)
    true = MRSI(torch.ones(n, n), n_t=32, drift=3.0, linewidth=2.0, phase=0.1)
    y = true.measure(x)
    op = MRSI(torch.ones(n, n), n_t=32)
    assert set(op.adaptable_parameters()) == {"drift", "linewidth", "phase", "noise_std"}
    names = ("drift", "linewidth", "phase")
    opt = torch.optim.Adam([getattr(op, k) for k in names], lr=0.1)
    for _ in range(300):
        loss = (op(x) - y).abs().pow(2).sum() / y.abs().pow(2).sum()
        opt.zero_grad()
        loss.backward()
        assert all(float(getattr(op, k).grad.abs()) > 0 for k in names) or float(loss) < 1e-10
        opt.step()
    assert float(op.drift.detach()) == pytest.approx(3.0, abs=0.02)
    assert float(op.linewidth.detach()) == pytest.approx(2.0, abs=0.05)
    assert float(op.phase.detach()) == pytest.approx(0.1, abs=0.01)
    op.reset_adaptation()
    assert all(float(getattr(op, k).detach()) == 0.0 for k in names)


def dmi(split: str = "test", **kw) -> PhantomDMI:
    return PhantomDMI(split, size=16, subjects=4, n_frames=4, **kw)


def test_problem_gives_the_frame_physics_to_the_data_and_not_to_the_reconstruction() -> None:
    ds = dmi()
    items = [ds[1], ds[2]]
    problem = MRSIProblem(size=16, n_t=16)
    inst = problem.instance(items, "cpu", SampleGenerators.seeded(0, [it["id"] for it in items]))
    assert inst.y.shape == (2, 16, 16, 16) and inst.y.is_complex()
    drift = torch.tensor([it["drift_hz"] for it in items])
    assert torch.allclose(inst.true_operator.drift.detach(), drift)
    assert torch.allclose(inst.true_operator.b0_hz, torch.stack([it["b0_ppm"] for it in items]) * larmor_mhz(7.0))
    noise = torch.tensor([it["noise_scale"] for it in items]) * problem.noise_std
    assert torch.allclose(inst.true_operator.noise_std.detach(), noise)
    assert float(inst.operator.drift.detach().abs().max()) == 0.0 and float(inst.operator.linewidth.detach().abs().max()) == 0.0
    assert torch.equal(inst.operator.b0_hz, inst.true_operator.b0_hz)  # the field map is measured, known
    oracle = MRSIProblem(size=16, n_t=16, oracle_physics=True).instance(items, "cpu")
    assert torch.allclose(oracle.operator.drift.detach(), drift)
    # per-sample randomness: sample 1's data do not depend on the batch it is in
    alone = problem.instance(items[1:], "cpu", SampleGenerators.seeded(0, [items[1]["id"]]))
    assert torch.allclose(alone.y[0] * alone.scale[0], inst.y[1] * inst.scale[1], atol=1e-6)


def test_phantom_kinetics_and_splits() -> None:
    ds = dmi(tumour_prob=1.0)
    assert len(ds) == 16 and ds[5]["subject"] == 1 and ds[5]["frame"] == 1
    assert torch.equal(ds[3]["image"], dmi(tumour_prob=1.0)[3]["image"])  # deterministic
    assert not torch.equal(ds[0]["image"], dmi("train", tumour_prob=1.0)[0]["image"])  # splits: other subjects
    frames = [ds[k] for k in range(4)]  # subject 0 in time order
    times = [f["time_min"] for f in frames]
    assert times == sorted(times) and times[-1] == pytest.approx(180.0)
    means = torch.stack([f["image"].flatten(1).mean(1) for f in frames])  # (frames, 4)
    assert bool((means[1:] > means[:-1]).all())  # every metabolite rises
    glc = means[:, 1]
    assert float(glc[3] - glc[2]) < float(glc[1] - glc[0])  # Glc saturates
    last = frames[-1]
    tum, gm = last["roi_tumour"], last["roi_gm"]
    assert bool(tum.any()) and bool(gm.any())
    lac = last["image"][3]
    assert float(lac[tum].mean()) > 2 * float(lac[gm].mean())  # tumour lactate
    outside = last["image"][:, 0, 0]
    assert float(outside.abs().max()) == 0.0  # no signal outside the head
    fast = dmi(tumour_prob=1.0, tumour_lac_scale=2.0)[3]["image"][3]
    assert float(fast[tum].mean()) > 1.5 * float(lac[tum].mean())


def test_map_metrics_by_value() -> None:
    t = torch.zeros(4, 4, 4)
    t[:, 1:3, 1:3] = torch.tensor([10.0, 3.0, 2.0, 1.0]).view(4, 1, 1)
    t[3] = 0.0  # an all-zero target map: undefined, reported as None
    r = t * 1.1
    m = map_metrics(r, t)
    assert m["nrmse_water"] == pytest.approx(0.1) and m["nrmse_glc"] == pytest.approx(0.1)
    # PSNR = 10 log10(max^2 / MSE), MSE = (4 px x (0.1 max)^2) / 16 px
    assert m["psnr_glx"] == pytest.approx(10 * math.log10(1 / (0.01 * 4 / 16)))
    assert m["nrmse_lac"] is None and m["psnr_lac"] is None


def test_csi_fit_on_undersampled_noisy_phantom_is_finite_and_close() -> None:
    """R = 4, noise, unknown drift: the baseline stays within 40 % NRMSE on water and Glc (a loose sanity bound)."""
    ds = dmi()
    items = [ds[3]]
    problem = MRSIProblem(size=16, n_t=32, acceleration=4)
    inst = problem.instance(items, "cpu", torch.Generator().manual_seed(0))
    rec = CSIFit().reconstruct(inst.y, inst.operator)
    m = problem.metrics(rec.image[0] * inst.scale[0], items[0]["image"], items[0])
    assert m["nrmse_water"] < 0.4 and m["nrmse_glc"] < 0.4


def test_lowrank_and_tv_beat_zero_filled_fit_at_r4() -> None:
    """R = 4, noise, a B0 map, unknown drift: mrsi-lowrank and mrsi-tv have a lower NRMSE than csi-fit (zero-filled
    FFT + per-voxel fit) on water, Glc and Glx and on the mean over metabolites; no target is passed to them."""
    ds = dmi("val")
    items = [ds[1], ds[3]]
    problem = MRSIProblem(size=16, n_t=32, acceleration=4)
    inst = problem.instance(items, "cpu", SampleGenerators.seeded(0, [it["id"] for it in items]))

    def nrmse(algo) -> dict[str, float]:
        rec = algo.reconstruct(inst.y, inst.operator)
        assert not bool(rec.failed.any())
        ms = [problem.metrics(rec.image[k] * inst.scale[k], it["image"], it) for k, it in enumerate(items)]
        return {m: sum(x[f"nrmse_{m}"] for x in ms) / len(ms) for m in ("water", "glc", "glx", "lac")}

    base = nrmse(CSIFit())
    for algo in (MRSILowRank(n_outer=15), MRSITV(n_iter=100)):
        got = nrmse(algo)
        assert all(got[m] < base[m] for m in ("water", "glc", "glx")), (type(algo).__name__, got, base)
        assert sum(got.values()) < 0.85 * sum(base.values()), (type(algo).__name__, got, base)


def test_lowrank_subspace_and_options() -> None:
    """The line-shape subspace is orthonormal and holds every nominal line; a full-rank data subspace without
    regularisation on fully sampled noiseless data gives the maps exactly; bad options are refused by name."""
    op = MRSI(torch.ones(8, 8), n_t=16, b0_hz=smooth_b0(8, 6.0))
    v = line_shape_subspace(op.lines, op.times)
    assert torch.allclose(v.conj() @ v.T, torch.eye(8, dtype=v.dtype), atol=1e-5)
    assert torch.allclose((op.lines @ v.conj().T) @ v, op.lines, atol=1e-5)
    x = torch.rand((1, 4, 8, 8), generator=torch.Generator().manual_seed(5))
    for basis in ("data", "lines"):
        rec = MRSILowRank(rank=16 if basis == "data" else 8, basis=basis, lam=0.0, eps=0.0, n_outer=2, n_cg=30)
        assert torch.allclose(rec.reconstruct(op(x), op).image, x, atol=2e-3), basis
    for bad, word in ((dict(basis="svd"), "basis"), (dict(rank=0), "rank"), (dict(rho=0.0), "rho")):
        with pytest.raises(ValueError, match=word):
            MRSILowRank(**bad)
    with pytest.raises(ValueError, match="rank 40 exceeds the 16 spectral points"):
        MRSILowRank(rank=40).reconstruct(op(x), op)


def test_tv_weights_come_from_the_data_and_constrain_to_non_negative() -> None:
    """mrsi-tv: lam_m is lam times the 99th percentile of each CSI-fitted map (from y only); maps are >= 0; with
    lam = 0 and enough iterations, fully sampled noiseless data give the maps (least squares)."""
    op = MRSI(torch.ones(8, 8), n_t=16)
    x = torch.rand((1, 4, 8, 8), generator=torch.Generator().manual_seed(6)) * torch.tensor([10.0, 3, 3, 1.5]).view(4, 1, 1)
    y = op(x)
    w = MRSITV(lam=0.1).weights(y, op).flatten()
    assert torch.allclose(w, 0.1 * torch.quantile(x.flatten(2), 0.99, dim=2).flatten(), rtol=1e-3)
    rec = MRSITV(lam=0.05).reconstruct(y - 0.5 * op(torch.ones_like(x)), op)  # data of partly negative maps
    assert float(rec.image.min()) >= 0.0
    exact = MRSITV(lam=0.0, n_iter=300).reconstruct(y, op).image
    assert torch.allclose(exact, x, rtol=0.02, atol=0.05)


def test_kinetic_metrics_by_value() -> None:
    """Reconstructed ROI means 10 % above the truth at every frame: curve error 0.1 per metabolite; the Lac/Glx
    ratio of the tumour at the last frame, its error; a one-frame subject makes no curve; SNR in dB by value."""
    def record(subject, frame, scale, rois=("tumour", "gm", "wm")):
        true = {roi: [10.0 + frame, 1.0 + frame, 2.0 + frame, 0.5 * (1 + frame)] for roi in rois}
        rec = {roi: [v * scale for v in vals] for roi, vals in true.items()}
        if "tumour" in rec:
            rec["tumour"][3] *= 2  # Lac twice as high in the tumour
        return {"subject": subject, "frame": frame, "time_min": 45.0 * (frame + 1), "roi_true": true, "roi_recon": rec}

    recs = [record("a", k, 1.1, ("gm", "wm")) for k in (2, 0, 1)] + [record("b", 0, 1.0)]
    m = kinetic_metrics(recs)
    assert m["kinetic_error_water"] == pytest.approx(0.1) and m["kinetic_error_lac"] == pytest.approx(0.1)
    assert m["lac_glx_tumour"] == pytest.approx(2 * 0.5 / 2.0) and m["lac_glx_tumour_true"] == pytest.approx(0.25)
    assert m["lac_glx_tumour_error"] == pytest.approx(1.0)
    recs = [record("c", k, 1.0) for k in range(3)]
    assert kinetic_metrics(recs)["kinetic_error_glc"] == pytest.approx(0.0)
    assert kinetic_metrics(recs)["kinetic_error_lac"] > 0.1  # the tumour's doubled Lac
    assert kinetic_metrics([record("d", 0, 1.0, ("gm",))])["kinetic_error_water"] is None
    t = torch.ones(4, 2, 2)
    assert snr_db(t * 1.1, t) == pytest.approx(20.0)


def test_runner_stores_the_problem_metrics_per_sample() -> None:
    """The runner's one hook: Problem.metrics lands in each row's problem_metrics, in target units."""
    from benchmarks.batch import run_batch
    from benchmarks.build import Components

    ds = dmi()
    comp = Components(dataset=ds, problem=MRSIProblem(size=16, n_t=16, acceleration=1, center_fraction=0.0, noise_std=0.0,
                                                      oracle_physics=True),
                      algorithm=CSIFit(), prior=None)
    rows, images, _, _ = run_batch(comp, [0, 1], seed=0, device=torch.device("cpu"))
    for row, image in zip(rows, images):
        pm = row["problem_metrics"]
        assert set(pm) == {f"{k}_{m}" for k in ("nrmse", "psnr") for m in ("water", "glc", "glx", "lac")} | {"snr_db"}
        rec = row["problem_record"]
        assert rec["frame"] == row["index"] and set(rec["roi_true"]) <= {"tumour", "gm", "wm"} and rec["roi_true"]
        assert pm["nrmse_water"] < 1e-4 and pm["nrmse_lac"] < 1e-3  # noiseless, fully sampled, oracle: exact
        assert torch.allclose(image, ds[row["index"]]["image"], rtol=1e-3, atol=1e-3)


def test_bench_run_mrsi_csi_fit(tmp_path) -> None:
    """`bench run --problem mrsi --algo csi-fit` end to end: summary with the per-metabolite block."""
    import json

    from tests.helpers import bench

    out = tmp_path / "run"
    res = bench("run", "--problem", "mrsi", "--algo", "csi-fit", "--n", "2", "--out", str(out), "--quiet",
                "problem.size=16", "dataset.size=16", "problem.n_t=16")
    assert "nrmse_lac" in res.stdout and "kinetic_error_lac" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_ok"] == 2 and summary["problem_metrics"]["nrmse_glc"]["n"] == 2
    assert summary["problem_metrics_version"] == "mrsi-1"
    runm = summary["problem_run_metrics"]
    assert set(runm) >= {f"kinetic_error_{m}" for m in ("water", "glc", "glx", "lac")} | {"lac_glx_tumour_error"}
    assert 0 < runm["kinetic_error_water"] < 1
    # the report draws every metabolite, the kinetic curves and a voxel spectrum
    rep = bench("report", str(out))
    assert "kinetic_error_glc" in rep.stdout
    assert {p.name for p in (out / "figures").iterdir()} == {"samples.png", "kinetics.png", "spectrum.png"}
    # the leaderboard's versioned problem-specific block, valid against the shipped schema
    from benchmarks import leaderboard

    board = leaderboard.build([out])
    leaderboard.validate(board)
    block = board["entries"][0]["problem_metrics"]
    assert block["version"] == "mrsi-1" and block["per_sample"]["nrmse_lac"]["n"] == 2
    assert block["per_run"]["kinetic_error_water"] == pytest.approx(runm["kinetic_error_water"])
    refused = bench("run", "--problem", "mrsi", "--algo", "daps", "--prior", "phantom-brain-64", "--n", "1", "--out",
                    str(tmp_path / "r2"), "--quiet", check=False)
    assert refused.returncode != 0 and "(2, 64, 64)" in refused.stderr and "(4, 32, 32)" in refused.stderr


def test_shipped_dmi_prior_fits_mrsi_and_is_refused_elsewhere_naming_both_shapes(tmp_path) -> None:
    """phantom-dmi-32 is a 4-channel 32 x 32 denoiser that the default mrsi problem accepts; a problem of
    another channel count is refused before any compute with both shapes named; missing weights name the command."""
    from priors.shipped import phantom_dmi_32

    prior = phantom_dmi_32()
    assert prior.channels == 4 and tuple(prior.resolution) == (32, 32)
    prior.check_compatible(MRSIProblem().image_shape, "problem 'mrsi'")
    x = torch.randn((2, 4, 32, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.isfinite(prior.denoise(x, 0.5)).all()
    with pytest.raises(ValueError, match=r"\(4, 32, 32\).*\(2, 32, 32\)"):
        prior.check_compatible((2, 32, 32), "problem 'cs_mri'")
    with pytest.raises(FileNotFoundError, match="bench train-prior --recipe edm"):
        phantom_dmi_32(path=str(tmp_path))


def test_problem_solver_defaults_sit_under_the_users_overrides_and_only_for_their_problem(monkeypatch) -> None:
    """mrsi declares DAPS's 0.1K budget with 50 Langevin steps (configs/problem/mrsi.yaml): a run's config records them, the
    user's overrides win, other problems keep DAPS's official defaults, the leaderboard labels them as changed
    options, and a declared option the algorithm does not take is refused naming the problem."""
    from benchmarks import leaderboard
    from benchmarks.config import ConfigError, Selection, compose_config, options
    from dataclasses import replace

    from benchmarks import config
    from benchmarks.sweep import sweep_problem_options

    cfg = compose_config(Selection("mrsi", "daps", ["tda"]))
    algo = options(cfg, "algorithm")
    assert (algo["budget"], algo["langevin_steps"], algo["x0_sampler"]) == ("0.1k", 50, "langevin")
    assert algo["lr"] == 1e-4  # options the problem does not declare keep DAPS's own defaults
    user = options(compose_config(Selection("mrsi", "daps", []), ["algorithm.x0_sampler=exact",
                                                                   "algorithm.budget=1k"]), "algorithm")
    assert (user["x0_sampler"], user["budget"], user["langevin_steps"]) == ("exact", "1k", 50)
    other = options(compose_config(Selection("lowfield", "daps", [])), "algorithm")
    assert (other["budget"], other["x0_sampler"], other["langevin_steps"]) == ("1k", "langevin", 100)
    cs = options(compose_config(Selection("cs_mri", "daps", [])), "algorithm")  # cs_mri declares its own
    assert (cs["budget"], cs["x0_sampler"], cs["langevin_steps"]) == ("0.1k", "chain", 100)
    assert options(compose_config(Selection("mrsi", "diffpir", [])), "algorithm") == \
        options(compose_config(Selection("cs_mri", "diffpir", [])), "algorithm")  # nothing declared for diffpir
    key = {"algorithm": "daps", "algorithm_options": algo, "adapter_options": {}}
    assert leaderboard.changed_options(key) == {"algorithm": {"budget": "0.1k", "langevin_steps": 50}}
    assert sweep_problem_options(["mrsi"], "algorithms", "daps") == {"budget": "0.1k", "langevin_steps": 50}
    with pytest.raises(ConfigError, match="sweep them separately"):
        sweep_problem_options(["mrsi", "cs_mri"], "algorithms", "daps")
    declared = config.problem_choices
    monkeypatch.setattr(config, "problem_choices", lambda p: replace(declared(p), algorithms={"daps": {"langevin_stepz": 5}}))
    with pytest.raises(ConfigError, match=r"problem 'mrsi' declares options for algorithm 'daps' with langevin_stepz"):
        compose_config(Selection("mrsi", "daps", []))
