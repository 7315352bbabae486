"""The prior interface (docs/design.md, "Diffusion parametrisation").

A noisy image is x = x0 + sigma * eps; a prior exposes the Tweedie denoiser
D(x, sigma) = E[x0 | x], and the score is (D(x, sigma) - x) / sigma^2 (Karras et al. 2022).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import Tensor, nn

# run.precision: the dtype autocast runs the network in (None: float32, no autocast)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MEMORY_FORMATS = ("contiguous", "channels_last")


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
    # how `network` runs the denoiser's network (set by `set_execution`): autocast precision and memory format
    precision: str = "fp32"
    memory_format: str = "contiguous"
    # the attribute that holds the network (`compile_network` compiles it); None: the prior has none
    network_attr: str | None = None
    # where it was trained (priors.domain.SourceDomain; a shipped prior's from its metadata.json); None: fitted to no
    # data set (analytic), so no target is in distribution for it
    source_domain = None

    def set_execution(self, precision: str = "fp32", memory_format: str = "contiguous") -> "Prior":
        """How the network runs: `precision` fp32 | bf16 | fp16 (torch.autocast around the network call only;
        its input and output, and so every solver's state, stay float32) and `memory_format` contiguous |
        channels_last (the network's 4-D weights and inputs in NHWC layout; the output is returned contiguous)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)} (run.precision), got {precision!r}")
        if memory_format not in MEMORY_FORMATS:
            raise ValueError(f"memory_format must be one of {MEMORY_FORMATS} (run.memory_format), got {memory_format!r}")
        self.precision, self.memory_format = precision, memory_format
        layout = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
        net = getattr(self, self.network_attr) if self.network_attr else None
        if isinstance(net, nn.Module):  # a prior without a network (analytic) is left as it is
            net.to(memory_format=layout)
        return self

    def compile_network(self) -> None:
        """torch.compile the network in place (`nn.Module.compile`: parameter names, and so the weights'
        fingerprint, are unchanged); the first calls at each new input shape pay the compilation."""
        net = getattr(self, self.network_attr) if self.network_attr else None
        if not isinstance(net, nn.Module):
            raise ValueError(f"{type(self).__name__} has no network to compile (prior.compile=true needs a network prior)")
        net.compile()

    def network(self, fn: Callable[..., Any], x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """fn(x, *args, **kwargs), the network call, in this prior's memory format and precision; the result as
        x's dtype, contiguous."""
        if self.memory_format == "channels_last" and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = PRECISIONS[self.precision]
        ctx = torch.autocast(device_type=x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            out = fn(x, *args, **kwargs)
        out = getattr(out, "sample", out)
        if isinstance(out, tuple):
            out = out[0]
        return out.to(x.dtype).contiguous()

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
