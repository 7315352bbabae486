"""Numbers do not depend on how the work is cut: batch size, processes (docs/design.md, "Randomness")."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from algorithms.classical.compressed_sensing import roll_per_sample
from algorithms.diffusion.inr import ModelwiseAdam
from benchmarks.config import Selection, compose_config
from benchmarks.results import read_samples
from benchmarks.runner import execute
from inverse_problems.operators.random import SampleGenerators, rand, randint, randn, spawn

METRICS = ("psnr", "ssim", "nmse", "ncc", "data_misfit", "scale")
GAUSS16 = ["dataset.size=16", "problem.size=16", "prior.n=16", "prior.dataset_options={size: 16}"]
CS32 = ["problem.size=32", "problem.coils=1", "dataset.size=32"]
CASES = {
    "diffpir-gaussian-inpainting": ("inpainting", "diffpir", "gaussian", ["algorithm.n_steps=6", *GAUSS16]),
    "daps-gaussian-inpainting": ("inpainting", "daps", "gaussian",
                                 ["algorithm.n_steps=3", "algorithm.ode_steps=1", "algorithm.langevin_steps=3", *GAUSS16]),
    "daps-exact-gaussian-inpainting": ("inpainting", "daps", "gaussian",
                                       ["algorithm.n_steps=3", "algorithm.ode_steps=1", "algorithm.x0_sampler=exact",
                                        *GAUSS16]),
    "diffdeur-gaussian-inpainting": ("inpainting", "diffdeur", "gaussian",
                                     ["algorithm.n_steps=2", "algorithm.inr_iters=8", "algorithm.width=8",
                                      "algorithm.n_freq=4", "algorithm.patience=2", *GAUSS16]),
    "cg-sense-cs_mri": ("cs_mri", "cg-sense", None, CS32),
    "l1-wavelet-cs_mri": ("cs_mri", "l1-wavelet", None, [*CS32, "algorithm.n_iter=8"]),
}


def run(tmp: Path, problem: str, algo: str, prior: str | None, over: list[str], batch: int, n: int = 4):
    cfg = compose_config(Selection(problem, algo, [], prior), [*over, f"run.n={n}", f"run.batch_size={batch}",
                                                               "run.device=cpu"])
    out = tmp / f"b{batch}"
    execute(cfg, out, progress=False)
    return load(out)


def load(out: Path) -> tuple[dict[int, dict], dict[int, np.ndarray]]:
    rows = {r["index"]: r for p in sorted(out.glob("samples*.jsonl")) for r in read_samples(p)}
    return rows, {i: np.load(out / r["reconstruction"]) for i, r in rows.items()}


def assert_same(a, b) -> None:
    (rows_a, img_a), (rows_b, img_b) = a, b
    assert sorted(rows_a) == sorted(rows_b)
    for i in rows_a:
        assert [rows_a[i][m] for m in METRICS] == [rows_b[i][m] for m in METRICS], i
        assert np.array_equal(img_a[i], img_b[i]), f"sample {i}: max |diff| {np.abs(img_a[i] - img_b[i]).max()}"


def test_per_sample_draws_do_not_depend_on_the_batch():
    ids = ["a", "b", "c", "d"]
    for draw in (lambda g, b: randn((b, 2, 5), g), lambda g, b: rand((b, 3), g),
                 lambda g, b: randint(0, 100, (b, 2), g)):
        whole = draw(SampleGenerators.seeded(7, ids), 4)
        for k, i in enumerate(ids):
            assert torch.equal(whole[k], draw(SampleGenerators.seeded(7, [i]), 1)[0])
        assert not torch.equal(whole[0], whole[1])
        assert not torch.equal(whole, draw(SampleGenerators.seeded(8, ids), 4))  # the seed matters
    with pytest.raises(ValueError, match="first dimension must be the batch"):
        randn((3, 2), SampleGenerators.seeded(0, ids))
    plain = torch.Generator().manual_seed(0)  # notebook use: a plain generator still works
    assert torch.equal(randn((2, 3), plain), torch.randn((2, 3), generator=torch.Generator().manual_seed(0)))
    sg = SampleGenerators.seeded(0, ids)
    assert torch.randn(3, generator=sg).shape == (3,)  # also a torch.Generator for code that draws directly
    streams = spawn(sg, "tag")
    assert torch.equal(randn((4, 3), streams)[2], randn((1, 3), spawn(SampleGenerators.seeded(0, ["c"]), "tag"))[0])


def test_roll_per_sample_is_torch_roll_per_sample():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    shifts = torch.tensor([[1, -2], [3, 5]])
    out = roll_per_sample(x, shifts)
    for k in range(2):
        assert torch.equal(out[k], torch.roll(x[k], tuple(shifts[k].tolist()), dims=(-2, -1)))
    assert torch.equal(roll_per_sample(out, -shifts), x)


def test_modelwise_adam_is_adam_and_a_stopped_model_stays_put():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(3, 4, 2))
    ref = torch.nn.Parameter(w.detach().clone())
    mine, adam = ModelwiseAdam([w], lr=0.01), torch.optim.Adam([ref], lr=0.01)
    for _ in range(5):
        for p, opt in ((w, mine), (ref, adam)):
            opt.zero_grad()
            (p**3).sum().backward()
        mine.step()
        adam.step()
    assert torch.allclose(w, ref, atol=1e-6)
    frozen = w.detach().clone()
    mine.zero_grad()
    (w**3).sum().backward()
    mine.step(torch.tensor([True, False, True]))
    assert torch.equal(w[1], frozen[1]) and not torch.equal(w[0], frozen[0])
    assert mine.t.tolist() == [6, 5, 6]


@pytest.mark.parametrize("case", sorted(CASES))
def test_batch_size_does_not_change_a_bit(case, tmp_path):
    problem, algo, prior, over = CASES[case]
    ref = run(tmp_path, problem, algo, prior, over, batch=1)
    assert all(r["status"] == "ok" for r in ref[0].values())
    for batch in (3, 4):
        assert_same(run(tmp_path, problem, algo, prior, over, batch=batch), ref)


@pytest.mark.slow
def test_network_prior_batch_tolerance_and_exact_option(tmp_path):
    """The shipped U-Net: batched kernels round differently per batch size (measured ~7e-7 on this CPU);
    run.prior_per_sample=true makes it exact."""
    over = ["algorithm.n_steps=3", "algorithm.ode_steps=1", "algorithm.langevin_steps=2", "problem.coils=1"]
    a = run(tmp_path / "a", "cs_mri", "daps", "phantom-brain-64", over, batch=1, n=3)
    b = run(tmp_path / "b", "cs_mri", "daps", "phantom-brain-64", over, batch=3, n=3)
    for i in a[1]:
        assert np.abs(a[1][i] - b[1][i]).max() <= 1e-5 * max(1.0, np.abs(a[1][i]).max())
        assert abs(a[0][i]["psnr"] - b[0][i]["psnr"]) < 1e-3
    exact = [*over, "run.prior_per_sample=true"]
    assert_same(run(tmp_path / "c", "cs_mri", "daps", "phantom-brain-64", exact, batch=3, n=3),
                run(tmp_path / "d", "cs_mri", "daps", "phantom-brain-64", exact, batch=1, n=3))


def test_one_or_two_processes_give_the_same_bits(tmp_path):
    """torchrun shards batches over processes (batch 2); one process with batch 3 gives the same samples."""
    args = ["run", "--problem", "cs_mri", "--algo", "l1-wavelet", "--n", "5", "--device", "cpu", "--quiet",
            "problem.size=32", "problem.coils=1", "dataset.size=32", "algorithm.n_iter=8"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                          "benchmarks.cli", "--", *args, "--batch-size", "2", "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "two" / "samples.rank1.jsonl").exists()
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["n_ok"] == 5
    from tests.helpers import bench

    bench(*args, "--batch-size", "3", "--out", str(tmp_path / "one"))
    assert_same(load(tmp_path / "two"), load(tmp_path / "one"))
