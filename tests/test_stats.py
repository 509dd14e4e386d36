import math

import numpy as np
import pytest

from eaq.evaluation.stats import mean_ci, paired_diff_ci, proportion_ci, welch_diff_ci


def test_mean_ci_matches_t_interval():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    e = mean_ci(x)
    half = 3.182 * x.std(ddof=1) / 2  # t(3) quantile, sqrt(4) = 2
    assert math.isclose(e.mean, 2.5) and math.isclose(e.hi - e.mean, half, rel_tol=1e-9)
    assert math.isnan(mean_ci([1.0]).lo)


def test_wilson_interval_edges():
    zero = proportion_ci(np.zeros(128, bool))
    assert zero.mean == 0 and zero.lo == 0 and 0 < zero.hi < 0.05
    full = proportion_ci(np.ones(10, bool))
    assert full.hi == 1 and full.lo < 1


def test_welch_difference_significance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.1, 20), rng.normal(0.0, 0.1, 20)
    d = welch_diff_ci(a, b)
    assert d.lo > 0  # clearly different
    same = welch_diff_ci(a, a + rng.normal(0, 0.01, 20))
    assert same.lo < 0 < same.hi


def test_paired_difference_removes_the_shared_spread():
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(0.0, 10.0, 5)  # large spread shared by both arms
    a, b = seed_effect + 1.0 + rng.normal(0, 0.1, 5), seed_effect
    assert welch_diff_ci(a, b).lo < 0  # unpaired: lost in the spread
    paired = paired_diff_ci(a, b)
    assert paired.lo > 0 and abs(paired.mean - 1.0) < 0.2
    with pytest.raises(ValueError, match="equal sizes"):
        paired_diff_ci(a, b[:4])
