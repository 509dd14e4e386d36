"""Means with 95 % confidence intervals (Student t for means, Wilson for proportions)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

# Two-sided 95 % Student t quantiles for small samples (df 1..30); normal beyond.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t95(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.nan
    return _T95[df - 1] if df <= len(_T95) else 1.96


@dataclass(frozen=True)
class Estimate:
    """A mean and its 95 % confidence interval [lo, hi] from n samples."""

    mean: float
    lo: float
    hi: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.half_width:.3f}"


def mean_ci(x) -> Estimate:
    """Mean with a t-based 95 % CI (NaN width for a single sample)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    m = float(x.mean())
    if n == 1:
        return Estimate(m, math.nan, math.nan, 1)
    h = t95(n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return Estimate(m, m - h, m + h, n)


def proportion_ci(successes) -> Estimate:
    """A rate (of booleans) with the Wilson 95 % interval (sensible at 0 % and 100 %)."""
    s = np.asarray(successes, dtype=bool).ravel()
    n = s.size
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    p = float(s.mean())
    z = 1.96
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(p, max(0.0, centre - h), min(1.0, centre + h), n)


def paired_diff_ci(a, b) -> Estimate:
    """Mean of the paired differences a_i - b_i with a t-based 95 % CI.

    For runs that share everything but the treatment (here: the same dataset and learner seed),
    pairing removes the seed-to-seed spread that a Welch interval has to carry.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal sizes, got {a.size} and {b.size}")
    return mean_ci(a - b)


def welch_diff_ci(a, b) -> Estimate:
    """Difference of means (a - b) with a Welch 95 % CI; 'significant' when it excludes 0."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    d = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return Estimate(d, math.nan, math.nan, int(min(a.size, b.size)))
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(d, d, d, int(min(a.size, b.size)))
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    h = t95(max(1, int(df))) * se
    return Estimate(d, d - h, d + h, int(min(a.size, b.size)))
