"""The prior interface (DESIGN.md, "Diffusion parametrisation").

A noisy image is x = x0 + sigma * eps; a prior exposes the Tweedie denoiser
D(x, sigma) = E[x0 | x], and the score is (D(x, sigma) - x) / sigma^2 (Karras et al. 2022).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def sigma_like(sigma: float | Tensor, x: Tensor) -> Tensor:
    """A noise level as a (B,) tensor on x's device."""
    s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
    return s.expand(x.shape[0]).clone() if s.ndim == 0 else s.reshape(x.shape[0])


class Prior(nn.Module):
    """Base class of every prior: `denoise(x, sigma)` with sigma a float or a (B,) tensor.

    `channels` is C (2 for complex MR images), `resolution` is (H, W) or None when the denoiser
    takes any size, and [sigma_min, sigma_max] the noise levels it was trained for.
    """

    channels: int = 1
    resolution: tuple[int, int] | None = None
    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        raise NotImplementedError

    def score(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """grad log p_sigma(x) = (D(x, sigma) - x) / sigma^2."""
        s = sigma_like(sigma, x).view(-1, 1, 1, 1)
        return (self.denoise(x, sigma) - x) / s**2

    def check_compatible(self, image_shape: tuple[int, int, int], problem: str = "the problem") -> None:
        """Refuse, before any compute, a prior whose channels or resolution do not fit the images."""
        c, h, w = image_shape
        mine = f"({self.channels}, {'any' if self.resolution is None else self.resolution[0]}, " \
               f"{'any' if self.resolution is None else self.resolution[1]})"
        if c != self.channels or (self.resolution is not None and tuple(self.resolution) != (h, w)):
            raise ValueError(
                f"prior {type(self).__name__} takes images of shape (C, H, W) = {mine} but {problem} has "
                f"images of shape {tuple(image_shape)}; choose a prior trained for this shape "
                f"(`bench list priors`) or set the problem's size to match"
            )
