"""Deterministic (and DDIM-/DPM-SDE-style) reverse samplers for linear Gaussian processes.

Every sampler here talks to the process only through the linear protocol
``alpha(t)``, ``sigma(t)``, ``lambda_(t) = log(alpha/sigma)``, ``t_of_lambda`` and
``offset(t, **cond)`` (``x_t = alpha x_0 + offset + sigma eps``), and to the model only
through a :class:`~stochgen.parameterization.Prediction` (which converts score / eps /
x0 / v and counts NFE). They therefore work for VP, VE, EDM, interpolants and
mean-reverting processes alike.

Two equivalent views of the probability-flow ODE are used:

* **VE-equivalent form** (``euler``, ``heun``): with ``x~ = (x - offset)/alpha`` and
  ``s~ = sigma/alpha = exp(-lambda)``, the marginal is ``x~ = x_0 + s~ eps`` and the ODE
  is ``dx~/ds~ = (x~ - x0_hat(x, t))/s~`` (Karras et al. 2022, eq. 4 with s(t) = 1).
* **Exponential-integrator form** (``ddim``, ``dpm++*``): in the centred state
  ``xc = x - offset`` the linear part is integrated exactly in ``lambda``:
  ``xc_t = (sigma_t/sigma_s) xc_s + sigma_t int_{lambda_s}^{lambda_t} e^lambda x0_hat d lambda``
  (Lu et al. 2022, DPM-Solver++), and the integral is approximated by a Taylor
  expansion of ``x0_hat`` in ``lambda`` built from the previous steps (multistep).

Implementation: the schedule of the whole grid is evaluated once per call. For the common
case -- a process whose ``offset`` is the plain number 0 (all but the mean-reverting ones) and
one time for the whole batch -- alpha, sigma and lambda at every grid time are Python floats,
each step folds its coefficients into 1-6 full-size tensor ops (``torch.lerp`` / ``add`` with
``alpha=``), and the model's output is converted to x0 with the same float coefficients (one
model call, as ``Prediction.x0``). Differences of predictions (Heun's ``x0_2 - x~_e``,
DPM-Solver++'s divided differences) are still formed before they are scaled, so round-off is
not amplified where the coefficients grow. A nonzero offset (a tensor), per-sample times (time
shift with ``ts_stat="sample"``), a schedule that needs gradients and Euler/Heun steps from
``alpha = 0`` take the general path, in tensors.

A grid produced by :mod:`stochgen.samplers.grids` ends at the data end ``t_lo`` where
``sigma = 0`` (``lambda = inf``); that last interval is taken as an explicit denoising
step ``x = alpha x0_hat + offset`` by every sampler (first order in the step, exact
given the denoiser). A step *from* ``alpha = 0`` (an interpolant's prior end,
``lambda = -inf``) is also handled: the exponential-integrator formulas stay finite
there and the Heun correction is skipped for that step.

Note: the plain Euler step in ``s~`` coincides algebraically with DDIM (``eta = 0``) and
with DPM-Solver++ order 1; the three names exist because users look for each, and
they differ only in round-off and in the options they accept.

Time-shift sampler (Li et al., ICLR 2024, "Alleviating exposure bias in diffusion
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
from ..parameterization import KINDS, Prediction
from .kernel import check_times
from .registry import register

SQRT2_M1 = math.sqrt(2.0) - 1.0


# --------------------------------------------------------------------------------------
# helpers shared by the samplers
# --------------------------------------------------------------------------------------
def _coef_dtype(x: torch.Tensor) -> torch.dtype:
    """Schedule coefficients are computed in float64 unless the device cannot (MPS)."""
    return torch.float32 if x.device.type == "mps" else torch.float64


class _At:
    """Schedule quantities at time ``t`` (scalar or one per sample), shaped to broadcast with ``x``."""

    __slots__ = ("t", "alpha", "sigma", "lam", "off")
    fast = False  # see _Pt

    def __init__(self, process, t: torch.Tensor, x: torch.Tensor, cond: dict):
        tb = batch_time(t, x)
        self.t = t
        self.alpha = process.alpha(tb)
        self.sigma = process.sigma(tb)
        self.lam = process.lambda_(tb)
        off = process.offset(tb, **cond)
        self.off = off if torch.is_tensor(off) else torch.as_tensor(off, dtype=tb.dtype, device=x.device)

    @property
    def sig_tilde(self) -> torch.Tensor:
        """sigma / alpha = exp(-lambda) (inf where alpha = 0)."""
        return torch.exp(-self.lam)

    def is_data_end(self) -> bool:
        return bool((self.sigma == 0).all())


def _randn_like(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _cast(c, x):
    return c.to(x.dtype) if torch.is_tensor(c) else c


def _default_data_var(process) -> float:
    sd = getattr(process, "sigma_data", None)
    return float(sd) ** 2 if sd is not None else 1.0


def _fexp(v: float) -> float:
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _scaled(x: torch.Tensor, c: float) -> torch.Tensor:
    return x if c == 1.0 else x * c


class _Pt:
    """Schedule quantities at one scalar time as Python floats: the fast path (see :class:`_Schedule`).

    ``t`` is the time as a 0-d tensor (what :class:`_At` and ``Prediction``'s conversions get),
    ``tm`` the time as the model gets it: one entry per sample, in the state's dtype.
    """

    __slots__ = ("t", "tm", "alpha", "sigma", "lam")
    fast = True

    def __init__(self, t, tm, alpha: float, sigma: float, lam: float):
        self.t, self.tm, self.alpha, self.sigma, self.lam = t, tm, alpha, sigma, lam

    @property
    def sig_tilde(self) -> float:
        """sigma / alpha = exp(-lambda) (inf where alpha = 0)."""
        return _fexp(-self.lam)

    def is_data_end(self) -> bool:
        return self.sigma == 0.0


def _try(fn, *args):
    """``fn(*args)``, or None where Python-float arithmetic fails (a division by 0, an overflow) --
    the general (tensor) path then takes the step and gives what it always gave there (inf / nan)."""
    try:
        return fn(*args)
    except ArithmeticError:
        return None


class _Schedule:
    """The schedule over a sampler call's time grid, and the model calls.

    Fast path: when the process's offset is the plain number 0 (every linear process but the
    mean-reverting ones), alpha, sigma and lambda at all grid times come from one vectorised
    call each and are kept as Python floats (:class:`_Pt`), so a step's coefficients cost no
    tensor ops and no device syncs, and the samplers fold them into a few full-size ops.
    Otherwise (an offset tensor), and at per-sample times (time shift with ``ts_stat="sample"``),
    points are :class:`_At` (tensors) and the samplers take their general path.
    """

    def __init__(self, process, pred, x: torch.Tensor, times: torch.Tensor):
        self.process, self.pred, self.cond = process, pred, pred.cond
        self.x_like, self.n = x, x.shape[0]
        self.t = times.unbind(0)
        off = process.offset(batch_time(times[0], x), **self.cond)
        self.fast = isinstance(off, (int, float)) and not isinstance(off, bool) and off == 0
        cls = type(pred)
        # the model's output converted here with float coefficients, as Prediction.x0 would
        self.direct = (getattr(pred, "kind", None) in KINDS and getattr(cls, "x0", None) is Prediction.x0
                       and getattr(cls, "as_kind", None) is Prediction.as_kind)
        if self.fast:
            tt = times.reshape((-1,) + (1,) * (x.dim() - 1))
            sched = [torch.broadcast_to(torch.as_tensor(f(tt)), tt.shape).reshape(-1)
                     for f in (process.alpha, process.sigma, process.lambda_)]
            # a schedule with parameters that gradients must reach stays in tensors (general path)
            self.fast = not (torch.is_grad_enabled() and any(c.requires_grad for c in sched))
        if self.fast:
            tm = times.to(x.dtype).unsqueeze(1).expand(-1, self.n).unbind(0)
            self.pts = [_Pt(*v) for v in zip(self.t, tm, *(c.tolist() for c in sched))]

    def __getitem__(self, i: int):
        """The schedule at grid time ``i``."""
        return self.pts[i] if self.fast else _At(self.process, self.t[i], self.x_like, self.cond)

    def point(self, t: torch.Tensor):
        """The schedule at a time off the grid (0-d, or one per sample)."""
        if not (self.fast and t.dim() == 0):
            return _At(self.process, t, self.x_like, self.cond)
        tb = batch_time(t, self.x_like)
        p = self.process
        return _Pt(t, t.to(self.x_like.dtype).expand(self.n), float(p.alpha(tb)), float(p.sigma(tb)),
                   float(p.lambda_(tb)))

    def general(self, p):
        """``p`` as an :class:`_At` (the general path's tensors)."""
        return _At(self.process, p.t, self.x_like, self.cond) if p.fast else p

    def fast_x0(self, p) -> bool:
        """Whether :meth:`x0` at ``p`` takes the fast conversion (it does what ``pred.x0`` does either way)."""
        return p.fast and self.direct and (p.alpha != 0.0 or self.pred.kind in ("x0", "v"))

    def x0(self, x: torch.Tensor, p) -> torch.Tensor:
        """x0_hat(x, t) from one model call (``pred.x0``), converted with float coefficients on the fast path."""
        if not self.fast_x0(p):
            return self.pred.x0(x, p.t)
        kind = self.pred.kind
        out = self.pred(x, p.tm)
        a, s = p.alpha, p.sigma
        if kind == "x0":
            return out
        if kind == "eps":  # x0 = (x - s eps) / a
            return torch.add(x, out, alpha=-s).div_(a)
        if kind == "score":  # eps = -s score
            return torch.add(x, out, alpha=s * s).div_(a)
        n2 = a * a + s * s  # v = a eps - s x0
        return torch.add(x * (a / n2), out, alpha=-s / n2)


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


def _reject_unknown(name: str, options: dict):
    if options:
        raise TypeError(f"sampler {name!r} got unknown option(s): {', '.join(sorted(options))}")


# --------------------------------------------------------------------------------------
# Euler and Heun (EDM) in the VE-equivalent form
# --------------------------------------------------------------------------------------
def _xtilde(x, at: _At):
    return (x - _cast(at.off, x)) / _cast(at.alpha, x)


def _from_xtilde(xt, at: _At):
    return _cast(at.alpha, xt) * xt + _cast(at.off, xt)


def _ve_lerp(x, a: float, x0, a_next: float, r: float):
    """``a_next (r x~ + (1 - r) x0)`` with ``x~ = x / a`` (fast path: zero offset, float coefficients)."""
    if a == 1.0 and a_next == 1.0 and x0.dtype == x.dtype:
        # x0 + r (x - x0): the weight r, not 1 - r, so that a small r keeps its relative precision in float32
        return torch.lerp(x0, x, r)
    return torch.add(_scaled(x, a_next * r / a), x0, alpha=a_next * (1.0 - r))


def _ve_ratio(cur: _Pt, nxt: _Pt):
    """r = s~_next / s~ of a fast Euler/Heun step (None: take the general path)."""
    s, s_next = cur.sig_tilde, nxt.sig_tilde
    if not (math.isfinite(s) and s > 0.0 and s_next > 0.0 and cur.alpha != 0.0):
        return None
    return s_next / s


def _euler_general(pred, x, cur: _At, nxt: _At):
    s, s_next = cur.sig_tilde, nxt.sig_tilde
    if nxt.is_data_end():
        return _from_xtilde(pred.x0(x, cur.t), nxt)
    if bool(torch.isfinite(s).all()):
        x0 = pred.x0(x, cur.t)
        xt = _xtilde(x, cur)
        return _from_xtilde(xt + _cast(s_next - s, x) * ((xt - x0) / _cast(s, x)), nxt)
    # alpha = 0 at the start: the same Euler step written finitely (x~ = x0 + s~ eps)
    x0, eps = pred.both(x, cur.t)
    return _from_xtilde(x0 + _cast(s_next, x) * eps, nxt)


@register("euler", kind="ode", default_grid="karras", requires="linear")
def euler(process, pred, x, times, *, generator=None, callback=None, **options):
    """Euler on the probability-flow ODE in the VE-equivalent form dx~/ds~ = (x~ - x0_hat)/s~ (k-diffusion's euler)."""
    _reject_unknown("euler", options)
    times = check_times(times, x, coef=True, process=process, pred=pred)
    sch = _Schedule(process, pred, x, times)
    cur = sch[0]
    for i in range(len(times) - 1):
        nxt = sch[i + 1]
        if cur.fast and nxt.fast and nxt.is_data_end():
            x = sch.x0(x, cur) * nxt.alpha
        elif cur.fast and nxt.fast and (r := _ve_ratio(cur, nxt)) is not None:
            x = _ve_lerp(x, cur.alpha, sch.x0(x, cur), nxt.alpha, r)  # x~ + (s~' - s~)(x~ - x0)/s~
        else:
            x = _euler_general(pred, x, sch.general(cur), sch.general(nxt))
        cur = nxt
        if callback is not None:
            callback(i, sch.t[i + 1], x)
    return x


def _heun_general(pred, x, cur: _At, nxt: _At):
    s, s_next = cur.sig_tilde, nxt.sig_tilde
    if nxt.is_data_end():
        return _from_xtilde(pred.x0(x, cur.t), nxt)
    if not bool(torch.isfinite(s).all()):
        x0, eps = pred.both(x, cur.t)
        return _from_xtilde(x0 + _cast(s_next, x) * eps, nxt)
    x0 = pred.x0(x, cur.t)
    xt = _xtilde(x, cur)
    ds = _cast(s_next - s, x)
    d = (xt - x0) / _cast(s, x)
    xt_e = xt + ds * d
    x0_2 = pred.x0(_from_xtilde(xt_e, nxt), nxt.t)
    d2 = (xt_e - x0_2) / _cast(s_next, x)
    return _from_xtilde(xt + ds * 0.5 * (d + d2), nxt)


@register("heun", kind="ode", default_grid="karras", requires="linear")
def heun(process, pred, x, times, *, generator=None, callback=None, S_churn: float = 0.0, S_min: float = 0.0,
         S_max: float = float("inf"), S_noise: float = 1.0, **options):
    """EDM's Heun sampler (Karras et al. 2022, Alg. 2) with churn, in the VE-equivalent noise level s~ = sigma/alpha.

    ``S_churn`` > 0 adds noise before each step whose s~ lies in [S_min, S_max]:
    s^ = s~ (1 + gamma), gamma = min(S_churn / N, sqrt(2) - 1), x~ += sqrt(s^2 - s~^2) S_noise z,
    and the model is then evaluated at t^ = t_of_lambda(-log s^) (s^ is capped at the
    process's largest time ``t_hi`` when that is finite). The last step (to sigma = 0)
    and a step from alpha = 0 are Euler steps. NFE = 2 N - 1.
    """
    _reject_unknown("heun", options)
    if S_churn < 0 or S_noise < 0:
        raise ValueError(f"S_churn and S_noise must be >= 0, got {S_churn}, {S_noise}")
    times = check_times(times, x, coef=True, process=process, pred=pred)
    n_steps = len(times) - 1
    gamma_max = min(S_churn / n_steps, SQRT2_M1) if S_churn > 0 else 0.0
    s_cap = math.inf
    if gamma_max > 0 and math.isfinite(process.t_hi):
        s_cap = float(torch.exp(-process.lambda_(torch.tensor(process.t_hi, dtype=times.dtype))))
    sch = _Schedule(process, pred, x, times)
    cur = sch[0]
    for i in range(n_steps):
        nxt = sch[i + 1]
        if gamma_max > 0:
            s = cur.sig_tilde
            s_f = s if cur.fast else float(s.reshape(-1)[0])
            if S_min <= s_f <= S_max and math.isfinite(s_f):
                s_hat = min(s_f * (1.0 + gamma_max), s_cap)
                if s_hat > s_f:
                    c = math.sqrt(s_hat**2 - s_f**2) * S_noise
                    z = _randn_like(x, generator)
                    t_hat = process.t_of_lambda(torch.tensor(-math.log(s_hat), dtype=times.dtype, device=x.device))
                    new = sch.point(t_hat)
                    if cur.fast and new.fast and cur.alpha != 0.0:  # x~ = x / a + c z, x = a^ x~
                        x = torch.add(_scaled(x, new.alpha / cur.alpha), z, alpha=new.alpha * c)
                    else:
                        x = _from_xtilde(_xtilde(x, sch.general(cur)) + c * z, sch.general(new))
                    cur = new
        if cur.fast and nxt.fast and nxt.is_data_end():
            x = sch.x0(x, cur) * nxt.alpha
        elif cur.fast and nxt.fast and (r := _ve_ratio(cur, nxt)) is not None:
            # x~' = x~ + (s~' - s~)(d + d2)/2 with d = (x~ - x0)/s~ and d2 = (x~_e - x0_2)/s~' at the Euler point
            # x~_e = r x~ + (1 - r) x0, r = s~'/s~: x~' = (x~ + x~_e)/2 + (1/r - 1)/2 (x0_2 - x~_e). x0_2 - x~_e is
            # formed first, as in d2: near the data end x0_2 follows x~_e, and their round-off cancels there.
            a, a_next = cur.alpha, nxt.alpha
            x0 = sch.x0(x, cur)
            x_e = _ve_lerp(x, a, x0, a_next, r)
            x0_2 = sch.x0(x_e, nxt)
            x = _add_(_ve_lerp(x, a, x0, a_next, 0.5 * (1.0 + r)), torch.sub(x0_2, x_e, alpha=1.0 / a_next),
                      a_next * 0.5 * (1.0 / r - 1.0))
        else:
            x = _heun_general(pred, x, sch.general(cur), sch.general(nxt))
        cur = nxt
        if callback is not None:
            callback(i, sch.t[i + 1], x)
    return x


# --------------------------------------------------------------------------------------
# DDIM
# --------------------------------------------------------------------------------------
def _ddim_coef(cur: _Pt, nxt: _Pt, eta: float):
    """(c2, keep) of a fast DDIM step: c^2 = eta^2 sigma_t^2 (1 - e^{-2h}) and sqrt(sigma_t^2 - c^2)."""
    c2 = 0.0
    if eta > 0:
        c2 = eta**2 * nxt.sigma**2 * (-math.expm1(-2.0 * (nxt.lam - cur.lam)))
        if math.isnan(c2):
            c2 = 0.0
    return c2, math.sqrt(max(nxt.sigma**2 - c2, 0.0)) / cur.sigma


@register("ddim", kind="ode", default_grid="karras", requires="linear")
def ddim(process, pred, x, times, *, generator=None, callback=None, eta: float = 0.0, time_shift: bool = False,
         **options):
    """DDIM (Song et al. 2021) for any linear process; eta = 0 deterministic, eta = 1 ancestral (DDPM-like).

    x_t = alpha_t x0_hat + offset_t + sqrt(sigma_t^2 - c^2) eps_hat + c z with
    c = eta sigma_t sqrt(1 - e^{-2h}), h = lambda_t - lambda_s. ``time_shift=True`` turns on
    the time-shift sampler (options ``ts_*``, see the module docstring).
    """
    ts_kw = _split_ts_options(options)
    _reject_unknown("ddim", options)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    times = check_times(times, x, coef=True, process=process, pred=pred)
    cond = pred.cond
    shift = _TimeShift(process, times, time_shift, cond, **ts_kw)
    sch = _Schedule(process, pred, x, times)
    cur = sch[0]
    for i in range(len(times) - 1):
        nxt = sch[i + 1]
        coef = _try(_ddim_coef, cur, nxt, eta) if (nxt.fast and sch.fast_x0(cur)) else None
        if coef is not None:
            # eps_hat = (x - alpha_s x0_hat)/sigma_s, so x_t = k x + (alpha_t - k alpha_s) x0_hat, k = keep/sigma_s
            c2, k = coef
            x0 = sch.x0(x, cur)
            if k == 0.0:
                x_new = x0 * nxt.alpha
            elif cur.alpha == 1.0 and nxt.alpha == 1.0 and x0.dtype == x.dtype:
                x_new = torch.lerp(x0, x, k)
            else:
                x_new = torch.add(x * k, x0, alpha=nxt.alpha - k * cur.alpha)
            if eta > 0 and not nxt.is_data_end():
                x_new = _add_(x_new, _randn_like(x, generator), math.sqrt(c2))
            x = x_new
        else:
            cg, ng = sch.general(cur), sch.general(nxt)
            x0, eps = pred.both(x, cg.t)
            # c^2 = eta^2 sigma_t^2 (1 - e^{-2h}); e^{-h} = sigma_t alpha_s / (sigma_s alpha_t) is 0 at either end
            if eta > 0:
                c2 = torch.nan_to_num(eta**2 * ng.sigma**2 * (-torch.expm1(-2.0 * (ng.lam - cg.lam))), nan=0.0)
            else:
                c2 = torch.zeros_like(ng.sigma)
            keep = torch.sqrt(torch.clamp(ng.sigma**2 - c2, min=0.0))
            x = _cast(ng.alpha, x) * x0 + _cast(ng.off, x) + _cast(keep, x) * eps
            if eta > 0 and not ng.is_data_end():
                x = x + _cast(torch.sqrt(c2), x) * _randn_like(x, generator)
        t_eff = shift(x, i + 1)
        cur = nxt if t_eff is None else sch.point(t_eff)
        if callback is not None:
            callback(i, sch.t[i + 1], x)
    return x


# --------------------------------------------------------------------------------------
# DPM-Solver++ (multistep, data prediction) and its SDE variant
# --------------------------------------------------------------------------------------
def _dpmpp_step(x, cur: _At, nxt: _At, D0, hist, order: int):
    """One multistep DPM-Solver++ step of the given order from ``cur`` to ``nxt``.

    ``hist`` holds (lambda, x0_hat) of the previous steps, most recent last. With the
    Taylor expansion x0(lambda) = D0 + D' u + D'' u^2 / 2 (u = lambda - lambda_s) the
    exact integral gives
        xc_t = (sigma_t/sigma_s) xc_s - alpha_t phi1 D0 + alpha_t phi2 (h D') - alpha_t phi3 (h^2 D''),
    phi1 = expm1(-h), phi2 = phi1/h + 1, phi3 = phi2/h - 1/2; h D' and h^2 D'' come from
    divided differences of the stored predictions (non-uniform steps).
    """
    h = nxt.lam - cur.lam
    a_t = nxt.alpha
    phi1 = torch.expm1(-h)
    xc = x - _cast(cur.off, x)
    out = _cast(nxt.sigma / cur.sigma, x) * xc - _cast(a_t * phi1, x) * D0
    if order >= 2 and len(hist) >= 1:
        lam1, D1m = hist[-1]
        r0 = (cur.lam - lam1) / h
        D1_0 = (D0 - D1m) / _cast(r0, x)  # ~ h D'
        if order >= 3 and len(hist) >= 2:
            lam2, D2m = hist[-2]
            r1 = (lam1 - lam2) / h
            D1_1 = (D1m - D2m) / _cast(r1, x)
            D1 = D1_0 + _cast(r0 / (r0 + r1), x) * (D1_0 - D1_1)  # ~ h D'
            D2 = _cast(2.0 / (r0 + r1), x) * (D1_0 - D1_1)  # ~ h^2 D''
            phi2 = phi1 / h + 1.0
            phi3 = phi2 / h - 0.5
            out = out + _cast(a_t * phi2, x) * D1 - _cast(a_t * phi3, x) * D2
        else:  # DPM-Solver++(2M): D0 + D1_0 / 2 in the first-order formula
            out = out - _cast(0.5 * a_t * phi1, x) * D1_0
    return out + _cast(nxt.off, x)


def _dpmpp_coef(cur: _Pt, nxt: _Pt, lams, order: int):
    """:func:`_dpmpp_step`'s coefficients on the fast path, as Python floats: (c_x, c0, w) for orders 1
    and 2, (c_x, c0, g0, g1) for order 3; ``lams`` are the lambdas of the stored predictions
    D_{-1}, D_{-2}, most recent first (see :func:`_dpmpp_fast`)."""
    h = nxt.lam - cur.lam
    a_t = nxt.alpha
    phi1 = math.expm1(-h)
    c_x, c0 = nxt.sigma / cur.sigma, -a_t * phi1
    if order >= 2 and len(lams) >= 1:
        r0 = (cur.lam - lams[0]) / h  # D1_0 = (D0 - D_{-1}) / r0 ~ h D'
        if order >= 3 and len(lams) >= 2:
            r1 = (lams[0] - lams[1]) / h  # D1_1 = (D_{-1} - D_{-2}) / r1
            phi2 = phi1 / h + 1.0
            phi3 = phi2 / h - 0.5
            k, m = r0 / (r0 + r1), 2.0 / (r0 + r1)
            # a phi2 D1 - a phi3 D2 = g0 (D0 - D_{-1}) + g1 (D_{-1} - D_{-2}),
            # D1 = (1 + k) D1_0 - k D1_1 ~ h D', D2 = m (D1_0 - D1_1) ~ h^2 D''
            return c_x, c0, a_t * (phi2 * (1.0 + k) - phi3 * m) / r0, a_t * (phi3 * m - phi2 * k) / r1
        return c_x, c0, -0.5 / r0  # DPM-Solver++(2M): D0 + D1_0 / 2 = lerp(D0, D_{-1}, -1/(2 r0))
    return c_x, c0, None


def _add_(out: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """``out + c y``, in place in ``out`` (a fresh tensor of ours) unless that would lower y's dtype."""
    return out.add_(y, alpha=c) if out.dtype == torch.promote_types(out.dtype, y.dtype) else torch.add(out, y, alpha=c)


def _dpmpp_fast(x, coef, Ds):
    """:func:`_dpmpp_step` from :func:`_dpmpp_coef`'s floats in 2 (order 1), 3 (order 2) or 6 (order 3)
    full-size ops; ``Ds`` = (D0, D_{-1}, D_{-2}) as far as used. Differences of predictions are formed
    before they are scaled, as in :func:`_dpmpp_step` (where 1/r0 is large they nearly cancel)."""
    if len(coef) == 4:
        c_x, c0, g0, g1 = coef
        out = torch.sub(Ds[0], Ds[1]).mul_(g0)
        return _add_(out.add_(torch.sub(Ds[1], Ds[2]), alpha=g1).add_(Ds[0], alpha=c0), x, c_x)
    c_x, c0, w = coef
    return _add_(torch.mul(Ds[0], c0) if w is None else torch.lerp(Ds[0], Ds[1], w).mul_(c0), x, c_x)


def _finite_lam(p) -> bool:
    return math.isfinite(p.lam) if p.fast else bool(torch.isfinite(p.lam).all())


def final_order_cap(order: int, i: int, n_steps: int, to_data: bool, enabled: bool = True) -> int:
    """The order a multistep sampler may use at step ``i`` of ``n_steps`` (``lower_order_final``).

    A grid that ends at the data end (``to_data``: sigma = 0 there) finishes with the explicit
    denoising step, so capping step i at ``n_steps - i`` only lowers the step into the last grid
    time before it (third order -> at most second): one step's local error O(h^3), global order
    kept, and it keeps the huge last log-SNR step of a VP grid uniform in t from diverging. A grid
    that stops short of the data end has no such step after it: there the cap would make the final
    step first order and the whole method second order, so it applies only to few-step grids
    (fewer than 15 steps, DPM-Solver's and diffusers' rule) where stability matters more.
    """
    if enabled and (to_data or n_steps < 15):
        return min(order, n_steps - i)
    return order


def _dpmpp_multistep(name, order, process, pred, x, times, generator, callback, time_shift, lower_order_final,
                     options):
    ts_kw = _split_ts_options(options)
    _reject_unknown(name, options)
    times = check_times(times, x, coef=True, process=process, pred=pred)
    cond = pred.cond
    shift = _TimeShift(process, times, time_shift, cond, **ts_kw)
    sch = _Schedule(process, pred, x, times)
    n_steps = len(times) - 1
    hist: list = []  # (lambda, x0_hat): lambda a float on the fast path, else a tensor
    to_data = sch[n_steps].is_data_end()
    cur = sch[0]
    for i in range(n_steps):
        nxt = sch[i + 1]
        step_order = final_order_cap(order, i, n_steps, to_data, lower_order_final)
        coef = None
        if cur.fast and nxt.fast and not nxt.is_data_end() and all(type(lam) is float for lam, _ in hist):
            coef = _try(_dpmpp_coef, cur, nxt, [lam for lam, _ in reversed(hist)], step_order)
        D0 = sch.x0(x, cur)
        if coef is not None:
            x = _dpmpp_fast(x, coef, [D0] + [D for _, D in reversed(hist)])
        elif nxt.is_data_end():
            x = D0 * nxt.alpha if nxt.fast else _cast(nxt.alpha, x) * D0 + _cast(nxt.off, x)
        else:
            x = _dpmpp_step(x, sch.general(cur), sch.general(nxt), D0, hist, step_order)
        if _finite_lam(cur):
            hist.append((cur.lam, D0))
            del hist[:-2]
        else:  # a prediction at alpha = 0 (lambda = -inf) cannot enter divided differences
            hist.clear()
        t_eff = shift(x, i + 1)
        cur = nxt if t_eff is None else sch.point(t_eff)
        if callback is not None:
            callback(i, sch.t[i + 1], x)
    return x


@register("dpm++1", kind="ode", default_grid="log_snr", requires="linear")
def dpmpp_1(process, pred, x, times, *, generator=None, callback=None, time_shift: bool = False, **options):
    """DPM-Solver++ order 1 (exponential integrator in lambda, data prediction; equals DDIM with eta = 0)."""
    return _dpmpp_multistep("dpm++1", 1, process, pred, x, times, generator, callback, time_shift, False, options)


@register("dpm++2m", kind="ode", default_grid="log_snr", requires="linear")
def dpmpp_2m(process, pred, x, times, *, generator=None, callback=None, time_shift: bool = False,
             lower_order_final: bool = True, **options):
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2): second-order multistep in lambda, one NFE per step.

    The first step is first order; the last step to sigma = 0 is the explicit denoising
    step. ``lower_order_final`` (default on; :func:`final_order_cap`) caps the order of step i
    at ``n_steps - i`` on grids that end at the data end, whatever their length, so the step
    into the last grid time before the denoising step is at most second order (for 3M): on a
    grid uniform in t (VP) that step spans a far larger log-SNR interval than the ones before
    it, and third-order extrapolation over it made 15 steps less accurate than 10. On grids
    that stop short of the data end it applies below 15 steps only (as in diffusers).
    """
    return _dpmpp_multistep("dpm++2m", 2, process, pred, x, times, generator, callback, time_shift,
                            lower_order_final, options)


@register("dpm++3m", kind="ode", default_grid="log_snr", requires="linear")
def dpmpp_3m(process, pred, x, times, *, generator=None, callback=None, time_shift: bool = False,
             lower_order_final: bool = True, **options):
    """DPM-Solver++(3M): third-order multistep in lambda (orders 1, 2 at the first steps), one NFE per step.

    ``lower_order_final`` as for ``dpm++2m``.
    """
    return _dpmpp_multistep("dpm++3m", 3, process, pred, x, times, generator, callback, time_shift,
                            lower_order_final, options)


def _sde_coef(cur: _Pt, nxt: _Pt, prev_lam, eta: float, midpoint: bool, s_noise: float):
    """(decay, c0, w, noise_sd) of a fast DPM-Solver++(2M) SDE step, as Python floats:
    x_t = decay x_s + c0 lerp(D0, D_prev, w) + noise_sd z (w None for a first-order step)."""
    h = nxt.lam - cur.lam
    eta_h = eta * h if eta > 0 else 0.0
    psi = h + eta_h
    one_m = -math.expm1(-psi)  # 1 - e^{-psi}
    decay = nxt.sigma / cur.sigma * _fexp(-eta_h)
    if math.isnan(decay):
        decay = 0.0
    c0, w = nxt.alpha * one_m, None
    if prev_lam is not None:  # + c (D0 - D_prev) / r = c0 (D0 + w (D_prev - D0))
        r = (cur.lam - prev_lam) / h
        c = 0.5 * nxt.alpha * one_m if midpoint else nxt.alpha * (1.0 - one_m / psi)
        w = -c / (r * c0)
    noise_sd = nxt.sigma * math.sqrt(-math.expm1(-2.0 * eta_h)) * s_noise if eta > 0 else 0.0
    return decay, c0, w, noise_sd


@register("dpm++2m-sde", kind="sde", default_grid="log_snr", requires="linear")
def dpmpp_2m_sde(process, pred, x, times, *, generator=None, callback=None, eta: float = 1.0, s_noise: float = 1.0,
                 solver_type: str = "midpoint", time_shift: bool = False, **options):
    """DPM-Solver++(2M) SDE (Lu et al. 2022; k-diffusion's dpmpp_2m_sde) for any linear process.

    With h = lambda_t - lambda_s and psi = (1 + eta) h:
    xc_t = (sigma_t/sigma_s) e^{-eta h} xc_s + alpha_t (1 - e^{-psi}) D0 + [2nd-order term]
           + sigma_t sqrt(1 - e^{-2 eta h}) s_noise z.
    The 2nd-order term is 0.5 alpha_t (1 - e^{-psi}) (D0 - D_prev)/r (``solver_type="midpoint"``)
    or alpha_t (1 - (1 - e^{-psi})/psi) (D0 - D_prev)/r (``"heun"``), r = h_prev / h.
    eta = 0 gives the deterministic DPM-Solver++(2M) ("midpoint"); eta = 1 the reverse SDE.
    """
    ts_kw = _split_ts_options(options)
    _reject_unknown("dpm++2m-sde", options)
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"unknown solver_type {solver_type!r}; choose 'midpoint' or 'heun'")
    if eta < 0 or s_noise < 0:
        raise ValueError(f"eta and s_noise must be >= 0, got {eta}, {s_noise}")
    times = check_times(times, x, coef=True, process=process, pred=pred)
    cond = pred.cond
    shift = _TimeShift(process, times, time_shift, cond, **ts_kw)
    sch = _Schedule(process, pred, x, times)
    prev = None  # (lambda, D)
    cur = sch[0]
    for i in range(len(times) - 1):
        nxt = sch[i + 1]
        second = prev is not None and _finite_lam(cur)
        coef = None
        if cur.fast and nxt.fast and not nxt.is_data_end() and (not second or type(prev[0]) is float):
            coef = _try(_sde_coef, cur, nxt, prev[0] if second else None, eta, solver_type == "midpoint", s_noise)
        D0 = sch.x0(x, cur)
        if coef is not None:
            decay, c0, w, noise_sd = coef
            x_new = _add_(torch.mul(D0, c0) if w is None else torch.lerp(D0, prev[1], w).mul_(c0), x, decay)
            if eta > 0:
                x_new = _add_(x_new, _randn_like(x, generator), noise_sd)
            x = x_new
        elif nxt.is_data_end():
            x = D0 * nxt.alpha if nxt.fast else _cast(nxt.alpha, x) * D0 + _cast(nxt.off, x)
        else:
            cg, ng = sch.general(cur), sch.general(nxt)
            h = ng.lam - cg.lam
            eta_h = eta * h if eta > 0 else torch.zeros_like(h)
            psi = h + eta_h
            one_m = -torch.expm1(-psi)  # 1 - e^{-psi}
            xc = x - _cast(cg.off, x)
            decay = torch.nan_to_num(ng.sigma / cg.sigma * torch.exp(-eta_h), nan=0.0)
            x_new = _cast(decay, x) * xc + _cast(ng.alpha * one_m, x) * D0
            if second:
                r = (cg.lam - prev[0]) / h
                dD = (D0 - prev[1]) / _cast(r, x)
                if solver_type == "midpoint":
                    x_new = x_new + _cast(0.5 * ng.alpha * one_m, x) * dD
                else:
                    x_new = x_new + _cast(ng.alpha * (1.0 - one_m / psi), x) * dD
            if eta > 0:
                noise_sd = ng.sigma * torch.sqrt(-torch.expm1(-2.0 * eta_h)) * s_noise
                x_new = x_new + _cast(noise_sd, x) * _randn_like(x, generator)
            x = x_new + _cast(ng.off, x)
        prev = (cur.lam, D0) if _finite_lam(cur) else None
        t_eff = shift(x, i + 1)
        cur = nxt if t_eff is None else sch.point(t_eff)
        if callback is not None:
            callback(i, sch.t[i + 1], x)
    return x
