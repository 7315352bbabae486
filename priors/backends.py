"""Where a prior's network runs: eager PyTorch (`torch`, the default) or an exported ONNX graph on ONNX Runtime's
CPU provider (`onnxruntime`, the optional extra `pip install -e ".[onnx]"`).

The graph is exported once per set of weights, with a dynamic batch dimension, into
`<cache>/onnx/<fingerprint>.onnx`: the cache is `$MEDTTA_CACHE` or `~/.cache/medtta-bench`, never the package, and
the fingerprint (priors/fingerprint.py) covers the weights, the class label and the torch and opset versions, so
new weights or a new exporter write a new file. The graph computes forward calls only: a call that needs gradients
through the network (DPS, PiGDM, ... differentiate D(x, sigma) with respect to x), or one made after the weights
changed in place (a network adapter), runs on PyTorch instead, with a one-line note the first time.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from priors.fingerprint import prior_fingerprint

BACKENDS = ("torch", "onnxruntime")
OPSET = 17


def cache_dir() -> Path:
    """$MEDTTA_CACHE, else ~/.cache/medtta-bench: where exported graphs are kept."""
    return Path(os.environ.get("MEDTTA_CACHE") or Path.home() / ".cache" / "medtta-bench").expanduser()


def check_backend(backend: str) -> None:
    """Refuse an unknown backend, or onnxruntime when it is not installed, naming the fix."""
    if backend not in BACKENDS:
        raise ValueError(f"prior.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise ValueError('prior.backend=onnxruntime needs ONNX Runtime: pip install -e ".[onnx]" (or use '
                             'prior.backend=torch)') from exc


class _Call(nn.Module):
    """net(x, sigma) with a fixed class label (one-hot, or none): the two inputs the graph takes."""

    def __init__(self, net: nn.Module, class_label: int | None) -> None:
        super().__init__()
        self.net, self.class_label = net, class_label

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        labels = None
        if self.class_label is not None:
            labels = nn.functional.one_hot(torch.full_like(sigma, self.class_label, dtype=torch.long),
                                           int(self.net.label_dim)).to(x.dtype)
        return self.net(x, sigma, class_labels=labels)


def export_onnx(net: nn.Module, path: Path, example: Tensor, class_label: int | None = None) -> Path:
    """Export net(x, sigma) (float32, contiguous, on the CPU) to `path` with a dynamic batch; written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
    call = _Call(net, class_label).eval()
    x = example.detach().to("cpu", torch.float32).contiguous()
    sigma = torch.ones(x.shape[0])
    with warnings.catch_warnings():  # the TorchScript exporter's notes on traced Python control flow
        warnings.simplefilter("ignore")
        try:  # TorchScript exporter: a tenth of the dynamo exporter's time on the shipped UNet
            torch.onnx.export(call, (x, sigma), str(tmp), dynamo=False, input_names=["x", "sigma"],
                              output_names=["denoised"], dynamic_axes={"x": {0: "batch"}, "sigma": {0: "batch"}},
                              opset_version=OPSET)
        except Exception:  # noqa: BLE001 - a torch without it: the dynamo exporter
            batch = torch.export.Dim("batch", min=1, max=4096)
            torch.onnx.export(call, (x, sigma), str(tmp), dynamo=True, input_names=["x", "sigma"],
                              output_names=["denoised"], dynamic_shapes=({0: batch}, {0: batch}), optimize=True)
    tmp.replace(path)
    return path


def graph_key(net: nn.Module, class_label: int | None) -> str:
    """The cache file's stem: the weights' fingerprint with the class label and the exporter's versions."""
    text = f"{prior_fingerprint(net)} label={class_label} torch={torch.__version__} opset={OPSET}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _versions(net: nn.Module) -> int:
    """Sum of the tensors' in-place version counters: it moves when any weight is changed in place."""
    return sum(t._version for t in net.parameters()) + sum(t._version for t in net.buffers())


class OnnxNetwork:
    """A network's forward call through ONNX Runtime (CPU provider, all graph optimisations, `threads` intra-op
    threads: 0 is torch's thread count at the first call; idle threads sleep, not spin). The graph is exported (or
    read from the cache) at the first call, on that call's input; `usable` says whether a call may run here (and
    notes once why not)."""

    def __init__(self, class_label: int | None = None, threads: int = 0, cache: Path | None = None) -> None:
        check_backend("onnxruntime")
        self.class_label, self.threads, self.cache = class_label, threads, cache
        self.session: Any = None
        self.path: Path | None = None
        self._version = -1
        self._noted: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:  # a copy (copy.deepcopy of the prior) opens its own session
        return {**self.__dict__, "session": None, "_version": -1}

    def _note(self, why: str) -> None:
        if why not in self._noted:
            self._noted.add(why)
            warnings.warn(f"prior.backend=onnxruntime: {why}; such calls run on PyTorch", stacklevel=4)

    def usable(self, net: nn.Module, x: Tensor, sigma: Tensor) -> bool:
        """False (with a one-line note the first time) where the call needs gradients through the network, the input
        is not on the CPU, or the weights changed in place after the export."""
        if torch.is_grad_enabled() and (x.requires_grad or sigma.requires_grad
                                        or any(p.requires_grad for p in net.parameters())):
            self._note("a gradient through the network was asked for (gradient solvers stay on PyTorch)")
            return False
        if x.device.type != "cpu":
            self._note(f"the input is on {x.device} (the ONNX backend runs on the CPU)")
            return False
        if self.session is not None and _versions(net) != self._version:
            self._note("the network's weights changed after the export (a network adapter)")
            return False
        return True

    def _open(self, net: nn.Module, x: Tensor) -> None:
        import onnxruntime as ort

        self.path = (self.cache or cache_dir() / "onnx") / f"{graph_key(net, self.class_label)}.onnx"
        if not self.path.exists():
            export_onnx(net, self.path, x[:1], self.class_label)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting on shared cores
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self._version = _versions(net)

    def __call__(self, net: nn.Module, x: Tensor, sigma: Tensor) -> Tensor:
        """net(x, sigma) from the graph (float32 on the CPU; the caller checked `usable`)."""
        if self.session is None:
            self._open(net, x)
        feed = {"x": x.detach().to(torch.float32).contiguous().numpy(),
                "sigma": sigma.detach().to(torch.float32).reshape(-1).contiguous().numpy()}
        return torch.from_numpy(self.session.run(None, feed)[0]).to(x.dtype)
