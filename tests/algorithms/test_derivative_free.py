"""The forward-only operator contract and the derivative-free solvers (issue 30: FPS, MCG-diff, DPG, SCG, EnKG, DPS-GSG):
the contract's refusals, runs on a forward-only operator, batch independence, options, `bench list`/`bench tune`
declarations and the CLI. Their exact checks are in test_derivative_free_exact."""
from __future__ import annotations

import json

import pytest
import torch

from algorithms.diffusion.dpg import DPG
from algorithms.diffusion.dps import DPS
from algorithms.diffusion.dps_gsg import DPSGSG
from algorithms.diffusion.enkg import EnKG
from algorithms.diffusion.fps import FPS
from algorithms.diffusion.mcg_diff import MCGDiff
from algorithms.diffusion.scg import SCG
from inverse_problems.operators.forward_only import ForwardOnly, ForwardOnlyError
from inverse_problems.operators.random import SampleGenerators
from tests.algorithms.test_solvers import SOLVERS, setup
from tests.conftest import bench

NAMES = ("fps", "mcg-diff", "dpg", "scg", "enkg", "dps-gsg")


def test_forward_only_operator_raises_on_adjoint_and_on_backward() -> None:
    _, op, y = setup()
    fo = ForwardOnly(op)
    x = torch.randn((3, *op.image_shape), requires_grad=True)
    assert torch.equal(fo.forward(x.detach()), op.forward(x.detach()))
    for call in (lambda: fo.adjoint(y), lambda: fo.normal(x), lambda: fo.pinv(y)):
        with pytest.raises(ForwardOnlyError, match="no adjoint"):
            call()
    with pytest.raises(ForwardOnlyError, match="no gradient"):
        fo.forward(x).sum().backward()
    assert fo.svd() is None and fo.forward_only


def test_every_registered_solver_declares_whether_it_runs_forward_only() -> None:
    """Exactly the six are derivative-free among the registered algorithms; every other one is refused on a
    forward-only operator before any compute, naming what it needs."""
    from benchmarks import registry
    from tests.helpers import project_names

    free = {n for n in project_names("algorithms") if getattr(registry.load("algorithms", n), "derivative_free", False)}
    assert free == set(NAMES)
    prior, op, y = setup()
    for name, (make, _) in SOLVERS.items():
        if name.split("-exact")[0] in free:
            continue
        with pytest.raises(ValueError, match="forward-only"):
            make().reconstruct(y, ForwardOnly(op), prior)


def test_dps_refusal_names_the_missing_capability() -> None:
    prior, op, y = setup()
    with pytest.raises(ValueError, match="gradients through the forward model; this problem's operator is forward-only"):
        DPS(n_steps=3).reconstruct(y, ForwardOnly(op), prior)


@pytest.mark.parametrize("name", NAMES)
def test_runs_on_a_forward_only_operator(name: str) -> None:
    """Each runs forward-only (FPS and MCG-diff on the matrix probed from forward calls) and keeps the data: observed
    pixels nearer y than the prior's spread."""
    make, nfe = SOLVERS[name]
    prior, op, y = setup()
    r = make().reconstruct(y, ForwardOnly(op), prior, torch.Generator().manual_seed(0))
    assert not r.failed.any() and r.nfe == nfe and torch.isfinite(r.image).all()


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_never_changes_a_number(name: str) -> None:
    make, _ = SOLVERS[name]
    prior, op, y = setup(b=3)
    both = make().reconstruct(y, op, prior, SampleGenerators.seeded(0, [10, 11, 12])).image
    alone = make().reconstruct(y[1:2], op, prior, SampleGenerators.seeded(0, [11])).image
    assert torch.allclose(both[1:2], alone, atol=1e-5, rtol=1e-4)


def test_smc_samplers_on_the_probed_matrix_match_the_closed_form_route_in_law() -> None:
    """A forward-only linear operator is written out from forward calls and diagonalised: for inpainting its singular
    values are the mask's, so FPS sees the same filter (up to the order of the coordinates)."""
    _, op, y = setup(b=1)
    svd = FPS().spectral(ForwardOnly(op), 1)
    assert sorted(svd.s[0].round().tolist()) == sorted(op.mask.flatten().tolist())
    assert torch.allclose(svd.U(svd.s * svd.Vt(y)), op.forward(y), atol=1e-5)


def test_probing_refuses_large_or_nonlinear_operators() -> None:
    prior, op, y = setup()
    with pytest.raises(ValueError, match="dense_max=8"):
        FPS(dense_max=8).reconstruct(y, ForwardOnly(op), prior)
    with pytest.raises(ValueError, match="not declared linear"):
        MCGDiff().reconstruct(y, ForwardOnly(op, linear=False), prior)


def test_probing_refuses_a_matrix_above_the_memory_limit_before_compute(monkeypatch) -> None:
    """The probe writes A out as a (rows x columns) float32 matrix; one above algorithm.base.PROBE_BYTES (the MRSI
    signal model's is 196608 x 4096, 3 GiB) is refused in `check`, naming its size and the solvers that need no SVD."""
    import algorithms.base
    prior, op, y = setup()
    FPS().check(ForwardOnly(op), prior)  # the test problem's matrix is far below the limit
    monkeypatch.setattr(algorithms.base, "PROBE_BYTES", 1024)
    with pytest.raises(ValueError, match=r"as a \d+ x \d+ matrix .*dpg, scg, enkg, dps-gsg"):
        FPS().reconstruct(y, ForwardOnly(op), prior)
    with pytest.raises(ValueError, match="GiB the probe allows"):
        MCGDiff().check(ForwardOnly(op), prior)
    DPG().check(ForwardOnly(op), prior)  # forward calls only: no matrix, no limit


@pytest.mark.parametrize("make,match", [
    (lambda: EnKG(n_particles=1), "n_particles"), (lambda: EnKG(scale=-1.0), "scale"),
    (lambda: DPSGSG(mu=0.0), "mu"), (lambda: DPSGSG(n_queries=1), "n_queries"),
    (lambda: FPS(eta=0.0), "eta"), (lambda: FPS(output="median"), "output"),
    (lambda: MCGDiff(sigma_min=200.0), "sigma_min"), (lambda: DPG(n_mc=1), "n_mc"),
    (lambda: DPG(beta=2.0), "beta"), (lambda: SCG(threshold=1.5), "threshold"),
])
def test_bad_options_are_named(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("name", NAMES)
def test_search_space_and_yaml_defaults_are_options(name: str) -> None:
    from tests.algorithms.test_solvers_roster import test_search_space_and_yaml_defaults_are_options as check

    check(name)


def test_list_shows_them_with_descriptions() -> None:
    out = bench("list", "algorithms").stdout
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  ")}
    for name in NAMES:
        assert name in lines and "(derivative-free)" in lines[name], out
    assert sum("(derivative-free)" in ln for ln in lines.values()) == len(NAMES), out


CLI_FEW_STEPS = {
    "fps": ["algorithm.n_steps=5", "algorithm.n_particles=2"],
    "mcg-diff": ["algorithm.n_steps=5", "algorithm.n_particles=2"],
    "dpg": ["algorithm.n_steps=5", "algorithm.n_mc=8"],
    "scg": ["algorithm.n_steps=5", "algorithm.n_candidates=2"],
    "enkg": ["algorithm.n_steps=5", "algorithm.n_particles=2", "algorithm.n_updates=1"],
    "dps-gsg": ["algorithm.n_steps=5", "algorithm.n_queries=8"],
}


def _rows(out) -> list[dict]:
    return [json.loads(ln) for ln in (out / "samples.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", NAMES)  # a few seconds each: 16 x 16 Gaussian prior, 5 steps
def test_cli_runs_forward_only_inpainting_with_the_gaussian_prior(name: str, tmp_path) -> None:
    out = tmp_path / name
    bench("run", "--problem", "inpainting", "--algo", name, "--prior", "gaussian", "--n", "1", "--quiet",
          "--out", str(out), "prior.n=16", "problem.forward_only=true", *CLI_FEW_STEPS[name])
    rows = _rows(out)
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["nfe"] > 0, rows


def test_cli_refuses_dps_on_a_forward_only_problem_and_lists_the_usable_solvers(tmp_path) -> None:
    res = bench("run", "--problem", "inpainting", "--algo", "dps", "--prior", "gaussian", "--n", "1", "--quiet",
                "--out", str(tmp_path / "dps"), "prior.n=16", "problem.forward_only=true", check=False)
    assert res.returncode != 0
    msg = res.stdout + res.stderr
    assert "gradients through the forward model" in msg and "forward-only" in msg, msg
    assert all(n in msg.split("use one of:")[1] for n in NAMES), msg


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_cli_runs_on_single_coil_cs_mri_with_the_shipped_prior(name: str, tmp_path) -> None:
    """Single-coil cs_mri (64 x 64) with the shipped prior, as the gradient-based solvers run."""
    out = tmp_path / name
    bench("run", "--problem", "cs_mri", "--algo", name, "--n", "1", "--quiet", "--out", str(out), "problem.coils=1",
          *CLI_FEW_STEPS[name])
    rows = _rows(out)
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["nfe"] > 0, rows


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_cli_runs_forward_only_cs_mri(name: str, tmp_path) -> None:
    """Forward-only single-coil cs_mri (32 x 32 with a complex Gaussian prior fitted to random fields, so that the probed matrix
    of FPS and MCG-diff stays small)."""
    out = tmp_path / name
    bench("run", "--problem", "cs_mri", "--algo", name, "--prior", "gaussian", "--n", "1", "--quiet", "--out", str(out),
          "problem.coils=1", "problem.size=32", "dataset.size=32", "prior.n=16", "prior.dataset_options.channels=2",
          "problem.forward_only=true",
          *CLI_FEW_STEPS[name])
    rows = _rows(out)
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["nfe"] > 0, rows


@pytest.mark.parametrize("problem,options", [("inpainting", {"size": 8}), ("cs_mri", {"size": 16, "coils": 1}),
                                             ("mrsi", {"size": 8})])
def test_problem_option_hands_the_same_data_forward_only(problem: str, options: dict) -> None:
    """`problem.forward_only=true` changes what the reconstruction may call, not the data: same y, same scale, same A x
    (the problem scales y with its own physics before handing the operator over)."""
    from benchmarks import registry

    plain_problem = registry.build("problems", problem, **options)
    x = torch.rand((2, *plain_problem.image_shape), generator=torch.Generator().manual_seed(0))
    plain = plain_problem.simulate(x, torch.Generator().manual_seed(1))
    fo = registry.build("problems", problem, forward_only=True, **options).simulate(x, torch.Generator().manual_seed(1))
    assert isinstance(fo.operator, ForwardOnly) and not isinstance(plain.operator, ForwardOnly)
    assert torch.equal(fo.y, plain.y) and torch.equal(fo.scale, plain.scale)
    assert torch.allclose(fo.operator.forward(x), plain.operator.forward(x))
    assert torch.allclose(fo.operator.noise_std, plain.operator.noise_std)


def test_cli_refuses_adapters_on_a_forward_only_problem(tmp_path) -> None:
    res = bench("run", "--problem", "inpainting", "--algo", "enkg+tda", "--prior", "gaussian", "--n", "1", "--quiet",
                "--out", str(tmp_path / "tda"), "prior.n=16", "problem.forward_only=true", check=False)
    assert res.returncode != 0 and "adapters (tda)" in res.stdout + res.stderr, res.stdout + res.stderr


def test_cli_runs_forward_only_mrsi() -> None:
    """The MRSI signal model (drift, linewidth, B0) handed over without its gradient: EnKG runs on it (a few seconds)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "mrsi"
        bench("run", "--problem", "mrsi", "--algo", "enkg", "--n", "1", "--quiet", "--out", str(out),
              "problem.forward_only=true", *CLI_FEW_STEPS["enkg"])
        rows = _rows(out)
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["nfe"] > 0, rows
