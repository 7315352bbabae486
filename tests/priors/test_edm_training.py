"""`bench train-prior --recipe edm` (issue 17): EDM's training recipe (Karras et al. 2022) by value, a few steps on
CPU through the CLI, weights the `edm` prior loads, exact resume, errors."""
from __future__ import annotations

import json
import shlex
from dataclasses import replace

import pytest
import torch

from tests.helpers import bench
from priors.edm import EDMPrior, build_network
from priors.training.config import TrainConfig
from priors.training.losses import EDM_P_MEAN, EDM_P_STD, edm_loss, edm_loss_weight, edm_sigmas, measured_sigma_data
from priors.training.loop import edm_network_config, normalise

torch.set_num_threads(1)
TINY = ["--recipe", "edm", "--dataset", "grf", "--size", "16", "--batch-size", "4", "--model", "tiny",
        "--n-images", "8", "--samples", "4", "--sample-steps", "2", "--warmup", "2", "channels=2", "length=8"]


def train(out, *extra, check=True):
    return bench("train-prior", *TINY, "--out", str(out), *extra, check=check)


def test_sigma_sampling_is_log_normal_with_edm_parameters():
    """ln sigma ~ N(-1.2, 1.2^2) (Table 1): sample mean and std of ln sigma over 200k draws within 4 standard errors."""
    n = 200_000
    log_sigma = edm_sigmas(n, torch.Generator().manual_seed(0)).log().double()
    assert (EDM_P_MEAN, EDM_P_STD) == (-1.2, 1.2)
    assert abs(float(log_sigma.mean()) - EDM_P_MEAN) < 4 * EDM_P_STD / n**0.5
    assert abs(float(log_sigma.std()) - EDM_P_STD) < 4 * EDM_P_STD / (2 * n) ** 0.5
    # the median of a log-normal is exp(P_mean)
    assert float(log_sigma.exp().median()) == pytest.approx(torch.tensor(EDM_P_MEAN).exp().item(), rel=0.01)


def test_loss_weight_is_edm_lambda_and_cancels_c_out():
    """lambda(sigma) = (sigma^2 + s_d^2) / (sigma s_d)^2 by value, and lambda(sigma) c_out(sigma)^2 = 1 for EDMPrecond's
    c_out (the effective weight on the raw network's target is 1, Karras et al. 2022, Sec. 5)."""
    sigma = torch.tensor([0.002, 0.1, 0.5, 1.0, 80.0], dtype=torch.float64)
    torch.testing.assert_close(edm_loss_weight(sigma[2:4], 0.5), torch.tensor([8.0, 5.0], dtype=torch.float64))
    for sd in (0.5, 0.3):
        net = build_network(edm_network_config(TrainConfig(recipe="edm", model="tiny", size=16), 2, sd))
        _, c_out, _, _ = net.coefficients(sigma.view(-1, 1, 1, 1))
        torch.testing.assert_close((edm_loss_weight(sigma, sd) * c_out.flatten() ** 2), torch.ones(5, dtype=torch.float64))


def test_edm_loss_decreases_on_a_fixed_batch():
    """20 Adam steps on one batch, with the same noise levels and noise every step: the EDM loss falls by half."""
    torch.manual_seed(0)
    cfg = TrainConfig(recipe="edm", model="tiny", size=16)
    net = build_network(edm_network_config(cfg, 2, 0.5))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    disc = ((xx**2 + yy**2) < 0.5).float()
    x0 = torch.stack([torch.stack([disc * a, disc * b]) for a, b in ((1.0, 0.0), (0.5, 0.5), (0.0, 0.8), (0.7, -0.3))])
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(20):
        loss = edm_loss(net, x0, 0.5, torch.Generator().manual_seed(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_edm_recipe_writes_weights_the_edm_prior_loads(tmp_path):
    out = tmp_path / "e"
    res = train(out, "--steps", "3")
    assert "--prior edm prior.path=" in res.stdout and str(out / "model.pt") in res.stdout
    for name in ("model.pt", "model.json", "metadata.json", "loss.png", "samples.png", "checkpoint/state.pt"):
        assert (out / name).exists(), name
    assert not (out / "unet").exists()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["recipe"] == "edm" and meta["arch"] == "songunet" and meta["steps"] == 3 and meta["channels"] == 2
    assert "prediction_type" not in meta
    # sigma_data: the RMS of the normalised training images (the first n_images of the train split)
    from benchmarks import registry

    ds = registry.build("datasets", "grf", split="train", size=16, channels=2, length=8)
    images = normalise(torch.stack([ds[i]["image"] for i in range(8)]).float())
    assert meta["sigma_data"] == pytest.approx(float(images.pow(2).mean().sqrt()), rel=1e-6)
    assert meta["sigma_data"] == pytest.approx(measured_sigma_data(images))
    assert json.loads((out / "model.json").read_text()) == meta["network"]
    assert meta["network"]["sigma_data"] == meta["sigma_data"] and meta["network"]["class_name"] == "EDMPrecond"
    # the `edm` prior loads it (architecture from the json beside the weights) with strict=True
    prior = EDMPrior(path=str(out / "model.pt")).eval()
    assert prior.channels == 2 and prior.resolution == (16, 16)
    assert meta["parameters"] == sum(p.numel() for p in prior.net.parameters())
    assert prior.net.sigma_data == pytest.approx(meta["sigma_data"])
    x = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        d = prior.denoise(x, torch.tensor([0.1, 1.0]))
    assert d.shape == (2, 2, 16, 16) and torch.isfinite(d).all()
    # the saved weights are the checkpoint's EMA weights, loaded with weights_only=True
    saved = torch.load(out / "model.pt", weights_only=True)
    state = torch.load(out / "checkpoint/state.pt", weights_only=True)
    assert set(saved) == {"ema"} and saved["ema"].keys() == state["ema"]["model"].keys()
    assert all(torch.equal(saved["ema"][k], v) for k, v in state["ema"]["model"].items())
    assert state["config"]["recipe"] == "edm" and state["sigma_data"] == meta["sigma_data"]
    from benchmarks.cli import parser

    args = parser().parse_args(shlex.split(meta["command"])[1:])
    assert args.recipe == "edm" and args.arch == "songunet" and args.steps == 3


def test_edm_resume_equals_an_uninterrupted_run_and_refuses_a_changed_arch(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(straight, "--steps", "4", "--save-every", "2", "--dropout", "0.1")  # dropout draws from the torch RNG
    train(split, "--steps", "2", "--dropout", "0.1")
    res = bench("train-prior", "--out", str(split), "--steps", "4", "--resume")
    assert "step 2 of 4" in res.stderr
    a = torch.load(straight / "checkpoint/state.pt", weights_only=True)
    b = torch.load(split / "checkpoint/state.pt", weights_only=True)
    assert b["step"] == 4 and a["losses"] == b["losses"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
        assert torch.equal(a["ema"]["model"][k], b["ema"]["model"][k]), k
    ea, eb = torch.load(straight / "model.pt", weights_only=True), torch.load(split / "model.pt", weights_only=True)
    assert all(torch.equal(ea["ema"][k], eb["ema"][k]) for k in ea["ema"])
    legs = json.loads((split / "metadata.json").read_text())["legs"]
    assert [(leg["from_step"], leg["to_step"]) for leg in legs] == [(0, 2), (2, 4)] and "--recipe edm" in legs[1]["command"]
    before = (split / "checkpoint/state.pt").read_bytes()
    res = bench("train-prior", "--out", str(split), "--steps", "5", "--resume", "--arch", "dhariwalunet", check=False)
    assert res.returncode == 2 and "--arch: 'songunet' in the checkpoint, 'dhariwalunet' now" in res.stderr
    res = bench("train-prior", "--out", str(split), "--steps", "5", "--resume", "--recipe", "ddpm", check=False)
    assert res.returncode == 2 and "--recipe: 'edm' in the checkpoint, 'ddpm' now" in res.stderr
    assert (split / "checkpoint/state.pt").read_bytes() == before


def test_init_fine_tunes_from_another_runs_weights_on_new_data(tmp_path):
    """--init: a new run starts from another run's network and EMA weights and its sigma_data (the preconditioning the
    weights learned), with its own data, a new optimiser and step 0; a network of another shape is refused."""
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    train(base, "--steps", "3")
    res = train(tuned, "--steps", "1", "--init", str(base), "--lr", "1e-9", "--warmup", "1", "alpha=2")
    assert "starting from the weights of" in res.stderr and "its step 3" in res.stderr
    a = torch.load(base / "checkpoint/state.pt", weights_only=True)
    b = torch.load(tuned / "checkpoint/state.pt", weights_only=True)
    assert b["step"] == 1 and b["sigma_data"] == a["sigma_data"] and len(b["losses"]) == 1
    # one step at a learning rate of 1e-9 from base's weights: the network moved by ~1e-9, and the EMA made one more
    # update from base's EMA towards it, with decay min(ema, (1 + n) / (10 + n)) at base's n updates
    n = a["ema"]["updates"]
    d = min(0.999, (1 + n) / (10 + n))
    for k, v in a["model"].items():
        assert torch.allclose(b["model"][k], v, atol=1e-6), k
        want = a["ema"]["model"][k] + (1 - d) * (v - a["ema"]["model"][k]) if v.is_floating_point() else v
        assert torch.allclose(b["ema"]["model"][k], want, atol=1e-6), k
    assert b["ema"]["updates"] == n + 1
    meta = json.loads((tuned / "metadata.json").read_text())
    assert meta["init"] == {"from": str(base), "step": 3} and meta["dataset_options"]["alpha"] == 2
    bench("train-prior", "--out", str(tuned), "--steps", "2", "--resume")  # a resumed leg keeps where it started
    meta = json.loads((tuned / "metadata.json").read_text())
    assert meta["init"] == {"from": str(base), "step": 3} and meta["steps"] == 2
    res = train(tmp_path / "wide", "--steps", "1", "--init", str(base), "--base-channels", "32",
                "--channels-mult", "1,2", check=False)
    assert res.returncode == 2 and f"--init {base}: its network differs" in res.stderr
    res = train(tmp_path / "none", "--steps", "1", "--init", str(tmp_path / "nowhere"), check=False)
    assert res.returncode == 2 and "no training checkpoint there" in res.stderr


def test_edm_options_round_trip_and_errors(tmp_path):
    from benchmarks.cli import parser
    from benchmarks.train_prior_cli import command_line, given_options

    cfg = TrainConfig(dataset="grf", recipe="edm", arch="dhariwalunet", sigma_data=0.4, dropout=0.1, model="compact")
    args = parser().parse_args(shlex.split(command_line(cfg))[1:])
    assert replace(TrainConfig(**given_options(args)), command="") == cfg
    # DhariwalUNet (ADM) builds from the same presets and denoises with the right shape
    net = build_network(edm_network_config(replace(cfg, size=16, model="tiny"), 1, 0.5)).eval()
    assert type(net.model).__name__ == "DhariwalUNet"
    with torch.no_grad():
        assert net(torch.randn(3, 1, 16, 16), torch.tensor([0.1, 1.0, 10.0])).shape == (3, 1, 16, 16)
    res = bench("train-prior", *TINY, "--prediction", "v_prediction", "--steps", "1", "--out", str(tmp_path / "a"),
                check=False)
    assert res.returncode == 2 and "--prediction" in res.stderr and "ddpm" in res.stderr
    res = bench("train-prior", *TINY[2:], "--arch", "dhariwalunet", "--steps", "1", "--out", str(tmp_path / "b"),
                check=False)
    assert res.returncode == 2 and "--arch" in res.stderr and "--recipe edm" in res.stderr
    res = bench("train-prior", *TINY, "--sigma-data", "-1", "--steps", "1", "--out", str(tmp_path / "c"), check=False)
    assert res.returncode == 2 and "--sigma-data must be positive" in res.stderr


def test_ship_prior_exports_the_checkpoint_ema_as_packaged_weights(tmp_path):
    """benchmarks/experiments/ship_prior.py: the checkpoint's EMA weights, model.json and metadata.json (load_with
    naming the packaged prior), the edm prior loads them; a checkpoint ahead of metadata.json is refused."""
    from benchmarks.experiments.ship_prior import ship

    out = tmp_path / "e"
    train(out, "--steps", "2")
    shipped = ship(out, "tiny-16", tmp_path / "weights")
    state = torch.load(out / "checkpoint/state.pt", weights_only=True)
    saved = torch.load(shipped / "model.pt", weights_only=True)["ema"]
    assert all(torch.equal(saved[k], v) for k, v in state["ema"]["model"].items())
    meta = json.loads((shipped / "metadata.json").read_text())
    assert meta["load_with"] == "--prior tiny-16" and meta["steps"] == 2
    assert json.loads((shipped / "model.json").read_text()) == meta["network"]
    assert (shipped / "samples.png").exists() and (shipped / "loss.png").exists()
    prior = EDMPrior(path=str(shipped / "model.pt")).eval()
    with torch.no_grad():
        ours = prior.denoise(torch.ones(1, 2, 16, 16), torch.tensor([0.5]))
        theirs = EDMPrior(path=str(out / "model.pt")).eval().denoise(torch.ones(1, 2, 16, 16), torch.tensor([0.5]))
    assert torch.equal(ours, theirs)
    meta_file = out / "metadata.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "steps": 1}))
    with pytest.raises(ValueError, match="checkpoint at step 2 but metadata.json says 1"):
        ship(out, "tiny-16", tmp_path / "weights")
