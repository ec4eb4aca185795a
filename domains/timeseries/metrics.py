"""Probabilistic forecast metrics for one series window ``y (H,)`` and sample forecasts ``(S, H)``.

Definitions follow GluonTS 0.17 (``gluonts.evaluation._base.Evaluator`` and
``gluonts.evaluation.metrics``) unless stated otherwise:

* :func:`sample_quantiles`: GluonTS's ``SampleForecast.quantile`` rule. The samples are
  sorted along the sample axis and level ``q`` takes the order statistic at index
  ``int(np.round((S - 1) * q))`` (NumPy rounding, halves to even), with no interpolation;
  e.g. ``S = 4, q = 0.5`` gives the 3rd smallest sample, not the mean of the middle two.
* :func:`quantile_loss`: ``2 * sum(|(y - q_pred) * (1{y <= q_pred} - q)|)`` (twice the pinball loss).
* :func:`wql`: GluonTS's ``mean_wQuantileLoss`` for one window, ``mean_q QL_q / sum|y|``.
* :func:`wql_dataset`: the Evaluator's aggregation over many windows: per level, the
  quantile losses of all windows are summed (``agg "sum"``) and divided by the summed
  absolute targets of all windows (``abs_target_sum``, also ``"sum"``), giving
  ``wQuantileLoss[q]``; ``mean_wQuantileLoss`` is the plain mean of these over the levels.
  It equals the ``sum|y|``-weighted mean of the per-window :func:`wql`, not their plain
  mean. Windows without any observed target add nothing to either sum (GluonTS yields NaN
  rows for them, which its default ``aggregate_no_nan`` skips).
* :func:`crps`: mean over the horizon of the ensemble CRPS in energy form,
  ``E|X - y| - 1/2 E|X - X'|``. The default is the *fair* estimator (pairs over
  ``S (S - 1)``, unbiased for the CRPS of the sampled distribution, needs ``S >= 2``);
  ``estimator="nrg"`` gives the standard one (pairs over ``S^2``, the empirical-CDF CRPS,
  as ``properscoring.crps_ensemble``). Computed by ``scoringrules.crps_ensemble`` when that
  package is installed, otherwise by an equal pure-NumPy implementation (sorted samples,
  ``O(S log S)`` per step).
* :func:`mase`: ``mean|y - point| / mean|h[t] - h[t - season]|`` over the history ``h``.
  Unlike GluonTS, which silently falls back to lag 1 when the history is too short for the
  season, this raises ``ValueError``.
* :func:`coverage` / :func:`interval_coverage`: fraction of observed targets in the closed
  interval ``[lower, upper]``; the interval version takes the ``(1 -+ level) / 2`` sample
  quantiles (0.1 / 0.9 for ``level=0.8``) by the rule above.
* :func:`summary`: ``wql``, ``crps``, ``mase`` (sample median as the point forecast, as
  GluonTS's MASE uses ``forecast.quantile(0.5)``) and ``coverage80``.

Missing truth: non-finite targets (NaN, and ±inf as GluonTS's ``masked_invalid`` does) are
dropped step-wise by every function, from losses and from ``sum|y|`` alike, and so are
non-finite history values from the seasonal differences. A per-window metric with no
observed target returns NaN. Forecasts (samples, quantiles, point forecasts, bounds) must be
finite: anything else raises ``ValueError``, as do shape mismatches (the message names the
shapes) and a zero denominator (``sum|y| = 0`` for wQL, a zero seasonal scale for MASE).

Inputs may be NumPy arrays, array-likes or torch tensors; everything is computed in float64.
Runtime needs only NumPy; ``scoringrules`` is optional (used for CRPS when present).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["QUANTILES", "sample_quantiles", "quantile_loss", "wql", "wql_dataset", "crps", "mase", "coverage",
           "interval_coverage", "summary"]

QUANTILES = tuple(round(0.1 * k, 1) for k in range(1, 10))  # (0.1, 0.2, ..., 0.9), GluonTS's default levels

_CRPS_ESTIMATORS = ("fair", "nrg")
_NUMPY_PAIR_BUDGET = 1 << 22  # elements per chunk when scoringrules runs its O(S^2) NumPy backend


# ----------------------------------------------------------------------------------------------- input checks
def _array(x, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numeric array-like: {exc}") from None


def _target(y, fn: str) -> np.ndarray:
    y = _array(y, f"{fn}: y")
    if y.ndim != 1:
        raise ValueError(f"{fn}: y must be one window of shape (H,), got shape {y.shape}")
    return y


def _finite(a: np.ndarray, fn: str, what: str) -> np.ndarray:
    if not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{fn}: {what} of shape {a.shape} has {bad} non-finite value(s); forecasts must be finite")
    return a


def _like_target(a, y: np.ndarray, fn: str, what: str) -> np.ndarray:
    a = _array(a, f"{fn}: {what}")
    if a.shape != y.shape:
        raise ValueError(f"{fn}: {what} has shape {a.shape} but y has shape {y.shape}; they must match")
    return _finite(a, fn, what)


def _samples(samples, y: np.ndarray | None, fn: str) -> np.ndarray:
    s = _array(samples, f"{fn}: samples")
    if s.ndim != 2 or s.shape[0] < 1:
        raise ValueError(f"{fn}: samples must have shape (S, H) with S >= 1, got shape {s.shape}")
    if y is not None and s.shape[1] != y.shape[0]:
        raise ValueError(f"{fn}: samples have shape {s.shape} but y has shape {y.shape}; "
                         f"expected (S, {y.shape[0]})")
    return _finite(s, fn, "samples")


def _levels(levels, fn: str) -> tuple[float, ...]:
    lv = np.atleast_1d(_array(levels, f"{fn}: levels"))
    if lv.ndim != 1 or lv.size == 0:
        raise ValueError(f"{fn}: levels must be a non-empty 1-D sequence, got shape {lv.shape}")
    if not np.all((lv >= 0.0) & (lv <= 1.0)):
        raise ValueError(f"{fn}: quantile levels must lie in [0, 1], got {lv.tolist()}")
    return tuple(float(q) for q in lv)


def _observed(y: np.ndarray) -> np.ndarray:
    return np.isfinite(y)


# ----------------------------------------------------------------------------------------------- quantiles
def sample_quantiles(samples, levels=QUANTILES) -> np.ndarray:
    """Quantiles ``(len(levels), H)`` of sample paths ``(S, H)`` by GluonTS's ``SampleForecast.quantile``.

    Level ``q`` is the order statistic ``sort(samples, axis=0)[int(np.round((S - 1) * q))]``:
    no interpolation, NumPy's round-half-to-even (``S = 4, q = 0.5`` picks index 2).
    """
    s = _samples(samples, None, "sample_quantiles")
    lv = _levels(levels, "sample_quantiles")
    n = s.shape[0]
    idx = [int(np.round((n - 1) * q)) for q in lv]
    return np.sort(s, axis=0)[idx]


def _quantile_loss_sum(y: np.ndarray, q_pred: np.ndarray, q: float, obs: np.ndarray) -> float:
    yo, po = y[obs], q_pred[obs]
    return float(2.0 * np.sum(np.abs((yo - po) * ((yo <= po).astype(np.float64) - q))))


def quantile_loss(y, q_pred, q) -> float:
    """GluonTS's ``quantile_loss``: ``2 * sum(|(y - q_pred) * (1{y <= q_pred} - q)|)`` over observed steps.

    NaN when no target is observed (GluonTS's fully masked sum).
    """
    y = _target(y, "quantile_loss")
    qp = _like_target(q_pred, y, "quantile_loss", "q_pred")
    (q,) = _levels(q, "quantile_loss")
    obs = _observed(y)
    if not obs.any():
        return float("nan")
    return _quantile_loss_sum(y, qp, q, obs)


def _quantile_matrix(forecast, levels: tuple[float, ...], H: int, kind: str, fn: str) -> np.ndarray:
    """``(len(levels), H)`` quantile forecasts from samples, a ``{level: (H,)}`` dict or a quantile array."""
    L = len(levels)
    if kind not in ("auto", "samples", "quantiles"):
        raise ValueError(f"{fn}: kind must be 'auto', 'samples' or 'quantiles', got {kind!r}")
    if isinstance(forecast, Mapping):
        if kind == "samples":
            raise ValueError(f"{fn}: kind='samples' but the forecast is a dict of quantiles")
        keyed = {}
        for k, v in forecast.items():
            try:
                keyed[float(k)] = v
            except (TypeError, ValueError):
                continue  # e.g. a "mean" entry
        rows = []
        for q in levels:
            match = [k for k in keyed if abs(k - q) < 1e-9]
            if not match:
                raise ValueError(f"{fn}: the quantile dict has no level {q} (it has {sorted(keyed)})")
            row = _array(keyed[match[0]], f"{fn}: quantile {q}")
            if row.shape != (H,):
                raise ValueError(f"{fn}: quantile {q} has shape {row.shape} but y has shape ({H},)")
            rows.append(row)
        return _finite(np.stack(rows), fn, "quantile forecasts")
    f = _array(forecast, f"{fn}: forecast")
    if f.ndim != 2:
        raise ValueError(f"{fn}: forecast must be samples (S, H), quantiles ({L}, H) or a {{level: (H,)}} dict; "
                         f"got shape {f.shape} for y of shape ({H},)")
    if f.shape[1] != H:
        raise ValueError(f"{fn}: forecast has shape {f.shape} but y has shape ({H},); expected (S, {H})")
    if kind == "quantiles" or (kind == "auto" and f.shape[0] == L):
        if f.shape[0] != L:
            raise ValueError(f"{fn}: quantile forecasts have shape {f.shape}; expected ({L}, {H}) for {L} levels")
        return _finite(f, fn, "quantile forecasts")
    return sample_quantiles(f, levels)


def _wql_parts(y: np.ndarray, forecast, levels, kind: str, fn: str) -> tuple[np.ndarray, float, bool]:
    """Per-level quantile losses, ``sum|y|`` over observed steps, and whether any step is observed."""
    qm = _quantile_matrix(forecast, levels, y.shape[0], kind, fn)
    obs = _observed(y)
    losses = np.array([_quantile_loss_sum(y, qm[i], q, obs) for i, q in enumerate(levels)])
    return losses, float(np.sum(np.abs(y[obs]))), bool(obs.any())


def wql(y, forecast, levels=QUANTILES, *, kind: str = "auto") -> float:
    """GluonTS's ``mean_wQuantileLoss`` of one window: ``mean_q quantile_loss_q / sum|y|``.

    ``forecast``: samples ``(S, H)`` (quantiles by :func:`sample_quantiles`), a dict
    ``{level: (H,)}`` (keys may be floats or strings like ``"0.1"``; other keys are ignored) or
    quantiles ``(len(levels), H)`` in the order of ``levels``. With ``kind="auto"`` a 2-D array
    with exactly ``len(levels)`` rows is read as quantiles, any other as samples; pass
    ``kind="samples"`` or ``kind="quantiles"`` to decide explicitly. NaN when no target is
    observed; ``ValueError`` when the observed targets are all 0.
    """
    lv = _levels(levels, "wql")
    y = _target(y, "wql")
    losses, abs_sum, any_obs = _wql_parts(y, forecast, lv, kind, "wql")
    if not any_obs:
        return float("nan")
    if abs_sum == 0.0:
        raise ValueError("wql: sum |y| over the observed steps is 0, so the weighted quantile loss is undefined")
    return float(np.mean(losses / abs_sum))


def wql_dataset(ys, forecasts, levels=QUANTILES, *, kind: str = "auto") -> float:
    """``mean_wQuantileLoss`` over many windows, aggregated as GluonTS's Evaluator does.

    Per level: ``sum over windows of quantile_loss / sum over windows of sum|y|``; then the
    mean over levels. ``ys``: a sequence of windows ``(H_i,)`` (lengths may differ) or an
    ``(N, H)`` array; ``forecasts``: a matching sequence of forecasts in any form :func:`wql`
    takes. Windows without observed targets contribute nothing.
    """
    lv = _levels(levels, "wql_dataset")
    ys, forecasts = list(ys), list(forecasts)
    if len(ys) != len(forecasts):
        raise ValueError(f"wql_dataset: {len(ys)} target windows but {len(forecasts)} forecasts")
    if not ys:
        raise ValueError("wql_dataset: no windows given")
    total_loss, total_abs, any_obs = np.zeros(len(lv)), 0.0, False
    for i, (y, f) in enumerate(zip(ys, forecasts)):
        y = _target(y, f"wql_dataset (window {i})")
        losses, abs_sum, obs = _wql_parts(y, f, lv, kind, f"wql_dataset (window {i})")
        total_loss += losses
        total_abs += abs_sum
        any_obs |= obs
    if not any_obs:
        return float("nan")
    if total_abs == 0.0:
        raise ValueError("wql_dataset: sum |y| over all observed steps is 0, so the weighted quantile loss is undefined")
    return float(np.mean(total_loss / total_abs))


# ----------------------------------------------------------------------------------------------- CRPS
_SR = None


def _load_scoringrules():
    """The ``scoringrules`` module, or None when it is not installed (imported once, lazily: it is slow)."""
    global _SR
    if _SR is None:
        try:
            import scoringrules
        except ImportError:
            _SR = False
        else:
            _SR = scoringrules
    return _SR or None


def _crps_numpy(y: np.ndarray, samples: np.ndarray, estimator: str) -> np.ndarray:
    """Per-step energy-form CRPS of ``samples (S, H)`` at ``y (H,)``; ``sum_ij |x_i - x_j|`` from sorted samples."""
    m = samples.shape[0]
    xs = np.sort(samples, axis=0)
    e1 = np.mean(np.abs(xs - y[None, :]), axis=0)
    weights = 2.0 * np.arange(1, m + 1, dtype=np.float64) - m - 1.0  # sum_ij |x_i - x_j| = 2 sum_k (2k - m - 1) x_(k)
    pair_sum = 2.0 * (weights @ xs)
    denom = m * (m - 1) if estimator == "fair" else m * m
    return e1 - 0.5 * pair_sum / denom


def _crps_scoringrules(sr, y: np.ndarray, samples: np.ndarray, estimator: str) -> np.ndarray:
    try:
        import numba  # noqa: F401  (scoringrules' default backend; its gufuncs need no S x S buffer)
    except ImportError:  # NumPy backend builds (H, S, S) pair arrays: bound them by chunking the horizon
        m, H = samples.shape
        step = max(1, _NUMPY_PAIR_BUDGET // (m * m))
        return np.concatenate([
            np.asarray(sr.crps_ensemble(y[i:i + step], samples[:, i:i + step], m_axis=0, estimator=estimator,
                                        backend="numpy"), dtype=np.float64)
            for i in range(0, H, step)])
    return np.asarray(sr.crps_ensemble(y, samples, m_axis=0, estimator=estimator), dtype=np.float64)


def crps(y, samples, *, estimator: str = "fair", implementation: str = "auto") -> float:
    """Mean over the observed steps of the ensemble CRPS ``E|X - y| - 1/2 E|X - X'|``.

    ``estimator="fair"`` (default): ``E|X - X'|`` over the ``S (S - 1)`` distinct pairs,
    unbiased for the forecast distribution's CRPS (needs ``S >= 2``); ``"nrg"``: over all
    ``S^2`` pairs (the CRPS of the empirical distribution). ``implementation``: ``"auto"``
    (scoringrules' ``crps_ensemble`` when installed, else NumPy), ``"scoringrules"`` or
    ``"numpy"``; both give the same numbers. NaN when no target is observed.
    """
    if estimator not in _CRPS_ESTIMATORS:
        raise ValueError(f"crps: estimator must be one of {_CRPS_ESTIMATORS}, got {estimator!r}")
    if implementation not in ("auto", "scoringrules", "numpy"):
        raise ValueError(f"crps: implementation must be 'auto', 'scoringrules' or 'numpy', got {implementation!r}")
    y = _target(y, "crps")
    s = _samples(samples, y, "crps")
    if estimator == "fair" and s.shape[0] < 2:
        raise ValueError(f"crps: the fair estimator needs at least 2 samples, got shape {s.shape}")
    obs = _observed(y)
    if not obs.any():
        return float("nan")
    sr = None if implementation == "numpy" else _load_scoringrules()
    if implementation == "scoringrules" and sr is None:
        raise ImportError("crps: implementation='scoringrules' needs the scoringrules package (pip install scoringrules)")
    yo, so = y[obs], s[:, obs]
    per_step = _crps_numpy(yo, so, estimator) if sr is None else _crps_scoringrules(sr, yo, so, estimator)
    return float(np.mean(per_step))


# ----------------------------------------------------------------------------------------------- point / interval
def mase(y, point_forecast, history, season: int = 1) -> float:
    """``mean|y - point_forecast| / mean|history[t] - history[t - season]|`` (NaN-aware in both).

    ``ValueError`` if the history has fewer than ``season + 1`` values, no finite seasonal
    difference, or a zero scale. NaN when no target is observed.
    """
    y = _target(y, "mase")
    p = _like_target(point_forecast, y, "mase", "point_forecast")
    h = _array(history, "mase: history")
    if h.ndim != 1:
        raise ValueError(f"mase: history must have shape (T,), got shape {h.shape}")
    if isinstance(season, bool) or int(season) != season or season < 1:
        raise ValueError(f"mase: season must be a positive integer, got {season!r}")
    season = int(season)
    if h.shape[0] < season + 1:
        raise ValueError(f"mase: history of shape {h.shape} is too short for season {season} "
                         f"(needs at least {season + 1} values)")
    diff = h[season:] - h[:-season]
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        raise ValueError(f"mase: history of shape {h.shape} has no finite lag-{season} difference")
    scale = float(np.mean(np.abs(diff)))
    if scale == 0.0:
        raise ValueError(f"mase: the mean absolute lag-{season} difference of the history is 0; MASE is undefined")
    obs = _observed(y)
    if not obs.any():
        return float("nan")
    return float(np.mean(np.abs(y[obs] - p[obs])) / scale)


def coverage(y, lower, upper) -> float:
    """Fraction of the observed targets with ``lower <= y <= upper``; NaN when none is observed."""
    y = _target(y, "coverage")
    lo = _like_target(lower, y, "coverage", "lower")
    hi = _like_target(upper, y, "coverage", "upper")
    if np.any(lo > hi):
        raise ValueError(f"coverage: lower exceeds upper at {int(np.sum(lo > hi))} of {y.shape[0]} steps")
    obs = _observed(y)
    if not obs.any():
        return float("nan")
    yo = y[obs]
    return float(np.mean((yo >= lo[obs]) & (yo <= hi[obs])))


def interval_coverage(y, samples, level: float = 0.8) -> float:
    """:func:`coverage` of the central ``level`` interval: sample quantiles ``(1 -+ level) / 2`` (0.1 / 0.9 for 0.8)."""
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"interval_coverage: level must lie in (0, 1), got {level!r}")
    y = _target(y, "interval_coverage")
    s = _samples(samples, y, "interval_coverage")
    # rounded so that level 0.8 gives exactly the levels 0.1 / 0.9 (index rounding is sensitive to 1e-17)
    lo_q, hi_q = round((1.0 - level) / 2.0, 12), round((1.0 + level) / 2.0, 12)
    lo, hi = sample_quantiles(s, (lo_q, hi_q))
    return coverage(y, lo, hi)


def summary(y, samples, history, season: int = 1) -> dict:
    """``{"wql", "crps", "mase", "coverage80"}`` of sample paths ``(S, H)`` against one window ``y (H,)``.

    wQL from the :data:`QUANTILES` of the samples, fair CRPS, MASE of the sample median
    (GluonTS's median rule) against ``history``, coverage of the 0.1-0.9 sample interval.
    """
    y = _target(y, "summary")
    s = _samples(samples, y, "summary")
    median = sample_quantiles(s, (0.5,))[0]
    return {
        "wql": wql(y, s, kind="samples"),
        "crps": crps(y, s),
        "mase": mase(y, median, history, season),
        "coverage80": interval_coverage(y, s, 0.8),
    }
