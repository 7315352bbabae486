"""Natural-image problems and the `images` dataset (issue 16, item 4): exact references, a run (their operators go
through tests/inverse_problems/test_operators.py's battery)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inverse_problems.data.readers.images import ImagesDataset
from inverse_problems.problems.natural import (BoxInpaintingProblem, GaussianDeblurProblem, RandomInpaintingProblem,
                                      SuperResolutionProblem)
from inverse_problems.operators.separable import SeparableOperator, bicubic_matrix, cubic, gaussian_blur_matrix

torch.set_num_threads(1)


def test_super_resolution_is_torch_antialiased_bicubic_and_its_svd_is_exact():
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    op = SuperResolutionProblem(size=32, factor=4).acquisition_operator(x)
    ref = F.interpolate(x, scale_factor=0.25, mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(op(x), ref, rtol=0, atol=1e-6)
    # Keys' kernel by value: 1 at 0, 0 at the integers, the a = -0.5 lobe at 1.5
    torch.testing.assert_close(cubic(torch.tensor([0.0, 1.0, 2.0, 1.5, 0.5])),
                               torch.tensor([1.0, 0.0, 0.0, -0.0625, 0.5625]))
    assert torch.allclose(bicubic_matrix(32, 4).sum(1), torch.ones(8, dtype=torch.float64))
    # ||A|| = product of the 1-D norms; the pseudo-inverse reproduces the measurement
    dense = torch.linalg.matrix_norm(torch.kron(op.a_h, op.a_w).double(), ord=2)
    assert op.norm_exact() == pytest.approx(float(dense), rel=1e-5)
    y = op(x)
    torch.testing.assert_close(op(op.pinv(y)), y, rtol=0, atol=1e-5)


def test_gaussian_blur_is_the_zero_padded_2d_convolution():
    x = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    op = GaussianDeblurProblem(size=24, sigma=3.0, kernel_size=61).acquisition_operator(x)
    k = torch.exp(-torch.arange(-30, 31, dtype=torch.float64) ** 2 / 18)
    k2 = torch.outer(k, k) / k.sum() ** 2
    ref = F.conv2d(x.double().reshape(3, 1, 24, 24), k2[None, None], padding=30).reshape(1, 3, 24, 24)
    torch.testing.assert_close(op(x).double(), ref, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="odd kernel_size"):
        gaussian_blur_matrix(8, 1.0, 4)


def test_motion_blur_kernels_and_convolution():
    from inverse_problems.operators.convolution import Convolution, motion_kernel

    k = motion_kernel(61, 0.5, seed=1)
    assert k.shape == (61, 61) and float(k.sum()) == pytest.approx(1.0) and float(k.min()) >= 0
    assert torch.equal(k, motion_kernel(61, 0.5, seed=1)) and not torch.equal(k, motion_kernel(61, 0.5, seed=2))
    # intensity 0: a straight streak through the centre, symmetric under a half turn
    line = motion_kernel(31, 0.0, seed=3)
    torch.testing.assert_close(line, line.flip(0, 1), rtol=0, atol=1e-6)
    assert int((line > 1e-4).sum()) < 31 * 3
    # a true convolution: a delta image returns the kernel itself (not its flip)
    kern = torch.rand(5, 5, generator=torch.Generator().manual_seed(0))
    op = Convolution(kern, (1, 11, 11))
    delta = torch.zeros(1, 1, 11, 11)
    delta[0, 0, 5, 5] = 1
    torch.testing.assert_close(op(delta)[0, 0, 3:8, 3:8], kern)
    with pytest.raises(ValueError, match="odd"):
        Convolution(torch.ones(4, 4), (1, 8, 8))


def test_motion_kernel_file_is_used_as_given(tmp_path):
    from inverse_problems.problems.natural import MotionDeblurProblem

    kern = np.zeros((5, 5), dtype=np.float32)
    kern[2, :] = 2.0
    np.save(tmp_path / "k.npy", kern)
    p = MotionDeblurProblem(size=16, kernel=str(tmp_path / "k.npy"))
    torch.testing.assert_close(p.kernel, torch.from_numpy(kern) / 10)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MotionDeblurProblem(size=16, kernel=str(tmp_path / "none.npy"))


def test_box_and_random_masks_and_the_unscaled_measurement():
    p = BoxInpaintingProblem(size=16, box=0.5)
    assert float(p.mask.sum()) == 256 - 64 and float(p.mask[4:12, 4:12].sum()) == 0  # a centred 8x8 box
    r = BoxInpaintingProblem(size=64, box=0.25, position="random", mask_seed=2)
    rows, cols = torch.nonzero(r.mask == 0, as_tuple=True)
    assert len(rows) == 256 and int(rows.min()) >= 4 and int(cols.max()) <= 59  # 16x16, 4 px (1/16) from the border
    assert not torch.equal(r.mask, BoxInpaintingProblem(size=64, box=0.25, position="random", mask_seed=3).mask)
    m = RandomInpaintingProblem(size=64, keep=0.3).mask
    assert abs(float(m.mean()) - 0.3) < 0.03
    # images already on the prior's scale: y is A x + n itself, with sigma_y = 0.05
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    inst = p.simulate(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(inst.scale, torch.ones(2))
    noise = (inst.y - inst.true_operator(x))[:, :, p.mask.bool()]
    assert abs(float(noise.std()) - 0.05) < 0.005 and torch.allclose(inst.operator.noise_std, torch.tensor(0.05))
    for bad, match in ((dict(box=1.0), "box"), (dict(position="left"), "position"), (dict(size=1), "size")):
        with pytest.raises(ValueError, match=match):
            BoxInpaintingProblem(**bad)
    with pytest.raises(ValueError, match="divide"):
        SuperResolutionProblem(size=30, factor=4)
    assert isinstance(SuperResolutionProblem(size=16).acquisition_operator(x), SeparableOperator)


def write_images(folder, n=3):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(0)
    arrays = []
    for i in range(n):
        arr = g.integers(0, 256, (20, 30, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i}.{'png' if i % 2 == 0 else 'jpg'}")
        arrays.append(arr)
    (folder / "notes.txt").write_text("not an image")
    return arrays


def test_images_dataset_reads_crops_resizes_and_maps_to_minus_one_one(tmp_path):
    arrays = write_images(tmp_path / "faces")
    ds = ImagesDataset(str(tmp_path / "faces"), size=20)
    assert len(ds) == 3 and [ds[i]["id"] for i in range(3)] == ["img0", "img1", "img2"]
    item = ds[0]["image"]
    assert item.shape == (3, 20, 20) and item.dtype == torch.float32
    # a 20x30 PNG at size 20: the centre 20x20 crop, no resampling, x / 127.5 - 1 exactly
    want = torch.from_numpy(arrays[0][:, 5:25].astype(np.float32)).permute(2, 0, 1) / 127.5 - 1
    torch.testing.assert_close(item, want)
    small = ImagesDataset(str(tmp_path / "faces"), size=8, channels=1, limit=2)
    assert len(small) == 2 and small[1]["image"].shape == (1, 8, 8) and float(small[1]["image"].abs().max()) <= 1
    with pytest.raises(ValueError, match="dataset.root"):
        ImagesDataset()
    with pytest.raises(FileNotFoundError, match="no .png"):
        ImagesDataset(str(tmp_path))
    (tmp_path / "faces" / "broken.png").write_bytes(b"not a png")
    from inverse_problems.data.base import DataError

    with pytest.raises(DataError, match="broken.png"):
        ImagesDataset(str(tmp_path / "faces"), size=8)[0]


def test_bench_run_box_inpainting_with_an_adm_checkpoint_on_an_image_folder(tmp_path, plugin_path, monkeypatch):
    """The newcomer's command, `--problem inpainting-box --prior adm prior.path=... --dataset images dataset.root=DIR`,
    at 16 px with a tiny DPS-format checkpoint (the test plugin's one-call algorithm: a random net is no prior)."""
    from tests.helpers import bench, tiny_checkpoint

    write_images(tmp_path / "faces", n=2)
    path, _ = tiny_checkpoint(tmp_path)
    monkeypatch.syspath_prepend(str(plugin_path))
    out = tmp_path / "run"
    bench("run", "--problem", "inpainting-box", "--algo", "denoise-adjoint", "--prior", "adm", "--dataset", "images",
          f"dataset.root={tmp_path / 'faces'}", "dataset.size=16", "problem.size=16", f"prior.path={path}", "--n", "2",
          "--out", str(out), "--quiet")
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok"] and all(math.isfinite(r["psnr"]) for r in rows)
    assert {r["id"] for r in rows} == {"img0", "img1"}
    dps = tmp_path / "dps"  # the exact command, DPS included (few steps): it runs end to end; a random
    bench("run", "--problem", "inpainting-box", "--algo", "dps", "--prior", "adm", "--dataset", "images",  # net may
          f"dataset.root={tmp_path / 'faces'}", "dataset.size=16", "problem.size=16", f"prior.path={path}",  # explode:
          "algorithm.n_steps=5", "--n", "2", "--out", str(dps), "--quiet")  # a failed line
    rows = [json.loads(x) for x in (dps / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["img0", "img1"] and all(r["nfe"] == 5 for r in rows)
    assert all(r["status"] == "ok" or r["reason"] for r in rows)
