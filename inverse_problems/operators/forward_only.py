"""The forward-only operator contract: a simulator that offers y = A(x) and nothing else.

A black-box simulator (or a model too costly to differentiate) gives `forward` only: no adjoint, no autograd through
it, no SVD, no pseudo-inverse. `ForwardOnly(operator)` hands any operator of the suite over under that contract, so the
derivative-free solvers can be tested where the truth is known: `adjoint` (and what is built on it: `normal`, `pinv`)
raises `ForwardOnlyError`, and a backward pass through `forward` raises too. Algorithms read the contract from
`operator.forward_only` (algorithms.base.Algorithm.check refuses the others before any compute).

A forward-only operator that is linear (`linear=True`, the default for the suite's wrapped operators) can still be
written out as a matrix from n forward calls on the unit images (`probed_matrix`): the SMC samplers (FPS, MCG-diff),
which need A's SVD, use it on small images.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from inverse_problems.operators.base import SVD, ForwardOperator


class ForwardOnlyError(NotImplementedError):
    """Raised for anything a forward-only operator does not offer (adjoint, gradients, SVD-based solves)."""


class _NoBackward(torch.autograd.Function):
    """Identity on A(x) whose backward raises: autograd through a forward-only simulator is refused."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor) -> Tensor:
        return y.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        raise ForwardOnlyError("this problem's operator is forward-only: it has no gradient (no backward pass); use a "
                               "derivative-free solver")


class ForwardOnly(ForwardOperator):
    """`operator` behind the forward-only contract: y = A(x) (and `measure`) only; `adjoint` and backward raise."""

    forward_only = True

    def __init__(self, operator: ForwardOperator, linear: bool = True) -> None:
        super().__init__(operator.noise_std.detach().clone())
        self.inner = operator.requires_grad_(False)
        self.linear = linear
        self.image_shape = tuple(operator.image_shape)  # type: ignore[assignment]
        self.measurement_shape = tuple(operator.measurement_shape)
        self.measurement_dtype = operator.measurement_dtype

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            y = self.inner.forward(x.detach())
        return _NoBackward.apply(x, y) if x.requires_grad else y

    def adjoint(self, y: Tensor) -> Tensor:
        raise ForwardOnlyError(f"{type(self.inner).__name__} is handed over forward-only: it has no adjoint")

    def svd(self) -> SVD | None:
        return None

    def support(self) -> Tensor | None:
        return self.inner.support()

    @torch.no_grad()
    def probed_matrix(self, max_columns: int) -> MatrixOperator:
        """A as an explicit real matrix from forward calls on the n unit images (n = C H W <= max_columns), for a
        linear operator shared by the batch; a clear error otherwise."""
        n = math.prod(self.image_shape)
        if not self.linear:
            raise ForwardOnlyError("this forward-only operator is not declared linear: it has no matrix to probe")
        if self.inner.forward(torch.zeros((1, *self.image_shape), device=self.device)).shape[0] != 1:
            raise ForwardOnlyError("this forward-only operator differs per sample (its output for one image is a "
                                   "batch): probing writes out one matrix shared by the batch")
        if n > max_columns:
            raise ForwardOnlyError(f"probing a forward-only operator takes one forward call per image coordinate; "
                                   f"{n} coordinates is above the limit {max_columns} (algorithm.dense_max)")
        cols, chunk = [], 256
        for start in range(0, n, chunk):
            e = torch.eye(n, device=self.device)[start:start + chunk].reshape(-1, *self.image_shape)
            cols.append(flat_measurement(self.forward(e)))
        return MatrixOperator(torch.cat(cols).T.contiguous(), self)


def flat_measurement(y: Tensor) -> Tensor:
    """(B, m) real view of a batch of measurements (real and imaginary parts side by side for complex ones)."""
    return (torch.view_as_real(y) if y.is_complex() else y).reshape(y.shape[0], -1)


class MatrixOperator(ForwardOperator):
    """A written out as a real (m, n) matrix with the measurement layout of `like` (the probed operator), so that the
    dense SVD (inverse_problems.operators.dense) applies; `adjoint` is the matrix transpose."""

    def __init__(self, matrix: Tensor, like: ForwardOperator) -> None:
        super().__init__(like.noise_std.detach().clone())
        self.register_buffer("matrix", matrix)
        self.image_shape = tuple(like.image_shape)  # type: ignore[assignment]
        self.measurement_shape = tuple(like.measurement_shape)
        self.measurement_dtype = like.measurement_dtype

    def forward(self, x: Tensor) -> Tensor:
        out = x.reshape(x.shape[0], -1) @ self.matrix.T
        if self.measurement_dtype.is_complex:
            return torch.view_as_complex(out.reshape(x.shape[0], *self.measurement_shape, 2).contiguous())
        return out.reshape(x.shape[0], *self.measurement_shape)

    def adjoint(self, y: Tensor) -> Tensor:
        return (flat_measurement(y) @ self.matrix).reshape(y.shape[0], *self.image_shape)
