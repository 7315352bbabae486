"""Small exact toys for the adaptation and scheme tests: a phase-shifted single-coil MRI operator (`PhaseMRI`) with its
problem (`PhaseProblem`: measured with a true phase, reconstructed with phase 0), an exact Gaussian prior for it
(`phase_prior`), a DiffPIR-like sampler small enough for exact tests (`HQS`) and a list of images as a dataset."""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from algorithms.base import Algorithm, Step
from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.complex import to_complex, to_real
from inverse_problems.operators.linalg import conjugate_gradient, per_sample
from inverse_problems.problems.base import Problem
from priors.analytic import GaussianPrior
from priors.schedules import karras_sigmas


class PhaseMRI(ForwardOperator):
    """y = M F (e^{i phi} x): single-coil Cartesian MRI with an unknown global phase phi (an nn.Parameter)."""

    def __init__(self, mask: Tensor, phase: float = 0.0, noise_std: float = 0.0) -> None:
        super().__init__(noise_std)
        self.register_buffer("mask", mask.float())
        self.phase = nn.Parameter(torch.tensor(float(phase)), requires_grad=False)
        self.image_shape = (2, *mask.shape)
        self.measurement_shape = (1, *mask.shape)
        self.measurement_dtype = torch.complex64

    def adaptable_parameters(self) -> dict[str, nn.Parameter]:
        return {"phase": self.phase}

    def forward(self, x: Tensor) -> Tensor:
        rot = torch.polar(torch.ones_like(self.phase), self.phase)
        return (self.mask * torch.fft.fft2(rot * to_complex(x), norm="ortho")).unsqueeze(1)

    def adjoint(self, y: Tensor) -> Tensor:
        rot = torch.polar(torch.ones_like(self.phase), -self.phase)
        return to_real(rot * torch.fft.ifft2(self.mask * y[:, 0], norm="ortho"))


def phase_prior(size: int = 16, alpha: float = 3.0, imag_var: float = 1e-6) -> GaussianPrior:
    """Exact Gaussian prior: real part a power-law field, imaginary part (almost) zero."""
    ky = torch.fft.fftfreq(size).view(-1, 1)
    kx = torch.fft.fftfreq(size).view(1, -1)
    k = torch.sqrt(kx**2 + ky**2).clamp_min(1.0 / size)
    spec = k ** (-alpha)
    spec = 0.05 * spec / spec.mean()
    var = torch.stack([spec, torch.full_like(spec, imag_var)])
    mean = torch.stack([torch.full((size, size), 0.5), torch.zeros(size, size)])
    return GaussianPrior(mean, var, basis="fourier")


def sampling_mask(size: int = 16, keep: float = 0.5, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(size, size, generator=g) < keep).float()
    mask[0, 0] = 1.0
    return mask


class HQS(Algorithm):
    """Annealed half-quadratic splitting: x̂0 = D(x, sigma); TTA step; x0 = argmin ||A x - y||^2 + rho||x - x̂0||^2
    (CG); x = x0 + sigma_next * eps. A DiffPIR-like sampler, small enough for exact tests."""

    def __init__(self, steps: int = 20, sigma_max: float = 2.0, sigma_min: float = 0.01, lam: float = 1.0) -> None:
        super().__init__()
        self.steps, self.sigma_max, self.sigma_min, self.lam = steps, sigma_max, sigma_min, lam

    @torch.no_grad()
    def run(self, y, operator, prior, generator, callback):
        sig = karras_sigmas(self.steps, self.sigma_max, self.sigma_min).to(y.real.device)
        x = sig[0] * torch.randn((y.shape[0], *operator.image_shape), generator=generator, device=y.real.device)
        x0 = x
        for i in range(self.steps):
            s = sig[i].expand(y.shape[0])
            xhat = self.denoise(prior, x, s)
            xhat = self.step(callback, Step(i, self.steps, s, x, xhat, y, operator, prior))
            noise = operator.noise_std.detach()
            rho = self.lam * (noise.clamp_min(1e-3) ** 2) / s**2
            x0 = conjugate_gradient(lambda v: operator.normal(v) + per_sample(rho, v) * v,
                                    operator.adjoint(y) + per_sample(rho, xhat) * xhat, x0=xhat, n_iter=20)
            x = self.monitor.check(i, x0 + sig[i + 1] * torch.randn(x0.shape, generator=generator))
        return x0


class PhaseProblem(Problem):
    """Measure with phase `true_phase`; reconstruct with the nominal phase 0 (an operator shift)."""

    default_dataset = None
    default_prior = None

    def __init__(self, size: int = 16, true_phase: float = 0.4, noise_std: float = 1e-3) -> None:
        self.image_shape = (2, size, size)
        self.mask = sampling_mask(size)
        self.true_phase, self.noise_std = true_phase, noise_std

    def acquisition_operator(self, x, generator=None):
        return PhaseMRI(self.mask, self.true_phase, self.noise_std)

    def reconstruction_operator(self, y, true_operator):
        op = copy.deepcopy(true_operator)
        with torch.no_grad():
            op.phase.zero_()
        return op


class ListDataset:
    """A fixed list of images as a dataset."""

    def __init__(self, images: Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"id": f"toy-{i}", "image": self.images[i]}
