"""Time-shift sampler (Li et al., ICLR 2024, "Alleviating exposure bias in diffusion
models through sampling with shifted time steps"), ``time_shift=True`` for ``ddim`` and
the ``dpm++`` samplers: after each step the sample nominally at grid time ``t_i`` is
re-labelled with the time ``t'`` whose predicted variance best matches the variance
of the current sample, and the next step starts from ``t'``. The predicted variance
of ``x_t - offset(t)`` is ``alpha(t)^2 data_var + sigma(t)^2``. Options (all prefixed ``ts_``):

* ``ts_stat``: ``"sample"`` (default, the paper's estimator) -- the variance of each
  sample over its own entries (unbiased), giving one time per sample; meaningful for
  high-dimensional states (images, spectrograms) whose entries share a scale.
  ``"batch"`` -- the variance of each coordinate across the batch, averaged over
  coordinates, giving one time for the whole batch; use it for low-dimensional data.
* ``ts_data_var``: the data variance in the formula above (per entry for ``"sample"``,
  per coordinate averaged for ``"batch"``). Default ``process.sigma_data**2`` when the
  process has a ``sigma_data`` attribute, else 1.
* ``ts_window`` (default 0.25, must be < 0.5): the candidate times cover, in ``lambda``,
  the fraction ``ts_window`` of each neighbouring grid interval on either side of
  ``t_i`` (below 1/2 the effective times stay strictly ordered, so multistep divided
  differences stay well defined).
* ``ts_candidates`` (default 21): number of candidate times in that window (the
  nominal time is one of them and wins ties).
* ``ts_cutoff`` (default ``t_of_lambda(0)``, where signal and noise have equal weight):
  times are shifted only while ``t_i > ts_cutoff`` (the paper also stops shifting near
  the data end); the data end and the start are never shifted.
* ``ts_tol`` (default 0, the paper's rule): shift only when the measured variance
  differs from the nominal time's prediction by more than ``ts_tol`` standard errors
  of the estimator (Gaussian approximation ``v sqrt(2/(m-1))`` with ``m`` the number of
  entries averaged: the entries of one sample for ``"sample"``, the batch size times
  the entries for ``"batch"``). Where the variance hardly depends on time (VP at high
  noise) an unguarded shift follows the estimator's noise to the edge of the window;
  ``ts_tol=2`` keeps an exact model nearly exact.

The method only sees the variance, not the mean, so it suits data whose entries are
centred (images, spectrograms); for data with a large mean relative to its spread the
re-labelled time also changes the implied mean ``alpha(t') x_0``.
"""
from __future__ import annotations

import math
import warnings

import torch

from .._validate import batch_time
from .kernel import coef_dtype as _coef_dtype


def _default_data_var(process) -> float:
    sd = getattr(process, "sigma_data", None)
    return float(sd) ** 2 if sd is not None else 1.0


# --------------------------------------------------------------------------------------
# time shift (Li et al. 2024)
# --------------------------------------------------------------------------------------
def select_shifted_time(process, x: torch.Tensor, t, t_prev=None, t_next=None, *, window: float = 0.25,
                        candidates: int = 21, data_var: float | None = None, stat: str = "sample",
                        tol: float = 0.0, cond: dict | None = None) -> torch.Tensor:
    """The time whose predicted variance ``alpha^2 data_var + sigma^2`` best matches ``x``'s.

    ``x`` is nominally at time ``t``; candidates are ``candidates`` times whose
    ``lambda`` covers the fraction ``window`` of the intervals to the neighbouring grid
    times ``t_prev`` (noisier) and ``t_next`` (cleaner). Returns a 0-d tensor
    (``stat="batch"``) or one time per sample (``stat="sample"``), in ``t``'s dtype.
    See the module docstring for the estimators.
    """
    cond = dict(cond or {})
    if stat not in ("sample", "batch"):
        raise ValueError(f"unknown time-shift statistic {stat!r}; choose 'sample' or 'batch'")
    if not 0.0 <= window < 0.5:
        raise ValueError(f"ts_window must lie in [0, 0.5), got {window}")
    if tol < 0:
        raise ValueError(f"ts_tol must be >= 0, got {tol}")
    if not (isinstance(candidates, int) and candidates >= 1):
        raise ValueError(f"ts_candidates must be a positive integer, got {candidates!r}")
    dt = _coef_dtype(x)
    t = torch.as_tensor(t, dtype=dt, device=x.device)
    data_var = _default_data_var(process) if data_var is None else float(data_var)
    lam = process.lambda_(t)
    lo = process.lambda_(torch.as_tensor(t_prev, dtype=dt, device=x.device)) if t_prev is not None else lam
    hi = process.lambda_(torch.as_tensor(t_next, dtype=dt, device=x.device)) if t_next is not None else lam
    down = torch.nan_to_num(window * (lam - lo), posinf=0.0, nan=0.0)  # towards the prior end
    up = torch.nan_to_num(window * (hi - lam), posinf=0.0, nan=0.0)  # towards the data end
    u = torch.linspace(-1.0, 1.0, candidates, dtype=dt, device=x.device) if candidates > 1 else torch.zeros(1, dtype=dt, device=x.device)
    u = u[torch.argsort(u.abs(), stable=True)]  # nominal first: ties resolve to no shift
    lam_c = lam + torch.where(u < 0, u * down, u * up)
    t_c = process.t_of_lambda(lam_c).to(dt)
    t_c[u == 0] = t  # exact nominal time (no round trip through t_of_lambda)
    v_c = process.alpha(t_c) ** 2 * data_var + process.sigma(t_c) ** 2  # (C,), v_c[0] at the nominal time
    xc = (x - process.offset(batch_time(t, x), **cond)).to(dt)
    if stat == "sample":
        flat = xc.reshape(x.shape[0], -1)
        if flat.shape[1] < 2:
            raise ValueError("ts_stat='sample' needs at least 2 entries per sample; use ts_stat='batch'")
        v = flat.var(dim=1)  # (n,)
        m = flat.shape[1]
        if m < 64:
            warnings.warn(f"time shift with ts_stat='sample' on states of {m} entries: the per-sample variance "
                          "is too noisy to place a time; ts_stat='batch' suits low-dimensional data", stacklevel=3)
        idx = torch.argmin((v[:, None] - v_c[None, :]).abs(), dim=1)
    else:
        if x.shape[0] < 2:
            raise ValueError("ts_stat='batch' needs a batch of at least 2 samples")
        v = xc.var(dim=0).mean()
        m = xc.numel()
        idx = torch.argmin((v - v_c).abs())
    if tol > 0:
        se = v * math.sqrt(2.0 / max(m - 1, 1))
        idx = torch.where((v - v_c[0]).abs() <= tol * se, torch.zeros_like(idx), idx)
    return t_c[idx]


class _TimeShift:
    """Per-run state of the time-shift option (None-object when disabled)."""

    def __init__(self, process, times, enabled, cond, window=0.25, candidates=21, data_var=None,
                 stat="sample", cutoff=None, tol=0.0):
        self.enabled = bool(enabled)
        self.process, self.times, self.cond = process, times, cond
        self.kw = dict(window=window, candidates=candidates, data_var=data_var, stat=stat, tol=tol)
        if self.enabled:
            if cutoff is None:
                cutoff = float(process.t_of_lambda(torch.zeros((), dtype=times.dtype)))
            self.cutoff = float(cutoff)

    def __call__(self, x, i):
        """Shifted time of ``x`` that sits at grid index ``i`` (after a step), or None for no shift."""
        if not self.enabled or i <= 0 or i >= len(self.times) - 1 or float(self.times[i]) <= self.cutoff:
            return None
        t = self.times[i]
        return select_shifted_time(self.process, x, t, self.times[i - 1], self.times[i + 1],
                                   cond=self.cond, **self.kw)


def _split_ts_options(options: dict) -> dict:
    out = {}
    for key in ("window", "candidates", "data_var", "stat", "cutoff", "tol"):
        if "ts_" + key in options:
            out[key] = options.pop("ts_" + key)
    return out
