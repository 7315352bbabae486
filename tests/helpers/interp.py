"""Tiny `uvi-lite` networks and frame-interpolation instances for the algorithm and TTT tests."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from algorithms.networks.uvi import UviLite, UviLiteAlgorithm, save_interp_network
from inverse_problems.operators.random import SampleGenerators
from inverse_problems.problems.base import ProblemInstance
from inverse_problems.problems.interp4d import Interp4DProblem


def tiny_uvi(seed: int = 0, perturb: float = 0.1) -> UviLite:
    """A small UviLite with both auxiliary heads, every weight perturbed (the zero-started output convs too)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UviLite(flow_chans=2, flow_levels=1, feature_widths=(2, 4), refine_chans=2, aux=("rot", "mae"))
        with torch.no_grad():
            for p in net.parameters():
                p.add_(perturb * torch.randn_like(p))
    return net


def tiny_uvi_algorithm(root: Path, seed: int = 0) -> UviLiteAlgorithm:
    """uvi-lite loaded from a checkpoint of `tiny_uvi` written under root."""
    return UviLiteAlgorithm(path=str(save_interp_network(Path(root) / f"uvi-{seed}.pt", tiny_uvi(seed),
                                                         {"dataset": "phantom-cardiac-4d"})))


def sequences(n: int = 2, frames: int = 6, size: int = 16, seed: int = 0) -> Tensor:
    """(n, T, H, W) smooth random sequences in [0, 1]: a blob drifting over the frames."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size, size, generator=g), 5, 1, 2)
    shifts = [torch.roll(base, shifts=k, dims=-1) for k in range(frames)]
    return torch.cat(shifts, 1)


def interp_instance(x: Tensor, protocol: str = "endpoints") -> tuple[Interp4DProblem, ProblemInstance]:
    """The interp4d problem for x's shape and x measured by it (per-sample generators)."""
    prob = Interp4DProblem(size=x.shape[-1], frames=x.shape[1], protocol=protocol)
    return prob, prob.simulate(x, SampleGenerators.seeded(0, [f"s{i}" for i in range(x.shape[0])]))
