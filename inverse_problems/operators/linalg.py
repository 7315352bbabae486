"""Batched linear algebra shared by operators and algorithms."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def batch_dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample real inner product <a, b> over all but the first dimension, shape (B,)."""
    prod = (a.conj() * b).real if a.is_complex() else a * b
    return prod.reshape(a.shape[0], -1).sum(dim=1)


def batch_norm(a: Tensor) -> Tensor:
    """Per-sample Euclidean norm, shape (B,)."""
    return batch_dot(a, a).clamp_min(0).sqrt()


def per_sample(value: Tensor | float, like: Tensor) -> Tensor:
    """Broadcast a scalar or a (B,) tensor against a (B, ...) tensor."""
    v = torch.as_tensor(value, dtype=like.real.dtype if like.is_complex() else like.dtype, device=like.device)
    if v.ndim == 0:
        return v
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def conjugate_gradient(
    apply: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    n_iter: int = 50,
    tol: float = 1e-6,
) -> Tensor:
    """Solve apply(x) = b for a Hermitian positive (semi-)definite operator, per sample.

    Standard CG (Hestenes & Stiefel 1952), vectorised over the batch: each sample has its own
    step sizes and stops updating once its relative residual is below `tol`.
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x) if x0 is not None else b.clone()
    p = r.clone()
    rs = batch_dot(r, r)
    b_norm = batch_dot(b, b).clamp_min(1e-30)
    for _ in range(n_iter):
        active = rs > (tol**2) * b_norm
        if not bool(active.any()):
            break
        ap = apply(p)
        denom = batch_dot(p, ap)
        alpha = torch.where(active & (denom.abs() > 0), rs / denom.where(denom.abs() > 0, torch.ones_like(denom)), torch.zeros_like(rs))
        x = x + per_sample(alpha, x) * p
        r = r - per_sample(alpha, r) * ap
        rs_new = batch_dot(r, r)
        beta = torch.where(active, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs))
        p = r + per_sample(beta, p) * p
        rs = rs_new
    return x
