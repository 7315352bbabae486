"""The zero-filled reconstruction: the baseline every problem has.

Generic operators: the adjoint image x = A^H y. Multi-coil MRI (an operator with `rss` and more than
one coil): the root-sum-of-squares of the zero-filled coil images, sqrt(sum_c |F^H M y_c|^2), as a
complex image with zero phase (2 channels), the usual multi-coil baseline (it needs no coil maps).
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.base import Algorithm
from inverse_problems.operators.base import ForwardOperator
from priors.base import Prior


class ZeroFilled(Algorithm):
    """Zero-filled reconstruction: A^H y, or the root-sum-of-squares of the coil images for multi-coil MRI."""

    uses_prior = False
    project_support = False  # root-sum-of-squares uses no coil maps

    @torch.no_grad()
    def run(self, y: Tensor, operator: ForwardOperator, prior: Prior | None, generator: torch.Generator | None,
            callback=None) -> Tensor:
        if getattr(operator, "coils", 1) > 1 and hasattr(operator, "rss"):
            return operator.rss(y)
        return operator.adjoint(y)
