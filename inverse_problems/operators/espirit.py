"""ESPIRiT coil-sensitivity estimation from the calibration (ACS) region (Uecker et al., MRM 2014).

Steps: (1) the calibration matrix stacks every kh x kw k-space patch of the ACS block (all coils) as a
row; (2) its SVD gives the signal subspace V (right singular vectors with singular value above
`threshold` times the largest); (3) every patch obeys y = V V^H y, which, averaged over the kernel
positions, is a k-space convolution y_c(k) = sum_{c', d} W_cc'(d) y_c'(k + d) with
W_cc'(d) = 1/|K| sum_q (V V^H)[(c, q), (c', q + d)]; (4) in the image domain it is a per-pixel coil x coil
matrix G(r) = sum_d W(d) exp(-2 pi i d.r / N), and the maps are its eigenvectors of eigenvalue 1:
G(r) S(r) = S(r). Pixels whose top eigenvalue is below `crop` are outside the object and get S = 0.

Our own torch implementation (not BART's or sigpy's): it runs batched over samples on the device the
data are on, keeps everything in torch for the harness (no extra dependency), and forms G through the
(2k-1)^2 kernel autocorrelation W instead of one image-sized FFT per kernel, then diagonalises all pixels
at once with a batched Hermitian eigendecomposition (instead of per-pixel power iterations).
"""
from __future__ import annotations

import torch
from torch import Tensor

from inverse_problems.operators.coils import align_phase


def calibration_matrix(acs: Tensor, kernel: tuple[int, int]) -> Tensor:
    """(B, coils, h, w) ACS k-space -> (B, patches, coils*kh*kw) Hankel-block calibration matrix."""
    kh, kw = kernel
    b, c, h, w = acs.shape
    if kh > h or kw > w:
        raise ValueError(f"ESPIRiT kernel {kernel} is larger than the calibration region {(h, w)}")
    patches = acs.unfold(2, kh, 1).unfold(3, kw, 1)  # (B, C, nh, nw, kh, kw)
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(b, -1, c * kh * kw)


def kernel_shape(acs_shape: tuple[int, int], coils: int, kernel_size: int = 6) -> tuple[int, int]:
    """The largest kernel (kh, kw), each in [2, kernel_size], whose calibration matrix has at least as many
    rows (patches) as columns (coils*kh*kw), so that the signal subspace is determined by the data."""
    h, w = acs_shape
    fits = [(kh * kw, kh, kw) for kh in range(2, min(kernel_size, h) + 1) for kw in range(2, min(kernel_size, w) + 1)
            if (h - kh + 1) * (w - kw + 1) >= coils * kh * kw]
    if not fits:
        raise ValueError(
            f"the calibration (ACS) region {acs_shape} is too small for ESPIRiT with {coils} coils (it needs at least "
            f"as many 2x2 patches as {4 * coils} unknowns); raise center_fraction, or use coil_maps=true"
        )
    _, kh, kw = max(fits)
    return kh, kw


def espirit_maps(kspace: Tensor, acs: tuple[slice, slice], kernel_size: int = 6, threshold: float = 0.02,
                 crop: float = 0.95) -> Tensor:
    """ESPIRiT maps (B, coils, H, W) complex from centred multi-coil k-space (B, coils, H, W).

    acs: (rows, cols) slices of the fully sampled calibration block (inverse_problems.operators.masks.acs_region).
    The kernel is the largest up to kernel_size per axis that the ACS determines (`kernel_shape`).
    Maps have unit norm over coils inside the object (eigenvalue > crop), zero outside, and the
    phase convention of coils.align_phase (coil 0 real).
    """
    if not kspace.is_complex() or kspace.ndim != 4:
        raise ValueError(f"espirit_maps takes complex k-space (B, coils, H, W), got {tuple(kspace.shape)} {kspace.dtype}")
    b, c, h, w = kspace.shape
    cal = kspace[:, :, acs[0], acs[1]].to(torch.complex128)
    kh, kw = kernel_shape(tuple(cal.shape[2:]), c, kernel_size)
    mat = calibration_matrix(cal, (kh, kw))
    _, s, vh = torch.linalg.svd(mat, full_matrices=False)
    keep = (s > threshold * s[:, :1]).to(vh.dtype)
    v = vh.mT * keep[:, None, :]  # (B, n, r): kept right singular vectors as columns
    proj = (v @ vh.conj()).reshape(b, c, kh, kw, c, kh, kw)  # V V^H
    auto = torch.zeros((b, c, c, 2 * kh - 1, 2 * kw - 1), dtype=proj.dtype, device=proj.device)
    for a in range(kh):
        for e in range(kw):
            auto[..., kh - 1 - a:2 * kh - 1 - a, kw - 1 - e:2 * kw - 1 - e] += proj[:, :, a, e]
    auto = auto / (kh * kw)
    if 2 * kh - 1 > h or 2 * kw - 1 > w:
        raise ValueError(f"ESPIRiT kernel {(kh, kw)} is too large for a {(h, w)} image")
    wrapped = torch.zeros((b, c, c, h, w), dtype=proj.dtype, device=proj.device)
    dy = torch.arange(-(kh - 1), kh, device=proj.device) % h
    dx = torch.arange(-(kw - 1), kw, device=proj.device) % w
    wrapped[..., dy[:, None], dx[None, :]] = auto
    gram = torch.fft.fftshift(torch.fft.fft2(wrapped), dim=(-2, -1))  # (B, C, C, H, W)
    gram = gram.permute(0, 3, 4, 1, 2)
    gram = 0.5 * (gram + gram.conj().mT)
    evals, evecs = torch.linalg.eigh(gram)
    top, vec = evals[..., -1], evecs[..., -1]  # (B, H, W), (B, H, W, C)
    maps = vec.permute(0, 3, 1, 2) * (top > crop).unsqueeze(1)
    return align_phase(maps).to(kspace.dtype)
