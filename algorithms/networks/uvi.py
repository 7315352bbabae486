"""`uvi-lite`: UVI-Net's frame interpolator (Kim et al., "Data-Efficient Unsupervised Interpolation Without Any
Intermediate Frame for 4D Medical Images", CVPR 2024) at CPU size, in 2-D, loaded from a `bench train-interp`
checkpoint.

Three parts (UviLite):
- a flow U-Net g (VoxelMorph-style, Balakrishnan et al., TMI 2019): F01 = g(i0, i1) with warp(i0, F01) ~ i1,
  and F10 = g(i1, i0) (bidirectional, one network);
- a small multi-scale feature extractor f: features at scales 1, 1/2, 1/4 (the part test-time training updates);
- a refinement U-Net R that takes the linear-motion blend and f's features of both end frames, warped.

A frame at alpha in [0, 1] between i0 and i1:

    i_alpha = (1 - alpha) warp(i0, alpha F01) + alpha warp(i1, (1 - alpha) F10)
              + R(blend, warp(f(i0), alpha F01), warp(f(i1), (1 - alpha) F10)).

The last convolutions of g and R start at zero: an untrained network is the linear intensity blend.

Training uses the end frames only (UVI-Net's recipe; `uvi_loss`): a registration loss on the pair
(-NCC_9 + Charbonnier of warp(i0, F01) vs i1 and back, + the squared flow gradients), and the cycle: three virtual
frames at a1 ~ U(-0.5, 0), a2 ~ U(0, 1), a3 ~ U(1, 1.5) are warped from the ends; the network interpolates frame 0
back between (t1, t2) at tau0 = -a1 / (a2 - a1) and frame 1 between (t2, t3) at tau1 = (1 - a2) / (a3 - a2); the
loss compares them with the real end frames (-NCC_9 + Charbonnier) and penalises the refinement's mean |residual|.

Optional auxiliary heads (TTT4MII, Zhang et al.; trained jointly with `bench train-interp --aux rot,mae`):
`rot_head` (adaptive average pooling of f's coarsest features, a linear layer: 4-way rotation logits, any image
size) and `mae_head` (f's features upsampled to full size, concatenated, a 1x1 conv: the pixels of a masked
frame). The test-time adapters are adaptation/network/ttt4mii.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from algorithms.base import Algorithm
from algorithms.classical.interpolation import FRAME_OPERATOR, brackets
from algorithms.classical.registration import smoothness
from algorithms.networks.models import shipped_path, trained_source_domain
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.random import Randomness, rand, randint
from inverse_problems.operators.warp import warp
from inverse_problems.problems.frame_metrics import lncc
from priors.base import Prior

FORMAT = "medtta-interp-net"
SHIPPED = {"cardiac": "uvi-lite-cardiac-32.pt"}  # algorithms/weights/<file>, by name (`algorithm.model=NAME`)
DEFAULT_MODEL = "cardiac"


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv and LeakyReLU 0.2 (VoxelMorph's block)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.2))


def zero_conv(cin: int, cout: int) -> nn.Conv2d:
    """3x3 conv whose weights and bias start at zero (the network starts at the identity / the blend)."""
    out = nn.Conv2d(cin, cout, 3, padding=1)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)
    return out


class FlowUNet(nn.Module):
    """g(a, b) -> flow (B, 2, H, W) in pixels with warp(a, flow) ~ b: a U-Net of `levels` strided-conv downsamplings
    (widths chans * 2^k), nearest upsampling, skip concatenations, a zero-initialised output conv."""

    def __init__(self, chans: int = 8, levels: int = 2) -> None:
        super().__init__()
        widths = [chans * 2**k for k in range(levels + 1)]
        self.inc = conv(2, widths[0])
        self.down = nn.ModuleList(conv(widths[k], widths[k + 1], 2) for k in range(levels))
        self.up = nn.ModuleList(conv(widths[k + 1] + widths[k], widths[k]) for k in reversed(range(levels)))
        self.out = zero_conv(widths[0], 2)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        x = self.inc(torch.cat([a, b], 1))
        skips = [x]
        for d in self.down:
            x = d(x)
            skips.append(x)
        skips.pop()
        for u in self.up:
            s = skips.pop()
            x = u(torch.cat([F.interpolate(x, size=s.shape[-2:], mode="nearest"), s], 1))
        return self.out(x)


class FeatureExtractor(nn.Module):
    """f(i) -> [features at scale 1, 1/2, 1/4, ...]: per level a (strided, from the second) conv and a conv."""

    def __init__(self, widths: tuple[int, ...] = (4, 8, 16)) -> None:
        super().__init__()
        self.widths = tuple(widths)
        cins = (1,) + self.widths[:-1]
        self.levels = nn.ModuleList(nn.Sequential(conv(cin, w, 1 if k == 0 else 2), conv(w, w))
                                    for k, (cin, w) in enumerate(zip(cins, self.widths)))

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for level in self.levels:
            x = level(x)
            out.append(x)
        return out


class RefineUNet(nn.Module):
    """R(blend, feats0, feats1) -> residual (B, 1, H, W): level k takes (pooled) features and both frames' warped
    features at scale 2^-k; decoder with skips; a zero-initialised output conv."""

    def __init__(self, widths: tuple[int, ...] = (4, 8, 16), chans: int = 8) -> None:
        super().__init__()
        n = len(widths)
        self.enc = nn.ModuleList(conv((1 if k == 0 else chans * 2 ** (k - 1)) + 2 * widths[k], chans * 2**k)
                                 for k in range(n))
        self.dec = nn.ModuleList(conv(chans * 2 ** (k + 1) + chans * 2**k, chans * 2**k) for k in reversed(range(n - 1)))
        self.out = zero_conv(chans, 1)

    def forward(self, blend: Tensor, feats0: list[Tensor], feats1: list[Tensor]) -> Tensor:
        x, skips = blend, []
        for k, enc in enumerate(self.enc):
            if k:
                x = F.avg_pool2d(x, 2)
            x = enc(torch.cat([x, feats0[k], feats1[k]], 1))
            skips.append(x)
        skips.pop()
        for dec in self.dec:
            s = skips.pop()
            x = dec(torch.cat([F.interpolate(x, size=s.shape[-2:], mode="nearest"), s], 1))
        return self.out(x)


def warp_features(feats: list[Tensor], flow: Tensor) -> list[Tensor]:
    """Each feature map warped by the full-size flow resampled to its size (and its pixels rescaled)."""
    h, w = flow.shape[-2:]
    out = []
    for f in feats:
        fh, fw = f.shape[-2:]
        u = flow if (fh, fw) == (h, w) else F.interpolate(flow, size=(fh, fw), mode="bilinear", align_corners=False)
        scale = torch.tensor([fw / w, fh / h], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
        out.append(warp(f, u * scale))
    return out


class UviLite(nn.Module):
    """Flow U-Net g, feature extractor f, refinement U-Net R (module docstring); optional auxiliary heads.

    Inputs are (P, 1, H, W) frames; sides that are not multiples of 2^(levels) are padded (replicate) and cropped
    back. `config` holds the constructor's arguments (saved with the weights)."""

    arch = "uvi-lite"

    def __init__(self, flow_chans: int = 8, flow_levels: int = 2, feature_widths: tuple[int, ...] = (4, 8, 16),
                 refine_chans: int = 8, aux: tuple[str, ...] = ()) -> None:
        super().__init__()
        feature_widths, aux = tuple(int(w) for w in feature_widths), tuple(aux)
        if flow_chans < 1 or flow_levels < 1 or not feature_widths or refine_chans < 1:
            raise ValueError(f"uvi-lite needs flow_chans, flow_levels, refine_chans >= 1 and feature widths; got "
                             f"{flow_chans}, {flow_levels}, {refine_chans}, {feature_widths}")
        if set(aux) - {"rot", "mae"}:
            raise ValueError(f"unknown auxiliary heads {sorted(set(aux) - {'rot', 'mae'})}; choose from rot, mae")
        self.config: dict[str, Any] = {"arch": self.arch, "flow_chans": flow_chans, "flow_levels": flow_levels,
                                       "feature_widths": list(feature_widths), "refine_chans": refine_chans,
                                       "aux": list(aux)}
        self.flow = FlowUNet(flow_chans, flow_levels)
        self.features = FeatureExtractor(feature_widths)
        self.refine = RefineUNet(feature_widths, refine_chans)
        self.multiple = 2 ** max(flow_levels, len(feature_widths) - 1)
        self.rot_head = nn.Linear(feature_widths[-1], 4) if "rot" in aux else None
        self.mae_head = nn.Conv2d(sum(feature_widths), 1, 1) if "mae" in aux else None

    def pad(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """x padded (replicate) to sides divisible by `multiple`; the original (H, W)."""
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        return (F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x), (h, w)

    def flows(self, i0: Tensor, i1: Tensor) -> tuple[Tensor, Tensor]:
        """(F01, F10): warp(i0, F01) ~ i1, warp(i1, F10) ~ i0."""
        return self.flow(i0, i1), self.flow(i1, i0)

    def synthesize(self, i0: Tensor, i1: Tensor, f01: Tensor, f10: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
        """(i_alpha, refinement residual) at alpha (P,) between i0 and i1 given their flows (module docstring)."""
        a = alpha.to(i0).view(-1, 1, 1, 1)
        u0, u1 = a * f01, (1 - a) * f10
        blend = (1 - a) * warp(i0, u0) + a * warp(i1, u1)
        residual = self.refine(blend, warp_features(self.features(i0), u0), warp_features(self.features(i1), u1))
        return blend + residual, residual

    def forward(self, i0: Tensor, i1: Tensor, alpha: Tensor) -> Tensor:
        """i_alpha (P, 1, H, W) for frames i0, i1 (P, 1, H, W) and alpha (P,)."""
        (p0, (h, w)), (p1, _) = self.pad(i0), self.pad(i1)
        f01, f10 = self.flows(p0, p1)
        return self.synthesize(p0, p1, f01, f10, alpha)[0][..., :h, :w]

    def rotation_logits(self, x: Tensor) -> Tensor:
        """(P, 4) rotation logits of frames x (P, 1, H, W): adaptive pooling of f's coarsest features, any size."""
        if self.rot_head is None:
            raise ValueError("this uvi-lite has no rotation head; train one with `bench train-interp --aux rot`")
        return self.rot_head(F.adaptive_avg_pool2d(self.features(self.pad(x)[0])[-1], 1).flatten(1))

    def reconstruct_masked(self, x: Tensor) -> Tensor:
        """(P, 1, H, W) pixels predicted from masked frames x: f's features upsampled, concatenated, a 1x1 conv."""
        if self.mae_head is None:
            raise ValueError("this uvi-lite has no MAE head; train one with `bench train-interp --aux mae`")
        xp, (h, w) = self.pad(x)
        feats = self.features(xp)
        up = [f if f.shape[-2:] == xp.shape[-2:] else F.interpolate(f, size=xp.shape[-2:], mode="bilinear",
                                                                    align_corners=False) for f in feats]
        return self.mae_head(torch.cat(up, 1))[..., :h, :w]


def ncc_loss(x: Tensor, ref: Tensor, window: int = 9) -> Tensor:
    """-mean local NCC (VoxelMorph's loss, window 9) of (P, 1, H, W) frames."""
    return -lncc(x[:, 0], ref[:, 0], window).mean()


def charbonnier(x: Tensor, ref: Tensor, eps: float = 1e-3) -> Tensor:
    """mean sqrt((x - ref)^2 + eps^2) (UVI-Net's photometric term)."""
    return ((x - ref).pow(2) + eps**2).sqrt().mean()


def similarity(x: Tensor, ref: Tensor) -> Tensor:
    """-NCC_9 + Charbonnier (UVI-Net's image loss)."""
    return ncc_loss(x, ref) + charbonnier(x, ref)


def registration_loss(net: UviLite, i0: Tensor, i1: Tensor) -> Tensor:
    """Bidirectional registration of a pair: similarity of warp(i0, F01) to i1 and back + mean squared gradients."""
    f01, f10 = net.flows(i0, i1)
    return (similarity(warp(i0, f01), i1) + similarity(warp(i1, f10), i0)
            + smoothness(f01).mean() + smoothness(f10).mean())


def uvi_loss(net: UviLite, i0: Tensor, i1: Tensor, generator: torch.Generator | None = None,
             cycle: float = 1.0, diff: float = 1.0) -> Tensor:
    """UVI-Net's training loss on end frames only (module docstring): registration + cycle * (the end frames
    re-interpolated from three virtual frames) + diff * mean |refinement residual|. Inputs padded by the caller."""
    f01, f10 = net.flows(i0, i1)
    loss = (similarity(warp(i0, f01), i1) + similarity(warp(i1, f10), i0)
            + smoothness(f01).mean() + smoothness(f10).mean())
    if cycle == 0:
        return loss
    p = i0.shape[0]
    u = torch.rand((3, p), generator=generator).to(i0)
    a1, a2, a3 = -0.5 * u[0], u[1], 1 + 0.5 * u[2]
    v = lambda a: a.view(-1, 1, 1, 1)  # noqa: E731
    t1 = warp(i0, v(a1) * f01)
    t2 = torch.where(v(a2) < 0.5, warp(i0, v(a2) * f01), warp(i1, v(1 - a2) * f10))
    t3 = warp(i1, v(1 - a3) * f10)
    f12, f21 = net.flows(t1, t2)
    f23, f32 = net.flows(t2, t3)
    hat0, r0 = net.synthesize(t1, t2, f12, f21, -a1 / (a2 - a1))
    hat1, r1 = net.synthesize(t2, t3, f23, f32, (1 - a2) / (a3 - a2))
    return loss + cycle * (similarity(hat0, i0) + similarity(hat1, i1)) + diff * (r0.abs().mean() + r1.abs().mean())


def rotation_loss(net: UviLite, x: Tensor, generator: Randomness = None) -> Tensor:
    """4-way rotation prediction (Gidaris et al., ICLR 2018; TTT4MII's auxiliary task): each frame of x (P, 1, H, W)
    rotated by k * 90 degrees, k drawn per frame; cross-entropy of the head's logits. Any size (non-square frames
    are scored per rotation group)."""
    k = randint(0, 4, (x.shape[0],), generator, x.device)
    total = x.new_zeros(())
    for r in range(4):
        sel = (k == r).nonzero(as_tuple=True)[0]
        if len(sel):
            logits = net.rotation_logits(torch.rot90(x[sel], r, dims=(-2, -1)))
            total = total + F.cross_entropy(logits, k[sel], reduction="sum")
    return total / x.shape[0]


def patch_mask(shape: tuple[int, ...], ratio: float, patch: int, generator: Randomness = None,
               device: torch.device | str = "cpu") -> Tensor:
    """(P, 1, H, W) float mask, 1 on the masked patches: each patch x patch cell masked with probability `ratio`."""
    p, _, h, w = shape
    cells = (rand((p, 1, -(-h // patch), -(-w // patch)), generator, device) < ratio).float()
    return cells.repeat_interleave(patch, -2).repeat_interleave(patch, -1)[..., :h, :w]


def mae_loss(net: UviLite, x: Tensor, generator: Randomness = None, ratio: float = 0.75, patch: int = 4) -> Tensor:
    """Pixel-space masked autoencoding (He et al., CVPR 2022; TTT4MII's auxiliary task): frames x with a random
    `ratio` of patch x patch cells zeroed; mean squared error of the head's pixels on the masked cells, against x
    without gradient (sum over masked pixels / their count)."""
    m = patch_mask(tuple(x.shape), ratio, patch, generator, x.device).to(x)
    pred = net.reconstruct_masked(x * (1 - m))
    return ((pred - x.detach()).pow(2) * m).sum() / m.sum().clamp_min(1.0)


def aux_loss(net: UviLite, x: Tensor, aux: tuple[str, ...] | list[str], generator: Randomness = None,
             mask_ratio: float = 0.75) -> Tensor:
    """The sum of the named auxiliary losses (rot, mae) on frames x (P, 1, H, W)."""
    total = x.new_zeros(())
    for name in aux:
        total = total + (rotation_loss(net, x, generator) if name == "rot" else
                         mae_loss(net, x, generator, mask_ratio))
    return total


def interpolate_sequence(net: nn.Module, y: Tensor, operator: ForwardOperator) -> Tensor:
    """y (B, T, H, W) through a frame-selection operator with its missing frames interpolated by `net` from the
    acquired frames a < k < b that bracket each, at alpha = (t_k - t_a) / (t_b - t_a); differentiable in `net`."""
    keep = operator.keep.expand(y.shape[0], -1)
    a, b, alpha = brackets(keep, operator.times)
    miss = ~keep
    if not bool(miss.any()):
        return y
    s, k = miss.nonzero(as_tuple=True)
    frames = net(y[s, a[s, k]][:, None], y[s, b[s, k]][:, None], alpha[s, k])
    out = y.clone()
    out[s, k] = frames[:, 0].to(y)
    return out


def acquired_frames(y: Tensor, operator: ForwardOperator) -> Tensor:
    """(P, 1, H, W): every acquired frame of the batch (the only frames test-time training may look at)."""
    keep = operator.keep.expand(y.shape[0], -1)
    return y[keep][:, None]


def acquired_pairs(y: Tensor, operator: ForwardOperator) -> tuple[Tensor, Tensor]:
    """(i0, i1) (P, 1, H, W): each pair of consecutive acquired frames that brackets a missing one."""
    keep = operator.keep.expand(y.shape[0], -1)
    a, b, _ = brackets(keep, operator.times)
    miss = ~keep
    s, k = miss.nonzero(as_tuple=True)
    pairs = torch.unique(torch.stack([s, a[s, k], b[s, k]], 1), dim=0)
    return y[pairs[:, 0], pairs[:, 1]][:, None], y[pairs[:, 0], pairs[:, 2]][:, None]


def build_interp_network(config: dict[str, Any]) -> UviLite:
    """The network a config describes ({"arch": "uvi-lite", and UviLite's constructor arguments})."""
    config = dict(config)
    arch = config.pop("arch", None)
    if arch != UviLite.arch:
        raise ValueError(f"unknown interpolation network arch {arch!r}; this suite builds {UviLite.arch!r}")
    try:
        return UviLite(**config)
    except TypeError as exc:
        raise ValueError(f"bad {arch} configuration {config}: {exc}") from exc


def save_interp_network(path: str | Path, net: UviLite, training: dict[str, Any] | None = None) -> Path:
    """Write path ({"format", "config", "model", "training"}, weights_only-loadable) and path.json (for people)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT, "config": dict(net.config), "model": net.state_dict(), "training": training or {}},
               tmp)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps({"config": net.config, "training": training or {}}, indent=2,
                                                    default=str) + "\n")
    return path


def load_interp_network(path: str | Path) -> tuple[UviLite, dict[str, Any]]:
    """(network, training facts) from a file written by `save_interp_network`."""
    from priors.training.common import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no uvi-lite checkpoint at {path}; train one with `bench train-interp --out DIR` "
                                f"and pass algorithm.path=DIR/model.pt")
    state = load_checkpoint(path, "pass the model.pt that `bench train-interp` wrote")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an interpolation-network checkpoint (the model.pt of `bench train-interp`, "
                         f"format {FORMAT!r})")
    net = build_interp_network(state["config"])
    net.load_state_dict(state["model"])
    return net, dict(state.get("training") or {})


def shipped_interp_path(model: str) -> Path:
    """algorithms/weights/<file> of a shipped uvi-lite model."""
    return shipped_path(UviLite.arch, model, SHIPPED, "bench train-interp")


class UviLiteAlgorithm(Algorithm):
    """`uvi-lite`: every missing frame k interpolated by the network from the acquired frames a < k < b that bracket
    it, at alpha = (t_k - t_a) / (t_b - t_a); acquired frames as measured. No prior, NFE 0.

    `path`: a model.pt of `bench train-interp` (else the shipped model named `model`); the network is frozen.
    Test-time adapters install an adapted copy as `net` for a batch (`predict(y, operator, net)`)."""

    uses_prior = False
    project_support = False
    operator_needs = FRAME_OPERATOR

    def __init__(self, path: str | None = None, model: str | None = None) -> None:
        super().__init__()
        where = Path(path) if path else shipped_interp_path(model or DEFAULT_MODEL)
        net, self.training = load_interp_network(where)
        self.path = str(where)
        self.net: UviLite = net.eval().requires_grad_(False)

    source_domain = property(trained_source_domain)

    def predict(self, y: Tensor, operator: ForwardOperator, net: nn.Module | None = None) -> Tensor:
        """The sequence with its missing frames interpolated by `net` (default self.net); differentiable in it."""
        return interpolate_sequence(self.net if net is None else net, y, operator)

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: torch.Generator | None,
            callback=None) -> Tensor:
        return self.predict(y, operator)


__all__ = ["UviLite", "UviLiteAlgorithm", "uvi_loss", "registration_loss", "save_interp_network",
           "load_interp_network", "build_interp_network"]
