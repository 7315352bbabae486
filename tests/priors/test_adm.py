"""The `adm` prior (issue 16): guided-diffusion's UNetModel against the reference, presets, the VP -> EDM wrapping.

Golden numbers (tests/fixtures/adm_golden.npz, adm_preset_keys.json.gz) were computed once outside the project
with openai/guided-diffusion at commit 22e0df8183507e13a7813f8d38d51b072ca1e67c (guided_diffusion/unet.py and
script_util.py, run as is; torch 2.14 CPU, one thread). The script:
  - builds three tiny UNetModels (TINY below: learned variance with ResBlock up/down and scale-shift norm;
    fixed variance with conv resampling, attention at two levels and the new attention order; average-pool
    downsampling, two blocks per level and 5 classes), 16x16, eval mode;
  - overwrites every state-dict tensor, in sorted-name order, from torch.Generator().manual_seed(1234):
    randn * 1/sqrt(fan_in) (>= 2-d, fan_in = numel of one output slice) or randn * 0.5 (1-d)
    (`fill_like_reference` here), so no weights need committing;
  - draws x = randn(3, C, 16, 16) from manual_seed(99), timesteps (3, 250.5, 999), labels (0, 4, 2) where
    class-conditional, and stores x and net(x, t, y);
  - builds `create_model(**flags)` on the meta device with DPS's configs/model_config.yaml (ffhq_10m.pt) and
    imagenet_model_config.yaml (256x256_diffusion_uncond.pt) flags and stores every key with its shape.
"""
from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
import torch

from priors.adm import PRESETS, ADMPrior, build_unet, preset_of
from priors.nets.adm import UNetModel
from priors.schedules import sigma_to_t, vp_alphas_cumprod
from tests.helpers import ADM_TINY_FLAGS as TINY_FLAGS  # the tiny checkpoint's create_model flags
from tests.helpers import FIXTURES, fill_like_reference, load_golden, tiny_checkpoint  # no key here is a resample_filter

torch.set_num_threads(1)
T = [3.0, 250.5, 999.0]
TINY = {
    "learned-updown": dict(image_size=16, in_channels=3, model_channels=32, out_channels=6, num_res_blocks=1,
                           attention_resolutions=(2,), channel_mult=(1, 2), num_heads=2, use_scale_shift_norm=True,
                           resblock_updown=True),
    "fixed-conv-newattn": dict(image_size=16, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=1,
                               attention_resolutions=(1, 2), channel_mult=(1, 2), num_head_channels=16,
                               use_scale_shift_norm=False, resblock_updown=False, use_new_attention_order=True),
    "pool-cond": dict(image_size=16, in_channels=1, model_channels=32, out_channels=2, num_res_blocks=2,
                      attention_resolutions=(2,), channel_mult=(1, 1), conv_resample=False, num_classes=5,
                      use_scale_shift_norm=True),
}


@pytest.fixture(scope="module")
def golden():
    return load_golden("adm_golden.npz")


@pytest.mark.parametrize("name", list(TINY))
def test_forward_equals_guided_diffusion_reference(name, golden):
    kw = TINY[name]
    net = UNetModel(**kw).eval()
    fill_like_reference(net)
    x = golden[f"{name}/x"]
    torch.testing.assert_close(x, torch.randn(3, kw["in_channels"], 16, 16, generator=torch.Generator().manual_seed(99)))
    y = torch.tensor([0, 4, 2]) if kw.get("num_classes") else None
    with torch.no_grad():
        out = net(x, torch.tensor(T), y)
    assert float(out.abs().mean()) > 0.1
    torch.testing.assert_close(out, golden[f"{name}/out"], rtol=1e-5, atol=1e-5)


def test_tiny_flags_build_the_tiny_reference_network():
    """create_model's flag translation (resolutions -> factors, learn_sigma -> 2C outputs, "1,2" channel_mult)."""
    a, b = build_unet(TINY_FLAGS), UNetModel(**TINY["learned-updown"])
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_presets_have_the_reference_key_set_and_shapes():
    with gzip.open(FIXTURES / "adm_preset_keys.json.gz", "rt") as fh:
        reference = json.load(fh)
    assert set(reference) == set(PRESETS)
    for name, flags in PRESETS.items():
        ref = reference[name]["flags"]
        assert {k: ref[k] for k in flags} == flags  # the same model_config.yaml values
        with torch.device("meta"):
            net = build_unet(flags)
        assert {k: list(v.shape) for k, v in net.state_dict().items()} == reference[name]["keys"], name
        assert preset_of({k: torch.empty(v, device="meta") for k, v in reference[name]["keys"].items()}) == name


@pytest.mark.parametrize("form", ["bare", "ema", "inversebench"])
def test_prior_is_the_epsilon_network_in_the_edm_convention(tmp_path, form):
    path, net = tiny_checkpoint(tmp_path, form)
    prior = ADMPrior(path=str(path))
    assert prior.channels == 3 and prior.resolution == (16, 16) and prior.prediction_type == "epsilon"
    torch.testing.assert_close(prior.alphas_cumprod, vp_alphas_cumprod())
    assert prior.sigma_min == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)), rel=1e-6)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    sigma = torch.tensor([0.1, 5.0])
    # by hand: x_vp = x / sqrt(1 + s^2), t on the linear table, eps = first 3 of the 6 output channels
    with torch.no_grad():
        eps = net(x / (1 + sigma.view(-1, 1, 1, 1) ** 2).sqrt(), sigma_to_t(sigma, vp_alphas_cumprod()))[:, :3]
        torch.testing.assert_close(prior.denoise(x, sigma), x - sigma.view(-1, 1, 1, 1) * eps)
    # at a table sigma the timestep is that integer index
    abar = vp_alphas_cumprod()
    s500 = ((1 - abar[500]) / abar[500]).sqrt().float().reshape(1)
    assert float(prior.timestep(s500)) == pytest.approx(500, abs=1e-3)


def test_class_conditional_network_needs_a_class_label(tmp_path):
    flags = {**TINY_FLAGS, "class_cond": True, "learn_sigma": False}
    net = build_unet(flags).eval()
    fill_like_reference(net)
    path = tmp_path / "cond.pt"
    torch.save(net.state_dict(), path)
    (tmp_path / "cond.json").write_text(json.dumps(flags))
    with pytest.raises(ValueError, match="class-conditional .1000 classes.: pass prior.class_label"):
        ADMPrior(path=str(path))
    prior = ADMPrior(path=str(path), class_label=7)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    t = sigma_to_t(torch.tensor([0.5, 0.5]), vp_alphas_cumprod())
    with torch.no_grad():
        eps = net(x / math.sqrt(1.25), t, torch.tensor([7, 7]))
        torch.testing.assert_close(prior.denoise(x, 0.5), x - 0.5 * eps)
    with pytest.raises(ValueError, match="unconditional"):
        ADMPrior(path=str(tiny_checkpoint(tmp_path)[0]), class_label=1)


def test_architecture_is_inferred_or_refused_with_the_fix(tmp_path):
    path, _ = tiny_checkpoint(tmp_path)
    path.with_suffix(".json").unlink()
    with pytest.raises(ValueError, match="fit none of the ADM presets.*prior.config"):
        ADMPrior(path=str(path))
    with pytest.raises(ValueError, match="missing key.*unexpected key"):
        ADMPrior(path=str(path), preset="ffhq256-dps")
    with pytest.raises(ValueError, match="unknown ADM preset"):
        ADMPrior(path=str(path), preset="ffhq")
    with pytest.raises(ValueError, match="prior.path"):
        ADMPrior()
    cfg = tmp_path / "flags.json"
    cfg.write_text(json.dumps({**TINY_FLAGS, "learn_sigma": False}))
    with pytest.raises(ValueError, match=r"out.2.weight: file \(6, 32, 3, 3\) vs model \(3, 32, 3, 3\)"):
        ADMPrior(path=str(path), config=str(cfg))
    cfg.write_text(json.dumps({"num_channels": 32}))
    with pytest.raises(ValueError, match="image_size"):
        ADMPrior(path=str(path), config=str(cfg))


def test_bench_run_inpainting_with_a_dps_style_checkpoint(tmp_path, plugin_path, monkeypatch):
    """`bench run --prior adm prior.path=FILE` with a bare state dict as DPS ships it (config json beside it); the
    test plugin's one-call algorithm, since a random network is no prior a sampler could converge with."""
    from tests.helpers import bench

    path, _ = tiny_checkpoint(tmp_path)
    monkeypatch.syspath_prepend(str(plugin_path))  # denoise-adjoint: D(A^H y, 0.1)
    out = tmp_path / "run"
    bench("run", "--problem", "inpainting", "--algo", "denoise-adjoint", "--prior", "adm", "--n", "1",
          "problem.size=16", "problem.channels=3", "dataset.size=16", "dataset.channels=3", f"prior.path={path}",
          "--out", str(out), "--quiet")
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["status"] == "ok" and math.isfinite(rows[0]["psnr"])
    y_adj = torch.from_numpy(np.load(out / rows[0]["reconstruction"]))
    assert y_adj.shape[-3:] == (3, 16, 16)
