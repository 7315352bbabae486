"""Natural-image restoration as DPS / DDRM / DAPS / InverseBench score FFHQ and ImageNet priors.

RGB images in [-1, 1] (the range those priors were trained on, so measurements are NOT rescaled:
`measurement_scale` is 1), Gaussian noise sigma_y = 0.05 by default (Chung et al. 2023, DPS, Sec. 4):

- `inpainting-box`: a box of `box` x the side (128 of 256 px) removed, centred or at a seeded random position;
- `inpainting-random`: a fraction 1 - `keep` of the pixels removed (70 %), one seeded mask;
- `super-resolution`: antialiased bicubic downsampling by `factor` (4x), separable, exact SVD;
- `deblur-gaussian`: a `kernel_size`^2 Gaussian blur of width `sigma` (61 taps, sigma 3.0) with zero padding,
  separable, exact SVD;
- `deblur-motion`: a 61 x 61 motion-blur kernel (intensity 0.5), seeded, or read from a file; zero padding.
"""
from __future__ import annotations

import torch
from torch import Tensor

from inverse_problems.operators.base import ForwardOperator

from inverse_problems.problems.base import Problem, check_int, check_number
from inverse_problems.operators.convolution import Convolution, load_kernel, motion_kernel
from inverse_problems.operators.inpainting import Inpainting
from inverse_problems.operators.separable import SeparableOperator, bicubic_matrix, gaussian_blur_matrix


class NaturalImageProblem(Problem):
    """Shared options: `size` (square), `channels` (3), `noise_std` (sigma_y on the [-1, 1] scale)."""
    ssim_convention = "gaussian"  # natural images: Wang et al.'s 11 x 11 Gaussian-window SSIM, not fastMRI's

    def __init__(self, size: int, channels: int, noise_std: float) -> None:
        size, channels = check_int("size", size, 2), check_int("channels", channels, 1)
        self.noise_std = check_number("noise_std", noise_std, 0.0)
        self.image_shape = (channels, size, size)

    @torch.no_grad()
    def measurement_scale(self, y: Tensor, operator: ForwardOperator, percentile: float = 0.99) -> Tensor:
        """1 for every sample: the images already are on the prior's [-1, 1] scale."""
        return torch.ones(y.shape[0], device=y.device)


class MaskedProblem(NaturalImageProblem):
    """Inpainting with one (H, W) mask `self.mask` for every image and channel."""

    mask: Tensor

    def acquisition_operator(self, x: Tensor, generator: torch.Generator | None = None) -> Inpainting:
        return Inpainting(self.mask, self.image_shape[0], self.noise_std).to(x.device)

    def info(self, operator: Inpainting) -> dict:
        return {"observed_fraction": float(operator.mask.mean())}


class BoxInpaintingProblem(MaskedProblem):
    """Box inpainting: a square of side round(box * size) is unobserved (centred, or seeded random with
    `position=random`, at least 1/16 of the side from the border as DPS's 16 px in 256)."""

    def __init__(self, size: int = 256, channels: int = 3, box: float = 0.5, position: str = "center",
                 noise_std: float = 0.05, mask_seed: int = 0) -> None:
        super().__init__(size, channels, noise_std)
        box = check_number("box", box)
        if not 0 < box < 1:
            raise ValueError(f"box is the removed square's side as a fraction of the image side, in (0, 1); got {box}")
        if position not in ("center", "random"):
            raise ValueError(f"position must be 'center' or 'random', got {position!r}")
        side = max(1, round(box * size))
        if position == "center":
            top = left = (size - side) // 2
        else:
            margin = size // 16
            hi = max(margin, size - side - margin)
            g = torch.Generator().manual_seed(mask_seed)
            top, left = (int(v) for v in torch.randint(margin, hi + 1, (2,), generator=g))
        self.mask = torch.ones(size, size)
        self.mask[top:top + side, left:left + side] = 0

class RandomInpaintingProblem(MaskedProblem):
    """Random inpainting: each pixel (all channels) observed with probability `keep` (0.3: 70 % missing), one seeded mask."""

    def __init__(self, size: int = 256, channels: int = 3, keep: float = 0.3, noise_std: float = 0.05,
                 mask_seed: int = 0) -> None:
        super().__init__(size, channels, noise_std)
        keep = check_number("keep", keep)
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {keep}")
        g = torch.Generator().manual_seed(mask_seed)
        self.mask = (torch.rand((size, size), generator=g) < keep).float()


class SuperResolutionProblem(NaturalImageProblem):
    """Super-resolution: y = antialiased bicubic downsampling by `factor` (torch / PIL's rule) + noise."""

    def __init__(self, size: int = 256, channels: int = 3, factor: int = 4, noise_std: float = 0.05) -> None:
        super().__init__(size, channels, noise_std)
        factor = check_int("factor", factor, 1)
        if size % factor:
            raise ValueError(f"factor {factor} must divide the image size {size} (e.g. size=256, factor=4)")
        self.matrix = bicubic_matrix(size, factor)

    def acquisition_operator(self, x: Tensor, generator: torch.Generator | None = None) -> SeparableOperator:
        return SeparableOperator(self.matrix, self.matrix, self.image_shape[0], self.noise_std).to(x.device)


class GaussianDeblurProblem(NaturalImageProblem):
    """Gaussian deblurring: a separable kernel_size^2 Gaussian of width `sigma` px, zero padding, + noise."""

    def __init__(self, size: int = 256, channels: int = 3, sigma: float = 3.0, kernel_size: int = 61,
                 noise_std: float = 0.05) -> None:
        super().__init__(size, channels, noise_std)
        sigma, kernel_size = check_number("sigma", sigma), check_int("kernel_size", kernel_size, 1)
        self.matrix = gaussian_blur_matrix(size, sigma, kernel_size)

    def acquisition_operator(self, x: Tensor, generator: torch.Generator | None = None) -> SeparableOperator:
        return SeparableOperator(self.matrix, self.matrix, self.image_shape[0], self.noise_std).to(x.device)


class MotionDeblurProblem(NaturalImageProblem):
    """Motion deblurring: one motion-blur kernel for every image and channel, 'same' convolution, zero padding.

    The kernel is `kernel` (a .npy / .pt file, e.g. the kernel a paper's run used) or
    convolution.motion_kernel(kernel_size, intensity, kernel_seed).
    """

    def __init__(self, size: int = 256, channels: int = 3, kernel_size: int = 61, intensity: float = 0.5,
                 kernel_seed: int = 0, kernel: str | None = None, noise_std: float = 0.05) -> None:
        super().__init__(size, channels, noise_std)
        self.kernel = load_kernel(kernel) if kernel is not None else motion_kernel(
            check_int("kernel_size", kernel_size, 3), check_number("intensity", intensity, 0.0), kernel_seed)

    def acquisition_operator(self, x: Tensor, generator: torch.Generator | None = None) -> Convolution:
        return Convolution(self.kernel, self.image_shape, self.noise_std).to(x.device)
