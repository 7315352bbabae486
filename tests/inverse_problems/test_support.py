"""Pixels outside the coil-map support are in A's null space: every algorithm returns zero there."""
from __future__ import annotations

import torch

from algorithms.diffusion.diffpir import DiffPIR
from inverse_problems.operators.coils import birdcage_maps
from inverse_problems.operators.mri import MultiCoilMRI
from priors.analytic import GaussianPrior


def test_reconstruction_is_zero_outside_the_map_support():
    maps = birdcage_maps(4, (16, 16))
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[3:13, 2:14] = True
    op = MultiCoilMRI(maps * inside, torch.ones(16, 16), noise_std=0.01, correction_size=0)
    assert torch.equal(op.support()[0, 0].bool(), inside)
    assert MultiCoilMRI(maps, torch.ones(16, 16)).support() is None  # true birdcage maps see everything
    prior = GaussianPrior(torch.zeros(2, 16, 16), torch.ones(2, 16, 16), basis="pixel")
    g = torch.Generator().manual_seed(0)
    y = op.measure(torch.randn(3, 2, 16, 16, generator=g) * inside, g)
    out = DiffPIR(n_steps=5).reconstruct(y, op, prior, g).image
    assert out[..., ~inside].abs().max() == 0  # not prior samples where nothing was measured
    assert out[..., inside].abs().mean() > 0.1
