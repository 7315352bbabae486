"""Random inpainting y = M x + n with a per-pixel Bernoulli mask (DPS/DDRM's 'random inpainting')."""
from __future__ import annotations

from torch import Tensor

from inverse_problems.operators.base import SVD, ForwardOperator



class Inpainting(ForwardOperator):
    """y = M x + n; M keeps pixels where `mask` is 1 (same mask for every channel). A = A^H, SVD exact."""

    def __init__(self, mask: Tensor, channels: int = 1, noise_std: float = 0.0) -> None:
        super().__init__(noise_std)
        if mask.ndim != 2:
            raise ValueError(f"mask must be (H, W), got {tuple(mask.shape)}")
        self.register_buffer("mask", mask.float())
        self.image_shape = (channels, *mask.shape)
        self.measurement_shape = self.image_shape

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask

    def adjoint(self, y: Tensor) -> Tensor:
        return y * self.mask

    def pinv(self, y: Tensor, n_iter: int = 0, tol: float = 0.0, damping: float = 0.0) -> Tensor:
        """Closed form: (M + damping)^-1 M y."""
        return self.mask * y / (self.mask + damping).clamp_min(1e-12)

    def svd(self) -> SVD:
        c, h, w = self.image_shape
        flat = lambda t: t.reshape(t.shape[0], -1)  # noqa: E731
        unflat = lambda z: z.reshape(z.shape[0], c, h, w)  # noqa: E731
        s = self.mask.expand(c, h, w).reshape(-1)
        return SVD(V=unflat, Vt=flat, U=unflat, Ut=lambda y: flat(y) * s, s=s)
