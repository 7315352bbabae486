"""Frame selection y = S_K x + n: a sequence (T, H, W) of which only the frames K are acquired (4-D interpolation).

The measurement keeps the image's shape, zero on the frames not acquired (as inpainting does for pixels), so S_K is
a partial identity: A = A^T = A^T A = diag(1 on the kept frames), and the SVD is exact (singular values 1 on the
kept frames' pixels, 0 elsewhere; U = V = I). Protocols (which frames are kept, always both ends: an interpolation
is bracketed by acquired frames):

- `endpoints`: K = {0, T-1} (ED and ES of a cardiac cine, end-inhale and end-exhale of a breathing cycle);
- `stride:R`: every R-th frame, K = {0, R, 2R, ...} and T-1;
- `random:p`: each interior frame independently with probability p (the draw is the caller's generator's).
"""
from __future__ import annotations

import torch
from torch import Tensor

from inverse_problems.operators.base import SVD, ForwardOperator

PROTOCOLS = ("endpoints", "stride:R", "random:p")


def parse_protocol(protocol: str) -> tuple[str, float]:
    """(`endpoints` | `stride` | `random`, its number): `stride:R` with an integer R >= 1, `random:p` with p in [0, 1]."""
    kind, _, arg = str(protocol).partition(":")
    if kind == "endpoints" and not arg:
        return kind, 0.0
    try:
        value = float(arg)
    except ValueError:
        value = float("nan")
    if kind == "stride" and value == int(value) and value >= 1:
        return kind, value
    if kind == "random" and 0.0 <= value <= 1.0:
        return kind, value
    raise ValueError(f"unknown frame protocol {protocol!r}; choose endpoints, stride:R (an integer R >= 1) or "
                     f"random:p (p in [0, 1])")


def kept_frames(protocol: str, frames: int, generator: torch.Generator | None = None) -> Tensor:
    """(T,) bool: the frames a protocol acquires, both ends always (`random:p` draws from `generator`)."""
    kind, value = parse_protocol(protocol)
    keep = torch.zeros(frames, dtype=torch.bool)
    if kind == "stride":
        keep[:: int(value)] = True
    elif kind == "random":
        keep = torch.rand(frames, generator=generator) < value
    keep[0] = keep[-1] = True
    return keep


class FrameSelection(ForwardOperator):
    """y = S_K x + n on sequences (B, T, H, W): frames where `keep` (T,) or (B, T) is true are acquired, the others
    are zero. Frame k was acquired at `times[k]` ((T,) or (B, T); default k: the interpolators read it)."""

    def __init__(self, keep: Tensor, size: tuple[int, int], noise_std: float | Tensor = 0.0,
                 times: Tensor | None = None) -> None:
        super().__init__(noise_std)
        keep = keep.bool()
        if keep.ndim not in (1, 2) or keep.shape[-1] < 2:
            raise ValueError(f"keep must be (T,) or (B, T) with T >= 2, got {tuple(keep.shape)}")
        frames = keep.shape[-1]
        self.register_buffer("keep", keep.reshape(-1, frames))
        times = torch.arange(frames, dtype=torch.float32) if times is None else times.float()
        if times.shape[-1] != frames or times.ndim not in (1, 2):
            raise ValueError(f"times must be (T,) or (B, T) with T = {frames}, got {tuple(times.shape)}")
        self.register_buffer("times", times.reshape(-1, frames))
        self.image_shape = (frames, *size)
        self.measurement_shape = self.image_shape

    def _mask(self, x: Tensor) -> Tensor:
        return self.keep.to(x.dtype)[:, :, None, None]

    def forward(self, x: Tensor) -> Tensor:
        return x * self._mask(x)

    def adjoint(self, y: Tensor) -> Tensor:
        return y * self._mask(y)

    def pinv(self, y: Tensor, n_iter: int = 0, tol: float = 0.0, damping: float = 0.0) -> Tensor:
        """Closed form: (S^T S + damping)^-1 S^T y."""
        mask = self._mask(y)
        return mask * y / (mask + damping).clamp_min(1e-12)

    def svd(self) -> SVD:
        t, h, w = self.image_shape
        flat = lambda v: v.reshape(v.shape[0], -1)  # noqa: E731
        unflat = lambda z: z.reshape(z.shape[0], t, h, w)  # noqa: E731
        s = self.keep.float()[:, :, None, None].expand(-1, t, h, w).reshape(self.keep.shape[0], -1)
        s = s[0] if s.shape[0] == 1 else s
        return SVD(V=unflat, Vt=flat, U=unflat, Ut=lambda y: flat(y) * s, s=s)
