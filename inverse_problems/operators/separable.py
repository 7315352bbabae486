"""Separable linear operators y_c = A_h X_c A_w^T (per channel) with their exact SVD, and the 1-D matrices of
bicubic downsampling and Gaussian blur.

With A_h = U_h S_h V_h^T and A_w = U_w S_w V_w^T (full SVDs of small 1-D matrices, float64), the 2-D
operator's SVD is the Kronecker product: singular values s_ij = s_h,i s_w,j, right vectors V_h (x) V_w,
left vectors U_h (x) U_w (DDRM's separable H_functions, Kawar et al. 2022). Spectral coordinates are
(C, H, W) arrays flattened, with s zero outside the (m_h, m_w) corner.
"""
from __future__ import annotations

import torch
from torch import Tensor

from inverse_problems.operators.base import SVD, ForwardOperator


def cubic(x: Tensor, a: float = -0.5) -> Tensor:
    """Keys' cubic convolution kernel (a = -0.5: Catmull-Rom, as PIL, Matlab and torch's bicubic)."""
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def bicubic_matrix(n: int, factor: int) -> Tensor:
    """(n // factor, n) antialiased bicubic downsampling, PIL's rule (torch's interpolate(..., antialias=True)):
    output i is centred at (i + 0.5) factor, weights cubic((j + 0.5 - centre) / factor) on input pixels j within
    2 factor of the centre, cut at the border and renormalised to sum to 1."""
    if n % factor:
        raise ValueError(f"image size {n} is not a multiple of the downsampling factor {factor}")
    m = n // factor
    rows = torch.zeros(m, n, dtype=torch.float64)
    support = 2.0 * factor
    for i in range(m):
        centre = (i + 0.5) * factor
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n)
        j = torch.arange(lo, hi, dtype=torch.float64)
        w = cubic((j - centre + 0.5) / factor)
        rows[i, lo:hi] = w / w.sum()
    return rows


def gaussian_blur_matrix(n: int, sigma: float, kernel_size: int) -> Tensor:
    """(n, n) 'same' convolution with zero padding by the normalised Gaussian taps exp(-k^2 / (2 sigma^2)),
    |k| <= kernel_size // 2 (the 1-D factor of a separable kernel_size^2 Gaussian blur)."""
    if sigma <= 0 or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"need sigma > 0 and an odd kernel_size, got sigma={sigma}, kernel_size={kernel_size}")
    half = kernel_size // 2
    k = torch.arange(-half, half + 1, dtype=torch.float64)
    taps = torch.exp(-(k**2) / (2 * sigma**2))
    taps = taps / taps.sum()
    i = torch.arange(n).view(-1, 1)
    j = torch.arange(n).view(1, -1)
    off = j - i + half
    inside = (off >= 0) & (off < kernel_size)
    return torch.where(inside, taps[off.clamp(0, kernel_size - 1)], torch.zeros((), dtype=torch.float64))


class SeparableOperator(ForwardOperator):
    """y = A_h X A_w^T per channel (+ noise), real images (C, H, W) -> (C, m_h, m_w); exact SVD and pseudo-inverse."""

    def __init__(self, a_h: Tensor, a_w: Tensor, channels: int = 3, noise_std: float = 0.0) -> None:
        super().__init__(noise_std)
        (mh, h), (mw, w) = a_h.shape, a_w.shape
        self.image_shape = (channels, h, w)
        self.measurement_shape = (channels, mh, mw)
        self.register_buffer("a_h", a_h.float())
        self.register_buffer("a_w", a_w.float())
        for name, a in (("h", a_h), ("w", a_w)):
            u, s, vt = torch.linalg.svd(a.double(), full_matrices=True)
            pad = torch.zeros(a.shape[1], dtype=torch.float64)
            pad[: s.numel()] = s
            self.register_buffer(f"u_{name}", u.float())
            self.register_buffer(f"s_{name}", pad.float())
            self.register_buffer(f"v_{name}", vt.t().float())

    def forward(self, x: Tensor) -> Tensor:
        return self.a_h @ x @ self.a_w.t()

    def adjoint(self, y: Tensor) -> Tensor:
        return self.a_h.t() @ y @ self.a_w

    def singular_values(self) -> Tensor:
        """(C*H*W,) s_ij = s_h,i s_w,j in spectral order."""
        return torch.outer(self.s_h, self.s_w).expand(self.image_shape).reshape(-1)

    def svd(self) -> SVD:
        c, h, w = self.image_shape
        _, mh, mw = self.measurement_shape

        def vt(x: Tensor) -> Tensor:
            return (self.v_h.t() @ x @ self.v_w).reshape(x.shape[0], -1)

        def v(z: Tensor) -> Tensor:
            return self.v_h @ z.reshape(z.shape[0], c, h, w) @ self.v_w.t()

        def ut(y: Tensor) -> Tensor:
            out = y.new_zeros(y.shape[0], c, h, w)
            out[..., :mh, :mw] = self.u_h.t() @ y @ self.u_w
            return out.reshape(y.shape[0], -1)

        def u(z: Tensor) -> Tensor:
            return self.u_h @ z.reshape(z.shape[0], c, h, w)[..., :mh, :mw] @ self.u_w.t()

        return SVD(V=v, Vt=vt, U=u, Ut=ut, s=self.singular_values())

    def pinv(self, y: Tensor, n_iter: int = 0, tol: float = 0.0, damping: float = 0.0) -> Tensor:
        """Closed form through the SVD: V diag(s / (s^2 + damping)) U^T y (zero on the null space; singular values
        below 1e-6 of the largest count as zero when damping is 0)."""
        svd = self.svd()
        s = svd.s
        if damping > 0:
            inv = s / (s**2 + damping)
        else:
            inv = torch.where(s > 1e-6 * float(s.max()), 1 / s.clamp_min(1e-30), torch.zeros_like(s))
        return svd.V(inv * svd.Ut(y))

    def norm_exact(self) -> float:
        """||A||_2 = max s_h * max s_w."""
        return float(self.s_h.max()) * float(self.s_w.max())
