"""Cartesian MRI forward models: multi-coil SENSE y_c = M F S_c x + n and the single-coil case.

Images are (B, 2, H, W) real (real, imaginary); measurements are complex (B, coils, H, W) on the full
centred k-space grid with zeros off the mask M (Pruessmann et al. 1999/2001, SENSE and CG-SENSE).
Noise: complex Gaussian, `noise_std` per real component on the acquired samples; y stays exactly 0
off the mask.

Adaptable parameters (for test-time degradation adaptation), initialised so the operator is unchanged:
- `coil_correction` (B', coils, 2, r, r) real: a smooth complex multiplicative correction of the coil
  maps, S_c <- S_c (1 + up(delta_c)), up = bicubic upsampling of the r x r grid; delta = 0 initially.
- `phase` (B',): a global phase, x <- exp(i phi) x; 0 initially.
- `noise_std`: the noise level the solvers weigh the data with (TDA sets it to its maximum-likelihood
  value, which with estimated coil maps also absorbs the model error).
B' is the maps' batch or `batch` (1: one value shared by the whole batch).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inverse_problems.operators.base import SVD, ForwardOperator
from inverse_problems.operators.coils import rss
from inverse_problems.operators.dense import complex_route_svd
from inverse_problems.operators.complex import to_complex, to_real
from inverse_problems.operators.fft import fft2c, ifft2c


class RowEigenbasis:
    """A^H A = blockdiag_h(Q_h diag(lam_h) Q_h^H) over image rows (columns when `cols`), in complex128.

    Coordinates of a real 2-channel image x (B, 2, H, W) are r = Q^H x_h per row, a complex (B, H, W) tensor;
    Q is unitary, so a real white-noise image has coordinates with independent N(0, 1) real and imaginary parts.
    """

    def __init__(self, cols: bool, gram: Tensor, lam: Tensor, q: Tensor) -> None:
        self.cols, self.gram, self.q = cols, gram, q
        self.lam = lam.clamp_min(0.0)  # (B', H, W): eigenvalues of the PSD blocks, rounding below 0 removed

    def to_basis(self, x: Tensor) -> Tensor:
        """Q^H x per row: (B, 2, H, W) real -> (B, H, W) complex128."""
        v = to_complex(x).to(torch.complex128)
        v = v.transpose(-1, -2) if self.cols else v
        return (self.q.mH @ v[..., None])[..., 0]

    def from_basis(self, r: Tensor) -> Tensor:
        """Q r per row: (B, H, W) complex -> (B, 2, H, W) real float32."""
        x = (self.q @ r.to(torch.complex128)[..., None])[..., 0]
        return to_real((x.transpose(-1, -2) if self.cols else x).to(torch.complex64))


class AdaptableMixin:
    """`adaptable_parameters()` and `reset_adaptation()` over the parameters named in `_adaptable`."""

    _adaptable: tuple[str, ...] = ()

    def _remember_initial(self) -> None:
        if "noise_std" in self._adaptable and not isinstance(self.noise_std, nn.Parameter):
            self.noise_std = nn.Parameter(self.noise_std.detach().clone())
        self._initial = {n: getattr(self, n).detach().clone() for n in self._adaptable}

    def set_noise_std(self, value: float | Tensor) -> None:
        """Replace the noise level; it becomes the new initial value of `reset_adaptation`."""
        super().set_noise_std(value)
        if "noise_std" in self._adaptable:
            self._initial["noise_std"] = self.noise_std.detach().clone()

    def measure(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A x + noise, detached from the adaptable parameters (data carry no graph)."""
        with torch.no_grad():
            return super().measure(x, generator)

    def adaptable_parameters(self) -> dict[str, nn.Parameter]:
        """The operator's physical parameters that test-time adaptation may train, by name."""
        return {n: getattr(self, n) for n in self._adaptable}

    def reset_adaptation(self) -> None:
        """Restore every adaptable parameter to its initial value (in place, keeping optimiser references)."""
        with torch.no_grad():
            for n, v in self._initial.items():
                p = getattr(self, n)
                if p.shape != v.shape:
                    setattr(self, n, nn.Parameter(v.clone().to(p.device)))
                else:
                    p.copy_(v.to(p.device))


class MultiCoilMRI(AdaptableMixin, ForwardOperator):
    """y_c = M F (S_c x) + n, c = 1..coils: Cartesian SENSE with centred orthonormal FFTs.

    maps: (coils, H, W) or (B', coils, H, W) complex; mask: (H, W) in {0, 1}. `pinv` is CG-SENSE
    (conjugate gradient on A^H A + damping I, inherited). correction_size r = 0 disables the coil-map
    correction parameter. `batch` sets the batch of the adaptable parameters (default: the maps').
    """

    measurement_dtype = torch.complex64

    def __init__(self, maps: Tensor, mask: Tensor, noise_std: float | Tensor = 0.0, correction_size: int = 4,
                 batch: int | None = None) -> None:
        super().__init__(noise_std)
        if not maps.is_complex() or maps.ndim not in (3, 4):
            raise ValueError(f"maps must be complex (coils, H, W) or (B, coils, H, W), got {tuple(maps.shape)} {maps.dtype}")
        maps = maps if maps.ndim == 4 else maps[None]
        if mask.ndim != 2 or tuple(mask.shape) != tuple(maps.shape[-2:]):
            raise ValueError(f"mask must be (H, W) = {tuple(maps.shape[-2:])}, got {tuple(mask.shape)}")
        nb, coils, h, w = maps.shape
        if batch is not None and nb not in (1, batch):
            raise ValueError(f"maps have batch {nb} but batch={batch} was asked; pass maps of batch 1 or {batch}")
        nb = batch or nb
        self.register_buffer("maps", maps.to(torch.complex64))
        self.register_buffer("mask", mask.float())
        self.image_shape = (2, h, w)
        self.measurement_shape = (coils, h, w)
        self.correction_size = correction_size
        names = ["phase", "noise_std"]
        self.phase = nn.Parameter(torch.zeros(nb, device=maps.device))
        if correction_size > 0:
            self.coil_correction = nn.Parameter(torch.zeros((nb, coils, 2, correction_size, correction_size),
                                                            device=maps.device))
            names.insert(0, "coil_correction")
        self._adaptable = tuple(names)
        self._remember_initial()

    @property
    def coils(self) -> int:
        return self.measurement_shape[0]

    def support(self) -> Tensor | None:
        """Where the coil maps are non-zero (ESPIRiT zeroes them outside the object); None if everywhere."""
        inside = (self.maps.abs() ** 2).sum(1, keepdim=True) > 0
        return None if bool(inside.all()) else inside.float()

    def effective_maps(self) -> Tensor:
        """S_c exp(i phi) (1 + up(delta_c)), (B', coils, H, W) complex; differentiable in the parameters."""
        maps = self.maps * torch.polar(torch.ones_like(self.phase), self.phase).view(-1, 1, 1, 1)
        if self.correction_size > 0:
            nb, c, _, r, _ = self.coil_correction.shape
            up = F.interpolate(self.coil_correction.reshape(nb, c * 2, r, r), size=self.image_shape[1:],
                               mode="bicubic", align_corners=True).reshape(nb, c, 2, *self.image_shape[1:])
            maps = maps * (1 + torch.complex(up[:, :, 0], up[:, :, 1]))
        return maps

    def forward(self, x: Tensor) -> Tensor:
        self.check_image(x)
        return fft2c(self.effective_maps() * to_complex(x)[:, None]) * self.mask

    def measure(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """M (A x + n): noisy on the acquired samples, exactly zero elsewhere."""
        return super().measure(x, generator) * self.mask

    def coil_images(self, y: Tensor) -> Tensor:
        """F^H M y_c: the zero-filled image of each coil, (B, coils, H, W) complex."""
        return ifft2c(y * self.mask)

    def adjoint(self, y: Tensor) -> Tensor:
        """sum_c S_c^H F^H M y_c, written out."""
        return to_real((self.effective_maps().conj() * self.coil_images(y)).sum(dim=1))

    def with_mask(self, mask: Tensor) -> "MultiCoilMRI":
        """A copy that acquires only `mask` (H, W), a subset of this operator's mask: re-subsampling of the acquired
        k-space (SSDU's Theta/Lambda split, Noisier2Noise, held-out samples). Maps, adaptable parameters and noise
        level are copied (independent of this operator's); measurements y of this operator are measurements of the
        copy once multiplied by the new mask (`adjoint` and `coil_images` apply it). A mask with samples this
        operator did not acquire is refused: they would be read as measured zeros."""
        if mask.ndim != 2 or tuple(mask.shape) != tuple(self.mask.shape):
            raise ValueError(f"with_mask takes an (H, W) = {tuple(self.mask.shape)} mask, got {tuple(mask.shape)}")
        mask = mask.to(self.mask)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("with_mask takes a {0, 1} mask")
        if bool((mask > self.mask).any()):
            raise ValueError(f"with_mask: the new mask holds {int((mask > self.mask).sum())} k-space samples this "
                             f"operator did not acquire; a sub-mask may keep acquired samples only (new_mask <= mask)")
        out = copy.deepcopy(self)
        out.mask = mask.clone()
        return out

    def normal(self, x: Tensor) -> Tensor:
        """A^H A x = sum_c S_c^H F^H M M F S_c x (`normal_map`'s route)."""
        return self.normal_map()(x)

    def fourier_axes(self) -> tuple[int, ...]:
        """The image axes the normal operator needs Fourier transforms along: F^H M F acts along the last axis
        only when every row of the mask is the same (Cartesian lines along the first axis), along the first only
        when every column is, along both otherwise (F = F_1 F_2 on separate axes, F_k^H F_k = I)."""
        if bool((self.mask == self.mask[:1]).all()):
            return (-1,)
        if bool((self.mask == self.mask[:, :1]).all()):
            return (-2,)
        return (-2, -1)

    def normal_map(self) -> Callable[[Tensor], Tensor]:
        """x -> A^H A x with the effective maps, the squared mask and the shifts computed once; valid while the
        operator's parameters stay as they are.

        With S = fftshift, F = S FFT S^-1 along `fourier_axes` only, and shifts being permutations,
        A^H A x = S(sum_c conj(S^-1 S_c) IFFT(S^-1(M^2) FFT(S^-1 S_c S^-1 x))): two un-centred transforms per
        coil and two shifts of the image instead of four of every coil image. Equal to `adjoint(forward(x))`
        to float rounding."""
        dims = self.fourier_axes()
        maps = torch.fft.ifftshift(self.effective_maps(), dim=dims)
        maps_conj = maps.conj()
        mask2 = torch.fft.ifftshift(self.mask * self.mask, dim=dims)

        def apply(x: Tensor) -> Tensor:
            self.check_image(x)
            z = maps * torch.fft.ifftshift(to_complex(x), dim=dims)[:, None]
            k = torch.fft.fftn(z, dim=dims, norm="ortho") * mask2
            v = (maps_conj * torch.fft.ifftn(k, dim=dims, norm="ortho")).sum(dim=1)
            return to_real(torch.fft.fftshift(v, dim=dims))
        return apply

    def row_eigenbasis(self) -> RowEigenbasis | None:
        """A^H A block-diagonalised where the mask is Cartesian lines (`fourier_axes` one axis); None for a 2-D mask.

        With lines along the first axis, A^H A acts on each image row on its own (F^H M F acts along the row
        only): G_h = sum_c D_ch^H P D_ch, P = F^H M^2 F (W x W), D_ch = diag(S_c[h, :]), i.e.
        G_h[i, j] = P[i, j] sum_c conj(S_c[h, i]) S_c[h, j], and G_h = Q diag(lam) Q^H (float64; H eigenproblems
        of size W per map batch, cost H W^3, cached until the operator's maps, phase, coil correction or mask
        change). Columns are handled by transposing. No gradient."""
        dims = self.fourier_axes()
        if len(dims) != 1:
            return None
        params = [self.maps, self.mask, self.phase] + ([self.coil_correction] if self.correction_size > 0 else [])
        key = tuple((id(t), t.data_ptr(), t._version) for t in params)
        cache = getattr(self, "_eigen_cache", None)
        if cache is None or cache[0] != key:
            with torch.no_grad():
                cols = dims == (-2,)
                maps = self.effective_maps().detach().to(torch.complex128)
                maps = maps.transpose(-1, -2) if cols else maps
                m = (self.mask[:, 0] if cols else self.mask[0]).to(torch.float64)
                n = m.numel()
                eye = torch.eye(n, dtype=torch.complex128, device=maps.device)
                shift = (lambda v: torch.fft.fftshift(v, dim=-1), lambda v: torch.fft.ifftshift(v, dim=-1))
                fwd = shift[0](torch.fft.fft(shift[1](eye), dim=-1, norm="ortho")) * m * m
                rows = shift[0](torch.fft.ifft(shift[1](fwd), dim=-1, norm="ortho"))  # rows[j] = P e_j
                gram = torch.einsum("bchi,bchj->bhij", maps.conj(), maps) * rows.T
                lam, q = torch.linalg.eigh(gram)
            self._eigen_cache = cache = (key, RowEigenbasis(cols, gram, lam, q))
        return cache[1]

    def eigen_svd(self, rtol: float = 1e-3) -> SVD | None:
        """A's exact SVD from `row_eigenbasis` where the mask is Cartesian lines; None for a 2-D mask.

        A^H A = V diag(s^2) V^H with V = blockdiag_h(Q_h), s = sqrt(lam); spectral coordinates [Re c, Im c] with
        c = Q^H x (the complex route of operators/dense.py: each complex singular vector v gives the real pair
        (v, i v)), U^T y = diag(1/s) V^T A^H y and U z = A V diag(1/s) z. Singular values below rtol max(s) count as
        zero, as in `dense_svd`; cost H W^3 instead of the dense (H W)^3. The SVD of the operator as given (no
        gradient, not refreshed when adaptation changes the operator afterwards)."""
        eig = self.row_eigenbasis()
        if eig is None:
            return None
        shape = eig.lam.shape[-2:]
        svd = complex_route_svd(self, lambda x: eig.to_basis(x).flatten(1).to(torch.complex64),
                                lambda c: eig.from_basis(c.reshape(-1, *shape)), eig.lam.sqrt().flatten(1).float(),
                                rtol)
        if svd.s.shape[0] == 1:  # one operator for the batch: s as (n,), which every batch size broadcasts with
            svd.s = svd.s[0]
        return svd

    def prox_solver(self) -> Callable[[Tensor, Tensor, Tensor], Tensor] | None:
        """(A^H y, z, rho (B,)) -> argmin_x ||A x - y||^2 + rho ||x - z||^2, solved directly where the mask is
        Cartesian lines (`row_eigenbasis`); None for a 2-D mask. No gradient.

        x = z + Q diag(1/(lam + rho)) Q^H (A^H y - G z): the exact solution, with the directions of lam below
        1e-10 max(lam) (the null space, where A^H y - G z is zero up to rounding) left at z."""
        eig = self.row_eigenbasis()
        if eig is None:
            return None
        keep = eig.lam > 1e-10 * eig.lam.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-300)

        def solve(aty: Tensor, z: Tensor, rho: Tensor) -> Tensor:
            self.check_image(z)
            with torch.no_grad():
                r = eig.to_basis(aty) - eig.lam * eig.to_basis(z)
                r = torch.where(keep, r / (eig.lam + rho.to(torch.float64).view(-1, 1, 1)), 0)
                return z + eig.from_basis(r)
        return solve

    def rss(self, y: Tensor) -> Tensor:
        """Root-sum-of-squares of the coil images as a zero-phase 2-channel image (B, 2, H, W)."""
        mag = rss(self.coil_images(y), dim=1)[:, 0]
        return to_real(torch.complex(mag, torch.zeros_like(mag)))


class SingleCoilMRI(MultiCoilMRI):
    """y = M F (exp(i phi) x) + n, one coil with S = 1; measurements (B, 1, H, W) complex.

    Exact SVD (the DDRM single-coil MRI case): in the real 2-channel representation V = F^H (V^T x =
    the k-space of x as a real (2, H, W) vector), s = M on both channels, U = exp(i phi) on the k-space
    grid. Only the global phase is adaptable (no coil-map correction).
    """

    def __init__(self, mask: Tensor, noise_std: float | Tensor = 0.0, batch: int = 1) -> None:
        super().__init__(torch.ones((1, 1, *mask.shape), dtype=torch.complex64, device=mask.device), mask, noise_std,
                         correction_size=0, batch=batch)

    def pinv(self, y: Tensor, n_iter: int = 0, tol: float = 0.0, damping: float = 0.0) -> Tensor:
        """Closed form: exp(-i phi) F^H (M / (M + damping)) y."""
        k = (y[:, 0] * self.mask / (self.mask + damping).clamp_min(1e-12))
        rot = torch.polar(torch.ones_like(self.phase), -self.phase).view(-1, 1, 1)
        return to_real(rot * ifft2c(k))

    def svd(self) -> SVD:
        _, h, w = self.image_shape
        s = self.mask.expand(2, h, w).reshape(-1)
        rot = lambda sign: torch.polar(torch.ones_like(self.phase), sign * self.phase).view(-1, 1, 1, 1)  # noqa: E731

        def vt(x: Tensor) -> Tensor:
            return to_real(fft2c(to_complex(x))).flatten(1)

        def v(z: Tensor) -> Tensor:
            return to_real(ifft2c(to_complex(z.reshape(-1, 2, h, w))))

        def u(z: Tensor) -> Tensor:
            return rot(1) * to_complex(z.reshape(-1, 2, h, w))[:, None]

        def ut(y: Tensor) -> Tensor:
            return to_real((rot(-1) * y)[:, 0]).flatten(1) * s

        return SVD(V=v, Vt=vt, U=u, Ut=ut, s=s)


__all__ = ["AdaptableMixin", "MultiCoilMRI", "RowEigenbasis", "SingleCoilMRI"]
