"""Continuous-time Markov chains (discrete diffusion) on a finite state space.

Conventions
-----------
* States are integer index tensors ``(batch, *event_shape)`` of the
  :class:`~stochgen.spaces.Discrete` space; every position is an independent
  copy of the same chain with ``K = num_categories`` states.
* The generator at time ``t`` is ``Q_t = beta(t) * Q``: ``Q[i, j]`` (``i != j``)
  is the rate of jumping from ``i`` to ``j``, rows sum to zero. Rows index the
  current state, so probability row vectors evolve as ``p_t = p_s P(s, t)``.
* ``beta(t) >= 0`` is a :class:`RateSchedule`, ``B(t) = int_0^t beta`` its
  integral. Because ``Q`` is fixed the exact transition matrix is
  ``P(s, t) = expm((B(t) - B(s)) Q)``, closed-form for the uniform and
  absorbing chains.
* Time runs over ``[0, 1]``: ``t = 0`` is the data, ``t = 1`` the prior end;
  samplers stop at ``t_min`` (default ``1e-3``) because reverse rates are
  singular at ``t = 0``.
* Times may be scalars, one per sample (shape ``(batch,)``) or one per
  position (the state's shape). Probabilities and rates are returned in the
  floating dtype of ``t`` (or of ``p0_probs``), the default dtype for Python
  numbers; the generic chain does its matrix exponentials in float64.

Public classes: :class:`CTMC` (any rate matrix), :class:`UniformCTMC`,
:class:`AbsorbingCTMC`, the schedules :class:`ConstantRate`,
:class:`LinearRate`, :class:`LogLinearRate` (base :class:`RateSchedule`,
factory :func:`rate_schedule`) and :class:`JumpPath` (Gillespie output).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .._validate import as_tensor, batch_time, check_finite, check_time, sum_except_batch
from ..spaces.discrete import Discrete
from .. import families
from .base import Marginal, Process

# ---------------------------------------------------------------------------
# rate schedules beta(t) and their integrals B(t)
# ---------------------------------------------------------------------------


class RateSchedule:
    """A rate multiplier ``beta(t) >= 0`` on ``t in [0, 1]`` with integral ``B(t) = int_0^t beta``.

    Subclasses give ``beta``; they should also give ``integral`` and
    ``inverse_integral`` in closed form. The base class falls back to
    32-point Gauss--Legendre quadrature for ``integral`` and to bisection for
    ``inverse_integral``, so a user schedule only has to define ``beta``
    (and ``name`` / ``params`` for ``config``). To let :func:`rate_schedule`
    (and so ``processes.from_spec``) rebuild a user schedule from its config,
    add the class to ``SCHEDULES`` under its ``name``.
    """

    name: str = "custom"

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def integral(self, t: torch.Tensor) -> torch.Tensor:
        """``B(t) = int_0^t beta(u) du`` (Gauss--Legendre quadrature unless overridden)."""
        t = as_tensor(t, "t")
        nodes, weights = _gauss_legendre(32, t.dtype, t.device)
        u = 0.5 * (nodes + 1.0) * t.unsqueeze(-1)
        return 0.5 * t * (weights * self.beta(u)).sum(-1)

    def inverse_integral(self, b: torch.Tensor) -> torch.Tensor:
        """The time ``t in [0, 1]`` with ``B(t) = b`` (bisection in float64 unless overridden).

        Values of ``b`` outside ``[0, B(1)]`` map to the nearest end.
        """
        b = as_tensor(b, "b")
        target = b.double()
        lo = torch.zeros_like(target)
        hi = torch.ones_like(target)
        for _ in range(64):
            mid = 0.5 * (lo + hi)
            below = self.integral(mid) < target
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return (0.5 * (lo + hi)).to(b.dtype)

    @property
    def params(self) -> dict:
        return {}

    def config(self) -> dict:
        """JSON-serialisable description: ``{"name": ..., **params}``; :func:`rate_schedule` rebuilds it."""
        return {"name": self.name, **self.params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def _gauss_legendre(n: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(n)
    return torch.as_tensor(x, dtype=dtype, device=device), torch.as_tensor(w, dtype=dtype, device=device)


def _positive(value, name: str, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite, got {value!r}")
    return v


class ConstantRate(RateSchedule):
    """``beta(t) = rate``, ``B(t) = rate * t``."""

    name = "constant"

    def __init__(self, rate: float = 1.0):
        self.rate = _positive(rate, "rate")

    def beta(self, t):
        t = as_tensor(t, "t")
        return torch.full_like(t, self.rate)

    def integral(self, t):
        return self.rate * as_tensor(t, "t")

    def inverse_integral(self, b):
        return (as_tensor(b, "b") / self.rate).clamp(0.0, 1.0)

    @property
    def params(self):
        return {"rate": self.rate}


class LinearRate(RateSchedule):
    """``beta(t) = beta_min + t (beta_max - beta_min)``, ``B(t) = beta_min t + (beta_max - beta_min) t^2 / 2``."""

    name = "linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_min = _positive(beta_min, "beta_min", allow_zero=True)
        self.beta_max = _positive(beta_max, "beta_max", allow_zero=True)
        if self.beta_min + self.beta_max == 0:
            raise ValueError("beta_min and beta_max cannot both be 0 (the chain would never move)")

    def beta(self, t):
        t = as_tensor(t, "t")
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral(self, t):
        t = as_tensor(t, "t")
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def inverse_integral(self, b):
        # root of (d/2) t^2 + beta_min t - b = 0 in the cancellation-free form 2b / (beta_min + sqrt(.))
        b = as_tensor(b, "b").clamp_min(0.0)
        d = self.beta_max - self.beta_min
        root = torch.sqrt(torch.clamp(self.beta_min**2 + 2.0 * d * b, min=0.0))
        den = self.beta_min + root
        t = torch.where(den > 0, 2.0 * b / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(b))
        return t.clamp(0.0, 1.0)

    @property
    def params(self):
        return {"beta_min": self.beta_min, "beta_max": self.beta_max}


class LogLinearRate(RateSchedule):
    """SEDD's log-linear schedule: ``B(t) = -log(1 - (1 - eps) t)``, ``beta(t) = (1 - eps) / (1 - (1 - eps) t)``.

    ``exp(-B(1)) = eps``: at ``t = 1`` a uniform chain keeps its start state
    with excess probability ``eps`` and an absorbing chain leaves a fraction
    ``eps`` unmasked.
    """

    name = "loglinear"

    def __init__(self, eps: float = 1e-3):
        eps = _positive(eps, "eps")
        if eps >= 1:
            raise ValueError(f"eps must lie in (0, 1), got {eps!r}")
        self.eps = eps

    def beta(self, t):
        t = as_tensor(t, "t")
        return (1.0 - self.eps) / (1.0 - (1.0 - self.eps) * t)

    def integral(self, t):
        t = as_tensor(t, "t")
        return -torch.log1p(-(1.0 - self.eps) * t)

    def inverse_integral(self, b):
        b = as_tensor(b, "b").clamp_min(0.0)
        return (-torch.expm1(-b) / (1.0 - self.eps)).clamp(0.0, 1.0)

    @property
    def params(self):
        return {"eps": self.eps}


SCHEDULES: dict[str, type[RateSchedule]] = {
    "constant": ConstantRate,
    "linear": LinearRate,
    "loglinear": LogLinearRate,
}


def rate_schedule(spec: str | dict | RateSchedule) -> RateSchedule:
    """Build a schedule from a name (``"constant"``, ``"linear"``, ``"loglinear"``),
    a dict ``{"name": ..., **params}`` or return a :class:`RateSchedule` unchanged."""
    if isinstance(spec, RateSchedule):
        return spec
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, dict):
        if "name" not in spec:
            raise ValueError(f"a schedule dict needs a 'name' entry (one of {sorted(SCHEDULES)}), got {spec!r}")
        params = dict(spec)
        name = params.pop("name")
    else:
        raise ValueError(f"schedule must be a name, a dict or a RateSchedule, got {type(spec).__name__}")
    cls = SCHEDULES.get(name)
    if cls is None:
        raise ValueError(f"unknown rate schedule {name!r}; known: {', '.join(sorted(SCHEDULES))}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for the {name!r} schedule: {exc}") from None


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _float_dtype(*candidates) -> torch.dtype:
    """First floating dtype among tensors in ``candidates``, else the default dtype."""
    for c in candidates:
        if isinstance(c, torch.Tensor) and c.is_floating_point():
            return c.dtype
    return torch.get_default_dtype()


def check_rate_matrix(Q) -> torch.Tensor:
    """Validate a rate matrix and return it as float64 with the diagonal reset to minus the off-diagonal row sums.

    Raises ``ValueError`` unless ``Q`` is square ``(K, K)`` with ``K >= 2``,
    finite, with off-diagonal entries ``>= 0``, rows summing to 0 (relative
    tolerance 1e-6) and at least one positive rate.
    """
    try:
        Q = torch.as_tensor(Q, dtype=torch.float64).detach().cpu().clone()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"the rate matrix Q must be a square array of numbers: {exc}") from None
    if Q.dim() != 2 or Q.shape[0] != Q.shape[1]:
        raise ValueError(f"the rate matrix Q must be square (K, K), got shape {tuple(Q.shape)}")
    K = Q.shape[0]
    if K < 2:
        raise ValueError(f"the rate matrix Q needs at least 2 states, got {K}")
    check_finite(Q, "the rate matrix Q")
    off = Q.clone()
    off.fill_diagonal_(0.0)
    if bool((off < 0).any()):
        i, j = (int(v) for v in (off == off.min()).nonzero()[0])
        raise ValueError(
            f"the rate matrix Q has a negative off-diagonal entry Q[{i}, {j}] = {float(off[i, j]):g}; "
            f"jump rates between different states must be >= 0"
        )
    sums = Q.sum(dim=1)
    tol = 1e-6 * max(1.0, float(Q.abs().max()))
    if bool((sums.abs() > tol).any()):
        i = int(sums.abs().argmax())
        raise ValueError(
            f"rows of the rate matrix Q must sum to 0 (diagonal = minus the total exit rate); "
            f"row {i} sums to {float(sums[i]):g}"
        )
    if float(off.max()) == 0.0:
        raise ValueError("the rate matrix Q is zero: the chain never moves")
    return off - torch.diag(off.sum(dim=1))


@dataclass
class JumpPath:
    """Jumps of a Gillespie simulation, in the order they were drawn.

    ``index`` holds flat position indices into ``x0.reshape(-1)``, ``times``
    the jump times (float64, increasing per position), ``before`` / ``after``
    the states before and after each jump. Jumps of one position appear in
    time order.
    """

    shape: tuple
    index: torch.Tensor
    times: torch.Tensor
    before: torch.Tensor
    after: torch.Tensor

    def num_jumps(self) -> torch.Tensor:
        """Number of jumps of every position, shape ``shape``."""
        n = math.prod(self.shape)
        return torch.bincount(self.index, minlength=n).reshape(self.shape)


# ---------------------------------------------------------------------------
# the generic chain
# ---------------------------------------------------------------------------


class CTMC(Process):
    """Continuous-time Markov chain with generator ``Q_t = beta(t) Q`` on every position.

    Parameters
    ----------
    Q: rate matrix ``(K, K)`` (nested list, array or tensor): off-diagonal
        entries ``>= 0``, rows summing to 0 (validated; the diagonal is reset
        to minus the off-diagonal row sums to remove round-off).
    schedule: rate schedule name, ``{"name": ..., **params}`` dict or
        :class:`RateSchedule` (default ``"loglinear"``).
    event_shape: shape of one state, e.g. ``(L,)``; ``None`` accepts any.
    t_min: where samplers stop (reverse rates are singular at 0).
    initial: distribution of ``x_0`` (``K`` non-negative weights) used only to
        define the prior of the generic chain: ``prior = initial P(0, 1)``.
        The default (``None``) is uniform, i.e. the prior is the average of
        the rows of ``P(0, 1)`` -- close to the stationary law when the chain
        mixes by ``t = 1``. Subclasses have their own exact prior.

    The generic chain forms ``K x K`` matrices per distinct time, so it is
    meant for small ``K``; :class:`UniformCTMC` and :class:`AbsorbingCTMC` work
    in ``O(K)`` per position.
    """
    family = families.JUMP

    def __init__(
        self,
        Q,
        schedule: str | dict | RateSchedule = "loglinear",
        event_shape: tuple | None = None,
        t_min: float = 1e-3,
        initial=None,
    ):
        self._Q = check_rate_matrix(Q)
        K = self._Q.shape[0]
        self._setup(Discrete(K, event_shape), schedule, t_min)
        if initial is None:
            self._initial = None
        else:
            w = torch.as_tensor(initial, dtype=torch.float64).reshape(-1)
            if w.numel() != K:
                raise ValueError(f"initial must have {K} entries (one per state), got {w.numel()}")
            check_finite(w, "initial")
            if bool((w < 0).any()) or float(w.sum()) <= 0:
                raise ValueError("initial must be non-negative weights with a positive sum")
            self._initial = w / w.sum()
        self._prior_cache: torch.Tensor | None = None

    def _setup(self, space: Discrete, schedule, t_min) -> None:
        self.space = space
        self.num_categories: int = space.num_categories
        self.num_states: int = space.num_states
        self.mask_index: int | None = space.mask_index
        self.schedule: RateSchedule = rate_schedule(schedule)
        t_min = float(t_min)
        if not 0.0 <= t_min < 1.0:
            raise ValueError(f"t_min must lie in [0, 1), got {t_min}")
        self.t_min = t_min
        self.t_max = 1.0

    # --- the rate matrix --------------------------------------------------
    @property
    def Q(self) -> torch.Tensor:
        """The time-independent rate matrix ``(K, K)`` in float64 (a fresh copy)."""
        return self._Q.clone()

    def _q(self, dtype, device) -> torch.Tensor:
        return self._Q.to(dtype=dtype, device=device)

    def _q_rows(self, x: torch.Tensor, dtype) -> torch.Tensor:
        """Rows ``Q[x, :]``, shape ``x.shape + (K,)``."""
        return self._q(dtype, x.device)[x]

    def _q_cols(self, x: torch.Tensor, dtype) -> torch.Tensor:
        """Columns ``Q[:, x]`` as vectors over the source state, shape ``x.shape + (K,)``."""
        return self._q(dtype, x.device).T[x]

    def beta(self, t) -> torch.Tensor:
        """Rate multiplier ``beta(t)``."""
        return self.schedule.beta(self._time(t))

    def integral(self, t) -> torch.Tensor:
        """``B(t) = int_0^t beta``."""
        return self.schedule.integral(self._time(t))

    # --- time handling ------------------------------------------------------
    def _time(self, t, dtype=None, device=None, name: str = "t") -> torch.Tensor:
        dtype = dtype or _float_dtype(t)
        t = check_time(as_tensor(t, name, dtype=dtype, device=device), 0.0, 1.0, name=name)
        return t.clamp(0.0, 1.0)

    def _state(self, x, name: str) -> torch.Tensor:
        return self.space.check(x, name).long()

    def _pair(self, s, t, dtype, device):
        s = self._time(s, dtype, device, "s")
        t = self._time(t, dtype, device, "t")
        if bool((s > t).any()):
            raise ValueError("transition(s, t) needs s <= t (the chain runs forward in time)")
        return s, t

    # --- protocol: rates ------------------------------------------------------
    def rate_matrix(self, t, dtype=None, device=None) -> torch.Tensor:
        """Generator ``Q_t = beta(t) Q``, shape ``t.shape + (K, K)``."""
        t = self._time(t, dtype, device)
        return self.schedule.beta(t)[..., None, None] * self._dense_q(t.dtype, t.device)

    def _dense_q(self, dtype, device) -> torch.Tensor:
        return self._q(dtype, device)

    def rates(self, x, t) -> torch.Tensor:
        """Row of ``Q_t`` out of the current state of every position: ``x.shape + (K,)``.

        Entry ``y != x`` is the rate of jumping to ``y``; the entry at ``x`` is
        minus the total exit rate (rows sum to zero).
        """
        x = self._state(x, "x")
        dtype = _float_dtype(t)
        t = self._time(t, dtype, x.device)
        beta = self.schedule.beta(batch_time(t, x))
        return beta.unsqueeze(-1) * self._q_rows(x, dtype)

    # --- protocol: exact transition probabilities ------------------------------
    def transition(self, s, t, dtype=None, device=None) -> torch.Tensor:
        """Exact transition matrix ``P(s, t)[i, j] = P(x_t = j | x_s = i)``, shape ``broadcast(s, t).shape + (K, K)``."""
        dtype = dtype or _float_dtype(t, s)
        s, t = self._pair(s, t, dtype, device)
        db = self.schedule.integral(t) - self.schedule.integral(s)
        return self._transition_db(db)

    def _transition_db(self, db: torch.Tensor) -> torch.Tensor:
        P = torch.linalg.matrix_exp(db.double()[..., None, None] * self._q(torch.float64, db.device))
        return P.clamp_min(0.0).to(db.dtype)

    def transition_probs(self, x_s, s, t) -> torch.Tensor:
        """``P(x_t = . | x_s)`` for every position: ``x_s.shape + (K,)``; ``s``, ``t`` scalar, per sample or per position."""
        x_s = self._state(x_s, "x_s")
        dtype = _float_dtype(t, s)
        s, t = self._pair(s, t, dtype, x_s.device)
        db = self.schedule.integral(batch_time(t, x_s)) - self.schedule.integral(batch_time(s, x_s, "s"))
        return self._probs_db(x_s, db)

    def _probs_db(self, x: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
        P, inv = self._matrices_per_position(x, db)
        return P[inv, x.reshape(-1)].reshape(x.shape + (self.num_categories,)).to(db.dtype)

    def _matrices_per_position(self, x, db):
        """``expm(db Q)`` for each distinct ``db`` (float64) and the index of every position's matrix."""
        vals, inv = torch.unique(db.expand(x.shape).reshape(-1), return_inverse=True)
        P = torch.linalg.matrix_exp(vals.double()[:, None, None] * self._q(torch.float64, x.device))
        return P.clamp_min(0.0), inv

    def _sample_db(self, x, db, probs, generator) -> torch.Tensor:
        K = self.num_categories
        flat = probs.reshape(-1, K).double()
        return torch.multinomial(flat, 1, generator=generator).reshape(x.shape)

    # --- protocol: forward marginal ------------------------------------------------
    def marginal(self, x0, t, generator: torch.Generator | None = None, **cond) -> Marginal:
        """Draw ``x_t ~ P(0, t)[x0, :]`` per position; ``extra["probs"]`` holds ``q(x_t = . | x0)``, ``x0.shape + (K,)``."""
        x0 = self._state(x0, "x0")
        dtype = _float_dtype(t)
        t = self._time(t, dtype, x0.device)
        db = self.schedule.integral(batch_time(t, x0))
        probs = self._probs_db(x0, db)
        x_t = self._sample_db(x0, db, probs, generator)
        return Marginal(x_t=x_t, t=t, extra={"probs": probs})

    # --- protocol: prior ----------------------------------------------------------
    def prior_probs(self, dtype=None, device=None) -> torch.Tensor:
        """Distribution ``(K,)`` of every position at ``t = t_max`` (see the class docstring for the generic chain)."""
        if self._prior_cache is None:
            P = self._transition_db(self.schedule.integral(torch.tensor(self.t_max, dtype=torch.float64)))
            w = self._initial if self._initial is not None else torch.full((self.num_categories,), 1.0 / self.num_categories, dtype=torch.float64)
            p = (w @ P).clamp_min(0.0)
            self._prior_cache = p / p.sum()
        return self._prior_cache.to(dtype=dtype or torch.get_default_dtype(), device=device)

    def prior_sample(self, shape, generator: torch.Generator | None = None, dtype=None, device=None, **cond):
        """Independent draws from :meth:`prior_probs`, ``torch.long`` of the given full shape.

        States are always integer indices; a floating ``dtype`` (a sampler's
        compute precision) is ignored, an integer one is used.
        """
        shape = tuple(shape)
        n = math.prod(shape)
        p = self.prior_probs(torch.float64, device)
        x = torch.multinomial(p, n, replacement=True, generator=generator).reshape(shape) if n else torch.zeros(shape, dtype=torch.long, device=device)
        return _int_dtype(x, dtype)

    def prior_log_prob(self, x, **cond) -> torch.Tensor:
        """``sum over positions of log prior(x)``, shape ``(batch,)`` (``-inf`` where impossible)."""
        x = self._state(x, "x")
        logp = torch.log(self.prior_probs(torch.float64, x.device))[x]
        return sum_except_batch(logp).to(torch.get_default_dtype())

    # --- reverse time ---------------------------------------------------------------
    def reverse_rates(self, x_t, t, p0_probs) -> torch.Tensor:
        """Exact reverse-time rates out of ``x_t`` given a denoising distribution ``p(x0 | x_t)``.

        For every position, with ``q_t(y | x0) = P(0, t)[x0, y]`` and the forward
        rate ``R_t(y -> x) = beta(t) Q[y, x]`` (Campbell et al., 2022)::

            R_rev(x -> y) = R_t(y -> x) * sum_x0 p(x0 | x_t = x) q_t(y | x0) / q_t(x | x0),   y != x

        and the entry at ``y = x`` is minus the sum of the others, so the output
        (``x_t.shape + (K,)``) has the layout of :meth:`rates`. With the true
        posterior ``p(x0 | x_t)`` these rates satisfy detailed flux balance
        ``p_t(x) R_rev(x -> y) = p_t(y) R_t(y -> x)``.

        ``p0_probs`` has shape ``x_t.shape + (K,)`` (for an absorbing chain
        also ``x_t.shape + (num_states,)``, the mask being no data value);
        values of ``x0`` that cannot reach ``x_t`` by time ``t`` are ignored
        (the true posterior gives them zero mass). ``t`` must be ``> 0``.
        """
        x_t = self._state(x_t, "x_t")
        if not isinstance(p0_probs, torch.Tensor):
            p0_probs = torch.as_tensor(p0_probs, dtype=torch.get_default_dtype())
        if not p0_probs.is_floating_point():
            raise ValueError(f"p0_probs must be a floating tensor of probabilities, got dtype {p0_probs.dtype}")
        dtype = p0_probs.dtype
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            dtype = torch.promote_types(dtype, t.dtype)
        t = self._time(t, dtype, x_t.device)
        if bool((t <= 0).any()):
            raise ValueError("reverse rates are singular at t = 0; evaluate them at t > 0 (samplers stop at t_min)")
        p0 = self._check_p0(p0_probs.to(dtype), x_t)
        return self._reverse(x_t, batch_time(t, x_t), p0)

    def _check_p0(self, p0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        K = self.num_categories
        allowed = [K] + ([self.num_states] if self.mask_index is not None else [])
        if tuple(p0.shape[:-1]) != tuple(x.shape) or p0.shape[-1] not in allowed:
            want = " or ".join(f"{tuple(x.shape) + (k,)}" for k in allowed)
            raise ValueError(f"p0_probs must have shape {want} (one distribution per position), got {tuple(p0.shape)}")
        check_finite(p0, "p0_probs")
        if bool((p0 < 0).any()):
            raise ValueError("p0_probs must be non-negative probabilities (apply softmax to logits)")
        if p0.shape[-1] != K:  # absorbing chain given data-state probabilities only
            p0 = torch.cat([p0, torch.zeros_like(p0[..., :1])], dim=-1)
        return p0

    def _reverse(self, x: torch.Tensor, tb: torch.Tensor, p0: torch.Tensor) -> torch.Tensor:
        K, dtype = self.num_categories, p0.dtype
        Bt = self.schedule.integral(tb.double())
        P, inv = self._matrices_per_position(x, Bt)
        Pi = P[inv]  # (N, K, K), float64
        xf = x.reshape(-1)
        ar = torch.arange(xf.numel(), device=x.device)
        col = Pi[ar, :, xf]  # q_t(x | x0) over x0
        p0f = p0.reshape(-1, K).double()
        reach = col > 1e-13
        w = torch.where(reach, p0f / torch.where(reach, col, torch.ones_like(col)), torch.zeros_like(col))
        ratio = torch.einsum("ni,nij->nj", w, Pi)
        fwd = self.schedule.beta(tb.double()).expand(x.shape).reshape(-1, 1) * self._q_cols(xf, torch.float64)
        out = fwd * ratio
        return _set_diagonal(out, xf).reshape(x.shape + (K,)).to(dtype)

    # --- exact path simulation --------------------------------------------------------
    def _exit_rates(self, x: torch.Tensor) -> torch.Tensor:
        """Total exit rate ``-Q[x, x]`` (float64) of flat states ``x``."""
        return -torch.diagonal(self._q(torch.float64, x.device))[x]

    def _jump_targets(self, x: torch.Tensor, generator) -> torch.Tensor:
        """Next states of flat states ``x`` (all with positive exit rate), drawn from ``Q[x, y], y != x``."""
        rows = self._q(torch.float64, x.device)[x].clone()
        rows[torch.arange(x.numel(), device=x.device), x] = 0.0
        return torch.multinomial(rows, 1, generator=generator).squeeze(-1)

    def gillespie(
        self,
        x0,
        t0,
        t1,
        generator: torch.Generator | None = None,
        return_path: bool = False,
    ):
        """Exact simulation of the forward chain from ``x0`` at ``t0`` to ``t1`` (Gillespie's algorithm).

        Works in integrated-rate time ``b = B(t)``, where the chain is
        homogeneous with generator ``Q``: a position in state ``x`` waits
        ``E / (-Q[x, x])`` with ``E ~ Exp(1)``, then jumps to ``y`` with
        probability ``Q[x, y] / (-Q[x, x])``. Jump times are mapped back with
        the schedule's ``inverse_integral`` (closed form, bisection for custom
        schedules). Each loop iteration advances every still-active position by
        one jump, vectorised; the loop runs ``max #jumps`` times.

        ``t0``, ``t1``: scalars, per sample or per position, ``t0 <= t1``.
        Returns ``x_t1`` (``torch.long``), or ``(x_t1, JumpPath)`` with
        ``return_path=True``.
        """
        x0 = self._state(x0, "x0")
        t0 = self._time(t0, torch.float64, x0.device, "t0")
        t1 = self._time(t1, torch.float64, x0.device, "t1")
        b = self.schedule.integral(batch_time(t0, x0, "t0")).expand(x0.shape).reshape(-1).clone()
        b_end = self.schedule.integral(batch_time(t1, x0, "t1")).expand(x0.shape).reshape(-1)
        t0_pos = batch_time(t0, x0, "t0").expand(x0.shape)
        t1_pos = batch_time(t1, x0, "t1").expand(x0.shape)
        if bool((t0_pos > t1_pos).any()):
            raise ValueError("gillespie needs t0 <= t1 (the forward chain runs forward in time)")
        x = x0.reshape(-1).clone()
        active = torch.arange(x.numel(), device=x.device)
        rec_i, rec_b, rec_before, rec_after = [], [], [], []
        while active.numel() > 0:
            lam = self._exit_rates(x[active])
            e = torch.empty(active.numel(), dtype=torch.float64, device=x.device).exponential_(generator=generator)
            wait = torch.where(lam > 0, e / torch.where(lam > 0, lam, torch.ones_like(lam)), torch.full_like(e, math.inf))
            b_new = b[active] + wait
            jumps = b_new < b_end[active]
            active, b_new = active[jumps], b_new[jumps]
            if active.numel() == 0:
                break
            before = x[active]
            after = self._jump_targets(before, generator)
            x[active] = after
            b[active] = b_new
            if return_path:
                rec_i.append(active)
                rec_b.append(b_new)
                rec_before.append(before)
                rec_after.append(after)
        x_t1 = x.reshape(x0.shape)
        if not return_path:
            return x_t1
        empty_l = torch.zeros(0, dtype=torch.long, device=x.device)
        index = torch.cat(rec_i) if rec_i else empty_l
        bs = torch.cat(rec_b) if rec_b else torch.zeros(0, dtype=torch.float64, device=x.device)
        times = self.schedule.inverse_integral(bs)
        # keep the round-off of the inverse inside each position's [t0, t1]
        lo = t0_pos.reshape(-1)[index]
        hi = t1_pos.reshape(-1)[index]
        times = torch.minimum(torch.maximum(times, lo), hi)
        path = JumpPath(
            shape=tuple(x0.shape),
            index=index,
            times=times,
            before=torch.cat(rec_before) if rec_before else empty_l,
            after=torch.cat(rec_after) if rec_after else empty_l,
        )
        return x_t1, path

    # --- spec ---------------------------------------------------------------------
    def _event_config(self) -> list | None:
        ev = self.space.event_shape
        return None if ev is None else list(ev)

    def config(self) -> dict:
        return {
            "Q": self._Q.tolist(),
            "schedule": self.schedule.config(),
            "event_shape": self._event_config(),
            "t_min": self.t_min,
            "initial": None if self._initial is None else self._initial.tolist(),
        }


def _set_diagonal(rows: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Put ``-(sum of the other entries)`` at column ``x[n]`` of row ``n`` (``rows``: ``(N, K)``)."""
    ar = torch.arange(x.numel(), device=x.device)
    rows = rows.clone()
    rows[ar, x] = 0.0
    rows[ar, x] = -rows.sum(dim=-1)
    return rows


def _int_dtype(x: torch.Tensor, dtype) -> torch.Tensor:
    if dtype is not None and not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool:
        return x.to(dtype)
    return x


# ---------------------------------------------------------------------------
# closed-form chains
# ---------------------------------------------------------------------------


class UniformCTMC(CTMC):
    """Uniform jumps: ``Q = 11^T / S - I`` on ``S`` states.

    Each position jumps at total rate ``beta(t) (S - 1) / S`` to a uniformly
    chosen other state, and ``P(s, t) = a I + (1 - a) 11^T / S`` with
    ``a = exp(-(B(t) - B(s)))``. The prior is uniform (exact in the limit
    ``B(1) -> infinity``; with the log-linear schedule ``P(0, 1)`` differs
    from it by ``eps``). All work is ``O(S)`` per position.
    """

    def __init__(
        self,
        num_states: int,
        schedule: str | dict | RateSchedule = "loglinear",
        event_shape: tuple | None = None,
        t_min: float = 1e-3,
    ):
        self._setup(Discrete(num_states, event_shape), schedule, t_min)
        self._initial = None
        self._prior_cache = None

    @property
    def Q(self) -> torch.Tensor:
        return self._dense_q(torch.float64, None)

    def _dense_q(self, dtype, device):
        S = self.num_states
        return torch.full((S, S), 1.0 / S, dtype=dtype, device=device) - torch.eye(S, dtype=dtype, device=device)

    def _q_rows(self, x, dtype):
        S = self.num_states
        return torch.full(x.shape + (S,), 1.0 / S, dtype=dtype, device=x.device) - torch.nn.functional.one_hot(x, S).to(dtype)

    _q_cols = _q_rows  # Q is symmetric

    def _transition_db(self, db):
        S = self.num_states
        a = torch.exp(-db)[..., None, None]
        eye = torch.eye(S, dtype=db.dtype, device=db.device)
        return a * eye + (1.0 - a) / S

    def _probs_db(self, x, db):
        S = self.num_states
        a = torch.exp(-db).unsqueeze(-1)
        return a * torch.nn.functional.one_hot(x, S).to(db.dtype) + (1.0 - a) / S

    def _sample_db(self, x, db, probs, generator):
        keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float64) < torch.exp(-db.double())
        fresh = torch.randint(0, self.num_states, x.shape, generator=generator, device=x.device)
        return torch.where(keep, x, fresh)

    def prior_probs(self, dtype=None, device=None):
        return torch.full((self.num_states,), 1.0 / self.num_states, dtype=dtype or torch.get_default_dtype(), device=device)

    def prior_sample(self, shape, generator=None, dtype=None, device=None, **cond):
        return _int_dtype(torch.randint(0, self.num_states, tuple(shape), generator=generator, device=device), dtype)

    def prior_log_prob(self, x, **cond):
        x = self._state(x, "x")
        n = x[0].numel() if x.dim() > 1 else 1
        return torch.full((x.shape[0],), -n * math.log(self.num_states), dtype=torch.get_default_dtype(), device=x.device)

    def _reverse(self, x, tb, p0):
        # q_t(y|x0) = a [y = x0] + c with c = (1 - a) / S, so for y != x:
        # sum_x0 p0(x0) q(y|x0)/q(x|x0) = p0(x) c/(a + c) + (a p0(y) + c (sum p0 - p0(x))) / c
        S, dtype = self.num_states, p0.dtype
        Bt = self.schedule.integral(tb.double()).unsqueeze(-1)
        a = torch.exp(-Bt)
        c = -torch.expm1(-Bt) / S
        p = p0.double()
        px = p.gather(-1, x.unsqueeze(-1))
        ratio = px * c / (a + c) + a * p / c + (p.sum(-1, keepdim=True) - px)
        out = (self.schedule.beta(tb.double()).unsqueeze(-1) / S) * ratio
        return _set_diagonal(out.reshape(-1, S), x.reshape(-1)).reshape(x.shape + (S,)).to(dtype)

    def _exit_rates(self, x):
        return torch.full(x.shape, (self.num_states - 1) / self.num_states, dtype=torch.float64, device=x.device)

    def _jump_targets(self, x, generator):
        r = torch.randint(0, self.num_states - 1, x.shape, generator=generator, device=x.device)
        return r + (r >= x).long()

    def config(self):
        return {
            "num_states": self.num_states,
            "schedule": self.schedule.config(),
            "event_shape": self._event_config(),
            "t_min": self.t_min,
        }


class AbsorbingCTMC(CTMC):
    """Masking chain: ``S`` data states plus a mask state ``M = S`` (``K = S + 1``).

    Every data state jumps to the mask at rate ``beta(t)``; the mask is
    absorbing: ``Q = -I + 1 e_M^T`` (row ``M`` is zero), so
    ``P(s, t) = a I + (1 - a) 1 e_M^T`` with ``a = exp(-(B(t) - B(s)))``.
    The prior is the all-mask state (exact when ``B(1) -> infinity``; with the
    log-linear schedule a fraction ``eps`` is still unmasked at ``t = 1``).
    Reverse rates out of the mask are ``beta(t) p(x0 = y | x_t) / expm1(B(t))``;
    out of a data state they are zero.
    """

    def __init__(
        self,
        num_states: int,
        schedule: str | dict | RateSchedule = "loglinear",
        event_shape: tuple | None = None,
        t_min: float = 1e-3,
    ):
        self._setup(Discrete(num_states, event_shape, absorbing=True), schedule, t_min)
        self._initial = None
        self._prior_cache = None

    @property
    def Q(self) -> torch.Tensor:
        return self._dense_q(torch.float64, None)

    def _dense_q(self, dtype, device):
        K, M = self.num_categories, self.mask_index
        Q = -torch.eye(K, dtype=dtype, device=device)
        Q[:, M] += 1.0
        return Q

    def _q_rows(self, x, dtype):
        K, M = self.num_categories, self.mask_index
        oh = torch.nn.functional.one_hot
        return oh(torch.full_like(x, M), K).to(dtype) - oh(x, K).to(dtype)

    def _q_cols(self, x, dtype):
        # column x of Q over source states y: -[y = x] + [x = M]
        K, M = self.num_categories, self.mask_index
        col = -torch.nn.functional.one_hot(x, K).to(dtype)
        return col + (x == M).to(dtype).unsqueeze(-1)

    def _transition_db(self, db):
        K, M = self.num_categories, self.mask_index
        a = torch.exp(-db)[..., None, None]
        P = a * torch.eye(K, dtype=db.dtype, device=db.device)
        P[..., :, M] += (1.0 - a[..., 0])
        return P

    def _probs_db(self, x, db):
        K, M = self.num_categories, self.mask_index
        a = torch.exp(-db).unsqueeze(-1)
        oh = torch.nn.functional.one_hot
        return a * oh(x, K).to(db.dtype) + (1.0 - a) * oh(torch.full_like(x, M), K).to(db.dtype)

    def _sample_db(self, x, db, probs, generator):
        keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float64) < torch.exp(-db.double())
        return torch.where(keep, x, torch.full_like(x, self.mask_index))

    def prior_probs(self, dtype=None, device=None):
        p = torch.zeros(self.num_categories, dtype=dtype or torch.get_default_dtype(), device=device)
        p[self.mask_index] = 1.0
        return p

    def prior_sample(self, shape, generator=None, dtype=None, device=None, **cond):
        return _int_dtype(self.space.mask(tuple(shape), device=device), dtype)

    def _reverse(self, x, tb, p0):
        K, M, dtype = self.num_categories, self.mask_index, p0.dtype
        Bt = self.schedule.integral(tb.double()).unsqueeze(-1)
        scale = self.schedule.beta(tb.double()).unsqueeze(-1) / torch.expm1(Bt)
        out = scale * p0.double()
        out[..., M] = 0.0
        out = out * (x == M).unsqueeze(-1)
        return _set_diagonal(out.reshape(-1, K), x.reshape(-1)).reshape(x.shape + (K,)).to(dtype)

    def _exit_rates(self, x):
        return (x != self.mask_index).double()

    def _jump_targets(self, x, generator):
        return torch.full_like(x, self.mask_index)

    def config(self):
        return {
            "num_states": self.num_states,
            "schedule": self.schedule.config(),
            "event_shape": self._event_config(),
            "t_min": self.t_min,
        }
