"""The zero-filled (adjoint) reconstruction x = A^H y: the baseline every problem has."""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm
from inverse_problems.base import ForwardOperator
from priors.base import Prior


class ZeroFilled(Algorithm):
    """Zero-filled reconstruction A^H y (coil-combined with the given maps for multi-coil MRI)."""

    uses_prior = False

    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: torch.Generator | None,
            callback=None) -> Tensor:
        return operator.adjoint(y)
