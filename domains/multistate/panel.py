"""Multi-state Markov models from panel data (the model of R's ``msm``): maximum likelihood with the
exact matrix exponential.

Data: one row per observation of a subject, ``(subject, time, state)`` (plus covariate columns); the
process between observations is a continuous-time Markov chain with generator ``Q`` whose allowed
transitions are the non-zero off-diagonal entries of ``qmatrix`` (msm's convention; their values are
the starting point). Each subject contributes the probability of its observed sequence given its
first state (msm conditions on the first observation too):

* an ordinary observation of state ``s`` after ``r``, ``dt`` apart: ``P(dt)[r, s]`` with
  ``P(t) = expm(Q t)``;
* an exactly timed entry into a ``death_exact`` state ``d`` (msm's ``deathexact``; the state just before
  is unknown): ``sum_{k != d} P(dt)[r, k] Q[k, d]``;
* a ``censored`` code standing for "one of the states C": ``sum_{k in C} P(dt)[r, k]``.

With censored codes the sequence is summed over the unobserved states by the forward recursion
``alpha_{i+1} = (alpha_i P_i) * e_{i+1}`` (``e`` the indicator of the allowed states), which equals the
product of the entries above when every state is observed. Covariates enter log-linearly,
``q_rs(x) = q_rs exp(beta_rs . (x - mean x))`` (msm's default centring: ``Q`` is reported at the
covariate means), with the value at the start of each interval.

Fitting: BFGS (scipy) on the log intensities and the coefficients, gradients by autograd through
``torch.linalg.matrix_exp`` in float64; 95% intervals from the observed information (the autograd
Hessian of ``-log L``), by the delta method on the log scale as msm does.
"""
from __future__ import annotations

import math
import time as _time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["fit_panel", "PanelFit", "PanelData", "prepare_panel", "panel_loglik", "simulate_panel"]

_Z95 = 1.959963984540054


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
@dataclass
class PanelData:
    """Panel observations in model form (see :func:`prepare_panel`)."""

    states: list                    # state labels, index order of Q
    subjects: list                  # subject ids kept (>= 2 observations)
    allowed: np.ndarray             # (S, S) bool: transitions of the model
    q0: np.ndarray                  # (S, S) initial intensities (qmatrix as given)
    start: np.ndarray               # (n_int,) index of the state set observed at the interval start
    obs: np.ndarray                 # (n_int, S) float indicator of the states allowed at the interval end
    exact: np.ndarray               # (n_int,) bool: the end is an exact entry into a death_exact state
    dt: np.ndarray                  # (n_int,) interval lengths
    x: np.ndarray                   # (n_int, n_cov) covariates at interval starts (centred)
    first: np.ndarray               # (n_sub, S) indicator of the first observation's allowed states
    subject_of: np.ndarray          # (n_int,) subject index of each interval
    step_of: np.ndarray             # (n_int,) position of each interval in its subject's sequence
    covariates: list = field(default_factory=list)
    cov_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    death_exact: list = field(default_factory=list)
    times: dict = field(default_factory=dict)     # subject -> (times, state indices or -1 for censored)
    censored: dict = field(default_factory=dict)
    n_obs: int = 0

    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def transitions(self) -> list[tuple[int, int]]:
        return [(r, s) for r in range(self.n_states) for s in range(self.n_states) if self.allowed[r, s]]


def _read(data):
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__"):
        try:
            return pd.read_csv(data)
        except FileNotFoundError:
            raise FileNotFoundError(f"panel data file not found: {data}") from None
        except Exception as exc:
            raise ValueError(f"cannot read panel data from {data}: {exc}") from None
    raise TypeError(f"panel data must be a pandas DataFrame or a CSV path, got {type(data).__name__}")


def _rows(mask_index, limit: int = 8) -> str:
    idx = list(mask_index)
    more = f" (and {len(idx) - limit} more)" if len(idx) > limit else ""
    return ", ".join(str(i) for i in idx[:limit]) + more


def _check_qmatrix(qmatrix) -> np.ndarray:
    if qmatrix is None:
        raise ValueError("qmatrix is required: an S x S array whose non-zero off-diagonal entries mark the allowed "
                         "transitions (and give their initial intensities)")
    Q = np.asarray(qmatrix, dtype=np.float64)
    if Q.ndim != 2 or Q.shape[0] != Q.shape[1]:
        raise ValueError(f"qmatrix must be a square S x S matrix, got shape {Q.shape}")
    if Q.shape[0] < 2:
        raise ValueError("qmatrix needs at least 2 states")
    if not np.isfinite(Q).all():
        raise ValueError("qmatrix has non-finite entries")
    off = ~np.eye(len(Q), dtype=bool)
    if (Q[off] < 0).any():
        r, s = np.argwhere((Q < 0) & off)[0]
        raise ValueError(f"qmatrix has a negative off-diagonal entry at row {r + 1}, column {s + 1} ({Q[r, s]}); "
                         f"off-diagonal entries are intensities (>= 0; 0 = transition not allowed)")
    if not (Q[off] > 0).any():
        raise ValueError("qmatrix allows no transition (every off-diagonal entry is 0)")
    return Q


def _absorbing(Q: np.ndarray) -> list[bool]:
    """Per state: no transition leaves it (every off-diagonal entry of its row is 0)."""
    Q = np.asarray(Q)
    return [not (np.delete(Q[i], i) > 0).any() for i in range(len(Q))]


def _reachable(allowed: np.ndarray) -> np.ndarray:
    """``R[r, s]``: ``s`` can be reached from ``r`` by allowed transitions (``r`` itself included)."""
    R = allowed | np.eye(len(allowed), dtype=bool)
    for _ in range(len(allowed)):
        R = R | ((R.astype(int) @ R.astype(int)) > 0)
    return R


def prepare_panel(data, subject="subject", time="time", state="state", qmatrix=None, death_exact=None,
                  censored=None, covariates=None, states=None, center: bool = True) -> PanelData:
    """Check and convert panel ``data`` (DataFrame or CSV path); see :func:`fit_panel` for the arguments."""
    import pandas as pd

    df = _read(data)
    Q0 = _check_qmatrix(qmatrix)
    S = len(Q0)
    covariates = [covariates] if isinstance(covariates, str) else list(covariates or [])
    missing = [c for c in [subject, time, state, *covariates] if c not in df.columns]
    if missing:
        raise ValueError(f"panel data has no column(s) {', '.join(map(repr, missing))}; columns: "
                         f"{', '.join(map(str, df.columns))}")
    df = df[[subject, time, state, *covariates]].copy()
    df["_row"] = np.arange(len(df)) + 1  # 1-based data rows in messages
    try:
        tval = df[time].astype(np.float64).to_numpy()
    except (TypeError, ValueError):
        bad = [i + 1 for i, v in enumerate(df[time]) if not _is_number(v)]
        raise ValueError(f"column {time!r} must be numeric; non-numeric values in rows {_rows(bad)}") from None
    if not np.isfinite(tval).all():
        bad_rows = _rows(np.flatnonzero(~np.isfinite(tval)) + 1)
        raise ValueError(f"column {time!r} has missing or non-finite values in rows {bad_rows}")
    df[time] = tval
    censored = dict(censored or {})
    # state labels: given, or 1..S when the data's labels are integers, else the sorted labels
    labels = df[state].to_numpy()
    codes = set(censored)
    if states is None:
        plain = [v for v in pd.unique(labels) if v not in codes]
        if all(_is_int(v) for v in plain):  # integer labels: 1..S in the qmatrix's order (msm's convention)
            states = list(range(1, S + 1))
        else:
            states = sorted(plain, key=str)
    states = list(states)
    if len(states) != S:
        raise ValueError(f"qmatrix is {S} x {S} but the data has {len(states)} state labels ({states}); pass "
                         f"states=[...] in the order of the qmatrix rows")
    index = {v: i for i, v in enumerate(states)}
    for v in list(index):
        if _is_int(v):
            index.setdefault(int(v), index[v])
    cset = {}
    for code, members in censored.items():
        ms = [members] if not isinstance(members, (list, tuple, set, np.ndarray)) else list(members)
        bad = [m for m in ms if m not in index]
        if bad or not ms:
            raise ValueError(f"censored code {code!r} names unknown states {bad or '(none)'}; states: {states}")
        cset[code] = sorted(index[m] for m in ms)

    def state_index(v):
        if v in cset:
            return -1
        key = int(v) if _is_int(v) else v
        return index.get(key, index.get(v, None))

    codes_lab, uniq_lab = pd.factorize(labels, sort=False)  # one lookup per distinct label
    lut = [state_index(v) for v in uniq_lab]
    sidx = [lut[c] if c >= 0 else state_index(labels[i]) for i, c in enumerate(codes_lab)]  # -1: a missing label
    unknown = [i + 1 for i, v in enumerate(sidx) if v is None]
    if unknown:
        vals = sorted({str(labels[i - 1]) for i in unknown})
        raise ValueError(f"unknown state label(s) {', '.join(vals)} in rows {_rows(unknown)}; states: {states}"
                         + (f", censored codes: {sorted(cset)}" if cset else ""))
    df["_s"] = sidx
    df["_code"] = labels
    if death_exact is True:
        death = [i for i, a in enumerate(_absorbing(Q0)) if a]
    elif death_exact in (None, False):
        death = []
    else:
        dl = [death_exact] if not isinstance(death_exact, (list, tuple, set, np.ndarray)) else list(death_exact)
        bad = [d for d in dl if state_index(d) in (None, -1)]
        if bad:
            raise ValueError(f"death_exact names unknown states {bad}; states: {states}")
        death = sorted(state_index(d) for d in dl)
    for c in covariates:
        try:
            vals = df[c].astype(np.float64).to_numpy()
        except (TypeError, ValueError):
            raise ValueError(f"covariate {c!r} must be numeric (code categories as 0/1 columns)") from None
        if not np.isfinite(vals).all():
            bad_rows = _rows(np.flatnonzero(~np.isfinite(vals)) + 1)
            raise ValueError(f"covariate {c!r} has missing values in rows {bad_rows}")
        df[c] = vals
    allowed = (Q0 > 0) & ~np.eye(S, dtype=bool)
    reach = _reachable(allowed)
    # subjects in order of appearance, each subject's rows in the data's order (times must increase)
    codes_sub, uniq = pd.factorize(df[subject], sort=False)
    uniq = pd.Index(uniq).tolist()  # plain Python ids in messages
    order = np.argsort(codes_sub, kind="stable")
    sub = codes_sub[order]
    t_all = df[time].to_numpy()[order]
    s_all = np.asarray(df["_s"].to_numpy()[order], dtype=np.int64)
    code_all = df["_code"].to_numpy()[order]
    row_all = df["_row"].to_numpy()[order]
    x_all = df[covariates].to_numpy(dtype=np.float64)[order] if covariates else np.zeros((len(df), 0))
    counts = np.bincount(sub, minlength=len(uniq))
    single = counts[sub] < 2
    dropped = [uniq[k] for k in np.flatnonzero(counts == 1)]
    pair = np.flatnonzero((sub[:-1] == sub[1:]) & ~single[:-1])     # row i -> i+1 of one subject
    bad = pair[t_all[pair + 1] <= t_all[pair]]
    if len(bad):
        k = sub[bad[0]]
        pairs = ", ".join(f"{row_all[i]}-{row_all[i + 1]}" for i in bad[sub[bad] == k][:5])
        raise ValueError(f"times must increase within a subject: subject {uniq[k]!r}, rows {pairs}")
    a_, b_ = s_all[pair], s_all[pair + 1]
    both = (a_ >= 0) & (b_ >= 0)
    imp = pair[both & ~reach[np.clip(a_, 0, None), np.clip(b_, 0, None)]]
    if len(imp):
        i = imp[0]
        raise ValueError(f"subject {uniq[sub[i]]!r}, rows {row_all[i]}-{row_all[i + 1]}: a change of state "
                         f"{states[s_all[i]]} -> {states[s_all[i + 1]]} that no path of allowed transitions "
                         f"(qmatrix) can make")

    def allowed_sets(si, code):
        out = np.zeros((len(si), S))
        plain = si >= 0
        out[np.flatnonzero(plain), si[plain]] = 1.0
        for c, members in cset.items():
            hit = np.flatnonzero(~plain & (code == c))
            out[np.ix_(hit, members)] = 1.0
        return out

    kept_idx = np.flatnonzero(counts >= 2)
    renum = -np.ones(len(uniq), dtype=np.int64)
    renum[kept_idx] = np.arange(len(kept_idx))
    kept = [uniq[k] for k in kept_idx]
    first_rows = np.flatnonzero(~single & np.r_[True, sub[1:] != sub[:-1]])
    firsts = allowed_sets(s_all[first_rows], code_all[first_rows])
    starts = s_all[pair]
    ends = allowed_sets(s_all[pair + 1], code_all[pair + 1])
    exact = np.isin(s_all[pair + 1], death) & (s_all[pair + 1] >= 0)
    dts = t_all[pair + 1] - t_all[pair]
    xs = x_all[pair]
    subj_of = renum[sub[pair]]
    step_of = pair - np.searchsorted(sub, sub[pair], side="left")
    times = {}
    for r0 in first_rows:
        r1 = r0 + counts[sub[r0]]
        times[uniq[sub[r0]]] = (t_all[r0:r1].copy(), s_all[r0:r1].copy())
    if dropped:
        warnings.warn(f"dropped {len(dropped)} subject(s) with a single observation (no information): "
                      f"{_rows(dropped)}", stacklevel=3)
    if not kept:
        raise ValueError("no subject has two or more observations: nothing to fit")
    x = np.asarray(xs, dtype=np.float64).reshape(len(dts), len(covariates))
    # centred at the mean over the observations (msm's centring), so Q is reported there
    mean = x_all[~single].mean(0) if (center and covariates) else np.zeros(len(covariates))
    return PanelData(states=states, subjects=kept, allowed=allowed, q0=Q0, start=np.asarray(starts),
                     obs=ends, exact=np.asarray(exact, dtype=bool), dt=np.asarray(dts, dtype=np.float64),
                     x=x - mean, first=firsts, subject_of=np.asarray(subj_of),
                     step_of=np.asarray(step_of), covariates=covariates, cov_mean=mean, death_exact=death,
                     times=times, censored=cset, n_obs=int(len(dts) + len(kept)))


def _is_int(v) -> bool:
    try:
        return float(v) == int(float(v)) and not isinstance(v, bool)
    except (TypeError, ValueError):
        return False


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------------------------
# likelihood
# ----------------------------------------------------------------------------------------------
def _generators(pd_: PanelData, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Generators ``(G, S, S)``, one per distinct covariate row (one without covariates), and the index
    ``(n_int,)`` of each interval's generator, from the parameter vector."""
    S = pd_.n_states
    tr = pd_.transitions
    n = len(tr)
    logq = theta[:n]
    rows = torch.tensor([r for r, _ in tr])
    cols = torch.tensor([s for _, s in tr])
    if pd_.covariates:
        xu, inv = np.unique(pd_.x, axis=0, return_inverse=True)
        beta = theta[n:].reshape(n, len(pd_.covariates))
        rates = torch.exp(logq[None] + torch.as_tensor(xu, dtype=theta.dtype) @ beta.T)   # (G, n)
        which = torch.as_tensor(inv.reshape(-1), dtype=torch.long)
    else:
        rates = torch.exp(logq)[None]
        which = torch.zeros(len(pd_.dt), dtype=torch.long)
    Q = torch.zeros(rates.shape[0], S, S, dtype=theta.dtype)
    Q[:, rows, cols] = rates
    Q = Q - torch.diag_embed(Q.sum(-1))
    return Q, which


def transition_matrices(Q: torch.Tensor, dt: torch.Tensor, which: torch.Tensor | None = None) -> torch.Tensor:
    """``expm(Q_(which_i) dt_i)`` for generators ``Q (G, S, S)``, times ``dt (n,)`` and generator indices
    ``which (n,)`` (default: all 0, i.e. one generator), differentiable.

    By the eigen-decomposition ``Q = V diag(l) V^-1`` (``P = V diag(exp(l dt)) V^-1``: one small
    decomposition per generator, then products; its gradient is cheap) where that is safe, i.e. the
    eigenvalues are separated and ``V`` is well conditioned; otherwise ``torch.linalg.matrix_exp``.
    """
    with torch.no_grad():
        lam, V = torch.linalg.eig(Q)
        scale = lam.abs().amax(-1).clamp_min(1e-300)
        gap = (lam[..., :, None] - lam[..., None, :]).abs()
        gap = gap.masked_fill(torch.eye(Q.shape[-1], dtype=torch.bool), float("inf"))
        safe = bool((gap.amin((-1, -2)) > 1e-6 * scale).all()) and bool((torch.linalg.cond(V) < 1e6).all())
    if which is None:
        which = torch.zeros(len(dt), dtype=torch.long)
    if not safe:
        return torch.linalg.matrix_exp(Q[which] * dt[:, None, None])
    lam, V = torch.linalg.eig(Q)
    Vinv = torch.linalg.inv(V)
    e = torch.exp(lam[which] * dt.to(lam.dtype)[:, None])    # (n, S)
    return ((V[which] * e[:, None, :]) @ Vinv[which]).real


def panel_loglik(pd_: PanelData, theta: torch.Tensor) -> torch.Tensor:
    """``log L`` of the panel at parameters ``theta`` (log intensities, then coefficients), differentiable."""
    Q, which = _generators(pd_, theta)
    dt = torch.as_tensor(pd_.dt, dtype=theta.dtype)
    P = transition_matrices(Q, dt, which)                   # (n_int, S, S)
    obs = torch.as_tensor(pd_.obs, dtype=theta.dtype)
    exact = torch.as_tensor(pd_.exact)
    if pd_.death_exact:
        Qi = Q[which]
        # exact entry into d: sum_{k != d} P[r, k] Q[k, d], i.e. the row of P @ Qoff (Q with a zero diagonal)
        Qoff = Qi - torch.diag_embed(torch.diagonal(Qi, dim1=-2, dim2=-1))
        M = torch.where(exact[:, None, None], P @ Qoff, P)
    else:
        M = P
    if not pd_.censored:
        start = torch.as_tensor(pd_.start)
        rowsel = M[torch.arange(len(dt)), start]              # (n_int, S)
        lik = (rowsel * obs).sum(-1)
        return torch.log(lik.clamp_min(1e-300)).sum()
    # forward recursion per subject over its intervals (censored states summed over)
    alpha = torch.as_tensor(pd_.first, dtype=theta.dtype)
    alpha = alpha / alpha.sum(-1, keepdim=True)
    ll = torch.zeros((), dtype=theta.dtype)
    subj = torch.as_tensor(pd_.subject_of)
    step = torch.as_tensor(pd_.step_of)
    for i in range(int(step.max()) + 1):
        sel = step == i
        who = subj[sel]
        a = torch.bmm(alpha[who][:, None, :], M[sel])[:, 0] * obs[sel]
        c = a.sum(-1).clamp_min(1e-300)
        ll = ll + torch.log(c).sum()
        alpha = alpha.index_copy(0, who, a / c[:, None])
    return ll


# ----------------------------------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------------------------------
class PanelFit:
    """A fitted multi-state model (see :func:`fit_panel`)."""

    def __init__(self, pd_: PanelData, theta: np.ndarray, cov: np.ndarray | None, loglik: float, info: dict):
        self.data = pd_
        self.theta = theta
        self.cov = cov
        self.minus2loglik = float(-2.0 * loglik)
        self.info = info
        self.states = list(pd_.states)
        self.covariates = list(pd_.covariates)
        n = len(pd_.transitions)
        self._n = n
        self.Q = self._q_at(theta[:n])
        se = np.sqrt(np.clip(np.diag(cov), 0, None)) if cov is not None else np.full(len(theta), np.nan)
        self.se = se
        lo, hi = self._q_at(theta[:n] - _Z95 * se[:n]), self._q_at(theta[:n] + _Z95 * se[:n])
        # the diagonal's interval is not from a monotone map of one parameter: delta method on -sum
        dlo, dhi = self._diag_ci(cov)
        np.fill_diagonal(lo, dlo)
        np.fill_diagonal(hi, dhi)
        self.Q_ci = (lo, hi)

    @property
    def transitions(self) -> list[tuple]:
        return [(self.states[r], self.states[s]) for r, s in self.data.transitions]

    def _q_at(self, logq: np.ndarray) -> np.ndarray:
        S = self.data.n_states
        Q = np.zeros((S, S))
        for (r, s), v in zip(self.data.transitions, logq):
            Q[r, s] = math.exp(min(float(v), 700.0))
        np.fill_diagonal(Q, -Q.sum(1))
        return Q

    def _diag_ci(self, cov):
        S = self.data.n_states
        lo, hi = np.zeros(S), np.zeros(S)
        if cov is None:
            return np.full(S, np.nan), np.full(S, np.nan)
        tr = self.data.transitions
        for r in range(S):
            idx = [k for k, (a, _) in enumerate(tr) if a == r]
            if not idx:
                continue
            q = np.exp(self.theta[idx])
            total = q.sum()
            # log(sum q): gradient q / total w.r.t. the log intensities
            g = q / total
            var = float(g @ cov[np.ix_(idx, idx)] @ g)
            sd = math.sqrt(max(var, 0.0))
            with np.errstate(over="ignore"):  # a non-identified rate: an unbounded interval (-inf)
                lo[r], hi[r] = -total * np.exp(_Z95 * sd), -total * np.exp(-_Z95 * sd)
        return lo, hi

    # --- derived quantities -----------------------------------------------------------------------
    def qmatrix(self, covariates: dict | None = None) -> np.ndarray:
        """``Q`` at covariate values (a dict name -> value; default the means, as :attr:`Q`)."""
        if not covariates:
            return self.Q.copy()
        unknown = [c for c in covariates if c not in self.covariates]
        if unknown:
            raise ValueError(f"unknown covariate(s) {unknown}; the model has {self.covariates}")
        x = np.array([covariates.get(c, m) for c, m in zip(self.covariates, self.data.cov_mean)]) - self.data.cov_mean
        beta = self.theta[self._n:].reshape(self._n, len(self.covariates))
        return self._q_at(self.theta[: self._n] + beta @ x)

    def pmatrix(self, t: float, covariates: dict | None = None) -> np.ndarray:
        """Transition probabilities ``P(t) = expm(Q t)`` (rows: from, columns: to)."""
        if not t >= 0:
            raise ValueError(f"t must be >= 0, got {t!r}")
        Q = torch.as_tensor(self.qmatrix(covariates))
        return torch.linalg.matrix_exp(Q * float(t)).numpy()

    def sojourn(self) -> dict:
        """Mean sojourn time in each transient state, ``-1 / q_rr`` (with the 95% interval)."""
        out = {}
        lo, hi = self.Q_ci
        for r, lab in enumerate(self.states):
            q = -self.Q[r, r]
            if q > 0:
                a = -1.0 / lo[r, r] if lo[r, r] < 0 else math.nan
                b = -1.0 / hi[r, r] if hi[r, r] < 0 else math.nan
                out[lab] = (1.0 / q, a, b)
        return {k: (m, min(a, b), max(a, b)) for k, (m, a, b) in out.items()}

    def hazard_ratios(self) -> dict:
        """``{covariate: {(from, to): (HR, lower, upper)}}``: ``exp(beta)`` with 95% intervals."""
        out = {}
        if not self.covariates:
            return out
        beta = self.theta[self._n:].reshape(self._n, len(self.covariates))
        se = self.se[self._n:].reshape(self._n, len(self.covariates))
        for j, c in enumerate(self.covariates):
            with np.errstate(over="ignore"):  # a non-identified effect: an unbounded interval (inf)
                out[c] = {tr: (float(np.exp(beta[k, j])), float(np.exp(beta[k, j] - _Z95 * se[k, j])),
                               float(np.exp(beta[k, j] + _Z95 * se[k, j]))) for k, tr in enumerate(self.transitions)}
        return out

    def summary(self) -> str:
        """A readable table: intensities with 95% intervals, -2 log L, sojourn times, hazard ratios."""
        lo, hi = self.Q_ci
        lines = [f"Multi-state model: {self.data.n_states} states {self.states}, {len(self.data.subjects)} subjects, "
                 f"{self.data.n_obs} observations; likelihood with "
                 + (f"exact entry times into {[self.states[d] for d in self.data.death_exact]}"
                    if self.data.death_exact else "every state observed at panel times (no exact death times)"),
                 f"-2 log L = {self.minus2loglik:.4f}  ({self.info.get('iterations', '?')} BFGS iterations, "
                 f"{self.info.get('seconds', float('nan')):.2f} s)", "",
                 "Transition intensities" + (" (at the covariate means)" if self.covariates else ""),
                 f"  {'from':>8s} -> {'to':<8s} {'estimate':>10s} {'lower 95%':>10s} {'upper 95%':>10s}"]
        for r, s in self.data.transitions + [(i, i) for i in range(self.data.n_states) if self.Q[i, i] < 0]:
            lines.append(f"  {str(self.states[r]):>8s} -> {str(self.states[s]):<8s} {self.Q[r, s]:10.5g} "
                         f"{lo[r, s]:10.5g} {hi[r, s]:10.5g}")
        soj = self.sojourn()
        if soj:
            lines += ["", "Mean sojourn times", *(f"  {str(k):>8s}: {m:9.5g}  ({a:.5g}, {b:.5g})"
                                                 for k, (m, a, b) in soj.items())]
        for c, table in self.hazard_ratios().items():
            lines += ["", f"Hazard ratios for {c}"]
            lines += [f"  {str(a):>8s} -> {str(b):<8s} {hr:10.5g} ({l_:.5g}, {u:.5g})"
                      for (a, b), (hr, l_, u) in table.items()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    # --- prevalence ------------------------------------------------------------------------------
    def prevalence(self, times=None) -> dict:
        """Observed and expected numbers in each state at ``times`` (msm's ``prevalence.msm``).

        Observed: each subject is in the state of its last observation at or before ``t`` while under
        observation (between its first and last observation; an absorbing state is kept after it) and
        is then counted. Expected: the same subjects' ``P(t - t_first)[first state, :]`` summed."""
        pd_ = self.data
        S = pd_.n_states
        tmax = max(float(t[-1] - t[0]) for t, _ in pd_.times.values())
        times = np.linspace(0.0, tmax, 26) if times is None else np.asarray(times, dtype=np.float64)
        absorbing = _absorbing(self.Q)
        obs = np.zeros((len(times), S))
        exp_ = np.zeros((len(times), S))
        for t_, s_ in pd_.times.values():
            rel = t_ - t_[0]
            if s_[0] < 0:
                continue
            for k, tt in enumerate(times):
                i = np.searchsorted(rel, tt, side="right") - 1
                last = s_[-1]
                if tt > rel[-1] and not (last >= 0 and absorbing[last]):
                    continue
                st = s_[min(i, len(s_) - 1)]
                if st < 0:
                    continue
                obs[k, st] += 1
                exp_[k] += self.pmatrix(tt)[s_[0]]
        return {"times": times, "observed": obs, "expected": exp_, "states": list(self.states)}

    def plot_prevalence(self, path: str | None = None, times=None):
        """Observed vs expected prevalence (percent in each state) over time; saves to ``path``."""
        import matplotlib

        if path:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        p = self.prevalence(times)
        tot_o = p["observed"].sum(1, keepdims=True).clip(min=1)
        tot_e = p["expected"].sum(1, keepdims=True).clip(min=1e-12)
        S = len(p["states"])
        fig, axes = plt.subplots(1, S, figsize=(3.2 * S, 3.0), squeeze=False)
        for j, ax in enumerate(axes[0]):
            ax.plot(p["times"], 100 * p["observed"][:, j] / tot_o[:, 0], "k-", label="observed")
            ax.plot(p["times"], 100 * p["expected"][:, j] / tot_e[:, 0], "r--", label="expected")
            ax.set_title(f"state {p['states'][j]}")
            ax.set_xlabel("time since first observation")
            ax.set_ylim(0, 100)
        axes[0][0].set_ylabel("prevalence (%)")
        axes[0][0].legend(frameon=False)
        fig.tight_layout()
        if path:
            fig.savefig(path, dpi=120)
            plt.close(fig)
            return path
        return fig


def fit_panel(data, subject="subject", time="time", state="state", qmatrix=None, death_exact=None,
              censored=None, covariates=None, states=None, center: bool = True, init=None,
              gtol: float = 1e-6, max_iter: int = 500) -> PanelFit:
    """Maximum-likelihood multi-state Markov model from panel data (msm's model; see the module docstring).

    * ``data``: pandas DataFrame or CSV path, one row per observation.
    * ``subject`` / ``time`` / ``state``: column names; states labelled as in the data (``states``: their
      order in ``qmatrix``; default ``1..S`` when the labels are integers in that range, else sorted).
    * ``qmatrix``: ``S x S``; non-zero off-diagonal entries mark the allowed transitions and give the
      initial values.
    * ``death_exact``: states whose entry time is known exactly (msm's ``deathexact``; ``True``: every
      absorbing state).
    * ``censored``: ``{code: [states]}``, a code in the state column meaning "one of these states".
    * ``covariates``: column names entering log-linearly on every intensity (centred at their means).
    * ``init``: a parameter vector to start from (log intensities, then coefficients), or an amortized
      estimate (:meth:`MultistateDomain.estimate_rates`): BFGS then starts at its answer with the
      covariance of its posterior draws (of the log intensities) as the initial inverse Hessian.
    """
    from scipy.optimize import minimize

    pd_ = prepare_panel(data, subject, time, state, qmatrix, death_exact, censored, covariates, states, center)
    n = len(pd_.transitions)
    npar = n * (1 + len(pd_.covariates))
    hess0 = None
    if init is None:
        theta0 = np.concatenate([np.log([pd_.q0[r, s] for r, s in pd_.transitions]), np.zeros(npar - n)])
    elif hasattr(init, "theta") and hasattr(init, "samples"):  # an amortized estimate: its answer and spread
        if list(init.transitions) != list(pd_.transitions):
            raise ValueError("init: the estimate's transitions differ from this qmatrix's")
        logs = np.log(np.stack([init.samples[:, r, s] for r, s in init.transitions], 1))
        cov = np.atleast_2d(np.cov(logs, rowvar=False)) + 1e-6 * np.eye(n)
        theta0 = np.concatenate([init.theta, np.zeros(npar - n)])
        # BFGS starts from the posterior covariance as its inverse-Hessian guess (objective scaled below)
        hess0 = np.eye(npar)
        hess0[:n, :n] = cov * max(1.0, len(pd_.dt))
    else:
        theta0 = np.asarray(init, dtype=np.float64).reshape(-1)
        if theta0.size != npar:
            raise ValueError(f"init must have {npar} entries (log intensities, then coefficients), got {theta0.size}")
    scale = max(1.0, len(pd_.dt))

    def f(th):
        t = torch.tensor(th, dtype=torch.float64, requires_grad=True)
        val = -panel_loglik(pd_, t) / scale
        (g,) = torch.autograd.grad(val, t)
        v = float(val.detach())
        if not math.isfinite(v):
            return 1e300, np.zeros_like(th)
        return v, g.numpy()

    t0 = _time.perf_counter()
    opts = {"gtol": gtol, "maxiter": int(max_iter)}
    if hess0 is not None:
        opts["hess_inv0"] = hess0
    res = minimize(f, theta0, jac=True, method="BFGS", options=opts)
    theta = res.x
    th = torch.tensor(theta, dtype=torch.float64)
    H = torch.autograd.functional.hessian(lambda t: -panel_loglik(pd_, t), th).numpy()
    try:
        cov = np.linalg.inv(H)
        if not np.isfinite(cov).all() or (np.diag(cov) < 0).any():
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        warnings.warn("the observed information is singular at the optimum: no confidence intervals "
                      "(some intensities are not identifiable from these data)", stacklevel=2)
        cov = None
    loglik = float(panel_loglik(pd_, th))
    info = {"iterations": int(res.nit), "evaluations": int(res.nfev), "converged": bool(res.success),
            "message": str(res.message), "seconds": _time.perf_counter() - t0}
    return PanelFit(pd_, theta, cov, loglik, info)


# ----------------------------------------------------------------------------------------------
# simulation
# ----------------------------------------------------------------------------------------------
def simulate_panel(Q, times, initial=1, n_subjects: int | None = None, death_exact=None, states=None,
                   seed: int = 0):
    """Panel data simulated from the chain with generator ``Q`` observed at ``times``.

    ``times``: one increasing sequence for every subject, or a list of sequences (one per subject).
    ``initial``: the state label at the first time (or a sequence, one per subject). Uses the core's
    exact Gillespie sampler (:meth:`stochgen.processes.CTMC.gillespie`). An absorbing state ends a
    subject's observations; with ``death_exact`` (``True`` or a list of absorbing states), its exact
    entry time is recorded instead of the next panel time. Returns a DataFrame
    ``subject, time, state``.
    """
    import pandas as pd

    from stochgen.processes import CTMC

    Q = np.asarray(Q, dtype=np.float64)
    S = len(Q)
    states = list(range(1, S + 1)) if states is None else list(states)
    if isinstance(times[0], (list, tuple, np.ndarray)):
        seqs = [np.asarray(t, dtype=np.float64) for t in times]
    else:
        if n_subjects is None:
            raise ValueError("n_subjects is needed with one shared sequence of times")
        seqs = [np.asarray(times, dtype=np.float64)] * int(n_subjects)
    n = len(seqs)
    init = list(initial) if isinstance(initial, (list, tuple, np.ndarray)) else [initial] * n
    idx = {v: i for i, v in enumerate(states)}
    x = torch.tensor([idx[v] for v in init], dtype=torch.long)
    absorbing = _absorbing(Q)
    if death_exact is True:
        dead = {i for i in range(S) if absorbing[i]}
    else:
        dead = {idx[d] for d in (death_exact or [])}
    # the core's chains run on t in [0, 1]: time in units of the last observation time (rates scaled to match)
    horizon = max(float(t[-1]) for t in seqs)
    horizon = horizon if horizon > 0 else 1.0
    proc = CTMC(Q * horizon, schedule="constant")
    g = torch.Generator().manual_seed(int(seed))
    rows = [[k, seqs[k][0], states[int(x[k])]] for k in range(n)]
    alive = torch.tensor([not absorbing[int(v)] for v in x])
    L = max(len(t) for t in seqs)
    for j in range(1, L):
        who = torch.tensor([k for k in range(n) if j < len(seqs[k]) and bool(alive[k])], dtype=torch.long)
        if who.numel() == 0:
            break
        t0 = torch.tensor([seqs[k][j - 1] for k in who.tolist()], dtype=torch.float64) / horizon
        t1 = torch.tensor([seqs[k][j] for k in who.tolist()], dtype=torch.float64) / horizon
        x1, path = proc.gillespie(x[who], t0, t1, generator=g, return_path=True)
        for pos, k in enumerate(who.tolist()):
            s1 = int(x1[pos])
            t_obs = float(seqs[k][j])
            if s1 in dead:
                hit = (path.index == pos) & (path.after == s1)
                t_obs = float(path.times[hit].min()) * horizon
            rows.append([k, t_obs, states[s1]])
            x[k] = s1
            if absorbing[s1]:
                alive[k] = False
    df = pd.DataFrame(rows, columns=["subject", "time", "state"])
    return df.sort_values(["subject", "time"], kind="stable").reset_index(drop=True)
