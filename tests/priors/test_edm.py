"""The `edm` prior (issue 16): EDM's networks and preconditioning against the reference, checkpoint loading, errors.

Golden numbers (tests/fixtures/edm_golden.npz, edm_preset_keys.json.gz) were computed once outside the
project with NVlabs/edm at commit 008a4e5316c8e3bfe61a62f874bddba254295afb (training/networks.py, run as
is with its own torch_utils/dnnlib on the path, torch 2.14 CPU, one thread). The script:
  - builds four tiny preconditioned networks (TINY below: EDMPrecond+DhariwalUNet, VPPrecond+SongUNet DDPM++
    with augment_dim, VEPrecond+SongUNet NCSN++ (Fourier embedding, residual encoder, skip decoder, [1,3,3,1]
    filter), EDMPrecond+SongUNet skip encoder with 3 class labels), 16x16, eval mode;
  - overwrites every state-dict tensor except `resample_filter`, in sorted-name order, from
    torch.Generator().manual_seed(1234): randn * 1/sqrt(fan_in) (>= 2-d, fan_in = numel of one output slice)
    or randn * 0.5 (1-d) -- `fill_like_reference` here does the same, so no weights need committing;
  - draws x = randn(3, C, 16, 16) from manual_seed(99), sigma = (0.05, 1.5, 30), class labels one-hot (0, 2, 1)
    where label_dim > 0, and stores x, D = net(x, sigma, class_labels) and F = net.model(x, linspace(-1, 2, 3), class_labels);
  - builds full-size networks on the meta device for four configurations and stores every state-dict
    key with its shape (the same options as this project's presets).
"""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
import torch

from priors.nets import edm as edm_nets
from priors.edm import PRESETS, EDMPrior, build_network, load_network, network_config
from tests.helpers import FIXTURES, fill_like_reference, load_golden

torch.set_num_threads(1)
SIGMA = [0.05, 1.5, 30.0]
TINY = {
    "edm-dhariwal": ("EDMPrecond", dict(img_resolution=16, img_channels=2, model_type="DhariwalUNet", model_channels=32,
                                        channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8], dropout=0.0)),
    "vp-ddpmpp": ("VPPrecond", dict(img_resolution=16, img_channels=3, model_type="SongUNet", model_channels=16,
                                    channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8], augment_dim=9, dropout=0.0)),
    "ve-ncsnpp": ("VEPrecond", dict(img_resolution=16, img_channels=1, model_type="SongUNet", model_channels=16,
                                    channel_mult=[1, 2, 2], num_blocks=1, attn_resolutions=[8], dropout=0.0,
                                    embedding_type="fourier", channel_mult_noise=2, encoder_type="residual",
                                    decoder_type="skip", resample_filter=[1, 3, 3, 1])),
    "edm-song-skip-cond": ("EDMPrecond", dict(img_resolution=16, img_channels=1, label_dim=3, model_type="SongUNet",
                                              model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8],
                                              dropout=0.0, encoder_type="skip")),
}
# the reference script's preset names -> this project's presets with the same key set
PRESET_OF_REFERENCE = {"inversebench-mri-knee": "inversebench-mri-knee", "edm-ffhq64": "edm-ffhq64",
                       "edm-ffhq64-ve": "edm-ffhq64-ve", "edm-cifar10": "edm-cifar10"}


def tiny_net(name: str) -> torch.nn.Module:
    cls, kw = TINY[name]
    net = build_network({"class_name": cls, **kw}).eval()
    fill_like_reference(net)
    return net


@pytest.fixture(scope="module")
def golden():
    return load_golden("edm_golden.npz")


@pytest.mark.parametrize("name", list(TINY))
def test_forward_equals_edm_reference(name, golden):
    net = tiny_net(name)
    x = golden[f"{name}/x"]
    # the inputs are the reference's draw: same generator, same seed
    cls, kw = TINY[name]
    torch.testing.assert_close(x, torch.randn(3, kw["img_channels"], 16, 16, generator=torch.Generator().manual_seed(99)))
    labels = None
    if kw.get("label_dim"):
        labels = torch.nn.functional.one_hot(torch.tensor([0, 2, 1]), kw["label_dim"]).float()
    with torch.no_grad():
        d = net(x, torch.tensor(SIGMA), class_labels=labels)
        f = net.model(x, torch.linspace(-1.0, 2.0, 3), class_labels=labels)
    assert float(f.abs().mean()) > 0.1  # the comparison is not between two zero outputs
    torch.testing.assert_close(f, golden[f"{name}/F"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(d, golden[f"{name}/D"], rtol=1e-5, atol=1e-5)


def test_preconditioning_coefficients_are_table_1():
    """c_skip, c_out, c_in, c_noise of VP, VE and EDM at sigma = 0.7 (Karras et al. 2022, Table 1), by value."""
    s = torch.tensor([[[[0.7]]]])
    kw = dict(img_resolution=8, img_channels=1, model_channels=8, channel_mult=[1], num_blocks=1, attn_resolutions=[])
    vp = edm_nets.VPPrecond(**kw)
    skip, out, cin, noise = vp.coefficients(s)
    t = (math.sqrt(0.1**2 + 2 * 19.9 * math.log(1 + 0.49)) - 0.1) / 19.9
    assert skip == 1 and float(out) == pytest.approx(-0.7) and float(cin) == pytest.approx(1 / math.sqrt(1.49))
    assert float(noise) == pytest.approx(999 * t, rel=1e-6)
    assert float(vp.sigma(torch.tensor(t))) == pytest.approx(0.7, rel=1e-5)  # sigma(t(sigma)) = sigma
    skip, out, cin, noise = edm_nets.VEPrecond(**kw).coefficients(s)
    assert (skip, cin) == (1, 1) and float(out) == pytest.approx(0.7) and float(noise) == pytest.approx(math.log(0.35))
    skip, out, cin, noise = edm_nets.EDMPrecond(model_type="SongUNet", **kw).coefficients(s)
    assert float(skip) == pytest.approx(0.25 / 0.74) and float(out) == pytest.approx(0.35 / math.sqrt(0.74))
    assert float(cin) == pytest.approx(1 / math.sqrt(0.74)) and float(noise) == pytest.approx(math.log(0.7) / 4)


def test_full_presets_have_the_reference_key_set_and_shapes():
    with gzip.open(FIXTURES / "edm_preset_keys.json.gz", "rt") as fh:
        reference = json.load(fh)
    assert set(PRESET_OF_REFERENCE) == set(reference)
    for ref_name, preset in PRESET_OF_REFERENCE.items():
        with torch.device("meta"):
            net = build_network(PRESETS[preset])
        ours = {k: list(v.shape) for k, v in net.state_dict().items()}
        assert ours == reference[ref_name]["keys"], preset
    mri = PRESETS["inversebench-mri-knee"]
    assert (mri["img_resolution"], mri["img_channels"], mri["model_channels"], mri["channel_mult"]) == \
        (320, 2, 128, [1, 1, 1, 2, 2])
    assert len(reference["inversebench-mri-knee"]["keys"]) == 304


def write_checkpoint(tmp_path: Path, form: str, name: str = "edm-dhariwal") -> tuple[Path, torch.nn.Module]:
    net = tiny_net(name)
    cls, kw = TINY[name]
    sd = net.state_dict()
    obj = {"ema": sd, "net": {k: torch.zeros_like(v) for k, v in sd.items()}, "step": torch.tensor(5)} \
        if form == "ema" else {"net": sd, "optimizer": {"lr": torch.tensor(1e-4)}} if form == "net" else \
        {f"module.{k}": v for k, v in sd.items()} if form == "module" else \
        {k[len("model."):]: v for k, v in sd.items()} if form == "unet" else sd
    path = tmp_path / f"{form}.pt"
    torch.save(obj, path)
    path.with_suffix(".json").write_text(json.dumps({"class_name": f"training.networks.{cls}", **kw}))
    return path, net


@pytest.mark.parametrize("form", ["ema", "net", "bare", "module", "unet"])
def test_prior_loads_every_checkpoint_form_and_denoises_like_the_network(tmp_path, form):
    path, net = write_checkpoint(tmp_path, form)
    prior = EDMPrior(path=str(path))
    assert prior.channels == 2 and prior.resolution == (16, 16)
    assert (prior.sigma_min, prior.sigma_max) == (0.002, 80.0)  # EDMPrecond declares [0, inf): EDM's sampler range
    x = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(prior.denoise(x, 0.4), net(x, torch.full((2,), 0.4)))
    prior.check_compatible((2, 16, 16))
    with pytest.raises(ValueError, match=r"\(2, 16, 16\).*\(2, 320, 320\)"):
        prior.check_compatible((2, 320, 320))


def test_vp_prior_takes_its_sigma_range_and_a_class_label(tmp_path):
    path, net = write_checkpoint(tmp_path, "ema", "vp-ddpmpp")
    prior = EDMPrior(path=str(path))
    assert prior.sigma_min == pytest.approx(float(net.sigma(1e-5))) and prior.sigma_max == pytest.approx(float(net.sigma(1)))
    path, net = write_checkpoint(tmp_path, "ema", "edm-song-skip-cond")
    prior = EDMPrior(path=str(path), class_label=2)
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = net(x, torch.tensor([0.5]), class_labels=torch.tensor([[0.0, 0.0, 1.0]]))
        torch.testing.assert_close(prior.denoise(x, 0.5), want)
        assert not torch.allclose(EDMPrior(path=str(path)).denoise(x, 0.5), want)
    with pytest.raises(ValueError, match="3 classes"):
        EDMPrior(path=str(path), class_label=3)


def test_mismatched_weights_name_the_missing_unexpected_and_misshaped_keys(tmp_path):
    path, _ = write_checkpoint(tmp_path, "ema")
    sd = torch.load(path, weights_only=True)["ema"]
    sd["model.extra.weight"] = torch.zeros(1)
    del sd["model.out_conv.bias"]
    sd["model.out_norm.weight"] = torch.zeros(3)
    torch.save({"ema": sd}, path)
    with pytest.raises(ValueError) as info:
        EDMPrior(path=str(path))
    msg = str(info.value)
    assert "1 missing key(s): model.out_conv.bias" in msg and "1 unexpected key(s): model.extra.weight" in msg
    assert "model.out_norm.weight: file (3,) vs model (32,)" in msg and "prior.preset" in msg
    # a preset for another network: every key of the bigger model is reported, not a silent partial load
    good, _ = write_checkpoint(tmp_path, "bare")
    with pytest.raises(ValueError, match="missing key"):
        EDMPrior(path=str(good), preset="edm-cifar10")


def test_bad_inputs_are_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="prior.path"):
        EDMPrior()
    path, _ = write_checkpoint(tmp_path, "ema")
    with pytest.raises(ValueError, match="unknown EDM preset 'mri'.*inversebench-mri-knee"):
        EDMPrior(path=str(path), preset="mri")
    path.with_suffix(".json").unlink()
    with pytest.raises(ValueError, match="prior.preset=NAME"):
        EDMPrior(path=str(path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EDMPrior(path=str(tmp_path / "nope.pt"), preset="edm-cifar10")
    with pytest.raises(KeyError, match="no entry 'weights'"):
        EDMPrior(path=str(path), config=str(write_checkpoint(tmp_path, "net")[0].with_suffix(".json")), key="weights")
    bad_cfg = tmp_path / "bad.json"
    bad_cfg.write_text(json.dumps({"class_name": "iDDPMPrecond", "img_resolution": 16, "img_channels": 2}))
    with pytest.raises(ValueError, match="not an EDM preconditioner"):
        EDMPrior(path=str(path), config=str(bad_cfg))
    # a pickle with modules (an EDM snapshot) is never unpickled here: the converter is named
    import pickle

    pkl = tmp_path / "network-snapshot.pkl"
    pkl.write_bytes(pickle.dumps({"ema": torch.nn.Linear(2, 2)}))
    with pytest.raises(ValueError, match="convert_edm_pickle.py"):
        EDMPrior(path=str(pkl), preset="edm-cifar10")
    # NaN weights
    sd = torch.load(path, weights_only=True)["ema"]
    sd["model.out_conv.weight"][0, 0, 0, 0] = float("nan")
    torch.save({"ema": sd}, path)
    cfg = network_config(config=str(write_checkpoint(tmp_path, "bare")[0].with_suffix(".json")))
    with pytest.raises(ValueError, match="NaN"):
        load_network(path, cfg)


FAKE_EDM = '''
from priors.nets.edm import EDMPrecond as _Base


class EDMPrecond(_Base):
    """Stands in for EDM's persistent class: records its constructor keywords like torch_utils.persistence."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.init_args, self.init_kwargs = (), dict(kwargs)
'''


def test_pickle_converter_writes_a_state_dict_and_config_the_prior_loads(tmp_path):
    """A pickle whose class lives only in the given EDM source folder: convert_edm_pickle.py unpickles it there."""
    import pickle
    import sys

    from benchmarks.experiments.convert_edm_pickle import main

    src = tmp_path / "edm"
    (src / "torch_utils").mkdir(parents=True)
    (src / "torch_utils" / "__init__.py").write_text("")
    (src / "fake_edm_networks.py").write_text(FAKE_EDM)
    sys.path.insert(0, str(src))
    try:
        import fake_edm_networks

        _, kw = TINY["edm-dhariwal"]
        net = fake_edm_networks.EDMPrecond(**kw).eval()
        fill_like_reference(net)
        (tmp_path / "snap.pkl").write_bytes(pickle.dumps({"ema": net, "loss_fn": None}))
    finally:
        sys.path.remove(str(src))
        sys.modules.pop("fake_edm_networks", None)
    with pytest.raises(ValueError, match="convert_edm_pickle"):
        EDMPrior(path=str(tmp_path / "snap.pkl"), preset="edm-cifar10")
    with pytest.raises(SystemExit, match="refusing to unpickle .*--trust-pickle"):  # issue 26: never by default
        main(["--edm-src", str(src), str(tmp_path / "snap.pkl"), str(tmp_path / "out.pt")])
    assert not (tmp_path / "out.pt").exists()
    assert main(["--trust-pickle", "--edm-src", str(src), str(tmp_path / "snap.pkl"), str(tmp_path / "out.pt")]) == 0
    config = json.loads((tmp_path / "out.json").read_text())
    assert config["class_name"] == "EDMPrecond" and config["model_channels"] == 32
    prior = EDMPrior(path=str(tmp_path / "out.pt"))  # architecture from out.json
    x = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(prior.denoise(x, 1.0), net(x, torch.ones(2)))
    with pytest.raises(SystemExit, match="torch_utils"):
        main(["--trust-pickle", "--edm-src", str(tmp_path), str(tmp_path / "snap.pkl"), str(tmp_path / "o2.pt")])


def test_bench_run_cs_mri_with_an_inversebench_style_checkpoint(tmp_path):
    """`bench run --problem cs_mri --prior edm prior.path=...` on a tiny DhariwalUNet saved as InverseBench does
    ({'ema': state_dict}), the architecture from a config json given on the command line."""
    from tests.helpers import bench

    path, _ = write_checkpoint(tmp_path, "ema")
    cfg = tmp_path / "arch.json"
    path.with_suffix(".json").rename(cfg)
    out = tmp_path / "run"
    bench("run", "--problem", "cs_mri", "--algo", "dps", "--prior", "edm", "--n", "1", "problem.size=16",
          "dataset.size=16", "problem.coils=2", "problem.coil_maps=true", "algorithm.n_steps=3", f"prior.path={path}", f"prior.config={cfg}", "--out", str(out),
          "--quiet")
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["status"] == "ok" and math.isfinite(rows[0]["psnr"])
    # the preset for the full 320x320 network is refused before any compute: its keys are not these weights'
    res = bench("run", "--problem", "cs_mri", "--algo", "dps", "--prior", "edm", "--n", "1", "problem.size=16",
                "dataset.size=16", "problem.coil_maps=true", "prior.preset=inversebench-mri-knee", f"prior.path={path}", "--out", str(tmp_path / "r2"), "--quiet",
                check=False)
    assert res.returncode != 0 and "missing key" in res.stderr
