"""Paired statistics for a benchmark setting: bootstrap intervals, paired differences, Wilcoxon p, shared ranks.

Methods in one setting are scored on the same sample ids, so two methods are compared on their per-sample
differences d_i = a_i - b_i (paired): the interval of mean(d) is far narrower than what the two rows' own spreads
suggest when the samples vary more than the methods do. Intervals are scipy's bootstrap (BCa, 95 %, seeded);
the test of "no difference" is the Wilcoxon signed-rank test on d.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 9999
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap interval [low, high]."""

    mean: float
    low: float | None
    high: float | None
    n: int

    def contains(self, value: float) -> bool:
        return self.low is not None and self.high is not None and self.low <= value <= self.high


@dataclass(frozen=True)
class Paired:
    """mean(a - b) over the shared sample ids, its interval, the Wilcoxon signed-rank p-value and the differences'
    standard deviation (n - 1 in the denominator; None for n < 2), the spread `samples_for` takes."""

    diff: Interval
    p_wilcoxon: float | None
    sd: float | None = None


def bootstrap_interval(values: Sequence[float], seed: int = SEED, confidence: float = CONFIDENCE,
                       resamples: int = RESAMPLES) -> Interval:
    """The mean of `values` and scipy's BCa bootstrap interval of it (seeded; the percentile interval where BCa's is not
    finite); no interval for n < 2 or where neither is finite; a zero-width one where every value is the same (the
    bootstrap distribution is then a point)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        raise ValueError("no values to summarise")
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, None, None, n)
    if np.all(x == x[0]):
        return Interval(mean, mean, mean, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa's degenerate-jackknife warning on tiny samples: fall back below
        res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=resamples, method="BCa",
                              random_state=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=resamples,
                              method="percentile", random_state=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):  # values near the float limit: no interval, not inf
        return Interval(mean, None, None, n)
    return Interval(mean, low, high, n)


def wilcoxon_p(diffs: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p of `diffs` (scipy's defaults); 1.0 when every difference is 0; None for
    fewer than 2 differences."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    if d.size < 2:
        return None
    if np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def paired(a: Mapping[str, float], b: Mapping[str, float], seed: int = SEED) -> Paired | None:
    """a - b paired on sample id; None where the two rows do not hold the same sample ids (they cannot be paired)."""
    if set(a) != set(b) or not a:
        return None
    ids = sorted(a)
    d = [a[i] - b[i] for i in ids]
    sd = float(np.std(d, ddof=1)) if len(d) > 1 else None
    return Paired(bootstrap_interval(d, seed), wilcoxon_p(d), sd if sd is None or math.isfinite(sd) else None)


def _tied(top: Mapping[str, float], other: Mapping[str, float], seed: int) -> bool:
    """Whether the paired 95 % interval of top - other includes 0 (no interval, n < 2: cannot be told apart)."""
    p = paired(top, other, seed)
    if p is None:
        return False
    return p.diff.low is None or p.diff.high is None or p.diff.low <= 0.0 <= p.diff.high


def shared_ranks(rows: Mapping[str, Mapping[str, float]], higher_is_better: bool = True,
                 seed: int = SEED) -> dict[str, int | None]:
    """Competition ranks with ties, by mean. The best row (highest mean; lowest where lower is better) has rank 1, and
    so has every row whose paired 95 % interval against it includes 0. The best of the rows left then takes the next
    free rank (1 + the rows ranked above it) and shares it with those whose interval against it includes 0, and so
    on. A row whose sample ids differ from the best row's cannot be paired with it: its rank is None."""
    means = {n: float(np.mean(list(v.values()))) for n, v in rows.items() if v}
    sign = 1.0 if higher_is_better else -1.0
    order = sorted(means, key=lambda n: (-sign * means[n], n))
    ranks: dict[str, int | None] = {n: None for n in rows}
    if not order:
        return ranks
    ids = set(rows[order[0]])
    left = [n for n in order if set(rows[n]) == ids]
    placed = 0
    while left:
        top = left[0]
        group = [top] + [n for n in left[1:] if _tied(rows[top], rows[n], seed)]
        for n in group:
            ranks[n] = placed + 1
        placed += len(group)
        left = [n for n in left if n not in group]
    return ranks


def samples_for(paired_sd: float, resolve_db: float = 0.5, z: float = 1.959964) -> int:
    """Samples needed so that the 95 % interval of a paired mean difference has half-width <= `resolve_db`,
    from the paired standard deviation: n >= (z * sd / resolve)^2 (normal approximation)."""
    if paired_sd <= 0:
        return 2
    return max(2, math.ceil((z * paired_sd / resolve_db) ** 2))
