"""The forward-operator interface (docs/design.md, "Operators").

A forward operator maps real images (B, C, H, W) to measurements (real or complex tensors of a
declared per-sample shape). Measurements carry additive Gaussian noise of standard deviation
`noise_std` per real component (real and imaginary parts each N(0, noise_std^2)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from inverse_problems.operators.linalg import batch_norm, conjugate_gradient, per_sample
from inverse_problems.operators.random import Randomness, randn, randn_like


@dataclass
class SVD:
    """A = U diag(s) V^T written out as callables on an n-vector of spectral coordinates.

    Spectral vectors are real, shape (B, n) with n = C*H*W (the image dimension); `s` has shape (n,)
    or (B, n) and is zero on the null space. `Ut(y)` returns U^T y in those coordinates (zero where
    s = 0), `U(z)` maps back to measurement space, so A x = U(s * Vt(x)). After DDRM's H_functions.
    """

    V: Callable[[Tensor], Tensor]
    Vt: Callable[[Tensor], Tensor]
    U: Callable[[Tensor], Tensor]
    Ut: Callable[[Tensor], Tensor]
    s: Tensor


class ForwardOperator(nn.Module):
    """y = A x + n, with A written out explicitly (forward and adjoint, never autograd).

    Subclasses set `image_shape` (C, H, W), `measurement_shape` and `measurement_dtype`, and
    implement `forward` and `adjoint`. Adaptable physical parameters are `nn.Parameter`s.
    """

    image_shape: tuple[int, int, int]
    measurement_shape: tuple[int, ...]
    measurement_dtype: torch.dtype = torch.float32
    # False: `forward` is a non-linear map (e.g. VLBI closure quantities); it has no adjoint, normal or SVD, solvers
    # that need them refuse it, and `residual_gradient` differentiates it by autograd
    linear: bool = True

    def __init__(self, noise_std: float | Tensor = 0.0) -> None:
        super().__init__()
        self.register_buffer("noise_std", torch.as_tensor(noise_std, dtype=torch.float32).clone())

    @property
    def device(self) -> torch.device:
        """The device the operator's tensors live on."""
        return self.noise_std.device

    def set_noise_std(self, value: float | Tensor) -> None:
        """Replace the noise level (a float or a (B,) tensor), keeping it a Parameter if it is one."""
        value = torch.as_tensor(value, dtype=torch.float32, device=self.device).detach().clone()
        if isinstance(self.noise_std, nn.Parameter):
            self.noise_std = nn.Parameter(value)
        else:
            self.noise_std = value

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102 - A x
        raise NotImplementedError

    def adjoint(self, y: Tensor) -> Tensor:
        """A^H y, written out."""
        raise NotImplementedError

    def normal(self, x: Tensor) -> Tensor:
        """A^H A x."""
        return self.adjoint(self.forward(x))

    def normal_map(self) -> Callable[[Tensor], Tensor]:
        """x -> A^H A x with whatever does not depend on x computed once, for loops that apply the normal operator
        many times (CG, Langevin); valid while the operator's parameters stay as they are. By default `normal`."""
        return self.normal

    def residual_gradient(self, x: Tensor, y: Tensor) -> Tensor:
        """grad_x ||A(x) - y||^2 / 2: A^H (A x - y) for a linear operator, by autograd for a non-linear one."""
        if self.linear:
            return self.normal(x) - self.adjoint(y)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            r = self.forward(x) - y
            return torch.autograd.grad(0.5 * (r.abs() ** 2).sum(), x)[0]

    def pinv(self, y: Tensor, n_iter: int = 100, tol: float = 1e-6, damping: float = 0.0) -> Tensor:
        """Least-squares solution of (A^H A + damping I) x = A^H y by conjugate gradient."""
        normal = self.normal_map()
        return conjugate_gradient(lambda v: normal(v) + damping * v, self.adjoint(y), n_iter=n_iter, tol=tol)

    def svd(self) -> SVD | None:
        """The operator's exact SVD, or None where it has none (DDRM-family methods need one)."""
        return None

    def support(self) -> Tensor | None:
        """Image-domain mask (B or 1, 1, H, W) of the pixels the measurements can see, or None for all.

        Pixels outside it are in A's null space by construction (e.g. where ESPIRiT maps are zero):
        algorithms return zero there, as SENSE does, instead of whatever the prior fills in.
        """
        return None

    def noise(self, like: Tensor, generator: Randomness = None) -> Tensor:
        """Gaussian noise of std `noise_std` per real component, shaped like a measurement (per-sample
        generators: sample k draws its real, then its imaginary part from its own generator)."""
        n = torch.complex(randn_like(like, generator), randn_like(like, generator)) if like.is_complex() \
            else randn_like(like, generator)
        return per_sample(self.noise_std.to(like.device), n) * n

    def measure(self, x: Tensor, generator: Randomness = None) -> Tensor:
        """A x + noise."""
        y = self.forward(x)
        return y + self.noise(y, generator)

    def data_misfit(self, x: Tensor, y: Tensor) -> Tensor:
        """Relative data misfit ||A x - y|| / ||y||, shape (B,)."""
        return batch_norm(self.forward(x) - y) / batch_norm(y).clamp_min(1e-30)

    def check_image(self, x: Tensor) -> None:
        """Raise a ValueError naming both shapes when x is not a batch of this operator's images."""
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(
                f"{type(self).__name__} takes images of shape (B, {', '.join(map(str, self.image_shape))}), "
                f"got {tuple(x.shape)}"
            )

    @torch.no_grad()
    def squared_norm(self, batch: int = 1, n_iter: int = 50, generator: Randomness = None) -> Tensor:
        """Per-sample ||A||^2 (the largest eigenvalue of A^H A, the Lipschitz constant of the data-term
        gradient) by power iteration, shape (batch,); `batch` matches per-sample operator parameters.
        Without a generator every sample starts from one fixed vector (seed 0), so no sample's value
        depends on the batch it is in."""
        if generator is None:
            start = torch.Generator().manual_seed(0)
            x = randn((1, *self.image_shape), start).to(self.device).expand(batch, *self.image_shape)
        else:
            x = randn((batch, *self.image_shape), generator, self.device)
        for _ in range(n_iter):
            x = self.normal(x)
            x = x / per_sample(batch_norm(x).clamp_min(1e-30), x)
        return batch_norm(self.normal(x))

    def norm(self, n_iter: int = 50, generator: Randomness = None) -> float:
        """Operator norm ||A||_2 (the largest over a batch of per-sample operators)."""
        batch = self.noise_std.numel() if self.noise_std.ndim else 1
        return float(self.squared_norm(batch, n_iter, generator).max().sqrt())
