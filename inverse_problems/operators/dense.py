"""The exact SVD of any small operator, from the eigendecomposition of its dense Gram matrix.

A^H A = V diag(s^2) V^H is built column by column with `operator.normal` (one call per image coordinate, all
samples of the batch at once) and diagonalised per sample (`torch.linalg.eigh`); then U = A V diag(1/s), applied
lazily as U^T y = diag(1/s) V^T A^H y and U z = A V (z / s), so the measurement side is never stored.
Singular values below `rtol * max(s)` count as zero (the null space: ESPIRiT maps are zero outside the object).

Complex-linear operators on (B, 2, H, W) images (A(i x) = i A x, as SENSE is) are diagonalised as complex
n/2 x n/2 matrices, 8x cheaper than the real n x n route: each complex singular vector v gives the real pair
(v, i v) with the same singular value, so spectral coordinates are [Re c, Im c] with c = V^H x.
Cost: n/2 normal calls and one (n/2)^3 eigendecomposition (in double precision) per sample; 64 x 64 images
take about a minute per sample on one CPU core. This is what lets DDRM (Kawar et al. 2022: it needs A's SVD)
run on multi-coil MRI exactly.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from inverse_problems.operators.base import SVD, ForwardOperator
from inverse_problems.operators.complex import to_complex, to_real


def is_complex_linear(operator: ForwardOperator, batch: int) -> bool:
    """True if A acts on (real, imaginary) channel pairs as a complex-linear map: A^H A (i x) = i A^H A x
    (checked on a fixed random image, leaving the global random state alone)."""
    c, h, w = operator.image_shape
    if c != 2:
        return False
    x = torch.randn((batch, c, h, w), generator=torch.Generator().manual_seed(0)).to(operator.device)
    ix = to_real(1j * to_complex(x))
    with torch.no_grad():
        lhs, rhs = to_complex(operator.normal(ix)), 1j * to_complex(operator.normal(x))
    return bool((lhs - rhs).abs().max() <= 1e-4 * rhs.abs().max().clamp_min(1e-12))


@torch.no_grad()
def operator_batch(operator: ForwardOperator, batch: int) -> int:
    """1 if one operator serves the whole batch (a batch-1 input gives a batch-1 output), else `batch`."""
    probe = operator.normal(torch.zeros((1, *operator.image_shape), device=operator.device))
    return 1 if probe.shape[0] == 1 else batch


@torch.no_grad()
def gram_matrix(operator: ForwardOperator, batch: int, complex_route: bool) -> Tensor:
    """A^H A per distinct operator: (B', n, n) real, or (B', n/2, n/2) complex on the complex route (B' = 1
    when the whole batch shares one operator)."""
    c, h, w = operator.image_shape
    device = operator.device
    batch = operator_batch(operator, batch)
    n = h * w if complex_route else c * h * w
    cols = []
    for j in range(n):
        e = torch.zeros((batch, n), device=device)
        e[:, j] = 1.0
        if complex_route:
            col = to_complex(operator.normal(to_real(e.reshape(batch, h, w).to(torch.complex64))))
        else:
            col = operator.normal(e.reshape(batch, c, h, w))
        cols.append(col.reshape(batch, n))
    return torch.stack(cols, dim=-1)


def _matvec(mat: Tensor, vec: Tensor) -> Tensor:
    """mat (B' in {1, B}, n, n) times vec (B, n) per sample; one shared matrix is a single GEMM, not B copies."""
    if mat.shape[0] == 1:
        return vec.to(mat.dtype) @ mat[0].transpose(0, 1)
    return (mat @ vec.to(mat.dtype).unsqueeze(-1)).squeeze(-1)


def thresholded(s: Tensor, rtol: float) -> tuple[Tensor, Tensor]:
    """(s, 1/s) with singular values below rtol * max(s) per row set to 0, and 0 as their inverse."""
    s = torch.where(s > rtol * s.amax(dim=1, keepdim=True), s, torch.zeros_like(s))
    return s, torch.where(s > 0, 1 / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s))


def complex_route_svd(operator: ForwardOperator, to_coef: Callable[[Tensor], Tensor],
                      from_coef: Callable[[Tensor], Tensor], s: Tensor, rtol: float = 1e-3) -> SVD:
    """The SVD of a complex-linear operator given a unitary basis V of its image: `to_coef` (x -> V^H x, (B, n/2)
    complex64), `from_coef` (c -> V c, an image) and the singular values s (B' in {1, B}, n/2). Spectral coordinates
    are [Re c, Im c] (each complex singular vector v gives the real pair (v, i v)); singular values below
    rtol * max(s) count as zero; U^T y = diag(1/s) V^H A^H y and U z = A V diag(1/s) z are applied lazily. Shared by
    `dense_svd` and the per-row eigenbasis of multi-coil MRI (`MultiCoilMRI.eigen_svd`)."""
    s, inv = thresholded(s, rtol)
    inv2 = torch.cat([inv, inv], dim=1)

    def vt(x: Tensor) -> Tensor:
        coef = to_coef(x)
        return torch.cat([coef.real, coef.imag], dim=1)

    def v(z: Tensor) -> Tensor:
        half = z.shape[1] // 2
        return from_coef(torch.complex(z[:, :half], z[:, half:]))

    def ut(y: Tensor) -> Tensor:
        return vt(operator.adjoint(y)) * inv2

    def u(z: Tensor) -> Tensor:
        return operator.forward(v(z * inv2))

    return SVD(V=v, Vt=vt, U=u, Ut=ut, s=torch.cat([s, s], dim=1))


@torch.no_grad()
def dense_svd(operator: ForwardOperator, batch: int, rtol: float = 1e-3) -> SVD:
    """The exact SVD of A for a batch of `batch` samples (per-sample operators allowed), in the SVD interface."""
    c, h, w = operator.image_shape
    cplx = operator.measurement_dtype.is_complex and is_complex_linear(operator, batch)
    gram = gram_matrix(operator, batch, cplx)
    gram = 0.5 * (gram + gram.mH)  # exactly Hermitian against rounding
    # in double precision: single-precision eigh fails to converge on SENSE Gram matrices (a large, exactly
    # repeated zero eigenvalue outside the ESPIRiT support), and double makes the small singular values exact
    evals, vecs = torch.linalg.eigh(gram.to(torch.complex128 if gram.is_complex() else torch.float64))
    evals, vecs = evals.float(), vecs.to(gram.dtype)
    vh = vecs.mH

    if cplx:
        return complex_route_svd(
            operator, lambda x: _matvec(vh, to_complex(x).reshape(x.shape[0], -1)),
            lambda coef: to_real(_matvec(vecs, coef).reshape(-1, h, w)), evals.clamp_min(0).sqrt().expand(batch, -1),
            rtol)

    s, inv = thresholded(evals.clamp_min(0).sqrt().expand(batch, -1), rtol)  # (B, n)

    def vt_real(x: Tensor) -> Tensor:
        return _matvec(vh, x.reshape(x.shape[0], -1))

    def v_real(z: Tensor) -> Tensor:
        return _matvec(vecs, z).reshape(-1, c, h, w)

    def ut_real(y: Tensor) -> Tensor:
        return vt_real(operator.adjoint(y)) * inv

    def u_real(z: Tensor) -> Tensor:
        return operator.forward(v_real(z * inv))

    return SVD(V=v_real, Vt=vt_real, U=u_real, Ut=ut_real, s=s)
