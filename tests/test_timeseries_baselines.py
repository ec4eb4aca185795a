"""The numpy seasonal naive base forecaster: exact on a pure season, the seasonal random walk's
spread growing season by season, clear errors."""
import os

import numpy as np
import pytest

from domains.timeseries.baselines import seasonal_naive_paths

SHIFT = int(os.environ.get("STOCHGEN_TEST_SEED_SHIFT", "0"))


def test_a_pure_season_continues_exactly():
    m = 7
    y = 3.0 + np.tile(np.arange(m, dtype=float) ** 2, 10)  # differences all 0
    p = seasonal_naive_paths(y, m, 17, num_samples=5, seed=SHIFT)
    assert p.shape == (5, 17)
    np.testing.assert_array_equal(p, np.broadcast_to(3.0 + (np.arange(70, 87) % m) ** 2.0, (5, 17)))


def test_seasonal_random_walk_spread_grows_by_season():
    m, n = 4, 4000
    rng = np.random.default_rng(SHIFT)
    y = np.zeros(n)
    y[:m] = rng.normal(0, 1, m)
    for t in range(m, n):
        y[t] = y[t - m] + rng.normal()
    p = seasonal_naive_paths(y, m, 12, num_samples=8000, seed=SHIFT)
    # the step-k error is the sum of (k - 1) // m + 1 unit differences: variance 1, 1, 1, 1, 2, ..., 3
    want = (np.arange(12) // m + 1).astype(float)
    got = p.var(axis=0)
    # 8000 paths: relative error of a variance ~1.6%; the ~4000 bootstrapped differences' own variance ~2.2%
    np.testing.assert_allclose(got, want, rtol=0.12)
    np.testing.assert_allclose(p.mean(axis=0), y[-m:][np.arange(12) % m], atol=0.1 * np.sqrt(want).max())


def test_bad_histories_are_named():
    with pytest.raises(ValueError, match="last season"):
        seasonal_naive_paths(np.r_[np.arange(20.0), np.nan], 4, 3)
    with pytest.raises(ValueError, match="at least"):
        seasonal_naive_paths(np.arange(5.0), 4, 3)
    with pytest.raises(ValueError, match="horizon"):
        seasonal_naive_paths(np.arange(50.0), 4, 0)
