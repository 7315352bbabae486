"""One registry-driven battery over every registered prior: D(x, sigma) keeps the shape, is float32 and finite,
takes sigma as a float or a per-sample (B,) tensor alike, is deterministic, and treats each sample of a batch as
if it were alone (batches are for speed only, docs/design.md). Every prior the project registers has a case in CASES,
or test_every_registered_prior_is_in_the_battery fails naming it."""
from __future__ import annotations

import pytest
import torch

from benchmarks import registry
from inverse_problems.data.base import GaussianFieldDataset
from tests.helpers import assert_covered, tiny_checkpoint

torch.set_num_threads(1)


def shipped(folder: str, name: str = "model.pt") -> str:
    from priors.shipped import WEIGHTS

    return str(WEIGHTS.parent / folder / name)


# name -> options of registry.build("priors", name, ...), given a scratch folder (small and offline: the shipped
# weights, a tiny checkpoint, a small dataset)
CASES = {
    "gaussian": lambda tmp: dict(dataset=GaussianFieldDataset(size=8, channels=2, length=16), n=16),
    "gmm": lambda tmp: dict(dataset=GaussianFieldDataset(size=8, channels=2, length=16), n=16, components=2,
                            em_iters=2),
    "diffusers": lambda tmp: dict(path=shipped("phantom-brain-64", "")),  # a diffusers folder: unet/ + scheduler/
    "edm": lambda tmp: dict(path=shipped("phantom-dmi-32")),              # model.pt, its architecture in model.json
    "adm": lambda tmp: dict(path=str(tiny_checkpoint(tmp)[0])),           # a bare state dict, its flags beside it
    "phantom-brain-64": lambda tmp: {},
    "brain-64": lambda tmp: {},
    "knee-64": lambda tmp: {},
    "phantom-dmi-32": lambda tmp: {},
    "cardiac-seq-32": lambda tmp: {},
}


def test_every_registered_prior_is_in_the_battery():
    assert_covered("priors", CASES, "the prior battery (tests/priors/test_prior_battery.py CASES)")


@pytest.mark.parametrize("name", list(CASES))
def test_prior(name, tmp_path):
    prior = registry.build("priors", name, **CASES[name](tmp_path)).eval()
    channels = prior.channels
    h, w = prior.resolution or (8, 8)
    x = torch.randn(3, channels, h, w, generator=torch.Generator().manual_seed(0))
    sigmas = torch.tensor([0.05, 0.5, 2.0])
    with torch.no_grad():
        batch = prior.denoise(x, sigmas)
        assert batch.shape == x.shape and batch.dtype == torch.float32 and bool(torch.isfinite(batch).all()), name
        assert torch.equal(prior.denoise(x, sigmas), batch), f"{name}: D(x, sigma) is not deterministic"
        for i in range(3):  # each sample as if alone (a batched convolution may round differently: a tolerance)
            alone = prior.denoise(x[i:i + 1], sigmas[i:i + 1])
            torch.testing.assert_close(alone, batch[i:i + 1], rtol=1e-4, atol=1e-5, msg=f"{name}: sample {i}")
        # a float sigma is the same sigma for every sample
        torch.testing.assert_close(prior.denoise(x, 0.5), prior.denoise(x, torch.full((3,), 0.5)), rtol=1e-5,
                                   atol=1e-6, msg=name)
