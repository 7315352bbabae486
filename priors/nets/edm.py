"""EDM's network architectures and preconditioning, with the reference parameter names.

Karras, Aittala, Aila & Laine (2022), "Elucidating the Design Space of Diffusion-Based Generative
Models" (EDM). The preconditioned denoiser is

    D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))     (EDM, eq. 7)

with (Table 1)
    VP:  c_skip = 1,  c_out = -sigma,  c_in = 1/sqrt(sigma^2 + 1),  c_noise = (M - 1) t(sigma)
    VE:  c_skip = 1,  c_out = sigma,   c_in = 1,                    c_noise = log(sigma / 2)
    EDM: c_skip = s_d^2/(sigma^2 + s_d^2),  c_out = sigma s_d/sqrt(sigma^2 + s_d^2),
         c_in = 1/sqrt(sigma^2 + s_d^2),  c_noise = log(sigma) / 4.

F is `SongUNet` (DDPM++ / NCSN++, Song et al. 2021) or `DhariwalUNet` (ADM, Dhariwal & Nichol 2021).
Module and parameter names (`model.enc.64x64_block0.conv0.weight` ...) and constructor options are
those of EDM's training/networks.py, so the state dicts of EDM and InverseBench checkpoints load
with `strict=True`; the code is this project's own.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def weight_init(shape: Sequence[int], mode: str, fan_in: int, fan_out: int) -> Tensor:
    """Xavier / Kaiming, uniform or normal: the scale is sqrt(6/(in+out)), sqrt(2/(in+out)), sqrt(3/in), sqrt(1/in)."""
    if mode == "xavier_uniform":
        return math.sqrt(6 / (fan_in + fan_out)) * (2 * torch.rand(*shape) - 1)
    if mode == "xavier_normal":
        return math.sqrt(2 / (fan_in + fan_out)) * torch.randn(*shape)
    if mode == "kaiming_uniform":
        return math.sqrt(3 / fan_in) * (2 * torch.rand(*shape) - 1)
    if mode == "kaiming_normal":
        return math.sqrt(1 / fan_in) * torch.randn(*shape)
    raise ValueError(f"unknown init mode {mode!r}; use xavier_uniform, xavier_normal, kaiming_uniform or kaiming_normal")


class Linear(nn.Module):
    """y = x W^T + b (weight (out, in))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init_mode: str = "kaiming_normal",
                 init_weight: float = 1, init_bias: float = 0) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        fans = dict(mode=init_mode, fan_in=in_features, fan_out=out_features)
        self.weight = nn.Parameter(weight_init([out_features, in_features], **fans) * init_weight)
        self.bias = nn.Parameter(weight_init([out_features], **fans) * init_bias) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        y = x @ self.weight.to(x.dtype).t()
        return y if self.bias is None else y + self.bias.to(x.dtype)


class Conv2d(nn.Module):
    """A same-padded k x k convolution (k = 0: none) with optional 2x up/downsampling by a separable FIR filter.

    The filter f f^T / (sum f)^2 (buffer `resample_filter`) is applied depthwise with stride 2 (down) or as a
    transposed convolution with gain 4 (up); `fused_resample` orders it inside the convolution's padding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True, up: bool = False,
                 down: bool = False, resample_filter: Sequence[int] = (1, 1), fused_resample: bool = False,
                 init_mode: str = "kaiming_normal", init_weight: float = 1, init_bias: float = 0) -> None:
        if up and down:
            raise ValueError("Conv2d resamples up or down, not both")
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.up, self.down, self.fused_resample = up, down, fused_resample
        fans = dict(mode=init_mode, fan_in=in_channels * kernel * kernel, fan_out=out_channels * kernel * kernel)
        self.weight = (nn.Parameter(weight_init([out_channels, in_channels, kernel, kernel], **fans) * init_weight)
                       if kernel else None)
        self.bias = nn.Parameter(weight_init([out_channels], **fans) * init_bias) if kernel and bias else None
        f = torch.as_tensor(list(resample_filter), dtype=torch.float32)
        f2 = torch.outer(f, f)[None, None] / f.sum() ** 2
        self.register_buffer("resample_filter", f2 if up or down else None)

    def forward(self, x: Tensor) -> Tensor:
        w = None if self.weight is None else self.weight.to(x.dtype)
        f = None if self.resample_filter is None else self.resample_filter.to(x.dtype)
        wp = 0 if w is None else w.shape[-1] // 2
        fp = 0 if f is None else (f.shape[-1] - 1) // 2
        if self.fused_resample and self.up and w is not None:
            x = F.conv_transpose2d(x, (4 * f).repeat(self.in_channels, 1, 1, 1), groups=self.in_channels, stride=2,
                                   padding=max(fp - wp, 0))
            x = F.conv2d(x, w, padding=max(wp - fp, 0))
        elif self.fused_resample and self.down and w is not None:
            x = F.conv2d(x, w, padding=wp + fp)
            x = F.conv2d(x, f.repeat(self.out_channels, 1, 1, 1), groups=self.out_channels, stride=2)
        else:
            if self.up:
                x = F.conv_transpose2d(x, (4 * f).repeat(self.in_channels, 1, 1, 1), groups=self.in_channels,
                                       stride=2, padding=fp)
            if self.down:
                x = F.conv2d(x, f.repeat(self.in_channels, 1, 1, 1), groups=self.in_channels, stride=2, padding=fp)
            if w is not None:
                x = F.conv2d(x, w, padding=wp)
        return x if self.bias is None else x + self.bias.to(x.dtype).view(1, -1, 1, 1)


class GroupNorm(nn.Module):
    """Group normalisation with min(num_groups, C // min_channels_per_group) groups."""

    def __init__(self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax_k(q^T k / sqrt(c)) applied to v, per head; q, k, v are (N, c, L). Weights in float32."""
    w = torch.einsum("ncq,nck->nqk", q.float(), k.float() / math.sqrt(k.shape[1])).softmax(dim=2).to(q.dtype)
    return torch.einsum("nqk,nck->ncq", w, v)


class UNetBlock(nn.Module):
    """EDM's residual block (norm0 -> conv0 (resample) -> emb affine -> norm1 -> conv1, + skip) and optional attention.

    adaptive_scale: x <- silu(shift + norm1(x) (1 + scale)) with (scale, shift) = affine(emb) (ADM);
    otherwise x <- silu(norm1(x + affine(emb))) (DDPM++). The output is scaled by skip_scale after the
    residual sum and again after the attention sum.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, up: bool = False, down: bool = False,
                 attention: bool = False, num_heads: int | None = None, channels_per_head: int = 64,
                 dropout: float = 0, skip_scale: float = 1, eps: float = 1e-5, resample_filter: Sequence[int] = (1, 1),
                 resample_proj: bool = False, adaptive_scale: bool = True, init: dict[str, Any] | None = None,
                 init_zero: dict[str, Any] | None = None, init_attn: dict[str, Any] | None = None) -> None:
        super().__init__()
        init = dict(init or {})
        init_zero = dict(init_weight=0) if init_zero is None else dict(init_zero)
        self.in_channels, self.out_channels, self.emb_channels = in_channels, out_channels, emb_channels
        self.num_heads = 0 if not attention else (num_heads if num_heads is not None
                                                  else out_channels // channels_per_head)
        self.dropout, self.skip_scale, self.adaptive_scale = dropout, skip_scale, adaptive_scale
        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, 3, up=up, down=down, resample_filter=resample_filter, **init)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1), **init)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, 3, **init_zero)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel, up=up, down=down, resample_filter=resample_filter,
                               **init)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, 1, **(init if init_attn is None else init_attn))
            self.proj = Conv2d(out_channels, out_channels, 1, **init_zero)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb)[:, :, None, None].to(x.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            x = F.silu(shift + self.norm1(x) * (scale + 1))
        else:
            x = F.silu(self.norm1(x + params))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = (x + (orig if self.skip is None else self.skip(orig))) * self.skip_scale
        if self.num_heads:
            b, c = x.shape[:2]
            q, k, v = self.qkv(self.norm2(x)).reshape(b * self.num_heads, c // self.num_heads, 3, -1).unbind(2)
            x = (self.proj(attention(q, k, v).reshape(x.shape)) + x) * self.skip_scale
        return x


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding [cos(t w_j), sin(t w_j)], w_j = (1/max_positions)^(j / (C/2 - endpoint))."""

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False) -> None:
        super().__init__()
        self.num_channels, self.max_positions, self.endpoint = num_channels, max_positions, endpoint

    def forward(self, x: Tensor) -> Tensor:
        half = self.num_channels // 2
        j = torch.arange(half, dtype=torch.float32, device=x.device) / (half - (1 if self.endpoint else 0))
        freqs = (1 / self.max_positions) ** j
        arg = torch.outer(x, freqs.to(x.dtype))
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features [cos(2 pi t f), sin(2 pi t f)] with f ~ N(0, scale^2) (buffer `freqs`)."""

    def __init__(self, num_channels: int, scale: float = 16) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x: Tensor) -> Tensor:
        arg = torch.outer(x, (2 * math.pi * self.freqs).to(x.dtype))
        return torch.cat([arg.cos(), arg.sin()], dim=1)


def add_decoder_level(dec: nn.ModuleDict, res: int, lowest: bool, cout: int, skips: list[int], width: int,
                      num_blocks: int, attention_at: Callable[[int], bool], blk: dict[str, Any]) -> int:
    """One decoder resolution of SongUNet / DhariwalUNet: `in0` (attention) + `in1` at the lowest, else `up`; then
    num_blocks + 1 blocks that each take one encoder skip; attention_at(idx) places attention. Returns the width."""
    if lowest:
        dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **blk)
        dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **blk)
    else:
        dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **blk)
    for idx in range(num_blocks + 1):
        cin, cout = cout + skips.pop(), width
        dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attention_at(idx), **blk)
    return cout


class SongUNet(nn.Module):
    """DDPM++ / NCSN++ (Song et al. 2021) as in EDM: `enc`/`dec` ModuleDicts keyed '{res}x{res}_{kind}'."""

    def __init__(self, img_resolution: int, in_channels: int, out_channels: int, label_dim: int = 0,
                 augment_dim: int = 0, model_channels: int = 128, channel_mult: Sequence[int] = (1, 2, 2, 2),
                 channel_mult_emb: int = 4, num_blocks: int = 4, attn_resolutions: Sequence[int] = (16,),
                 dropout: float = 0.10, label_dropout: float = 0, embedding_type: str = "positional",
                 channel_mult_noise: int = 1, encoder_type: str = "standard", decoder_type: str = "standard",
                 resample_filter: Sequence[int] = (1, 1)) -> None:
        for name, value, allowed in (("embedding_type", embedding_type, ("fourier", "positional")),
                                     ("encoder_type", encoder_type, ("standard", "skip", "residual")),
                                     ("decoder_type", decoder_type, ("standard", "skip"))):
            if value not in allowed:
                raise ValueError(f"SongUNet {name}={value!r}; choose one of {allowed}")
        super().__init__()
        self.label_dropout = label_dropout
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        init = dict(init_mode="xavier_uniform")
        init_zero = dict(init_mode="xavier_uniform", init_weight=1e-5)
        init_attn = dict(init_mode="xavier_uniform", init_weight=math.sqrt(0.2))
        blk = dict(emb_channels=emb_channels, num_heads=1, dropout=dropout, skip_scale=math.sqrt(0.5), eps=1e-6,
                   resample_filter=resample_filter, resample_proj=True, adaptive_scale=False, init=init,
                   init_zero=init_zero, init_attn=init_attn)
        self.map_noise = (PositionalEmbedding(noise_channels, endpoint=True) if embedding_type == "positional"
                          else FourierEmbedding(noise_channels))
        self.map_label = Linear(label_dim, noise_channels, **init) if label_dim else None
        self.map_augment = Linear(augment_dim, noise_channels, bias=False, **init) if augment_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)

        self.enc = nn.ModuleDict()
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, 3, **init)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **blk)
                if encoder_type == "skip":
                    self.enc[f"{res}x{res}_aux_down"] = Conv2d(caux, caux, 0, down=True, resample_filter=resample_filter)
                    self.enc[f"{res}x{res}_aux_skip"] = Conv2d(caux, cout, 1, **init)
                if encoder_type == "residual":
                    self.enc[f"{res}x{res}_aux_residual"] = Conv2d(caux, cout, 3, down=True, resample_filter=resample_filter,
                                                                   fused_resample=True, **init)
                    caux = cout
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **blk)
        skips = [b.out_channels for name, b in self.enc.items() if "aux" not in name]

        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            cout = add_decoder_level(self.dec, res, level == len(channel_mult) - 1, cout, skips, model_channels * mult,
                                     num_blocks, lambda idx: idx == num_blocks and res in attn_resolutions, blk)
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    self.dec[f"{res}x{res}_aux_up"] = Conv2d(out_channels, out_channels, 0, up=True,
                                                             resample_filter=resample_filter)
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(cout, out_channels, 3, **init_zero)

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None,
                augment_labels: Tensor | None = None) -> Tensor:
        emb = self.map_noise(noise_labels)
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(emb.shape)  # [sin, cos] order
        if self.map_label is not None:
            labels = class_labels
            if self.training and self.label_dropout:
                keep = torch.rand([x.shape[0], 1], device=x.device) >= self.label_dropout
                labels = labels * keep.to(labels.dtype)
            emb = emb + self.map_label(labels * math.sqrt(self.map_label.in_features))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))

        skips, aux = [], x
        for name, block in self.enc.items():
            if "aux_down" in name:
                aux = block(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + block(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + block(aux)) / math.sqrt(2)
            else:
                x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
                skips.append(x)

        aux, tmp = None, None
        for name, block in self.dec.items():
            if "aux_up" in name:
                aux = block(aux)
            elif "aux_norm" in name:
                tmp = block(x)
            elif "aux_conv" in name:
                tmp = block(F.silu(tmp))
                aux = tmp if aux is None else tmp + aux
            else:
                if x.shape[1] != block.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        return aux


class DhariwalUNet(nn.Module):
    """ADM (Dhariwal & Nichol 2021) as in EDM: `enc`/`dec` ModuleDicts keyed '{res}x{res}_{kind}', `out_norm`, `out_conv`."""

    def __init__(self, img_resolution: int, in_channels: int, out_channels: int, label_dim: int = 0,
                 augment_dim: int = 0, model_channels: int = 192, channel_mult: Sequence[int] = (1, 2, 3, 4),
                 channel_mult_emb: int = 4, num_blocks: int = 3, attn_resolutions: Sequence[int] = (32, 16, 8),
                 dropout: float = 0.10, label_dropout: float = 0) -> None:
        super().__init__()
        self.label_dropout = label_dropout
        emb_channels = model_channels * channel_mult_emb
        init = dict(init_mode="kaiming_uniform", init_weight=math.sqrt(1 / 3), init_bias=math.sqrt(1 / 3))
        init_zero = dict(init_mode="kaiming_uniform", init_weight=0, init_bias=0)
        blk = dict(emb_channels=emb_channels, channels_per_head=64, dropout=dropout, init=init, init_zero=init_zero)
        self.map_noise = PositionalEmbedding(model_channels)
        self.map_augment = Linear(augment_dim, model_channels, bias=False, **init_zero) if augment_dim else None
        self.map_layer0 = Linear(model_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)
        self.map_label = (Linear(label_dim, emb_channels, bias=False, init_mode="kaiming_normal",
                                 init_weight=math.sqrt(label_dim)) if label_dim else None)

        self.enc = nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, 3, **init)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **blk)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **blk)
        skips = [b.out_channels for b in self.enc.values()]

        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            cout = add_decoder_level(self.dec, res, level == len(channel_mult) - 1, cout, skips, model_channels * mult,
                                     num_blocks, lambda idx: res in attn_resolutions, blk)
        self.out_norm = GroupNorm(cout)
        self.out_conv = Conv2d(cout, out_channels, 3, **init_zero)

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None,
                augment_labels: Tensor | None = None) -> Tensor:
        emb = self.map_noise(noise_labels)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = self.map_layer1(F.silu(self.map_layer0(emb)))
        if self.map_label is not None:
            labels = class_labels
            if self.training and self.label_dropout:
                keep = torch.rand([x.shape[0], 1], device=x.device) >= self.label_dropout
                labels = labels * keep.to(labels.dtype)
            emb = emb + self.map_label(labels)
        emb = F.silu(emb)
        skips = []
        for block in self.enc.values():
            x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
            skips.append(x)
        for block in self.dec.values():
            if x.shape[1] != block.in_channels:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))


ARCHITECTURES: dict[str, type[nn.Module]] = {"SongUNet": SongUNet, "DhariwalUNet": DhariwalUNet}


class _Precond(nn.Module):
    """Shared part of the preconditioners: the wrapped network `model` and the forward pass of eq. 7."""

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int, use_fp16: bool, model_type: str,
                 model_kwargs: dict[str, Any]) -> None:
        super().__init__()
        if model_type not in ARCHITECTURES:
            raise ValueError(f"unknown EDM model_type {model_type!r}; choose one of {sorted(ARCHITECTURES)}")
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.label_dim, self.use_fp16 = label_dim, use_fp16
        self.model = ARCHITECTURES[model_type](img_resolution=img_resolution, in_channels=img_channels,
                                               out_channels=img_channels, label_dim=label_dim, **model_kwargs)

    def coefficients(self, sigma: Tensor) -> tuple[Any, Any, Any, Tensor]:
        """(c_skip, c_out, c_in, c_noise) at sigma (B, 1, 1, 1)."""
        raise NotImplementedError

    def forward(self, x: Tensor, sigma: Tensor, class_labels: Tensor | None = None, force_fp32: bool = False,
                **model_kwargs: Any) -> Tensor:
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, device=x.device).to(torch.float32).reshape(-1, 1, 1, 1)
        if self.label_dim == 0:
            class_labels = None
        elif class_labels is None:
            class_labels = torch.zeros([1, self.label_dim], device=x.device)
        else:
            class_labels = class_labels.to(torch.float32).reshape(-1, self.label_dim)
        half = self.use_fp16 and not force_fp32 and x.device.type == "cuda"
        dtype = torch.float16 if half else torch.float32
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        out = self.model((c_in * x).to(dtype), c_noise.flatten(), class_labels=class_labels, **model_kwargs)
        return c_skip * x + c_out * out.to(torch.float32)

    def round_sigma(self, sigma: float | Tensor) -> Tensor:
        return torch.as_tensor(sigma)


class VPPrecond(_Precond):
    """VP preconditioning (Song et al. 2021): sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1), t in [epsilon_t, 1]."""

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 beta_d: float = 19.9, beta_min: float = 0.1, M: int = 1000, epsilon_t: float = 1e-5,
                 model_type: str = "SongUNet", **model_kwargs: Any) -> None:
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, model_kwargs)
        self.beta_d, self.beta_min, self.M, self.epsilon_t = beta_d, beta_min, M, epsilon_t
        self.sigma_min = float(self.sigma(epsilon_t))
        self.sigma_max = float(self.sigma(1))

    def sigma(self, t: float | Tensor) -> Tensor:
        t = torch.as_tensor(t)
        return ((0.5 * self.beta_d * t**2 + self.beta_min * t).exp() - 1).sqrt()

    def sigma_inv(self, sigma: float | Tensor) -> Tensor:
        """t(sigma) = (sqrt(beta_min^2 + 2 beta_d log(1 + sigma^2)) - beta_min) / beta_d."""
        sigma = torch.as_tensor(sigma)
        return ((self.beta_min**2 + 2 * self.beta_d * (1 + sigma**2).log()).sqrt() - self.beta_min) / self.beta_d

    def coefficients(self, sigma: Tensor) -> tuple[Any, Any, Any, Tensor]:
        return 1, -sigma, 1 / (sigma**2 + 1).sqrt(), (self.M - 1) * self.sigma_inv(sigma)


class VEPrecond(_Precond):
    """VE preconditioning (Song et al. 2021): sigma in [sigma_min, sigma_max], c_noise = log(sigma / 2)."""

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 sigma_min: float = 0.02, sigma_max: float = 100, model_type: str = "SongUNet",
                 **model_kwargs: Any) -> None:
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, model_kwargs)
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def coefficients(self, sigma: Tensor) -> tuple[Any, Any, Any, Tensor]:
        return 1, sigma, 1, (0.5 * sigma).log()


class EDMPrecond(_Precond):
    """EDM preconditioning (Karras et al. 2022, Table 1) with data standard deviation sigma_data."""

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 sigma_min: float = 0, sigma_max: float = float("inf"), sigma_data: float = 0.5,
                 model_type: str = "DhariwalUNet", **model_kwargs: Any) -> None:
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, model_kwargs)
        self.sigma_min, self.sigma_max, self.sigma_data = sigma_min, sigma_max, sigma_data

    def coefficients(self, sigma: Tensor) -> tuple[Any, Any, Any, Tensor]:
        sd2 = self.sigma_data**2
        return (sd2 / (sigma**2 + sd2), sigma * self.sigma_data / (sigma**2 + sd2).sqrt(),
                1 / (sd2 + sigma**2).sqrt(), sigma.log() / 4)


PRECONDITIONERS: dict[str, type[_Precond]] = {"VPPrecond": VPPrecond, "VEPrecond": VEPrecond, "EDMPrecond": EDMPrecond}
