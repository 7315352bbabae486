"""Backward warping of images by a displacement field (bilinear; VoxelMorph's spatial transformer in 2-D).

warp(f, u)(p) = f(p + u(p)), u (B, 2, H, W) in pixels (x along columns, y along rows), f sampled bilinearly
between pixel centres, border values beyond the edge.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """(B, C, H, W) image sampled at p + flow(p), flow (B, 2, H, W) in pixels (x, y); differentiable in both."""
    b, _, h, w = image.shape
    ys = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, h, 1)
    xs = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, w)
    gx = 2 * (xs + flow[:, 0] + 0.5) / w - 1  # pixel centres (align_corners=False)
    gy = 2 * (ys + flow[:, 1] + 0.5) / h - 1
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False)
