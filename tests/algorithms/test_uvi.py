"""`uvi-lite` (UVI-Net's recipe at CPU size) and `bench train-interp`: shapes, the blend formula, the auxiliary
heads, checkpoints, and exact resume."""
from __future__ import annotations

import json

import pytest
import torch

from algorithms.classical.interpolation import InterpLinear
from algorithms.networks.uvi import (UviLite, UviLiteAlgorithm, load_interp_network, mae_loss, rotation_loss,
                                     save_interp_network, uvi_loss)
from tests.helpers import interp_instance, sequences, tiny_uvi, tiny_uvi_algorithm

torch.set_num_threads(1)


def test_shapes_and_zero_network_is_the_linear_blend():
    """Zero flows and zero refinement (a fresh network: its output convs start at zero) give
    i_alpha = (1 - alpha) i0 + alpha i1 exactly; any frame size (padded and cropped back)."""
    net = UviLite(flow_chans=2, flow_levels=2, feature_widths=(2, 4, 8), refine_chans=2)
    for h, w in ((16, 16), (30, 22)):
        i0, i1 = torch.rand(3, 1, h, w), torch.rand(3, 1, h, w)
        alpha = torch.tensor([0.0, 0.3, 0.8])
        f01, f10 = net.flows(*(net.pad(i)[0] for i in (i0, i1)))
        assert f01.shape[1] == 2 and not f01.any() and not f10.any()
        out = net(i0, i1, alpha)
        assert out.shape == (3, 1, h, w)
        torch.testing.assert_close(out, (1 - alpha.view(-1, 1, 1, 1)) * i0 + alpha.view(-1, 1, 1, 1) * i1,
                                   atol=1e-6, rtol=0)
    feats = net.features(torch.rand(2, 1, 16, 16))
    assert [f.shape[1:] for f in feats] == [(2, 16, 16), (4, 8, 8), (8, 4, 4)]


def test_algorithm_fills_missing_frames_and_keeps_acquired(tmp_path):
    x = sequences(2, frames=6, size=16)
    prob, inst = interp_instance(x, "stride:2")
    alg = tiny_uvi_algorithm(tmp_path)
    r = alg.reconstruct(inst.y, inst.operator)
    keep = inst.operator.keep.expand(2, -1)
    assert r.image.shape == x.shape and torch.isfinite(r.image).all() and r.nfe == 0
    assert torch.equal(r.image[keep], inst.y[keep])
    assert not torch.allclose(r.image, InterpLinear().run(inst.y, inst.operator, None, None), atol=1e-4)
    assert torch.equal(r.image, alg.reconstruct(inst.y, inst.operator).image)
    assert all(not p.requires_grad for p in alg.net.parameters())
    zero = UviLite(flow_chans=2, flow_levels=1, feature_widths=(2, 4), refine_chans=2)
    torch.testing.assert_close(alg.predict(inst.y, inst.operator, zero),
                               InterpLinear().run(inst.y, inst.operator, None, None), atol=1e-6, rtol=0)


def test_rotation_head_any_size_and_mae_gradient_reaches_f():
    net = tiny_uvi()
    for shape in ((3, 1, 16, 16), (2, 1, 20, 36), (1, 1, 9, 13)):
        assert net.rotation_logits(torch.rand(shape)).shape == (shape[0], 4)
    x = torch.rand(4, 1, 20, 24)
    assert torch.isfinite(rotation_loss(net, x, torch.Generator().manual_seed(0)))
    net.zero_grad()
    xg = x.clone().requires_grad_(True)
    mae_loss(net, xg, torch.Generator().manual_seed(0), ratio=0.75).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.features.parameters())
    assert all(p.grad is None for p in net.flow.parameters())
    assert xg.grad is not None  # through the masked input only: the target is detached
    with pytest.raises(ValueError, match="--aux rot"):
        UviLite(flow_chans=2, flow_levels=1, feature_widths=(2, 4)).rotation_logits(x)


def test_uvi_loss_trains_all_three_parts():
    net = tiny_uvi()
    i0, i1 = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    loss = uvi_loss(net, i0, i1, torch.Generator().manual_seed(0))
    loss.backward()
    for part in (net.flow, net.features, net.refine):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_checkpoint_round_trip_and_errors(tmp_path):
    net = tiny_uvi()
    path = save_interp_network(tmp_path / "m.pt", net, {"dataset": "phantom-cardiac-4d"})
    back, facts = load_interp_network(path)
    assert facts["dataset"] == "phantom-cardiac-4d" and back.config == net.config
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), back.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="bench train-interp"):
        UviLiteAlgorithm(path=str(tmp_path / "missing.pt"))
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not an interpolation-network checkpoint"):
        UviLiteAlgorithm(path=str(tmp_path / "bad.pt"))


def tiny_train(out, steps: int, **kw):
    from algorithms.networks.interp_training import train
    from algorithms.networks.interp_training_config import InterpTrainConfig
    from inverse_problems.data.phantoms.cardiac4d import PhantomCardiac4D
    from inverse_problems.problems.interp4d import Interp4DProblem

    cfg = InterpTrainConfig(**{"size": 16, "frames": 4, "steps": steps, "batch_size": 2, "n_images": 3, "n_val": 0,
                               "flow_chans": 2, "flow_levels": 1, "feature_widths": "2,4", "refine_chans": 2,
                               "aux": "rot,mae", "save_every": 0, "threads": 1, "cpu": True, "out": str(out), **kw})
    ds = PhantomCardiac4D(split="train", size=16, frames=4, subjects=3, oversample=1)
    return cfg, train(cfg, ds, Interp4DProblem(size=16, frames=4))


def test_train_interp_resume_is_exact(tmp_path):
    """2 steps, then 2 more resumed, give the weights of 4 steps in one go (the batch and cycle draws included)."""
    from algorithms.networks.interp_training import train
    from algorithms.networks.interp_training_config import RESUMABLE, InterpTrainConfig
    from inverse_problems.data.phantoms.cardiac4d import PhantomCardiac4D
    from inverse_problems.problems.interp4d import Interp4DProblem
    from priors.training.common import resume_config

    _, whole = tiny_train(tmp_path / "a", 4)
    tiny_train(tmp_path / "b", 2)
    cfg = resume_config(tmp_path / "b", {"steps": 4}, InterpTrainConfig, RESUMABLE)
    legs = train(cfg, PhantomCardiac4D(split="train", size=16, frames=4, subjects=3, oversample=1),
                 Interp4DProblem(size=16, frames=4))["legs"]
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [(leg["from_step"], leg["to_step"]) for leg in legs] == [(0, 2), (2, 4)] and whole["steps"] == 4
    meta = json.loads((tmp_path / "a" / "metadata.json").read_text())
    assert meta["network"]["aux"] == ["rot", "mae"] and meta["aux"] == ["rot", "mae"]
    with pytest.raises(ValueError, match="--lr"):
        resume_config(tmp_path / "b", {"steps": 8, "lr": 0.5}, InterpTrainConfig, RESUMABLE)
    net = UviLiteAlgorithm(path=str(tmp_path / "a" / "model.pt")).net
    assert net.rot_head is not None and net.mae_head is not None


def test_bench_train_interp_then_bench_run(tmp_path):
    """The CLI end to end: train-interp writes model.pt, `bench run --algo uvi-lite` loads it."""
    from tests.helpers import bench

    out = tmp_path / "m"
    res = bench("train-interp", "--size", "16", "--frames", "4", "--steps", "2", "--batch-size", "2", "--n-images",
                "2", "--n-val", "1", "--flow-chans", "2", "--flow-levels", "1", "--feature-widths", "2,4",
                "--refine-chans", "2", "--threads", "1", "--out", str(out), "dataset.oversample=1")
    assert "trained" in res.stdout and "interp-linear" in res.stdout
    bench("run", "--problem", "interp4d", "--algo", "uvi-lite", "--n", "1", "--out", str(tmp_path / "r"),
                f"algorithm.path={out / 'model.pt'}", "problem.size=16", "problem.frames=4", "dataset.size=16",
                "dataset.frames=4", "dataset.oversample=1")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["n_ok"] == 1
