"""Undersampling masks for Cartesian MRI, (H, W) float tensors with 1 = acquired k-space sample.

k-space is centred (DC at (H // 2, W // 2), as in inverse_problems.operators.fft). 1-D masks pick phase-encode
columns (the last axis, fastMRI's convention) and repeat them over all rows; 2-D masks pick single
samples (3-D Cartesian acquisitions with two phase-encode directions).

Every mask holds a fully sampled centre (the ACS / calibration region): `round(center_fraction * W)`
columns for 1-D masks (fastMRI's MaskFunc), a centred `round(center_fraction * H) x
round(center_fraction * W)` block for 2-D masks. Unlike fastMRI's Bernoulli draws, every mask here
acquires exactly `round(H * W / acceleration)` samples (round(W / acceleration) columns in 1-D), so
the realised acceleration equals the requested one up to rounding, for every seed.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

MASK_TYPES = ("random", "equispaced", "gaussian1d", "poisson2d", "vd2d")
ONE_D = ("random", "equispaced", "gaussian1d")


def realised_acceleration(mask: Tensor) -> float:
    """Number of k-space grid points over the number acquired: R = H*W / sum(mask)."""
    acquired = float(mask.float().sum())
    if acquired <= 0:
        raise ValueError("the mask acquires no k-space sample; its acceleration is undefined")
    return mask.numel() / acquired


def _check(shape: tuple[int, int], acceleration: float, center_fraction: float) -> None:
    if len(shape) != 2 or min(shape) < 2:
        raise ValueError(f"mask shape must be (H, W) with H, W >= 2, got {shape}")
    if not acceleration >= 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")
    if not 0 <= center_fraction < 1:
        raise ValueError(f"center_fraction must be in [0, 1), got {center_fraction}")


def _centre_slice(n: int, n_low: int) -> slice:
    """fastMRI's placement of the fully sampled centre: pad = (n - n_low + 1) // 2."""
    pad = (n - n_low + 1) // 2
    return slice(pad, pad + n_low)


def _columns(shape: tuple[int, int], acceleration: float, center_fraction: float) -> tuple[int, int, np.ndarray]:
    """(n_total, n_low, indices of the non-ACS columns) for a 1-D mask, with the too-large-ACS error."""
    _check(shape, acceleration, center_fraction)
    w = shape[1]
    n_total = max(1, round(w / acceleration))
    n_low = round(w * center_fraction)
    if n_low > n_total:
        raise ValueError(
            f"the ACS alone ({n_low} of {w} columns, center_fraction={center_fraction}) exceeds the {n_total} columns "
            f"that acceleration {acceleration} allows; lower center_fraction or acceleration, or use a 2-D mask "
            f"(poisson2d, vd2d) for high accelerations"
        )
    centre = np.zeros(w, dtype=bool)
    centre[_centre_slice(w, n_low)] = True
    return n_total, n_low, np.flatnonzero(~centre)


def _expand_columns(shape: tuple[int, int], cols: np.ndarray, n_low: int) -> Tensor:
    line = np.zeros(shape[1], dtype=np.float32)
    line[_centre_slice(shape[1], n_low)] = 1
    line[cols] = 1
    return torch.from_numpy(line).expand(shape[0], -1).contiguous()


def random_mask(shape: tuple[int, int], acceleration: float, center_fraction: float = 0.08, seed: int = 0) -> Tensor:
    """1-D Cartesian random mask (fastMRI RandomMaskFunc): the ACS columns plus uniformly drawn columns."""
    n_total, n_low, outer = _columns(shape, acceleration, center_fraction)
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(outer), generator=g)[: n_total - n_low].numpy()
    return _expand_columns(shape, outer[pick], n_low)


def equispaced_mask(shape: tuple[int, int], acceleration: float, center_fraction: float = 0.08,
                    seed: int = 0) -> Tensor:
    """1-D equispaced mask (fastMRI EquispacedMaskFractionFunc): ACS plus evenly spaced columns.

    The non-ACS columns are spread evenly over the columns outside the ACS with a random offset, so that
    the total is exact (fastMRI adjusts the spacing for the same purpose).
    """
    n_total, n_low, outer = _columns(shape, acceleration, center_fraction)
    n_out = n_total - n_low
    if n_out == 0:
        return _expand_columns(shape, outer[:0], n_low)
    step = len(outer) / n_out
    offset = float(torch.rand((), generator=torch.Generator().manual_seed(seed))) * step
    idx = np.floor(offset + step * np.arange(n_out)).astype(int).clip(0, len(outer) - 1)
    return _expand_columns(shape, outer[np.unique(idx)], n_low)


def gaussian1d_mask(shape: tuple[int, int], acceleration: float, center_fraction: float = 0.08, seed: int = 0,
                    std: float = 0.25) -> Tensor:
    """1-D Gaussian variable-density mask: non-ACS columns drawn without replacement with probability
    proportional to exp(-k^2 / (2 (std*W)^2)), k the column's distance to the DC column."""
    n_total, n_low, outer = _columns(shape, acceleration, center_fraction)
    w = shape[1]
    k = torch.from_numpy(outer - w // 2).double()
    weights = torch.exp(-(k**2) / (2 * (std * w) ** 2)).clamp_min(1e-12)
    g = torch.Generator().manual_seed(seed)
    n_out = n_total - n_low
    pick = torch.multinomial(weights, n_out, replacement=False, generator=g).numpy() if n_out else []
    return _expand_columns(shape, outer[pick], n_low)


def _acs_block(shape: tuple[int, int], center_fraction: float) -> np.ndarray:
    block = np.zeros(shape, dtype=bool)
    block[_centre_slice(shape[0], round(shape[0] * center_fraction)),
          _centre_slice(shape[1], round(shape[1] * center_fraction))] = True
    return block


def _radius_map(shape: tuple[int, int]) -> np.ndarray:
    """Normalised distance to the k-space centre, 0 at DC and 1 at the corners."""
    ky = (np.arange(shape[0]) - shape[0] // 2) / (shape[0] / 2)
    kx = (np.arange(shape[1]) - shape[1] // 2) / (shape[1] / 2)
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2) / math.sqrt(2)


def _targets(shape: tuple[int, int], acceleration: float, center_fraction: float) -> tuple[np.ndarray, int]:
    _check(shape, acceleration, center_fraction)
    acs = _acs_block(shape, center_fraction)
    n_total = max(1, round(shape[0] * shape[1] / acceleration))
    if acs.sum() > n_total:
        raise ValueError(
            f"the ACS block ({int(acs.sum())} samples, center_fraction={center_fraction}) exceeds the {n_total} "
            f"samples that acceleration {acceleration} allows on a {shape} grid; lower center_fraction"
        )
    return acs, n_total - int(acs.sum())


def _dart_throw(order: np.ndarray, radius: np.ndarray, shape: tuple[int, int], limit: int | None) -> list[int]:
    """Accept points of `order` (flat indices) at least radius[p] away from every accepted point."""
    h, w = shape
    nearest = np.full(shape, np.inf)
    reach = int(math.ceil(radius.max())) if radius.size else 0
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    disc = np.sqrt(dy**2 + dx**2)
    accepted: list[int] = []
    for p in order:
        i, j = divmod(int(p), w)
        if nearest[i, j] < radius[i, j]:
            continue
        accepted.append(int(p))
        if limit is not None and len(accepted) > limit:
            break
        y0, y1, x0, x1 = max(0, i - reach), min(h, i + reach + 1), max(0, j - reach), min(w, j + reach + 1)
        win = disc[y0 - i + reach:y1 - i + reach, x0 - j + reach:x1 - j + reach]
        np.minimum(nearest[y0:y1, x0:x1], win, out=nearest[y0:y1, x0:x1])
    return accepted


def poisson_disc_mask(shape: tuple[int, int], acceleration: float, center_fraction: float = 0.08, seed: int = 0,
                      slope: float = 2.0) -> Tensor:
    """2-D variable-density Poisson-disc mask (Lustig et al. 2007; as in BART's `poisson` / sigpy's).

    Dart throwing in a seeded random order: a sample is kept when no kept sample lies within
    r(k) = r0 (1 + slope * rho(k)), rho the normalised distance to the centre. r0 is found by bisection
    so that at least the target count is kept, then the last-accepted surplus is dropped (which keeps
    the minimum-distance property), giving the exact count.
    """
    acs, n_out = _targets(shape, acceleration, center_fraction)
    rho = _radius_map(shape)
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.flatnonzero(~acs.ravel()))
    lo, hi = 0.0, float(max(shape))
    best = _dart_throw(order, np.zeros(shape), shape, None)
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        got = _dart_throw(order, mid * (1 + slope * rho), shape, None)
        if len(got) >= n_out:
            lo, best = mid, got
        else:
            hi = mid
        if hi - lo < 1e-3:
            break
    mask = acs.copy().ravel()
    mask[np.asarray(best[:n_out], dtype=int)] = True
    return torch.from_numpy(mask.reshape(shape).astype(np.float32))


def variable_density_mask(shape: tuple[int, int], acceleration: float, center_fraction: float = 0.08, seed: int = 0,
                          power: float = 2.0) -> Tensor:
    """2-D variable-density random mask: non-ACS samples drawn without replacement with probability
    proportional to (1 - rho)^power + 1e-3, rho the normalised distance to the centre (Lustig et al. 2007)."""
    acs, n_out = _targets(shape, acceleration, center_fraction)
    rho = torch.from_numpy(_radius_map(shape)).double().ravel()
    outer = torch.from_numpy(np.flatnonzero(~acs.ravel()))
    weights = (1 - rho[outer]).clamp_min(0) ** power + 1e-3
    g = torch.Generator().manual_seed(seed)
    mask = torch.from_numpy(acs.ravel().astype(np.float32))
    if n_out:
        mask[outer[torch.multinomial(weights, n_out, replacement=False, generator=g)]] = 1
    return mask.reshape(shape)


_MAKERS = {"random": random_mask, "equispaced": equispaced_mask, "gaussian1d": gaussian1d_mask,
           "poisson2d": poisson_disc_mask, "vd2d": variable_density_mask}


def make_mask(kind: str, shape: tuple[int, int], acceleration: float, center_fraction: float = 0.08,
              seed: int = 0) -> Tensor:
    """A mask by name: random | equispaced | gaussian1d (1-D columns) | poisson2d | vd2d (2-D)."""
    if kind not in _MAKERS:
        raise ValueError(f"unknown mask {kind!r}; choose one of {', '.join(MASK_TYPES)}")
    return _MAKERS[kind](tuple(shape), acceleration, center_fraction, seed)


def acs_region(mask: Tensor) -> tuple[slice, slice]:
    """The fully sampled centred rectangle of a mask (grown greedily from the DC sample): (rows, cols)."""
    m = mask.detach().cpu().bool().numpy()
    h, w = m.shape
    r0, r1, c0, c1 = h // 2, h // 2 + 1, w // 2, w // 2 + 1
    if not m[r0, c0]:
        raise ValueError("the mask does not acquire the DC sample, so it has no calibration (ACS) region")
    grown = True
    while grown:
        grown = False
        if r0 > 0 and m[r0 - 1, c0:c1].all():
            r0, grown = r0 - 1, True
        if r1 < h and m[r1, c0:c1].all():
            r1, grown = r1 + 1, True
        if c0 > 0 and m[r0:r1, c0 - 1].all():
            c0, grown = c0 - 1, True
        if c1 < w and m[r0:r1, c1].all():
            c1, grown = c1 + 1, True
    return slice(r0, r1), slice(c0, c1)


def calibration_block(shape: tuple[int, int], size: int, within: tuple[slice, slice] | None = None
                      ) -> tuple[slice, slice]:
    """The central size x size k-space block (rows, cols), DC at (H // 2, W // 2), clipped to `within` (an ACS)."""
    out = []
    for n, region in zip(shape, within or (slice(0, shape[0]), slice(0, shape[1]))):
        a = min(size, n, region.stop - region.start)
        start = min(max(n // 2 - a // 2, region.start), region.stop - a)
        out.append(slice(start, start + a))
    return out[0], out[1]
