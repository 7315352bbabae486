"""End-to-end networks (issue 14): `unet` and `varnet` through one battery, checkpoints, re-subsampled operators,
and `bench train-recon` (a tiny U-Net trains in seconds and beats zero-filled; exact resume)."""
from __future__ import annotations

import copy
import json
import pickle

import pytest
import torch

from algorithms.networks.models import (ARCHS, NETWORKS, SHIPPED, WEIGHTS, UNet, UNetAlgorithm, VarNet, VarNetAlgorithm,
                                 load_network, save_network)
from algorithms.classical.zero_filled import ZeroFilled
from inverse_problems.problems.cs_mri import CSMRIProblem
from inverse_problems.data.phantoms.datasets import KneePD
from inverse_problems.operators.random import SampleGenerators

torch.set_num_threads(1)
ALGORITHMS = {"unet": UNetAlgorithm, "varnet": VarNetAlgorithm}
SMALL = {"unet": {"chans": 4, "pools": 2}, "varnet": {"cascades": 2, "chans": 4, "pools": 1}}


def test_every_registered_network_is_in_the_battery():
    """Every trained-network algorithm the project registers is one of ARCHS, each with its class in ALGORITHMS (the
    battery below is parametrised by ARCHS)."""
    from algorithms.networks.models import NetworkAlgorithm
    from benchmarks import registry
    from tests.helpers import assert_covered, project_names

    classes = {n: registry.load("algorithms", n) for n in project_names("algorithms")}
    networks = {n: c for n, c in classes.items() if isinstance(c, type) and issubclass(c, NetworkAlgorithm)}
    assert_covered("algorithms", ALGORITHMS, "the network battery (test_networks.ALGORITHMS)", names=networks)
    assert set(ALGORITHMS) == set(ARCHS) and all(ALGORITHMS[c.arch] is c for c in networks.values())


def instance(n: int = 3, size: int = 16, coils: int = 3, split: str = "test"):
    ds = KneePD(split=split, size=size, length=n)
    items = [ds[i] for i in range(n)]
    problem = CSMRIProblem(size=size, coils=coils, acceleration=2.0, center_fraction=0.25, espirit_kernel=4)
    return problem.instance(items, "cpu", SampleGenerators.seeded(0, [it["id"] for it in items])), items


def random_net(arch: str, seed: int = 0):
    """A small network with every weight random (the output convs too, which start at zero)."""
    torch.manual_seed(seed)
    net = NETWORKS[arch](**SMALL[arch])
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("nets")
    return {arch: save_network(root / f"{arch}.pt", random_net(arch), {"dataset": "phantom-knee-pd"}) for arch in ARCHS}


@pytest.mark.parametrize("arch", ARCHS)
def test_battery_shape_determinism_frozen_weights(arch, checkpoints):
    inst, _ = instance()
    alg = ALGORITHMS[arch](path=str(checkpoints[arch]))
    assert not alg.uses_prior and not alg.net.training
    assert all(not p.requires_grad for p in alg.net.parameters())
    before = copy.deepcopy(alg.net.state_dict())
    r1 = alg.reconstruct(inst.y, inst.operator)
    r2 = alg.reconstruct(inst.y, inst.operator)
    assert r1.image.shape == (3, 2, 16, 16) and torch.isfinite(r1.image).all() and not r1.failed.any()
    assert r1.nfe == 0 and alg.network_calls == 3 and torch.equal(r1.image, r2.image)
    assert all(torch.equal(v, alg.net.state_dict()[k]) for k, v in before.items())
    # the network is not the zero-filled image
    assert not torch.allclose(r1.image, inst.operator.adjoint(inst.y), atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
def test_battery_predict_is_differentiable_in_a_copy_only(arch, checkpoints):
    inst, _ = instance()
    alg = ALGORITHMS[arch](path=str(checkpoints[arch]))
    tuned = copy.deepcopy(alg.net).requires_grad_(True)
    alg.predict(inst.y, inst.operator, tuned).pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in tuned.parameters())
    assert sum(float(p.grad.abs().sum()) for p in tuned.parameters()) > 0
    assert all(p.grad is None for p in alg.net.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_battery_per_sample_gives_batch_size_invariant_bits(arch, checkpoints):
    inst, items = instance()
    alg = ALGORITHMS[arch](path=str(checkpoints[arch]), per_sample=True)
    batched = alg.reconstruct(inst.y, inst.operator).image
    for k in range(3):
        one, _ = instance(n=k + 1)  # items 0..k: sample k alone in a batch of its own prefix
        single = CSMRIProblem(size=16, coils=3, acceleration=2.0, center_fraction=0.25, espirit_kernel=4).instance(
            [items[k]], "cpu", SampleGenerators.seeded(0, [items[k]["id"]]))
        assert torch.equal(alg.reconstruct(single.y, single.operator).image[0], batched[k])


@pytest.mark.parametrize("arch", ARCHS)
def test_battery_scale_equivariance_and_resubsampled_operator(arch, checkpoints):
    """Scaled from the measurements only: f(c y) = c f(y); a sub-mask operator re-subsamples the same y."""
    inst, _ = instance()
    alg = ALGORITHMS[arch](path=str(checkpoints[arch]))
    with torch.no_grad():
        out = alg.predict(inst.y, inst.operator)
        assert torch.allclose(alg.predict(3.0 * inst.y, inst.operator), 3.0 * out, rtol=1e-4, atol=1e-5)
        mask = inst.operator.mask.clone()
        mask[:, 1::4] = 0  # drop a quarter of the columns (some acquired)
        sub = inst.operator.with_mask(mask * inst.operator.mask)
        assert sub.mask.sum() < inst.operator.mask.sum() and torch.equal(inst.operator.mask, instance()[0].operator.mask)
        assert not torch.allclose(alg.predict(inst.y, sub), out, atol=1e-4)


def test_fresh_networks_start_at_zero_filled_and_a_gradient_step():
    """Output convs start at zero: the U-Net is A^H y, a VarNet cascade is x - eta A^H(A x - y) exactly."""
    inst, _ = instance()
    op, y = inst.operator, inst.y
    with torch.no_grad():
        assert torch.allclose(UNet(chans=4, pools=1)(y, op), op.adjoint(y), atol=1e-6)
        net = VarNet(cascades=2, chans=4, pools=1)
        net.eta.copy_(torch.tensor([0.5, 1.0]))
        s = torch.quantile(op.adjoint(y).pow(2).sum(1).sqrt().flatten(1), 0.99, dim=1).view(-1, 1, 1, 1)
        x = op.adjoint(y / s)
        for eta in (0.5, 1.0):
            x = x - eta * op.adjoint(op(x) - y / s)
        assert torch.allclose(net(y, op), x * s, atol=1e-5)


def test_film_target_is_the_last_decoder_block():
    inst, _ = instance()
    for net in (random_net("unet"), random_net("varnet")):
        seen = {}

        def film(module, args, output, beta=0.0):
            seen["shape"] = tuple(output.shape)
            return output * 1.0 + beta

        handle = net.film_target.register_forward_hook(film)
        with torch.no_grad():
            identity = net(inst.y, inst.operator)
        handle.remove()
        assert seen["shape"] == (3, 4, 16, 16)  # (B, F = chans, H, W): full resolution
        with torch.no_grad():
            assert torch.equal(identity, net(inst.y, inst.operator))
        handle = net.film_target.register_forward_hook(lambda m, a, o: film(m, a, o, beta=0.5))
        with torch.no_grad():
            assert not torch.allclose(net(inst.y, inst.operator), identity, atol=1e-4)
        handle.remove()


def test_with_mask_is_a_subset_copy_and_refuses_unacquired_samples():
    inst, _ = instance()
    op = inst.operator
    mask = op.mask.clone()
    mask[:, ::2] = 0
    sub = op.with_mask(mask)
    x = torch.randn(3, 2, 16, 16)
    assert torch.allclose(sub(x), op(x) * mask, atol=1e-6) and torch.equal(op.mask, inst.operator.mask)
    assert sub.maps.data_ptr() != op.maps.data_ptr()  # adaptable copies, independent of the original
    with pytest.raises(ValueError, match="did not acquire"):
        op.with_mask(torch.ones_like(op.mask))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        op.with_mask(mask[None])


def test_checkpoint_errors_name_the_fix(tmp_path, checkpoints):
    with pytest.raises(ValueError, match="holds a 'unet' network, not a 'varnet'.*--algo unet"):
        VarNetAlgorithm(path=str(checkpoints["unet"]))
    with pytest.raises(FileNotFoundError, match="bench train-recon"):
        UNetAlgorithm(path=str(tmp_path / "none.pt"))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a reconstruction-network checkpoint"):
        load_network(tmp_path / "other.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(ValueError, match="refused to load"):
        load_network(tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="no shipped varnet model named 'nope'"):
        VarNetAlgorithm(model="nope")
    from inverse_problems.operators.inpainting import Inpainting

    op = Inpainting(torch.ones(16, 16), 1, 0.0)
    with pytest.raises(ValueError, match="takes 2-channel images"):
        UNetAlgorithm(path=str(checkpoints["unet"])).reconstruct(torch.ones(1, 1, 16, 16), op)


def tiny_config(out, **kw):
    from algorithms.networks.training import ReconTrainConfig

    base = dict(algo="unet", dataset="phantom-knee-pd", size=16, steps=60, batch_size=8, lr=3e-3, warmup=5,
                chans=8, pools=2, n_images=16, n_val=0, save_every=0, out=str(out), threads=1,
                problem_options={"coils": 3, "acceleration": 2.0, "center_fraction": 0.25, "espirit_kernel": 4})
    return ReconTrainConfig(**{**base, **kw})


def train_tiny(cfg):
    from algorithms.networks.training import train

    problem = CSMRIProblem(**cfg.problem_kwargs(CSMRIProblem))
    return train(cfg, KneePD(split="train", size=cfg.size, length=cfg.n_images), problem,
                 KneePD(split="val", size=cfg.size, length=max(cfg.n_val, 1)))


def test_a_tiny_unet_trains_and_beats_zero_filled_on_held_out_phantoms(tmp_path):
    from benchmarks.metrics import image_metrics

    meta = train_tiny(tiny_config(tmp_path / "u", n_val=8))
    assert meta["val_psnr_db"] > meta["val_psnr_zero_filled_db"] + 0.5
    for name in ("model.pt", "model.json", "loss.png", "val.png", "metadata.json", "checkpoint/state.pt"):
        assert (tmp_path / "u" / name).exists(), name
    assert meta["parameters"] == sum(p.numel() for p in UNetAlgorithm(path=meta["load_with"].split("=")[1]).net.parameters())
    inst, items = instance(n=6, coils=3)  # test split: subjects neither in train nor in val
    unet = UNetAlgorithm(path=str(tmp_path / "u" / "model.pt")).reconstruct(inst.y, inst.operator).image
    zf = ZeroFilled().reconstruct(inst.y, inst.operator).image
    x = torch.stack([it["image"] for it in items]) / inst.scale.view(-1, 1, 1, 1)
    psnr = lambda img: sum(m["psnr"] for m in image_metrics(img, x)) / len(items)  # noqa: E731
    assert psnr(unet) > psnr(zf) + 0.5


def test_train_recon_resume_is_exact_and_refuses_changed_options(tmp_path):
    from priors.training.common import resume_config
    from algorithms.networks.training import RESUMABLE, ReconTrainConfig

    small = dict(n_images=4, batch_size=2, chans=4, pools=1)  # two chunks: the chunk draw is part of the state
    whole = train_tiny(tiny_config(tmp_path / "a", steps=5, **small))
    train_tiny(tiny_config(tmp_path / "b", steps=2, **small))
    cfg = resume_config(tmp_path / "b", {"steps": 5}, ReconTrainConfig, RESUMABLE)
    legs = train_tiny(cfg)["legs"]
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [(leg["from_step"], leg["to_step"]) for leg in legs] == [(0, 2), (2, 5)] and whole["steps"] == 5
    with pytest.raises(ValueError, match="--lr: 0.003 in the checkpoint, 0.1 now"):
        resume_config(tmp_path / "b", {"steps": 20, "lr": 0.1}, ReconTrainConfig, RESUMABLE)
    with pytest.raises(ValueError, match="already holds a training checkpoint"):
        train_tiny(tiny_config(tmp_path / "b", steps=5, **small))


def test_bench_train_recon_then_bench_run(tmp_path):
    """The CLI end to end: train-recon writes model.pt and metadata.json, `bench run --algo varnet` loads it."""
    from tests.helpers import bench

    out = tmp_path / "v"
    res = bench("train-recon", "--algo", "varnet", "--dataset", "phantom-knee-pd", "--size", "16", "--steps", "2",
                "--batch-size", "2", "--n-images", "2", "--n-val", "1", "--cascades", "2", "--chans", "4", "--pools",
                "1", "--threads", "1", "--out", str(out), "problem.coils=3", "problem.acceleration=2",
                "problem.center_fraction=0.25", "problem.espirit_kernel=4")
    assert "trained" in res.stdout and "val PSNR" in res.stdout
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["network"]["arch"] == "varnet" and meta["problem_options"]["coils"] == 3 and meta["steps"] == 2
    from benchmarks.cli import parser
    import shlex

    args = parser().parse_args(shlex.split(meta["command"])[1:])
    assert args.algo == "varnet" and "problem.coils=3" in args.train_options
    run = tmp_path / "run"
    bench("run", "--problem", "cs_mri", "--algo", "varnet", "--dataset", "phantom-knee-pd", "--n", "1",
          "problem.size=16", "dataset.size=16", "problem.coils=3", "problem.acceleration=2",
          "problem.center_fraction=0.25", "problem.espirit_kernel=4", f"algorithm.path={out / 'model.pt'}",
          "--out", str(run), "--quiet")
    rows = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and all(r["status"] == "ok" and r["nfe"] == 0 for r in rows)


@pytest.mark.parametrize("arch", ARCHS)
def test_shipped_source_models_load_by_default(arch):
    """The default weights are the shipped knee-PD models, frozen, with their training facts (cs_mri R = 4, 64x64)."""
    alg = ALGORITHMS[arch]()
    assert alg.path.endswith(f"{arch}-knee-pd-r4-64.pt") and alg.training["dataset"] == "phantom-knee-pd"
    assert alg.training["problem"] == "cs_mri" and alg.training["problem_options"]["size"] == 64
    assert alg.training["val_psnr_db"] > alg.training["val_psnr_zero_filled_db"] + 5
    assert all(not p.requires_grad for p in alg.net.parameters())


def strings(tree):
    """Every string in a JSON tree."""
    if isinstance(tree, dict):
        return [s for v in tree.values() for s in strings(v)]
    if isinstance(tree, list):
        return [s for v in tree for s in strings(v)]
    return [tree] if isinstance(tree, str) else []


@pytest.mark.parametrize("arch, model", [(a, m) for a, names in SHIPPED.items() for m in names])
def test_every_shipped_model_is_package_data_with_its_facts_and_beats_zero_filled(arch, model):
    """Each registered shipped model (`algorithm.model=NAME`) loads from algorithms/weights, carries the facts of its
    .json and .metadata.json (no absolute paths), is named after its source dataset and acceleration
    (`brain-t2-r2`: phantom-brain-t2 at R = 2; no suffix: R = 4, as the file name's `-r4-`), and beats zero-filled
    on test phantoms of its source dataset with the cs_mri settings it was trained for (64x64, 8 coils, its R), by
    more than 5 dB."""
    from benchmarks.metrics import image_metrics
    from benchmarks import registry

    alg = ALGORITHMS[arch](model=model)
    path = WEIGHTS / SHIPPED[arch][model]
    acceleration = float(alg.training["problem_options"].get("acceleration", 4.0))
    source, _, r = model.partition("-r")
    assert alg.path == str(path) and alg.training["dataset"] == f"phantom-{source}"
    assert acceleration == float(r or 4) and path.name == f"{arch}-{source}-r{acceleration:g}-64.pt"
    facts = json.loads(path.with_suffix(".json").read_text())
    meta = json.loads(path.with_suffix(".metadata.json").read_text())
    assert facts == {"config": alg.net.config, "training": alg.training}
    assert meta["parameters"] == sum(p.numel() for p in alg.net.parameters())
    assert meta["weights_bytes"] == path.stat().st_size and meta["steps"] == alg.training["steps"]
    assert not [s for s in strings(meta) + strings(facts) if s.startswith("/") or " /" in s or "=/" in s]
    assert alg.training["val_psnr_db"] > alg.training["val_psnr_zero_filled_db"] + 5
    ds = registry.build("datasets", alg.training["dataset"], split="test", size=64, length=2)
    items = [ds[i] for i in range(2)]
    inst = CSMRIProblem(acceleration=acceleration).instance(items, "cpu",
                                                            SampleGenerators.seeded(0, [it["id"] for it in items]))
    x = torch.stack([it["image"] for it in items]) / inst.scale.view(-1, 1, 1, 1)
    psnr = lambda img: sum(m["psnr"] for m in image_metrics(img, x)) / len(items)  # noqa: E731
    net = alg.reconstruct(inst.y, inst.operator).image
    zf = ZeroFilled().reconstruct(inst.y, inst.operator).image
    assert psnr(net) > psnr(zf) + 5
