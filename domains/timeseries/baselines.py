"""Base forecasters that need nothing beyond numpy, for refinement (``TimeSeriesDomain.refine``)."""
from __future__ import annotations

import numpy as np

from . import data as _data

__all__ = ["seasonal_naive_paths", "BASES"]


def seasonal_naive_paths(history, season: int, horizon: int, num_samples: int = 100, seed: int = 0) -> np.ndarray:
    """``(num_samples, horizon)`` sample paths of the seasonal naive forecaster.

    Step ``k`` (1-based) repeats the value one season before it, ``y[n - m + (k - 1) % m]``, plus the
    sum of ``(k - 1) // m + 1`` seasonal differences ``y[t] - y[t - m]`` of the history drawn with
    replacement (a bootstrap of the seasonal random walk, so the spread grows season by season and
    keeps the differences' own shape and drift). ``season = 1``: the naive random walk. NaN in the
    history: the differences that touch one are left out; the last season must be observed.
    """
    (s,) = _data.read_series(history, name="history")
    y = s.y.astype(np.float64)
    m, H = int(season), _data.check_horizon(horizon)
    if m < 1:
        raise ValueError(f"season must be >= 1, got {season!r}")
    if len(y) < m + 2:
        raise ValueError(f"the history has {len(y)} values; the seasonal naive forecast needs at least {m + 2}")
    last = y[-m:]
    if not np.isfinite(last).all():
        raise ValueError("the seasonal naive forecast needs the last season of the history observed (no NaN)")
    d = y[m:] - y[:-m]
    d = d[np.isfinite(d)]
    if d.size == 0:
        raise ValueError("the history has no complete seasonal difference y[t] - y[t - season]")
    rng = np.random.default_rng(seed)
    n = int(num_samples)
    cycles = (H - 1) // m + 1
    # one bootstrap draw per (path, cycle, phase); a step's error is the sum over the cycles up to its own
    draws = rng.choice(d, size=(n, cycles, m), replace=True).cumsum(axis=1)
    k = np.arange(H)
    return last[k % m][None] + draws[:, k // m, k % m]


BASES = {"seasonal-naive": seasonal_naive_paths}
