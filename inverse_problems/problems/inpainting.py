"""Random inpainting as a problem: the exact-test yardstick (Bernoulli mask, Gaussian noise).
"""
from __future__ import annotations

import torch
from torch import Tensor

from inverse_problems.operators.inpainting import Inpainting

from inverse_problems.problems.base import Problem, check_int, check_number


class InpaintingProblem(Problem):
    """Random inpainting: a fraction `keep` of pixels observed, Gaussian noise `noise_std`; `forward_only` hands the
    reconstruction a forward-only operator (no adjoint, no gradient: the derivative-free solvers' test problem)."""

    def __init__(self, size: int = 32, channels: int = 1, keep: float = 0.5, noise_std: float = 0.01,
                 mask_seed: int = 0, forward_only: bool = False) -> None:
        size, channels = check_int("size", size, 2), check_int("channels", channels, 1)
        keep, noise_std = check_number("keep", keep), check_number("noise_std", noise_std, 0.0)
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {keep}")
        self.image_shape = (channels, size, size)
        g = torch.Generator().manual_seed(mask_seed)
        self.mask = (torch.rand((size, size), generator=g) < keep).float()
        self.noise_std = noise_std
        self.forward_only = bool(forward_only)

    def acquisition_operator(self, x: Tensor, generator: torch.Generator | None = None) -> Inpainting:
        return Inpainting(self.mask, self.image_shape[0], self.noise_std).to(x.device)

    def info(self, operator: Inpainting) -> dict:
        return {"observed_fraction": float(operator.mask.mean())}
