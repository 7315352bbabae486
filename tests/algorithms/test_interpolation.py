"""The 4-D interpolation baselines (interp-linear, interp-nearest, interp-io), the existing diffusion solvers on the
frame-selection operator, and `bench run --problem interp4d` from the command line on small sizes."""
from __future__ import annotations

import json

import pytest
import torch

from algorithms.classical.interpolation import InterpLinear, InterpNearest, brackets
from algorithms.classical.registration import InterpIO
from inverse_problems.operators.frames import FrameSelection
from inverse_problems.operators.warp import warp
from priors.analytic import GaussianPrior
from tests.helpers import bench

torch.set_num_threads(1)


def test_brackets() -> None:
    keep = torch.tensor([[1, 0, 0, 1, 0, 1], [1, 1, 0, 0, 0, 1]], dtype=torch.bool)
    times = torch.tensor([0.0, 1, 2, 3, 4, 6])
    a, b, alpha = brackets(keep, times)
    assert a.tolist() == [[0, 0, 0, 3, 3, 5], [0, 1, 1, 1, 1, 5]]
    assert b.tolist() == [[0, 3, 3, 3, 5, 5], [0, 1, 5, 5, 5, 5]]
    assert alpha[0].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 0, 1 / 3, 0])
    assert alpha[1].tolist() == pytest.approx([0, 0, 0.2, 0.4, 0.6, 0])


def test_linear_is_exact_on_linear_sequences_and_nearest_picks_frames() -> None:
    g = torch.Generator().manual_seed(0)
    start, end = torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g)
    w = torch.linspace(0, 1, 7).view(1, 7, 1, 1)
    x = (1 - w) * start + w * end
    op = FrameSelection(torch.tensor([1, 0, 0, 0, 0, 0, 1], dtype=torch.bool), (8, 8))
    y = op(x)
    lin = InterpLinear().reconstruct(y, op)
    assert torch.allclose(lin.image, x, atol=1e-6) and lin.nfe == 0 and not lin.failed.any()
    near = InterpNearest().reconstruct(y, op).image
    assert all(torch.equal(near[:, k], x[:, 0]) for k in range(4))
    assert all(torch.equal(near[:, k], x[:, 6]) for k in range(4, 7))


def blob_sequence(frames: int = 5, size: int = 32, shift: float = 6.0) -> torch.Tensor:
    """A textured disc translating by `shift` pixels along x over the sequence (1, T, H, W)."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    out = []
    for k in range(frames):
        cx = size / 2 - shift / 2 + shift * k / (frames - 1)
        r2 = (xx - cx) ** 2 + (yy - size / 2) ** 2
        tex = 0.2 * torch.cos(0.9 * (xx - cx)) * torch.cos(0.7 * yy)
        out.append(torch.sigmoid((64 - r2) / 8) * (0.7 + tex) + 0.1)
    return torch.stack(out)[None]


def test_interp_io_registers_motion_that_blending_cannot() -> None:
    """On a translating textured disc, the registration-based interpolation beats intensity blending clearly, and
    its fitted field is about the true translation."""
    x = blob_sequence()
    op = FrameSelection(torch.tensor([1, 0, 0, 0, 1], dtype=torch.bool), (32, 32))
    y = op(x)
    err = lambda r: float((r[:, 1:4] - x[:, 1:4]).pow(2).mean())  # noqa: E731
    io = InterpIO(steps=150)
    rec = io.reconstruct(y, op, None, torch.Generator().manual_seed(0))
    assert not rec.failed.any() and torch.equal(rec.image[:, [0, 4]], y[:, [0, 4]])
    assert err(rec.image) < 0.3 * err(InterpLinear().reconstruct(y, op).image)
    f01, _ = io.register(y[:, 0], y[:, 4])
    centre = f01[0, 0, 12:20, 12:20].mean()
    assert float(centre) == pytest.approx(-6.0, abs=1.5)  # warp(i0, F01) ~ i1: i1(p) = i0(p - 6 e_x)
    assert float((warp(y[:, :1], f01) - y[:, 4:]).pow(2).mean()) < 0.3 * float((y[:, :1] - y[:, 4:]).pow(2).mean())


@pytest.mark.parametrize("name, make", [
    ("ddrm", lambda: __import__("algorithms.diffusion.ddrm", fromlist=["DDRM"]).DDRM(n_steps=10)),
    ("dps", lambda: __import__("algorithms.diffusion.dps", fromlist=["DPS"]).DPS(n_steps=12)),
    ("daps", lambda: __import__("algorithms.diffusion.daps", fromlist=["DAPS"]).DAPS(
        budget=None, n_steps=6, ode_steps=3, langevin_steps=5)),
    ("diffpir", lambda: __import__("algorithms.diffusion.diffpir", fromlist=["DiffPIR"]).DiffPIR(n_steps=10)),
])
def test_diffusion_solvers_run_on_frame_selection(name, make) -> None:
    """The existing solvers take the frame-selection operator unchanged (its exact SVD for DDRM): finite output, no
    failure, and with a prior that knows the frames' means they fill the missing frames toward it."""
    g = torch.Generator().manual_seed(0)
    mean = torch.linspace(0.2, 0.8, 5).view(5, 1, 1).expand(5, 8, 8).contiguous()
    prior = GaussianPrior(mean, 0.01 * torch.ones(5, 8, 8), "pixel")
    op = FrameSelection(torch.tensor([1, 0, 0, 0, 1], dtype=torch.bool), (8, 8), noise_std=0.02)
    x = prior.sample(2, g)
    rec = make().reconstruct(op.measure(x, g), op, prior, torch.Generator().manual_seed(1))
    assert rec.image.shape == x.shape and torch.isfinite(rec.image).all() and not rec.failed.any(), name
    assert float((rec.image[:, 1:4] - mean[1:4]).abs().mean()) < 0.15, name


def test_cli_interp_linear_and_ddrm(tmp_path) -> None:
    """`bench run --problem interp4d` with interp-linear and with DDRM under a Gaussian prior fitted to the phantom
    sequences: both finish, and the missing-frame metrics are in the summary (per sample and per run)."""
    small = ["problem.size=16", "problem.frames=5", "dataset.size=16", "dataset.frames=5"]
    bench("run", "--problem", "interp4d", "--algo", "interp-linear", "--n", "2", "--out", str(tmp_path / "lin"),
          *small)
    summary = json.loads((tmp_path / "lin" / "summary.json").read_text())
    assert summary["n_ok"] == 2 and summary["problem_metrics"]["psnr_missing"]["mean"] > 15
    assert summary["problem_run_metrics"]["psnr_frames_se"] is not None
    bench("run", "--problem", "interp4d", "--algo", "ddrm", "--prior", "gaussian", "--n", "2",
          "--out", str(tmp_path / "ddrm"), *small, "prior.dataset=phantom-cardiac-4d", "~prior.dataset_options.channels",
          "prior.dataset_options={size:16,frames:5,subjects:8}", "algorithm.n_steps=5")
    summary = json.loads((tmp_path / "ddrm" / "summary.json").read_text())
    assert summary["n_ok"] == 2 and summary["problem_metrics"]["ssim_missing"]["mean"] is not None
