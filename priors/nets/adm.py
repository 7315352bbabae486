"""guided-diffusion's `UNetModel` (ADM, Dhariwal & Nichol 2021), 2-D, with the reference parameter names.

Module names (`input_blocks.3.0.in_layers.2.weight`, `middle_block.1.qkv.weight`, `out.2.bias` ...) and the
constructor's options are those of openai/guided-diffusion's unet.py, so its checkpoints (and those DPS,
DDRM and DAPS distribute, e.g. ffhq_10m.pt) load with strict=True; the code is this project's own.
The network maps (x_t, t) to epsilon (and, with learned variance, the variance interpolation v: 2C channels).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GroupNorm32(nn.GroupNorm):
    """32-group normalisation computed in float32."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> nn.Module:
    return GroupNorm32(32, channels)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000) -> Tensor:
    """[cos(t w_j), sin(t w_j)], w_j = max_period^(-j / (dim/2)), j < dim/2 (zero-padded to an odd dim); t may be fractional."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1) if dim % 2 else emb


class Upsample(nn.Module):
    """Nearest 2x upsampling, then a 3x3 convolution `conv` if use_conv."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        self.channels, self.out_channels, self.use_conv = channels, out_channels or channels, use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, self.out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """2x downsampling `op`: a stride-2 3x3 convolution if use_conv, else 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        self.channels, self.out_channels, self.use_conv = channels, out_channels or channels, use_conv
        if use_conv:
            self.op = nn.Conv2d(channels, self.out_channels, 3, stride=2, padding=1)
        else:
            if self.out_channels != channels:
                raise ValueError("average-pool downsampling keeps the channel count")
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """h = in_layers(x) (resampled between norm+SiLU and conv if up/down); h += emb_layers(emb), or with
    use_scale_shift_norm h = norm(h) (1 + scale) + shift; out = skip_connection(x) + out_layers(h)."""

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None,
                 use_conv: bool = False, use_scale_shift_norm: bool = False, up: bool = False, down: bool = False) -> None:
        super().__init__()
        self.channels, self.emb_channels, self.dropout = channels, emb_channels, dropout
        self.out_channels = out_channels or channels
        self.use_conv, self.use_scale_shift_norm = use_conv, use_scale_shift_norm
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(),
                                       nn.Conv2d(channels, self.out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels))
        self.out_layers = nn.Sequential(normalization(self.out_channels), nn.SiLU(), nn.Dropout(p=dropout),
                                        nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1))
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 3 if use_conv else 1,
                                             padding=1 if use_conv else 0)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.updown:
            h = self.in_layers[2](self.h_upd(self.in_layers[:2](x)))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


def qkv_attention(qkv: Tensor, heads: int, legacy: bool) -> Tensor:
    """Multi-head softmax(q^T k / sqrt(c)) v of a (B, 3 H c, T) tensor. Legacy order splits heads first
    ((B H, 3 c, T)); the new order splits q, k, v first. Softmax in float32."""
    b, width, length = qkv.shape
    ch = width // (3 * heads)
    if legacy:
        q, k, v = qkv.reshape(b * heads, 3 * ch, length).split(ch, dim=1)
    else:
        q, k, v = (t.reshape(b * heads, ch, length) for t in qkv.chunk(3, dim=1))
    scale = 1 / math.sqrt(math.sqrt(ch))
    w = torch.einsum("bct,bcs->bts", q * scale, k * scale)
    w = torch.softmax(w.float(), dim=-1).type(w.dtype)
    return torch.einsum("bts,bcs->bct", w, v).reshape(b, -1, length)


class AttentionBlock(nn.Module):
    """Self-attention over positions: x + proj_out(attention(qkv(norm(x)))), qkv and proj_out 1x1 Conv1d."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1,
                 use_new_attention_order: bool = False) -> None:
        super().__init__()
        self.channels = channels
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"attention channels {channels} are not divisible by num_head_channels {num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.legacy = not use_new_attention_order
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.proj_out(qkv_attention(self.qkv(self.norm(x)), self.num_heads, self.legacy))
        return (x + h).reshape(b, c, *spatial)


class TimestepEmbedSequential(nn.Sequential):
    """A sequence whose ResBlocks also receive the timestep embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class UNetModel(nn.Module):
    """ADM's U-Net: input_blocks / middle_block / output_blocks / out, sinusoidal time_embed, optional label_emb.

    attention_resolutions are downsampling factors (ds), as in guided-diffusion (image_size // resolution).
    """

    def __init__(self, image_size: int, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int, attention_resolutions: Sequence[int], dropout: float = 0,
                 channel_mult: Sequence[float] = (1, 2, 4, 8), conv_resample: bool = True, dims: int = 2,
                 num_classes: int | None = None, use_checkpoint: bool = False, use_fp16: bool = False,
                 num_heads: int = 1, num_head_channels: int = -1, num_heads_upsample: int = -1,
                 use_scale_shift_norm: bool = False, resblock_updown: bool = False,
                 use_new_attention_order: bool = False) -> None:
        super().__init__()
        if dims != 2:
            raise ValueError(f"only 2-D images are supported (dims=2), got dims={dims}")
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        self.image_size, self.in_channels, self.out_channels = image_size, in_channels, out_channels
        self.model_channels, self.num_classes = model_channels, num_classes
        self.dtype = torch.float16 if use_fp16 else torch.float32
        emb_dim = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_dim)

        def res(cin: int, cout: int, **kw: bool) -> ResBlock:
            return ResBlock(cin, emb_dim, dropout, out_channels=cout, use_scale_shift_norm=use_scale_shift_norm, **kw)

        def attn(c: int, heads: int) -> AttentionBlock:
            return AttentionBlock(c, heads, num_head_channels, use_new_attention_order)

        ch = input_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        chans, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_resolutions:
                    layers.append(attn(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                chans.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(res(ch, ch), attn(ch, num_heads), res(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [res(ch + chans.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_resolutions:
                    layers.append(attn(ch, num_heads_upsample))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample, ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(), nn.Conv2d(input_ch, out_channels, 3, padding=1))

    def forward(self, x: Tensor, timesteps: Tensor, y: Tensor | None = None) -> Tensor:
        if (y is not None) != (self.num_classes is not None):
            raise ValueError("pass class labels y if and only if the model is class-conditional")
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        if y is not None:
            emb = emb + self.label_emb(y)
        hs, h = [], x.type(self.dtype)
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h.type(x.dtype))


def default_channel_mult(image_size: int) -> tuple[float, ...]:
    """guided-diffusion's channel_mult for channel_mult="" by image size."""
    table = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
    if image_size not in table:
        raise ValueError(f"no default channel_mult for image_size {image_size}; give channel_mult (e.g. '1,2,2')")
    return table[image_size]


def unet_from_flags(image_size: int, num_channels: int, num_res_blocks: int, channel_mult: str | Sequence[float] = "",
                    learn_sigma: bool = False, class_cond: bool = False, attention_resolutions: str | Sequence[int] = "16",
                    num_heads: int = 1, num_head_channels: int = -1, num_heads_upsample: int = -1,
                    use_scale_shift_norm: bool = False, dropout: float = 0.0, resblock_updown: bool = False,
                    use_fp16: bool = False, use_new_attention_order: bool = False, in_channels: int = 3,
                    **ignored: object) -> UNetModel:
    """The UNetModel of guided-diffusion's `create_model` flags (model_config.yaml of DPS / DDRM / DAPS):
    attention_resolutions are resolutions ("32,16,8"), turned into factors image_size // r; learn_sigma doubles
    the output channels; class_cond means 1000 classes. use_fp16 (guided-diffusion's half-precision sampling)
    is not applied: checkpoints store float32 weights and run in float32 here. Other keys (model_path,
    use_checkpoint ...) are ignored."""
    if isinstance(channel_mult, str):
        mult = default_channel_mult(image_size) if channel_mult == "" else tuple(float(c) for c in channel_mult.split(","))
    else:
        mult = tuple(channel_mult)
    res = [int(r) for r in str(attention_resolutions).split(",")] if isinstance(attention_resolutions, (str, int)) \
        else [int(r) for r in attention_resolutions]
    return UNetModel(image_size=image_size, in_channels=in_channels, model_channels=num_channels,
                     out_channels=in_channels * (2 if learn_sigma else 1), num_res_blocks=num_res_blocks,
                     attention_resolutions=tuple(image_size // r for r in res), dropout=dropout, channel_mult=mult,
                     num_classes=1000 if class_cond else None, num_heads=num_heads,
                     num_head_channels=num_head_channels, num_heads_upsample=num_heads_upsample,
                     use_scale_shift_norm=use_scale_shift_norm, resblock_updown=resblock_updown,
                     use_new_attention_order=use_new_attention_order)
