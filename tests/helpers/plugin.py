"""The test plugin: a third-party distribution's package (a prior, an algorithm and a problem) and its entry points;
tests/conftest.py's `plugin_path` fixture writes it, with a dist-info, on a path of its own."""
from __future__ import annotations

# written against the plugin API's first import paths (the README's example): priors.base, algorithms.base and
# inverse_problems.base stay importable for published plugins
PLUGIN_CODE = '''
"""A third-party plugin used by the tests: a prior, an algorithm and a problem."""
import time

import torch
from priors.base import Prior
from algorithms.base import Algorithm
from inverse_problems.base import ForwardOperator, Problem, ProblemInstance


class HalfPrior(Prior):
    """Test plugin prior: D(x, sigma) = gain * x."""

    def __init__(self, gain: float = 0.5, channels: int = 1):
        super().__init__()
        self.gain = gain
        self.channels = channels

    def denoise(self, x, sigma):
        return self.gain * x


class DenoiseAdjoint(Algorithm):
    """Test plugin algorithm: one denoiser call on A^H y (optionally slow, for kill tests)."""

    def __init__(self, sigma: float = 0.1, delay: float = 0.0):
        super().__init__()
        self.sigma = sigma
        self.delay = delay

    def run(self, y, operator, prior, generator, callback=None):
        time.sleep(self.delay)
        return self.denoise(prior, operator.adjoint(y), self.sigma)


class Attenuation(ForwardOperator):
    """y = gain * x: self-adjoint, the measurement shaped as the image."""

    def __init__(self, gain, image_shape, noise_std=0.0):
        super().__init__(noise_std)
        self.gain = gain
        self.image_shape = self.measurement_shape = tuple(image_shape)

    def forward(self, x):
        return self.gain * x

    def adjoint(self, y):
        return self.gain * y


class AttenuationProblem(Problem):
    """Test plugin problem: y = gain * x + noise."""

    default_dataset = "grf"
    default_prior = None

    def __init__(self, size: int = 16, gain: float = 0.5, noise_std: float = 0.01):
        self.image_shape = (1, size, size)
        self.gain, self.noise_std = gain, noise_std

    def acquisition_operator(self, x, generator=None):
        return Attenuation(self.gain, self.image_shape, self.noise_std).to(x.device)

    def simulate(self, x, generator=None) -> ProblemInstance:
        inst = super().simulate(x, generator)
        return ProblemInstance(inst.y, inst.operator, inst.true_operator, inst.scale, {**inst.info, "gain": self.gain})
'''

PLUGIN_ENTRY_POINTS = """\
[medtta_bench.priors]
half = medtta_test_plugin:HalfPrior

[medtta_bench.algorithms]
denoise-adjoint = medtta_test_plugin:DenoiseAdjoint

[medtta_bench.problems]
attenuation = medtta_test_plugin:AttenuationProblem
"""
