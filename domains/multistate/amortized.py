"""Amortized rate estimation (the FIM-MJP idea): a network reads a panel data set and returns ``Q``.

The estimator is a conditional diffusion model of the posterior of the log intensities given the data,
``p(log Q | data)``, trained with :func:`stochgen.fit` on data sets simulated from random generators:

* **State** ``x (36,)``: the standardised log intensities ``(log(q_rs tau) - LOG_MID) / LOG_SCALE`` of a
  generator padded to ``MAX_STATES = 6`` states (0 on the diagonal, on forbidden transitions and on absent
  states), ``tau`` the data set's median observation interval: time is measured in units of ``tau``, so
  one model serves data in days, months or years (the answer is scaled back by ``1 / tau``).
* **Condition** ``stats (F,)`` (:func:`panel_statistics`): what the panel likelihood depends on, the
  counts ``n_rsb`` of observed ``r -> s`` intervals with length in log-spaced bin ``b`` (as fractions of
  the intervals leaving ``r`` in that bin, plus ``log(1 + count)`` per ``r, b`` and the mean log length
  per bin), the allowed-transition mask of the user's ``qmatrix``, the states present and the number
  of subjects. A set encoder with sum pooling over intervals that depend only on ``(r, s, bin)`` is a
  function of exactly these histograms; computing them directly is the same, and costs microseconds.
  They also hold msm's crude estimate ``n_rs / T_r`` (observed changes over the time spent in ``r``),
  and the matrix-logarithm estimate ``log(P_b) / dt_b`` of the empirical transition matrices of the
  length bins (:func:`_log_estimate`), both standardised like the state: the network learns a
  correction of classical closed-form estimates.
* **Process / network / sampler**: the base domain's EDM diffusion on ``R^36``, the core's residual
  MLP with the statistics as a named condition, DPM-Solver++(2M) (6 steps). By default (the ``residual``
  domain setting) the diffused state is the log intensities minus the clipped matrix-logarithm estimate
  (:func:`reference_state`): the network models the correction of the closed-form estimate. ``num_samples``
  posterior draws give the estimate (their median per intensity) and its uncertainty (2.5 / 97.5% quantiles).

Training sets (:func:`random_generator`, :func:`simulate_intervals`): 2-6 states; structures that are
random sparse (each transition allowed with a probability in [0.3, 1]), progressive with recovery
(``r -> r +/- 1``) or progressive to an absorbing state (cav-like), with an absorbing last state in half
of the others; intensities log-uniform in [0.01, 3] per ``tau``; 50-2000 subjects with 2-12
observations at irregular times (log-normal intervals around one ``tau`` of random spread);
misclassified states (each transient observation replaced by another transient state with
probability up to 0.1) in a quarter of the sets. Panels are drawn exactly from the chain's transition
matrices ``P(dt) = expm(Q dt)`` (the law of panel observations of a homogeneous chain; a test checks
it against the core's Gillespie sampler behind :func:`domains.multistate.panel.simulate_panel`).
"""
from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

MAX_STATES = 6
N_BINS = 10
BIN_EDGES = np.exp(np.linspace(math.log(0.1), math.log(10.0), N_BINS - 1))  # interval / tau
LOG_RATE_RANGE = (math.log(0.01), math.log(3.0))  # training intensities per tau
LOG_MID = 0.5 * (LOG_RATE_RANGE[0] + LOG_RATE_RANGE[1])
LOG_SCALE = 0.5 * (LOG_RATE_RANGE[1] - LOG_RATE_RANGE[0])
STATE_DIM = MAX_STATES * MAX_STATES
STATS_DIM = STATE_DIM * N_BINS + 2 * MAX_STATES * N_BINS + 3 * STATE_DIM + MAX_STATES + 2
_LOG_BLOCK = STATE_DIM * N_BINS + 2 * MAX_STATES * N_BINS + 2 * STATE_DIM  # where the matrix-log estimate starts
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

__all__ = ["MAX_STATES", "STATS_DIM", "random_generator", "simulate_intervals", "panel_statistics",
           "intervals_from_panel", "encode_rates", "decode_rates", "simulated_sets", "RateEstimate",
           "estimate_rates", "default_weights", "intervals_to_frame", "upgrade_statistics", "reference_state"]


def default_weights() -> Path:
    """Path of the shipped amortized estimator (``domains/multistate/weights/rates.safetensors``)."""
    return WEIGHTS_DIR / "rates.safetensors"


# ----------------------------------------------------------------------------------------------
# random generators and fast panel simulation
# ----------------------------------------------------------------------------------------------
def random_generator(rng: np.random.Generator, n_states: int | None = None) -> np.ndarray:
    """A random generator ``Q (S, S)`` (rates per ``tau``) of one of the training structures (module docstring)."""
    S = int(rng.integers(2, MAX_STATES + 1)) if n_states is None else int(n_states)
    kind = rng.choice(3)
    off = ~np.eye(S, dtype=bool)
    if kind == 0:  # random sparse
        allowed = off & (rng.random((S, S)) < rng.uniform(0.3, 1.0))
        if rng.random() < 0.5:
            allowed[-1] = False  # an absorbing last state
    elif kind == 1:  # progressive with recovery: r -> r +/- 1
        allowed = np.zeros((S, S), dtype=bool)
        for r in range(S - 1):
            allowed[r, r + 1] = True
            allowed[r + 1, r] = rng.random() < 0.7
    else:  # progressive illness-death (cav-like): r -> r + 1, some recovery, every state -> the last
        allowed = np.zeros((S, S), dtype=bool)
        for r in range(S - 1):
            allowed[r, r + 1] = True
            allowed[r, S - 1] = True
            if 0 < r:
                allowed[r, r - 1] = rng.random() < 0.5
    if not allowed.any():
        allowed[0, 1] = True
    Q = np.where(allowed, np.exp(rng.uniform(*LOG_RATE_RANGE, size=(S, S))), 0.0)
    np.fill_diagonal(Q, -Q.sum(1))
    return Q


def simulate_intervals(Q, rng: np.random.Generator, n_subjects: int, n_obs=(2, 12), spread: float = 0.5,
                       misclassification: float = 0.0, initial=None):
    """Panel observations of ``n_subjects`` subjects of the chain ``Q`` (times in units of its rates).

    Each subject has ``n_obs`` observations (an int, or a ``(low, high)`` range drawn uniformly) with
    intervals ``exp(N(0, spread^2))``; the state at each time is drawn exactly from ``expm(Q dt)``; an
    absorbing state ends a subject. ``initial``: the first states (default: state 0 for 70% of the
    subjects, a uniformly random transient state otherwise). ``misclassification``: probability that
    an observation after the first of a transient state is recorded as another transient state.
    Returns ``(subject, time, observed state)`` integer / float arrays, rows ordered by subject then time.
    """
    Q = torch.as_tensor(np.asarray(Q, dtype=np.float64))
    S = Q.shape[0]
    n = int(n_subjects)
    absorbing = (Q.diagonal() == 0).numpy()
    transient = np.flatnonzero(~absorbing)
    if len(transient) == 0:
        raise ValueError("the generator has no transient state")
    if initial is None:
        x = np.where(rng.random(n) < 0.7, transient[0], rng.choice(transient, n))
    else:
        x = np.broadcast_to(np.asarray(initial, dtype=np.int64), (n,)).copy()
    m = rng.integers(n_obs[0], n_obs[1] + 1, size=n) if isinstance(n_obs, tuple) else np.full(n, int(n_obs))
    subj, times, states = [np.arange(n)], [np.zeros(n)], [x.copy()]
    t = np.zeros(n)
    alive = ~absorbing[x]
    for j in range(1, int(m.max())):
        who = np.flatnonzero(alive & (j < m))
        if len(who) == 0:
            break
        dt = np.exp(spread * rng.standard_normal(len(who)))
        P = torch.linalg.matrix_exp(Q[None] * torch.from_numpy(dt)[:, None, None]).numpy()
        rows = P[np.arange(len(who)), x[who]].clip(0.0, None)
        cum = np.cumsum(rows, axis=1)
        u = rng.random(len(who)) * cum[:, -1]
        new = np.minimum((cum < u[:, None]).sum(1), S - 1)
        x[who] = new
        t[who] += dt
        alive[who] = ~absorbing[new]
        subj.append(who)
        times.append(t[who].copy())
        states.append(new)
    subj, times, states = np.concatenate(subj), np.concatenate(times), np.concatenate(states)
    order = np.lexsort((times, subj))
    subj, times, states = subj[order], times[order], states[order]
    if misclassification > 0 and len(transient) > 1:
        first = np.r_[True, subj[1:] != subj[:-1]]
        flip = (~first) & (~absorbing[states]) & (rng.random(len(states)) < misclassification)
        k = np.flatnonzero(flip)
        # another transient state, uniformly
        pos = np.searchsorted(transient, states[k])
        other = rng.integers(0, len(transient) - 1, size=len(k))
        states[k] = transient[other + (other >= pos)]
    return subj, times, states


def intervals_to_frame(subject, time, state, labels=None):
    """The arrays of :func:`simulate_intervals` as a DataFrame ``subject, time, state``
    (states ``1..S``, or ``labels[state]``)."""
    import pandas as pd

    lab = np.asarray(labels) if labels is not None else None
    st = lab[state] if lab is not None else np.asarray(state) + 1
    return pd.DataFrame({"subject": subject, "time": time, "state": st})


# ----------------------------------------------------------------------------------------------
# statistics and state encoding
# ----------------------------------------------------------------------------------------------
def _pairs(subject, time, state):
    subject, time, state = np.asarray(subject), np.asarray(time, dtype=np.float64), np.asarray(state)
    same = subject[1:] == subject[:-1]
    return state[:-1][same], state[1:][same], (time[1:] - time[:-1])[same]


def panel_statistics(start, end, dt, n_subjects: int, allowed) -> tuple[np.ndarray, float]:
    """``(stats (STATS_DIM,), tau)`` of observed intervals ``start -> end`` of lengths ``dt`` (state indices).

    ``tau`` is the median interval; lengths are binned in units of ``tau`` (module docstring). ``allowed``:
    the ``(S, S)`` transition mask of the model (``S <= 6``).
    """
    allowed = np.asarray(allowed, dtype=bool)
    S = allowed.shape[0]
    if allowed.shape != (S, S) or not 2 <= S <= MAX_STATES:
        raise ValueError(f"the amortized estimator handles 2 to {MAX_STATES} states, got a {allowed.shape} qmatrix")
    start, end, dt = np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64), np.asarray(dt, np.float64)
    if len(dt) == 0:
        raise ValueError("no observed interval between two known states: nothing to estimate from")
    if not (dt > 0).all():
        raise ValueError("interval lengths must be > 0")
    tau = float(np.median(dt))
    b = np.searchsorted(BIN_EDGES, dt / tau)
    K = MAX_STATES
    counts = np.zeros((K, K, N_BINS))
    np.add.at(counts, (start, end, b), 1.0)
    leave = counts.sum(1)                                   # (K, bins): intervals starting in r
    frac = counts / np.maximum(leave, 1.0)[:, None, :]
    logdt = np.zeros((K, N_BINS))
    np.add.at(logdt, (start, b), np.log(dt / tau))
    logdt = logdt / np.maximum(leave, 1.0)
    mask = np.zeros((K, K))
    mask[:S, :S] = allowed & ~np.eye(S, dtype=bool)
    present = np.zeros(K)
    present[:S] = 1.0
    # msm's crude estimate n_rs / T_r (changes over the time credited to r), standardised like the state
    moves = counts.sum(-1)
    T = np.zeros(K)
    np.add.at(T, start, dt / tau)
    crude = (np.log((moves + 0.5) / (T + 1e-3)[:, None]) - LOG_MID) / LOG_SCALE
    crude = np.where(mask > 0, crude, 0.0)
    stats = np.concatenate([frac.reshape(-1), np.log1p(leave).reshape(-1) / 5.0, logdt.reshape(-1), mask.reshape(-1),
                            crude.reshape(-1), _log_estimate(counts, logdt, mask, S).reshape(-1), present,
                            [math.log(max(int(n_subjects), 1)) / 5.0, math.log(len(dt)) / 5.0]])
    return stats.astype(np.float32), tau


def _log_estimate(counts: np.ndarray, logdt: np.ndarray, mask: np.ndarray, S: int) -> np.ndarray:
    """The matrix-logarithm estimate of ``Q`` (standardised like the state, ``(K, K)``, 0 off the model).

    Per interval-length bin ``b``: the empirical transition matrix ``P_b`` (rows without intervals: the
    identity row), ``Q_b = log(P_b) / dt_b`` (principal logarithm by eigen-decomposition; a bin is used
    only when every eigenvalue has a positive real part above 0.05 and a phase under 45 degrees, where
    the logarithm is well conditioned), then row ``r`` averaged over the bins weighted by its number of
    intervals. Negative or missing estimates are floored at 1e-3 per ``tau``.
    """
    K = counts.shape[0]
    C = np.transpose(counts[:S, :S, :], (2, 0, 1))          # (B, S, S)
    n = C.sum(-1)                                           # (B, S)
    eye = np.eye(S)
    P = np.where(n[..., None] > 0, C / np.maximum(n, 1.0)[..., None], eye)
    w_dt = n.sum(-1)
    dt_b = np.exp((logdt[:S].T * n).sum(-1) / np.maximum(w_dt, 1.0))  # (B,) mean length (units of tau)
    e, V = torch.linalg.eig(torch.from_numpy(P))
    ok = ((e.real > 0.05) & (e.imag.abs() < e.real)).all(-1).numpy() & (w_dt > 0)
    out = np.zeros((K, K))
    if ok.any():
        Pl = (V[ok] @ torch.diag_embed(torch.log(e[ok])) @ torch.linalg.inv(V[ok])).real.numpy()
        Qb = Pl / dt_b[ok][:, None, None]                   # (B', S, S)
        w = n[ok]                                           # (B', S)
        Q = (Qb * w[..., None]).sum(0) / np.maximum(w.sum(0), 1e-12)[:, None]
        out[:S, :S] = (np.log(np.maximum(Q, 1e-3)) - LOG_MID) / LOG_SCALE
    else:
        out[:S, :S] = (math.log(1e-3) - LOG_MID) / LOG_SCALE
    return np.where(mask > 0, out, 0.0)


def upgrade_statistics(stats: np.ndarray, n_states: np.ndarray | None = None) -> np.ndarray:
    """Statistics of the previous layout (without the matrix-logarithm block) in the current one,
    recomputed from the counts they hold (for sets simulated before the block existed)."""
    K, B = MAX_STATES, N_BINS
    old = stats.shape[1]
    if old == STATS_DIM:
        return stats
    if old != STATS_DIM - STATE_DIM:
        raise ValueError(f"statistics of {old} entries are not a known layout")
    # the old layout ends its crude block (o_crude) where the current one starts its matrix-log block
    o_frac, o_leave, o_logdt, o_mask, o_crude = K * K * B, K * K * B + K * B, K * K * B + 2 * K * B, \
        K * K * B + 2 * K * B + K * K, _LOG_BLOCK
    out = np.zeros((len(stats), STATS_DIM), dtype=np.float32)
    for i, st in enumerate(stats):
        frac = st[:o_frac].reshape(K, K, B).astype(np.float64)
        leave = np.rint(np.expm1(5.0 * st[o_frac:o_leave].astype(np.float64))).reshape(K, B)
        logdt = st[o_leave:o_logdt].reshape(K, B).astype(np.float64)
        mask = st[o_logdt:o_mask].reshape(K, K)
        present = st[o_crude:o_crude + K]
        S = int(present.sum())
        counts = frac * leave[:, None, :]
        out[i] = np.concatenate([st[:o_crude], _log_estimate(counts, logdt, mask, S).reshape(-1), st[o_crude:]])
    return out


def reference_state(stats) -> np.ndarray:
    """The closed-form reference ``(..., 36)`` a residual model's state is measured from: the matrix-logarithm
    estimate held in ``stats (..., STATS_DIM)`` (standardised like the state, 0 off the model), clipped to
    the training range of the intensities ``[-1, 1]`` (a floored or wild estimate then starts at its edge)."""
    stats = np.asarray(stats)
    return np.clip(stats[..., _LOG_BLOCK:_LOG_BLOCK + STATE_DIM], -1.0, 1.0)


def intervals_from_panel(pd_):
    """``(start, end, dt, n_subjects)`` of a :class:`~domains.multistate.panel.PanelData`: the intervals
    whose start and end states are both known (censored observations are skipped; an exact death time
    is used as a panel time)."""
    single = pd_.obs.sum(1) == 1
    keep = (pd_.start >= 0) & single
    return pd_.start[keep], pd_.obs[keep].argmax(1), pd_.dt[keep], len(pd_.subjects)


def encode_rates(Q, tau: float = 1.0) -> np.ndarray:
    """The state ``x (36,)`` of a generator ``Q (S, S)`` whose data have median interval ``tau``."""
    Q = np.asarray(Q, dtype=np.float64)
    S = Q.shape[0]
    x = np.zeros((MAX_STATES, MAX_STATES))
    sub = x[:S, :S]
    on = (Q > 0) & ~np.eye(S, dtype=bool)
    sub[on] = (np.log(Q[on] * tau) - LOG_MID) / LOG_SCALE
    return x.reshape(-1).astype(np.float32)


def decode_rates(x, allowed, tau: float = 1.0) -> np.ndarray:
    """Generators ``(..., S, S)`` from states ``x (..., 36)`` (inverse of :func:`encode_rates` on ``allowed``)."""
    x = np.asarray(x, dtype=np.float64).reshape(np.shape(x)[:-1] + (MAX_STATES, MAX_STATES))
    allowed = np.asarray(allowed, dtype=bool) & ~np.eye(len(allowed), dtype=bool)
    S = allowed.shape[0]
    q = np.exp(x[..., :S, :S] * LOG_SCALE + LOG_MID) / tau
    Q = np.where(allowed, q, 0.0)
    idx = np.arange(S)
    Q[..., idx, idx] = -Q.sum(-1)
    return Q


def simulated_sets(count: int, seed: int = 0, subjects=(50, 2000), n_states: int | None = None,
                   progress: bool = True):
    """``(x (count, 36), stats (count, STATS_DIM))``: the training sets of the module docstring
    (``n_states``: only generators of that size; ``subjects``: the log-uniform range of subjects)."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    xs, cs = [], []
    lo, hi = math.log(subjects[0]), math.log(subjects[1])
    for _ in tqdm(range(int(count)), desc="simulated panels", unit="set", disable=not progress or count < 200):
        Q = random_generator(rng, n_states)
        n = int(round(math.exp(rng.uniform(lo, hi))))
        mis = rng.uniform(0.0, 0.1) if rng.random() < 0.25 else 0.0
        sub, t, s = simulate_intervals(Q, rng, n, spread=rng.uniform(0.0, 0.8), misclassification=mis)
        a, b, dt = _pairs(sub, t, s)
        if len(dt) == 0:
            continue
        stats, tau = panel_statistics(a, b, dt, n, Q > 0)
        xs.append(encode_rates(Q, tau))
        cs.append(stats)
    return np.stack(xs), np.stack(cs)


# ----------------------------------------------------------------------------------------------
# estimation
# ----------------------------------------------------------------------------------------------
@dataclass
class RateEstimate:
    """The amortized estimate of a generator from panel data."""

    Q: np.ndarray                   # (S, S): the posterior medians of the intensities
    lower: np.ndarray               # (S, S) 2.5% posterior quantiles of the intensities (0 off the model)
    upper: np.ndarray               # (S, S) 97.5%
    samples: np.ndarray             # (K, S, S) posterior draws
    states: list
    transitions: list               # [(r, s)] index pairs of the allowed transitions, qmatrix order
    tau: float                      # the median observation interval (the network's time unit)
    seconds: float
    info: dict = field(default_factory=dict)

    @property
    def theta(self) -> np.ndarray:
        """Log intensities in the order of :attr:`transitions`: ``fit_panel(..., init=est.theta)``."""
        return np.log([self.Q[r, s] for r, s in self.transitions])

    def summary(self) -> str:
        lines = [f"amortized estimate from {self.info.get('intervals', '?')} intervals of "
                 f"{self.info.get('subjects', '?')} subjects ({self.seconds * 1000:.1f} ms, "
                 f"{self.samples.shape[0]} posterior draws)",
                 f"{'transition':>14} {'q':>10} {'2.5%':>10} {'97.5%':>10}"]
        for r, s in self.transitions:
            name = f"{self.states[r]} -> {self.states[s]}"
            lines.append(f"{name:>14} {self.Q[r, s]:10.4g} {self.lower[r, s]:10.4g} {self.upper[r, s]:10.4g}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


def estimate_rates(model, pd_, num_samples: int = 32, steps: int | None = None, seed: int = 0) -> RateEstimate:
    """The amortized estimate of ``pd_``'s generator (a :class:`~domains.multistate.panel.PanelData`) by ``model``."""
    import stochgen

    t0 = _time.perf_counter()
    start, end, dt, n_sub = intervals_from_panel(pd_)
    stats, tau = panel_statistics(start, end, dt, n_sub, pd_.allowed)
    K = int(num_samples)
    if K < 2:
        raise ValueError(f"num_samples must be >= 2 (the uncertainty needs draws), got {num_samples!r}")
    cond = torch.from_numpy(stats)[None].expand(K, -1).to(model.device)
    g = torch.Generator(device=model.device).manual_seed(int(seed))
    with torch.no_grad():
        x = stochgen.sample(model.process, model.denoise, shape=(K, STATE_DIM), sampler=model.sampler,
                            steps=int(steps or model.steps), prediction=model.prediction, generator=g,
                            cond={"stats": cond}, device=model.device)
    x = x.double().cpu().numpy()
    if model.domain.settings.get("residual", False):  # the training data's setting (MultistateDomain.load)
        x = x + reference_state(stats).astype(np.float64)
    allowed = pd_.allowed & ~np.eye(pd_.n_states, dtype=bool)
    draws = decode_rates(x, allowed, tau)
    S = pd_.n_states
    # the posterior median of each intensity (exp of the median log intensity): on 200 held-out sets closer to
    # both the MLE and the truth than the exponentiated mean of the draws (benchmarks/bench_rates.py)
    Q = decode_rates(np.median(x, axis=0), allowed, tau)
    lo = np.where(allowed, np.quantile(draws, 0.025, axis=0), 0.0)
    hi = np.where(allowed, np.quantile(draws, 0.975, axis=0), 0.0)
    info = {"intervals": int(len(dt)), "subjects": int(n_sub), "num_samples": K}
    return RateEstimate(Q=Q, lower=lo, upper=hi, samples=draws, states=list(pd_.states),
                        transitions=[(r, s) for r in range(S) for s in range(S) if allowed[r, s]], tau=tau,
                        seconds=_time.perf_counter() - t0, info=info)
