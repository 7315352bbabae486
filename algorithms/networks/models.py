"""End-to-end reconstruction networks: `unet` and `varnet`, loaded from checkpoints written by `bench train-recon`.

Both map measurements y, through the problem's operator A (its mask, its coil maps), to an image in the
operator's image space (B, C, H, W); a complex image is C = 2 channels (real, imaginary).

Input and scale: x_in = A^H y, the zero-filled (multi-coil: SENSE-combined, sum_c S_c^H F^H M y_c) image, divided
by s = the 99th percentile of |A^H y| (inverse_problems.base.adjoint_quantile; a constant without gradient,
computed from the measurements only, docs/design.md "Scaling"); the network works on x_in / s and its output is
multiplied back by s. So the same weights take any operator of the problem, including a re-subsampled one
(`MultiCoilMRI.with_mask`), whose zero-filled image is weaker.

- `unet` (Ronneberger et al., MICCAI 2015; the fastMRI baseline, Zbontar et al. 2018): a residual U-Net in the
  image domain, x = x_in + U(x_in), U = conv blocks (3x3 conv, instance norm, LeakyReLU 0.2, twice), average
  pooling down, transposed convolutions up, skip concatenations, a final 1x1 conv.
- `varnet` (the end-to-end variational network, Sriram et al., MICCAI 2020, written in the image domain of
  Hammernik et al., MRM 2018): T cascades x^{t+1} = x^t - eta_t A^H(A x^t - y) - U_t(x^t), x^0 = A^H y, eta_t
  learnable (1 at start), each U_t a small U-Net; data consistency through the problem's operator and the coil
  maps it holds (ESPIRiT from the ACS), not a learned sensitivity network.

`film_target` is the last decoder block (for `varnet`: the last cascade's); test-time adapters modulate its
output features h (B, F, H, W) as gamma * h + beta (D2SA's MR-INR FiLM).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from algorithms.base import Algorithm, Reconstruction
from algorithms.networks.training_config import ARCHS
from priors.domain import SourceDomain
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.problems.base import adjoint_quantile
from priors.base import Prior

FORMAT = "medtta-recon-net"
WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
# the shipped source models (algorithms/weights/<file>), by architecture and name; `algorithm.model=NAME`
SHIPPED: dict[str, dict[str, str]] = {
    "unet": {"knee-pd": "unet-knee-pd-r4-64.pt", "brain-t2": "unet-brain-t2-r4-64.pt",
             "brain-t2-r2": "unet-brain-t2-r2-64.pt"},
    "varnet": {"knee-pd": "varnet-knee-pd-r4-64.pt", "brain-t2": "varnet-brain-t2-r4-64.pt",
               "brain-t2-r2": "varnet-brain-t2-r2-64.pt"},
}
DEFAULT_MODEL = {"unet": "knee-pd", "varnet": "knee-pd"}


class ConvBlock(nn.Module):
    """Two (3x3 conv, instance norm, LeakyReLU 0.2) layers (the fastMRI U-Net's block)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class UpBlock(nn.Module):
    """2x2 transposed conv (stride 2), instance norm, LeakyReLU 0.2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, stride=2, bias=False), nn.InstanceNorm2d(cout),
                                    nn.LeakyReLU(0.2))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class UNetCore(nn.Module):
    """U(x): `pools` levels of average pooling, widths chans * 2^level, skip concatenations, 1x1 output conv.

    Inputs whose sides are not multiples of 2^pools are zero-padded to one and cropped back. `decoder[-1]` is the
    last decoder block (full resolution, `chans` features). The output conv starts at zero (U = 0)."""

    def __init__(self, channels: int, chans: int = 16, pools: int = 3) -> None:
        super().__init__()
        if chans < 1 or pools < 1:
            raise ValueError(f"chans and pools must be >= 1, got chans={chans}, pools={pools}")
        widths = [chans * 2**k for k in range(pools + 1)]
        self.pools = pools
        self.encoder = nn.ModuleList([ConvBlock(channels, widths[0])] +
                                     [ConvBlock(widths[k - 1], widths[k]) for k in range(1, pools)])
        self.bottom = ConvBlock(widths[pools - 1], widths[pools])
        self.up = nn.ModuleList(UpBlock(widths[k + 1], widths[k]) for k in reversed(range(pools)))
        self.decoder = nn.ModuleList(ConvBlock(2 * widths[k], widths[k]) for k in reversed(range(pools)))
        self.out = nn.Conv2d(widths[0], channels, 1)
        nn.init.zeros_(self.out.weight)  # U = 0 at start: the residual U-Net starts as the zero-filled image, each
        nn.init.zeros_(self.out.bias)    # VarNet cascade as a gradient step on the data term

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = 2**self.pools
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.bottom(x)
        for up, block in zip(self.up, self.decoder):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        x = self.out(x)
        if ph or pw:
            x = x[..., ph // 2: ph // 2 + h, pw // 2: pw // 2 + w]
        return x


class ReconNet(nn.Module):
    """Base of the reconstruction networks: forward(y, operator) -> image (B, C, H, W) in the operator's image space.

    Subclasses implement `run(x_in, y, operator)` on the scaled input x_in = A^H y / s and scaled y / s; the base
    computes s (adjoint_quantile, from the measurements only) and multiplies the output back by it. `config` holds
    the constructor's arguments (saved with the weights); `film_target` is the last decoder block."""

    arch: str = ""
    film_target: nn.Module
    per_sample: bool = False  # evaluate the convolutional parts one sample at a time (batch-size-invariant bits)

    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, Any] = {}

    def cnn(self, module: nn.Module, x: Tensor) -> Tensor:
        """module(x), one sample at a time when `per_sample` (batched conv kernels round differently, ~1e-6)."""
        if not self.per_sample or x.shape[0] == 1:
            return module(x)
        return torch.cat([module(x[k:k + 1]) for k in range(x.shape[0])])

    def run(self, x_in: Tensor, y: Tensor, operator: ForwardOperator) -> Tensor:
        raise NotImplementedError

    def forward(self, y: Tensor, operator: ForwardOperator) -> Tensor:
        channels = int(self.config["channels"])
        if operator.image_shape[0] != channels:
            raise ValueError(f"this {self.arch} takes {channels}-channel images, the operator "
                             f"{type(operator).__name__} has images of shape {tuple(operator.image_shape)}; use a "
                             f"network trained on this problem (bench train-recon)")
        s = adjoint_quantile(y, operator).to(torch.float32)
        shape = (-1,) + (1,) * (y.ndim - 1)
        y_s = y / s.view(shape).to(y.real.dtype if y.is_complex() else y.dtype)
        x_in = operator.adjoint(y_s)
        return self.run(x_in, y_s, operator) * s.view(-1, 1, 1, 1).to(x_in)


class UNet(ReconNet):
    """Residual image-domain U-Net: x = x_in + U(x_in), x_in = A^H y / s (see the module docstring)."""

    arch = "unet"

    def __init__(self, channels: int = 2, chans: int = 16, pools: int = 3) -> None:
        super().__init__()
        self.config = {"arch": self.arch, "channels": channels, "chans": chans, "pools": pools}
        self.unet = UNetCore(channels, chans, pools)
        self.film_target = self.unet.decoder[-1]

    def run(self, x_in: Tensor, y: Tensor, operator: ForwardOperator) -> Tensor:
        return x_in + self.cnn(self.unet, x_in)


class VarNet(ReconNet):
    """Unrolled variational network: x^{t+1} = x^t - eta_t A^H(A x^t - y) - U_t(x^t), x^0 = A^H y (module docstring)."""

    arch = "varnet"

    def __init__(self, channels: int = 2, cascades: int = 4, chans: int = 8, pools: int = 2) -> None:
        super().__init__()
        if cascades < 1:
            raise ValueError(f"cascades must be >= 1, got {cascades}")
        self.config = {"arch": self.arch, "channels": channels, "cascades": cascades, "chans": chans, "pools": pools}
        self.cascades = nn.ModuleList(UNetCore(channels, chans, pools) for _ in range(cascades))
        self.eta = nn.Parameter(torch.ones(cascades))
        self.film_target = self.cascades[-1].decoder[-1]

    def run(self, x_in: Tensor, y: Tensor, operator: ForwardOperator) -> Tensor:
        x = x_in
        for t, unet in enumerate(self.cascades):
            x = x - self.eta[t] * operator.adjoint(operator(x) - y) - self.cnn(unet, x)
        return x


NETWORKS: dict[str, type[ReconNet]] = {"unet": UNet, "varnet": VarNet}


def build_network(config: dict[str, Any]) -> ReconNet:
    """The network a config describes ({"arch": "unet" | "varnet", and the class's constructor arguments})."""
    config = dict(config)
    arch = config.pop("arch", None)
    if arch not in NETWORKS:
        raise ValueError(f"unknown network arch {arch!r}; choose one of {', '.join(NETWORKS)}")
    try:
        return NETWORKS[arch](**config)
    except TypeError as exc:
        raise ValueError(f"bad {arch} configuration {config}: {exc}") from exc


def save_network(path: str | Path, net: ReconNet, training: dict[str, Any] | None = None) -> Path:
    """Write path (model.pt: {"format", "config", "model": state dict, "training"}) and path.json (the config and
    `training`, for people); tensors and plain values only, so that weights_only loading reads it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "config": dict(net.config), "model": net.state_dict(), "training": training or {}}
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps({"config": net.config, "training": training or {}}, indent=2,
                                                    default=str) + "\n")
    return path


def load_network(path: str | Path, arch: str | None = None) -> tuple[ReconNet, dict[str, Any]]:
    """(network, training facts) from a file written by `save_network` (weights_only); `arch` must match when given."""
    from priors.training.common import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no network checkpoint at {path}; train one with `bench train-recon --algo "
                                f"{arch or 'unet'} ... --out DIR` and pass algorithm.path=DIR/model.pt")
    state = load_checkpoint(path, "pass the model.pt that `bench train-recon` wrote")
    if not isinstance(state, dict) or state.get("format") != FORMAT or "config" not in state or "model" not in state:
        raise ValueError(f"{path} is not a reconstruction-network checkpoint (expected the model.pt of `bench "
                         f"train-recon`, format {FORMAT!r})")
    if arch is not None and state["config"].get("arch") != arch:
        raise ValueError(f"{path} holds a {state['config'].get('arch')!r} network, not a {arch!r}; use --algo "
                         f"{state['config'].get('arch')} or another algorithm.path")
    net = build_network(state["config"])
    try:
        net.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not fit the stored {state['config']}: {exc}") from exc
    return net, dict(state.get("training") or {})


def shipped_path(arch: str, model: str, names: dict[str, str] | None = None, trainer: str = "") -> Path:
    """algorithms/weights/<file> of a shipped model (`names`: model -> file, default SHIPPED[arch]); an unknown name
    or a missing file is an error naming the fix (`trainer`: the command that trains one)."""
    names = SHIPPED.get(arch, {}) if names is None else names
    trainer = trainer or f"bench train-recon --algo {arch}"
    if model not in names:
        raise ValueError(f"no shipped {arch} model named {model!r}; shipped: {', '.join(names) or '(none)'}; train "
                         f"one with `{trainer} ...` and pass algorithm.path=OUT/model.pt")
    path = WEIGHTS / names[model]
    if not path.is_file():
        raise FileNotFoundError(f"the shipped {arch} model {model!r} is missing at {path}; reinstall medtta-bench or "
                                f"pass algorithm.path=OUT/model.pt of `{trainer}`")
    return path


def trained_source_domain(algorithm: Any) -> SourceDomain | None:
    """The dataset and problem (with their options) a network algorithm's model was trained on: its `training`
    facts (a checkpoint's). Network algorithms expose it as their `source_domain` property."""
    return SourceDomain.from_facts(algorithm.training)


class NetworkAlgorithm(Algorithm):
    """A trained end-to-end network as an algorithm: predict(y, operator) under no_grad; no prior, NFE 0.

    `path`: a model.pt of `bench train-recon` (else the shipped model named `model`); the network is frozen
    (requires_grad False, eval mode). `per_sample`: evaluate one sample at a time, so that every sample's bits are
    those of batch size 1 whatever the batch (a network's batched kernels round differently, ~1e-6).
    """

    uses_prior = False
    end_to_end = True  # a shift's default source model applies (configs/sources.yaml)
    arch = ""

    def __init__(self, path: str | None = None, model: str | None = None, per_sample: bool = False) -> None:
        super().__init__()
        where = Path(path) if path else shipped_path(self.arch, model or DEFAULT_MODEL[self.arch])
        net, self.training = load_network(where, self.arch)
        self.path = str(where)
        self.per_sample = per_sample
        self.net: ReconNet = net.eval().requires_grad_(False)
        self.net.per_sample = per_sample
        self.network_calls = 0

    source_domain = property(trained_source_domain)

    def predict(self, y: Tensor, operator: ForwardOperator, net: nn.Module | None = None) -> Tensor:
        """Network output for measurements y through `operator` (a masked copy re-subsamples: with_mask);
        differentiable w.r.t. the parameters of `net` (default self.net)."""
        net = self.net if net is None else net
        if isinstance(net, ReconNet):
            net.per_sample = self.per_sample
        if next(net.parameters()).device != y.device:
            net.to(y.device)
        self.network_calls += y.shape[0]
        return net(y, operator)

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: torch.Generator | None,
            callback=None) -> Tensor:
        return self.predict(y, operator)

    def reconstruct(self, y: Tensor, operator: ForwardOperator, prior: Prior | None = None,
                    generator: torch.Generator | None = None, callback=None) -> Reconstruction:
        """predict under no_grad, with the base class's timing, divergence monitor and support projection; NFE 0
        (no denoiser); `network_calls` counts the samples passed through the network."""
        self.network_calls = 0
        return super().reconstruct(y, operator, prior, generator, callback)


class UNetAlgorithm(NetworkAlgorithm):
    """End-to-end residual U-Net on the zero-filled (SENSE-combined) image, from a `bench train-recon` checkpoint."""

    arch = "unet"


class VarNetAlgorithm(NetworkAlgorithm):
    """End-to-end VarNet: unrolled cascades with data consistency through the operator, from a checkpoint."""

    arch = "varnet"


__all__ = ["ReconNet", "UNet", "VarNet", "NetworkAlgorithm", "UNetAlgorithm", "VarNetAlgorithm", "build_network",
           "save_network", "load_network", "shipped_path"]
