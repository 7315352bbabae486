"""prior.backend=onnxruntime (priors/backends.py): the exported graph gives eager PyTorch's outputs to 1e-5, is cached
by the weights' fingerprint outside the package, and calls that need gradients (or follow a change of the weights)
run on PyTorch with a one-line note."""
from __future__ import annotations

import warnings

import pytest
import torch

from priors.backends import BACKENDS, check_backend, graph_key
from priors.edm import EDMPrior
from tests.priors.test_edm import tiny_net

ort = pytest.importorskip("onnxruntime",
                          reason='prior.backend=onnxruntime needs the [onnx] extra: pip install -e ".[onnx]"')

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTTA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def pair(name: str = "edm-dhariwal", class_label: int | None = None) -> tuple[EDMPrior, EDMPrior]:
    """The same tiny network as an eager prior and an onnxruntime prior (channels_last, as the runner sets on CPU)."""
    net = tiny_net(name).requires_grad_(False)
    eager = EDMPrior(net=net, class_label=class_label).set_execution("fp32", "channels_last")
    onnx = EDMPrior(net=tiny_net(name).requires_grad_(False), class_label=class_label, backend="onnxruntime")
    return eager, onnx.set_execution("fp32", "channels_last")


@pytest.mark.parametrize("name,label", [("edm-dhariwal", None), ("edm-song-skip-cond", 2)])
def test_onnxruntime_equals_eager_to_1e5_at_any_batch(name, label, cache):
    eager, onnx = pair(name, label)
    g = torch.Generator().manual_seed(0)
    c = eager.channels
    with torch.no_grad():
        for batch, sigma in ((1, 0.05), (3, torch.tensor([0.05, 1.5, 30.0])), (4, 2.0)):
            x = torch.randn((batch, c, 16, 16), generator=g) * 2
            want, got = eager.denoise(x, sigma), onnx.denoise(x, sigma)
            assert got.shape == want.shape and got.dtype == torch.float32 and got.is_contiguous()
            assert float((got - want).abs().max()) <= 1e-5
    files = list(cache.glob("*.onnx"))  # one graph (dynamic batch) in the cache dir, none in the package
    assert [f.stem for f in files] == [graph_key(onnx.net, label)]


def test_graph_is_reused_from_the_cache_and_keyed_by_the_weights(cache):
    _, first = pair()
    x = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        first.denoise(x, 1.0)
    stamp = first._onnx.path.stat().st_mtime_ns
    _, again = pair()
    with torch.no_grad():
        again.denoise(x, 1.0)
    assert again._onnx.path == first._onnx.path and again._onnx.path.stat().st_mtime_ns == stamp
    other = tiny_net("edm-dhariwal")
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    assert graph_key(other, None) != graph_key(first.net, None)


def test_gradient_calls_run_on_pytorch_with_one_note():
    eager, onnx = pair()
    x = torch.randn(2, 2, 16, 16)
    grads = []
    for prior in (eager, onnx):
        xi = x.clone().requires_grad_(True)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            for _ in range(2):
                (g,) = torch.autograd.grad(prior.denoise(xi, 0.5).square().sum(), xi)
        grads.append(g)
        notes = [str(w.message) for w in seen if "prior.backend=onnxruntime" in str(w.message)]
        assert notes == ([] if prior is eager else [notes[0]]) and (prior is eager or "gradient" in notes[0])
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_weights_changed_after_export_run_on_pytorch():
    _, onnx = pair()
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        onnx.denoise(x, 1.0)
        next(onnx.net.parameters()).add_(0.1)  # what a network adapter's optimiser step does
        with pytest.warns(UserWarning, match="weights changed"):
            got = onnx.denoise(x, 1.0)
        want = EDMPrior(net=onnx.net).denoise(x, 1.0)
    assert torch.equal(got, want)


def test_bad_options_are_refused_naming_the_fix():
    assert BACKENDS == ("torch", "onnxruntime")
    with pytest.raises(ValueError, match="prior.backend must be one of torch, onnxruntime"):
        check_backend("tensorrt")
    with pytest.raises(ValueError, match="does not combine"):
        EDMPrior(net=tiny_net("edm-dhariwal"), backend="onnxruntime", compile=True)
    with pytest.raises(ValueError, match="run.precision=bf16 needs prior.backend=torch"):
        EDMPrior(net=tiny_net("edm-dhariwal"), backend="onnxruntime").set_execution("bf16")


def test_backend_leaves_the_fingerprint_and_reaches_the_shipped_prior():
    from priors.fingerprint import prior_fingerprint
    from priors.shipped import brain_64

    eager, onnx = pair()
    assert prior_fingerprint(eager) == prior_fingerprint(onnx)
    assert brain_64(backend="onnxruntime")._onnx is not None and brain_64()._onnx is None


def test_prior_backend_override_reaches_the_runs_prior():
    from benchmarks.build import build_components
    from benchmarks.config import Selection, compose_config

    cfg = compose_config(Selection("cs_mri", "daps", [], "brain-64"), ["problem.coils=1", "prior.backend=onnxruntime"])
    prior = build_components(cfg, torch.device("cpu")).prior
    assert prior.backend == "onnxruntime" and prior._onnx is not None and prior.memory_format == "channels_last"


def test_solvers_give_the_same_reconstruction_on_either_backend():
    """DAPS (forward calls only: on the graph) and DPS (gradients through the network: on PyTorch, noted once)."""
    from algorithms.diffusion.daps import DAPS
    from algorithms.diffusion.dps import DPS
    from inverse_problems.operators.inpainting import Inpainting

    eager, onnx = pair()
    g = torch.Generator().manual_seed(1)
    op = Inpainting((torch.rand((16, 16), generator=g) < 0.5).float(), 2, noise_std=0.05)
    y = op.measure(torch.randn((2, 2, 16, 16), generator=g), g)
    for algo in (DAPS(budget=None, n_steps=3, ode_steps=2, langevin_steps=2), DPS(n_steps=3)):
        want = algo.reconstruct(y, op, eager, torch.Generator().manual_seed(0)).image
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            got = algo.reconstruct(y, op, onnx, torch.Generator().manual_seed(0)).image
        notes = [str(w.message) for w in seen if "prior.backend=onnxruntime" in str(w.message)]
        assert float((got - want).abs().max()) <= 1e-4
        assert (len(notes) == 1 and "gradient" in notes[0]) if isinstance(algo, DPS) else not notes


def test_a_missing_onnxruntime_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ValueError, match=r'pip install -e "\.\[onnx\]"'):
        EDMPrior(net=tiny_net("edm-dhariwal"), backend="onnxruntime")
