"""Re-subsampling of acquired k-space for self-supervised network adaptation (held-out sets, SSDU, Noisier2Noise).

Every split here is drawn from the *acquired* samples only (the operator's mask Omega), never from the target:

- `holdout_split`: a uniformly drawn fraction of Omega held out (DIP-TTT, SST early stopping);
- `ssdu_split`: Omega = Theta + Lambda, |Lambda| = rho |Omega|, Lambda drawn without replacement with Gaussian
  weights exp(-(ky^2 + kx^2) / (2 (N/4)^2)) around the k-space centre, the central 4x4 block kept in Theta
  (Yaman et al., MRM 2020, "Gaussian selection");
- `nr2n_submask`: the Noisier2Noise sub-mask Lambda (Bernoulli q outside the ACS, the ACS kept) and the
  correction K = (1 - p) / (1 - p q) (Millard & Chiew, 2023), with p the acquisition density of Omega.

Masks are (B, 1, H, W) {0, 1} tensors on the centred k-space grid (one per sample, broadcast over coils).
`SubsampledOperator` restricts an operator to such a per-sample sub-mask (M_Lambda A, adjoint A^H M_Lambda);
`SampleOperator` takes some samples of a batched operator; `unmasked` gives the operator on the full grid
(F S x everywhere, for the Noisier2Noise correction). Randomness comes from per-sample generators
(inverse_problems.operators.random), so a sample's split does not depend on its batch.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from inverse_problems.operators.base import ForwardOperator
from inverse_problems.operators.masks import acs_region
from inverse_problems.operators.random import Randomness, rand


def acquired_mask(operator: ForwardOperator) -> Tensor:
    """Omega: the operator's acquired k-space samples, (H, W) or (B, 1, H, W) in {0, 1}.

    Network test-time adaptation re-subsamples k-space, so it needs an operator with a sampling `mask`
    (cs_mri's MultiCoilMRI/SingleCoilMRI, or the wrappers of this module)."""
    mask = getattr(operator, "mask", None)
    if not isinstance(mask, Tensor):
        raise ValueError(f"network test-time adaptation re-subsamples acquired k-space, but the operator "
                         f"{type(operator).__name__} has no sampling `mask`; use a Cartesian MRI problem (cs_mri)")
    return mask


def batch_mask(operator: ForwardOperator, batch: int) -> Tensor:
    """Omega as a (B, 1, H, W) float mask."""
    mask = acquired_mask(operator).float()
    if mask.ndim == 2:
        mask = mask[None, None]
    return mask.expand(batch, 1, *mask.shape[-2:]).clone()


class SubsampledOperator(ForwardOperator):
    """M_keep A: the operator restricted to a per-sample sub-mask `keep` (B or 1, 1, H, W) of its acquired samples;
    adjoint A^H M_keep (written out through the base's adjoint). A measurement y of the base becomes one of this
    operator by M_keep y; samples outside Omega are refused (they would read as measured zeros)."""

    def __init__(self, base: ForwardOperator, keep: Tensor) -> None:
        super().__init__(base.noise_std.detach())
        omega = acquired_mask(base).float().to(keep.device)
        if keep.ndim != 4 or keep.shape[1] != 1 or tuple(keep.shape[-2:]) != tuple(omega.shape[-2:]):
            raise ValueError(f"keep must be (B, 1, H, W) with (H, W) = {tuple(omega.shape[-2:])}, "
                             f"got {tuple(keep.shape)}")
        if bool((keep.float() > (omega if omega.ndim == 4 else omega[None, None])).any()):
            raise ValueError("a sub-mask may keep acquired k-space samples only (keep <= the operator's mask)")
        self.base = base
        self.register_buffer("keep", keep.float())
        self.image_shape = base.image_shape
        self.measurement_shape = base.measurement_shape
        self.measurement_dtype = base.measurement_dtype

    @property
    def mask(self) -> Tensor:
        """The acquired samples of this operator: Omega restricted to `keep`, (B, 1, H, W)."""
        omega = acquired_mask(self.base).float()
        return self.keep * (omega if omega.ndim == 4 else omega[None, None])

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) * self.keep

    def adjoint(self, y: Tensor) -> Tensor:
        return self.base.adjoint(y * self.keep)

    def support(self) -> Tensor | None:
        return self.base.support()


class SampleOperator(ForwardOperator):
    """The samples `index` of a batched operator (per-sample coil maps, phases, masks): a batch of len(index)
    images is placed at those rows of an otherwise zero batch of `batch`, so every per-sample parameter of the
    base applies exactly (the base is linear and acts on each sample separately)."""

    def __init__(self, base: ForwardOperator, index: list[int], batch: int) -> None:
        super().__init__(base.noise_std.detach())
        if not index or min(index) < 0 or max(index) >= batch:
            raise ValueError(f"sample indices {index} are not in a batch of {batch}")
        self.base, self.batch = base, batch
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long))
        self.image_shape = base.image_shape
        self.measurement_shape = base.measurement_shape
        self.measurement_dtype = base.measurement_dtype

    def _embed(self, v: Tensor) -> Tensor:
        if self.batch == 1:
            return v
        return v.new_zeros((self.batch, *v.shape[1:])).index_copy(0, self.index.to(v.device), v)

    def _take(self, v: Tensor) -> Tensor:
        return v if self.batch == 1 else v.index_select(0, self.index.to(v.device))

    @property
    def mask(self) -> Tensor:
        mask = acquired_mask(self.base)
        return self._take(mask) if mask.ndim == 4 and mask.shape[0] == self.batch else mask

    def forward(self, x: Tensor) -> Tensor:
        return self._take(self.base(self._embed(x)))

    def adjoint(self, y: Tensor) -> Tensor:
        return self._take(self.base.adjoint(self._embed(y)))

    def support(self) -> Tensor | None:
        s = self.base.support()
        return self._take(s) if s is not None and s.shape[0] == self.batch else s


def unmasked(operator: ForwardOperator) -> ForwardOperator:
    """The operator on the full k-space grid (mask of ones): F S x at every sample, for corrections that need the
    network's k-space where nothing was acquired. The given operator is left as it is."""
    if isinstance(operator, SubsampledOperator):
        return unmasked(operator.base)
    if isinstance(operator, SampleOperator):
        return SampleOperator(unmasked(operator.base), operator.index.tolist(), operator.batch)
    mask = acquired_mask(operator)
    full = copy.deepcopy(operator)
    full.mask = torch.ones_like(mask)
    return full


def restrict(operator: ForwardOperator, keep: Tensor) -> ForwardOperator:
    """M_keep A for a (B, 1, H, W) sub-mask of the acquired samples."""
    return SubsampledOperator(operator, keep)


def _top_k(keys: Tensor, allowed: Tensor, counts: Tensor) -> Tensor:
    """Per sample, the `counts[b]` allowed positions with the largest keys, as a (B, 1, H, W) mask."""
    b = keys.shape[0]
    flat = torch.where(allowed.reshape(b, -1) > 0, keys.reshape(b, -1), torch.full_like(keys.reshape(b, -1), -math.inf))
    order = flat.argsort(dim=1, descending=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand(b, -1))
    return (rank < counts.view(-1, 1)).reshape(allowed.shape).float() * (allowed > 0).float()


def holdout_split(omega: Tensor, fraction: float, generator: Randomness) -> tuple[Tensor, Tensor]:
    """(train, held): round(fraction |Omega_b|) acquired samples of each sample b held out, uniformly at random;
    train = Omega - held. Both are (B, 1, H, W) and disjoint, held within Omega."""
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    counts = (omega.flatten(1).sum(1) * fraction).round().clamp_min(1).long()
    held = _top_k(rand(omega.shape, generator, omega.device), omega, counts)
    return omega - held, held


def centre_block(shape: tuple[int, int], size: int, device: torch.device | str | None = None) -> Tensor:
    """(H, W) mask of the central size x size block of a centred k-space (DC at (H // 2, W // 2))."""
    h, w = shape
    block = torch.zeros(h, w, device=device)
    r0, c0 = max(h // 2 - size // 2, 0), max(w // 2 - size // 2, 0)
    block[r0:r0 + size, c0:c0 + size] = 1
    return block


def ssdu_split(omega: Tensor, rho: float, generator: Randomness, acs: int = 4, std: float | None = 0.25
               ) -> tuple[Tensor, Tensor]:
    """SSDU's (Theta, Lambda): |Lambda| = round(rho |Omega|) samples of Omega outside the central acs x acs block,
    drawn without replacement with probability proportional to exp(-((ky/(std H))^2 + (kx/(std W))^2) / 2)
    (Gumbel top-k: successive weighted sampling), or uniformly for std=None; Theta = Omega - Lambda."""
    if not 0 < rho < 1:
        raise ValueError(f"rho = |Lambda| / |Omega| must be in (0, 1), got {rho}")
    h, w = omega.shape[-2:]
    if std is None:
        log_w = torch.zeros(h, w, device=omega.device)
    else:
        ky = (torch.arange(h, device=omega.device) - h // 2).float().view(-1, 1) / (std * h)
        kx = (torch.arange(w, device=omega.device) - w // 2).float().view(1, -1) / (std * w)
        log_w = -(ky**2 + kx**2) / 2
    allowed = omega * (1 - centre_block((h, w), acs, omega.device))
    counts = (omega.flatten(1).sum(1) * rho).round().long()
    counts = torch.minimum(counts, allowed.flatten(1).sum(1).long())
    u = rand(omega.shape, generator, omega.device).clamp(1e-12, 1 - 1e-7)
    lam = _top_k(log_w - torch.log(-torch.log(u)), allowed, counts)
    return omega - lam, lam


def acquisition_density(omega: Tensor) -> Tensor:
    """p: the probability that a k-space sample is acquired, estimated from the mask (B, 1, H, W): 1 on its
    fully sampled centre (ACS, masks.acs_region), elsewhere the acquired fraction outside the ACS (exact for the
    uniform random and equispaced masks; an average for variable-density ones)."""
    out = torch.empty_like(omega)
    for b in range(omega.shape[0]):  # one small mask per sample: the ACS is found by a greedy scan
        m = omega[b, 0]
        rows, cols = acs_region(m)
        centre = torch.zeros_like(m)
        centre[rows, cols] = 1
        outside = (1 - centre)
        p_out = float((m * outside).sum() / outside.sum().clamp_min(1))
        out[b, 0] = torch.where(centre > 0, torch.ones_like(m), torch.full_like(m, p_out))
    return out


def nr2n_submask(omega: Tensor, q: float, generator: Randomness) -> Tensor:
    """Noisier2Noise's second mask restricted to Omega: the ACS of Omega kept, every other acquired sample kept
    with probability q. Returns M_Lambda (B, 1, H, W), a subset of Omega."""
    if not 0 < q < 1:
        raise ValueError(f"the Noisier2Noise keep probability q must be in (0, 1), got {q}")
    ones = acquisition_density(omega) >= 1
    draw = rand(omega.shape, generator, omega.device) < q
    return omega * (ones | draw).float()


def nr2n_k(p: Tensor, q: float) -> Tensor:
    """K = (1 - p) / (1 - p q) per k-space sample, with q = 1 where p = 1 (the ACS, kept in both masks): K = 0."""
    qq = torch.where(p >= 1, torch.ones_like(p), torch.full_like(p, q))
    return torch.where(p >= 1, torch.zeros_like(p), (1 - p) / (1 - p * qq).clamp_min(1e-12))


def rel_l1(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """relL1 per sample: ||M (b - a)||_1 / ||M a||_1 (complex: sum of moduli), shape (B,)."""
    num = ((b - a) * mask).abs().flatten(1).sum(1)
    return num / (a * mask).abs().flatten(1).sum(1).clamp_min(1e-30)


def rel_l2(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """||M (b - a)||_2 / ||M a||_2 per sample, shape (B,)."""
    num = ((b - a) * mask).abs().pow(2).flatten(1).sum(1).sqrt()
    return num / (a * mask).abs().pow(2).flatten(1).sum(1).sqrt().clamp_min(1e-30)


class EarlyStop:
    """Stop once the mean held-out error over the last `window` iterations exceeds the mean over the `window`
    before (DIP-TTT: window 100 after 300 iterations; D2SA's SST: window 30), and not before `start`."""

    def __init__(self, window: int, start: int = 0) -> None:
        if window < 1 or start < 0:
            raise ValueError(f"window must be >= 1 and start >= 0, got window={window}, start={start}")
        self.window, self.start = window, start
        self.errors: list[float] = []

    def __call__(self, error: float) -> bool:
        """Record this iteration's held-out error; True when training should stop."""
        self.errors.append(float(error))
        n, w = len(self.errors), self.window
        if n < max(self.start, 2 * w):
            return False
        last = sum(self.errors[-w:]) / w
        before = sum(self.errors[-2 * w:-w]) / w
        return last > before
