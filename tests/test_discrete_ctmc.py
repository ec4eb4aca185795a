"""Discrete space and CTMC forward processes, checked against exact transition matrices.

Monte-Carlo checks use fixed seeds. A frequency check passes when the
chi-square statistic of the counts against the exact probabilities is below
the 1 - 1e-4 quantile of its chi-square law (a correct implementation fails a
given check with probability 1e-4) and the total-variation distance is below
``TV_TOL`` (about 4x its standard deviation at the sample sizes used).
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from stochgen.processes import CTMC, AbsorbingCTMC, UniformCTMC, from_spec
from stochgen.processes.ctmc import (
    ConstantRate,
    LinearRate,
    LogLinearRate,
    RateSchedule,
    check_rate_matrix,
    rate_schedule,
)
from stochgen.spaces import Discrete

F64 = torch.float64
SCHEDULES = [
    {"name": "constant", "rate": 1.5},
    {"name": "linear", "beta_min": 0.1, "beta_max": 6.0},
    {"name": "loglinear", "eps": 1e-3},
]
SCHED_IDS = ["constant", "linear", "loglinear"]
CHAINS = ["uniform", "absorbing", "generic"]
N_MC = 20_000
TV_TOL = 0.02
P_FAIL = 1e-4



def random_Q(K: int = 4, seed: int = 0) -> torch.Tensor:
    """A random rate matrix with one forbidden jump (Q[0, K-1] = 0) so it is not all-to-all."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.rand(K, K, generator=g, dtype=F64) * 1.5
    Q[0, K - 1] = 0.0
    Q.fill_diagonal_(0.0)
    return Q - torch.diag(Q.sum(1))


def make(chain: str, schedule) -> CTMC:
    if chain == "uniform":
        return UniformCTMC(4, schedule=schedule)
    if chain == "absorbing":
        return AbsorbingCTMC(3, schedule=schedule)
    return CTMC(random_Q(), schedule=schedule)


def chi2_quantile(q: float, df: int) -> float:
    """Quantile of the chi-square law (bisection on torch's regularised incomplete gamma; avoids importing scipy)."""
    a = torch.tensor(df / 2.0, dtype=F64)
    lo, hi = 0.0, 10.0 * df + 100.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if float(torch.special.gammainc(a, torch.tensor(mid / 2.0, dtype=F64))) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def assert_frequencies(samples: torch.Tensor, probs: torch.Tensor, what: str) -> None:
    """``samples``: flat state indices; ``probs``: exact (K,) law. Chi-square + TV bound, zeros exactly."""
    K = probs.numel()
    n = samples.numel()
    counts = torch.bincount(samples.reshape(-1), minlength=K).to(F64)
    probs = probs.to(F64)
    impossible = probs < 1e-12
    assert counts[impossible].sum() == 0, f"{what}: visited states of probability 0: {counts}, {probs}"
    tv = 0.5 * (counts / n - probs).abs().sum()
    assert tv < TV_TOL, f"{what}: TV distance {tv:.4f} >= {TV_TOL} (freq {counts / n}, exact {probs})"
    live = ~impossible
    df = int(live.sum()) - 1
    if df >= 1:
        expected = n * probs[live]
        chi2 = float(((counts[live] - expected) ** 2 / expected).sum())
        limit = chi2_quantile(1 - P_FAIL, df)
        assert chi2 < limit, f"{what}: chi-square {chi2:.2f} >= {limit:.2f} (df={df}); freq {counts / n}, exact {probs}"


# ---------------------------------------------------------------------------
# Discrete space
# ---------------------------------------------------------------------------


def test_discrete_one_hot_round_trip_and_attributes():
    sp = Discrete(5, event_shape=(7,), absorbing=True)
    assert (sp.num_states, sp.num_categories, sp.mask_index, sp.dim) == (5, 6, 5, 7)
    g = torch.Generator().manual_seed(0)
    x = sp.uniform((3, 7), generator=g, include_mask=True)
    oh = sp.one_hot(x)
    assert oh.shape == (3, 7, 6) and oh.is_floating_point()
    assert torch.equal(oh.sum(-1), torch.ones(3, 7))
    assert torch.equal(sp.index(oh), x) and torch.equal(sp.from_one_hot(oh), x)
    assert torch.equal(sp.is_masked(x), x == 5)
    plain = Discrete(4)
    assert plain.mask_index is None and plain.dim is None
    y = plain.uniform((2, 3, 5), generator=g)
    assert y.dtype == torch.long and int(y.max()) < 4 and int(y.min()) >= 0
    assert not bool(plain.is_masked(y).any())
    assert torch.equal(sp.mask((2, 7)), torch.full((2, 7), 5))


def test_discrete_uniform_is_uniform():
    sp = Discrete(6, absorbing=True)
    x = sp.uniform((30_000,), generator=torch.Generator().manual_seed(1))
    assert_frequencies(x, torch.cat([torch.full((6,), 1 / 6), torch.zeros(1)]), "Discrete.uniform")


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.tensor([[0.0, 1.0]]), "integer"),
        (torch.tensor([[0, 4]]), "out-of-range"),
        (torch.tensor([[-1, 0]]), "out-of-range"),
        (torch.tensor([0, 1, 2]), r"shape \(batch, 2\)"),
        (torch.tensor(1), "integer|scalar"),
    ],
)
def test_discrete_check_rejects_bad_states(x, match):
    with pytest.raises(ValueError, match=match):
        Discrete(4, event_shape=(2,)).check(x)


def test_discrete_has_no_tangent_space_and_rejects_bad_args():
    sp = Discrete(3)
    x = torch.zeros(2, dtype=torch.long)
    with pytest.raises(TypeError, match="tangent"):
        sp.exp(x, x)
    with pytest.raises(TypeError, match="tangent"):
        sp.log(x, x)
    with pytest.raises(TypeError, match="uniform"):
        sp.noise((2,))
    with pytest.raises(ValueError, match="at least 2"):
        Discrete(1)
    with pytest.raises(ValueError, match="NaN"):
        sp.index(torch.tensor([[0.1, float("nan"), 0.2]]))
    with pytest.raises(ValueError, match="num_categories=3"):
        sp.index(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="no mask"):
        sp.mask((2,))


# ---------------------------------------------------------------------------
# rate schedules
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SCHEDULES, ids=SCHED_IDS)
def test_schedule_integral_inverse_and_derivative(spec):
    s = rate_schedule(spec)
    t = torch.linspace(0.0, 1.0, 41, dtype=F64)
    B = s.integral(t)
    # closed-form B against the base class's Gauss-Legendre quadrature of beta (up to t = 0.9:
    # the log-linear rate has a pole just beyond t = 1 that a fixed quadrature does not resolve)
    smooth = t <= 0.9
    assert torch.allclose(B[smooth], RateSchedule.integral(s, t[smooth]), rtol=1e-10, atol=1e-12)
    # beta = dB/dt
    tt = t[1:-1].clone().requires_grad_(True)
    (dB,) = torch.autograd.grad(s.integral(tt).sum(), tt)
    assert torch.allclose(dB, s.beta(t[1:-1]), rtol=1e-10)
    # closed-form inverse and the bisection fallback both invert B
    assert torch.allclose(s.inverse_integral(B), t, atol=1e-10)
    assert torch.allclose(RateSchedule.inverse_integral(s, B), t, atol=1e-10)
    assert rate_schedule(s.config()).config() == s.config()


def test_schedule_values_and_errors():
    assert float(LogLinearRate(1e-3).integral(torch.tensor(1.0, dtype=F64))) == pytest.approx(-math.log(1e-3))
    assert float(LinearRate(0.0, 2.0).inverse_integral(torch.tensor(0.25, dtype=F64))) == pytest.approx(0.5)
    assert float(ConstantRate(2.0).integral(torch.tensor(0.3, dtype=F64))) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="unknown rate schedule 'cosine'"):
        rate_schedule("cosine")
    with pytest.raises(ValueError, match="eps must lie in"):
        rate_schedule({"name": "loglinear", "eps": 1.5})
    with pytest.raises(ValueError, match="rate must be positive"):
        ConstantRate(-1.0)
    with pytest.raises(ValueError, match="bad parameters"):
        rate_schedule({"name": "linear", "sigma": 1.0})


# ---------------------------------------------------------------------------
# exact transition matrices
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SCHEDULES, ids=SCHED_IDS)
@pytest.mark.parametrize("chain", CHAINS)
def test_transition_matrix_is_stochastic_and_chapman_kolmogorov(chain, spec):
    proc = make(chain, spec)
    s = torch.tensor([0.0, 0.1, 0.3], dtype=F64)
    t = torch.tensor([0.4, 0.55, 0.9], dtype=F64)
    u = torch.tensor([0.7, 1.0, 1.0], dtype=F64)
    Pst, Ptu, Psu = proc.transition(s, t), proc.transition(t, u), proc.transition(s, u)
    K = proc.num_categories
    assert Pst.shape == (3, K, K) and Pst.dtype == F64
    assert float(Pst.min()) >= 0.0
    assert torch.allclose(Pst.sum(-1), torch.ones(3, K, dtype=F64), atol=1e-12)
    assert torch.allclose(Pst @ Ptu, Psu, atol=1e-12)
    assert torch.allclose(proc.transition(0.4, 0.4, dtype=F64), torch.eye(K, dtype=F64), atol=1e-14)


@pytest.mark.parametrize("spec", SCHEDULES, ids=SCHED_IDS)
@pytest.mark.parametrize("chain", ["uniform", "absorbing"])
def test_closed_forms_match_matrix_exponential(chain, spec):
    proc = make(chain, spec)
    generic = CTMC(proc.Q, schedule=spec)
    assert torch.allclose(proc.Q.sum(1), torch.zeros(proc.num_categories, dtype=F64))
    s = torch.tensor([0.0, 0.2, 0.5, 0.05], dtype=F64)
    t = torch.tensor([0.3, 0.6, 1.0, 0.999], dtype=F64)
    assert torch.allclose(proc.transition(s, t), generic.transition(s, t), atol=1e-12)
    assert torch.allclose(proc.rate_matrix(t), generic.rate_matrix(t), atol=1e-12)
    K = proc.num_categories
    x = torch.arange(K).repeat(4, 1)  # (4, K): every state, every sample its own time
    assert torch.allclose(proc.transition_probs(x, s, t), generic.transition_probs(x, s, t), atol=1e-12)
    assert torch.allclose(proc.rates(x, t), generic.rates(x, t), atol=1e-12)


@pytest.mark.parametrize("chain", CHAINS)
def test_transition_probs_rates_and_kolmogorov_forward_equation(chain):
    proc = make(chain, SCHEDULES[1])
    K = proc.num_categories
    x = torch.arange(K).reshape(K, 1)
    s, t = torch.tensor(0.15, dtype=F64), torch.tensor(0.6, dtype=F64)
    P = proc.transition(s, t)
    assert torch.allclose(proc.transition_probs(x, s, t)[:, 0], P, atol=1e-14)
    R = proc.rate_matrix(t)
    assert torch.allclose(R.sum(-1), torch.zeros(K, dtype=F64), atol=1e-12)
    assert torch.allclose(proc.rates(x, t)[:, 0], R, atol=1e-14)
    # dP(s, t)/dt = P(s, t) Q_t (forward equation), central differences
    h = 1e-5
    dP = (proc.transition(s, t + h) - proc.transition(s, t - h)) / (2 * h)
    assert torch.allclose(dP, P @ R, rtol=1e-6, atol=1e-7)
    # per-position times
    tt = torch.tensor([[0.2, 0.5, 0.9]], dtype=F64)
    xx = torch.tensor([[0, 1, 2]])
    got = proc.transition_probs(xx, 0.0, tt)[0]
    for j in range(3):
        assert torch.allclose(got[j], proc.transition(0.0, tt[0, j])[xx[0, j]], atol=1e-13)


# ---------------------------------------------------------------------------
# Gillespie path simulation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SCHEDULES, ids=SCHED_IDS)
@pytest.mark.parametrize("chain", CHAINS)
def test_gillespie_matches_transition_matrix(chain, spec):
    proc = make(chain, spec)
    K = proc.num_categories
    g = torch.Generator().manual_seed(1234)
    t0, t1 = 0.2, 0.8
    P = proc.transition(torch.tensor(t0, dtype=F64), torch.tensor(t1, dtype=F64))
    for i in range(K):
        xt = proc.gillespie(torch.full((N_MC, 1), i), t0, t1, generator=g)
        assert_frequencies(xt, P[i], f"{chain}/{spec['name']} Gillespie from state {i}")


def test_gillespie_per_sample_times_and_path_consistency():
    proc = CTMC(random_Q(seed=3), schedule=SCHEDULES[2])
    g = torch.Generator().manual_seed(7)
    n = N_MC
    x0 = torch.tensor([0, 2]).repeat_interleave(n).reshape(2, n)
    t0 = torch.tensor([0.0, 0.4], dtype=F64)
    t1 = torch.tensor([0.5, 1.0], dtype=F64)
    xt, path = proc.gillespie(x0, t0, t1, generator=g, return_path=True)
    for b in range(2):
        assert_frequencies(xt[b], proc.transition(t0[b], t1[b])[x0[b, 0]], f"per-sample times, row {b}")
    # the recorded jumps chain up from x0 to x_t1, with times increasing inside [t0, t1] per position
    idx, order = torch.sort(path.index, stable=True)  # stable: each position's jumps stay in time order
    times, before, after = path.times[order], path.before[order], path.after[order]
    first = torch.ones_like(idx, dtype=torch.bool)
    first[1:] = idx[1:] != idx[:-1]
    last = torch.ones_like(idx, dtype=torch.bool)
    last[:-1] = idx[1:] != idx[:-1]
    x0f, xtf = x0.reshape(-1), xt.reshape(-1)
    assert bool((before != after).all())
    assert torch.equal(before[first], x0f[idx[first]]) and torch.equal(after[last], xtf[idx[last]])
    assert torch.equal(before[~first], after[:-1][~first[1:]])
    assert bool((times[1:][~first[1:]] >= times[:-1][~first[1:]]).all())
    t0f, t1f = t0.repeat_interleave(n), t1.repeat_interleave(n)
    assert bool((times >= t0f[idx]).all()) and bool((times <= t1f[idx]).all())
    jumped = torch.zeros_like(x0f, dtype=torch.bool)
    jumped[idx] = True
    assert torch.equal(xtf[~jumped], x0f[~jumped])
    assert torch.equal(path.num_jumps().reshape(-1), torch.bincount(idx, minlength=x0f.numel()))


@pytest.mark.parametrize("spec", SCHEDULES, ids=SCHED_IDS)
def test_gillespie_jump_counts_and_first_jump_times(spec):
    """Uniform chain: jumps are Poisson with mean lambda (B(t1) - B(t0)), lambda = (S-1)/S, and the
    first jump time has CDF 1 - exp(-lambda (B(u) - B(t0))) -- checks the inverse of B."""
    S = 4
    proc = UniformCTMC(S, schedule=spec)
    lam = (S - 1) / S
    g = torch.Generator().manual_seed(99)
    t0, t1 = 0.1, 0.9
    x0 = torch.zeros(N_MC, dtype=torch.long)
    _, path = proc.gillespie(x0, t0, t1, generator=g, return_path=True)
    B = proc.schedule.integral
    mean = lam * float(B(torch.tensor(t1, dtype=F64)) - B(torch.tensor(t0, dtype=F64)))
    counts = path.num_jumps().to(F64)
    se = math.sqrt(mean / N_MC)
    assert abs(float(counts.mean()) - mean) < 5 * se
    assert abs(float(counts.var()) - mean) < 0.05 * mean + 0.01  # Poisson: variance = mean
    # first jump of every position (each position's jumps are listed in time order)
    idx, order = torch.sort(path.index, stable=True)
    is_first = torch.ones_like(idx, dtype=torch.bool)
    is_first[1:] = idx[1:] != idx[:-1]
    first = torch.full((N_MC,), math.inf, dtype=F64)
    first[idx[is_first]] = path.times[order][is_first]
    u = torch.linspace(t0, t1, 17, dtype=F64)[1:]
    exact = 1 - torch.exp(-lam * (B(u) - B(torch.tensor(t0, dtype=F64))))
    emp = (first.unsqueeze(0) <= u.unsqueeze(1)).to(F64).mean(1)
    assert float((emp - exact).abs().max()) < 1.95 / math.sqrt(N_MC)  # KS bound at the 0.1% level


# ---------------------------------------------------------------------------
# forward marginal and prior
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SCHEDULES, ids=SCHED_IDS)
@pytest.mark.parametrize("chain", CHAINS)
def test_marginal_frequencies_match_closed_form(chain, spec):
    proc = make(chain, spec)
    K = proc.num_categories
    g = torch.Generator().manual_seed(5)
    t = torch.tensor([0.3, 0.95], dtype=F64)  # one time per sample
    x0 = torch.full((2, N_MC), K - 2, dtype=torch.long)
    m = proc.marginal(x0, t, generator=g)
    assert m.x_t.shape == x0.shape and m.x_t.dtype == torch.long
    probs = m.extra["probs"]
    assert probs.shape == (2, N_MC, K)
    assert torch.allclose(probs, proc.transition_probs(x0, 0.0, t), atol=1e-14)
    for b in range(2):
        row = proc.transition(0.0, t[b])[K - 2]
        assert torch.allclose(probs[b, 0], row, atol=1e-12)
        assert_frequencies(m.x_t[b], row, f"{chain}/{spec['name']} marginal at t={float(t[b])}")


def test_priors():
    g = torch.Generator().manual_seed(11)
    uni = UniformCTMC(5, event_shape=(8,))
    x = uni.prior_sample((4000, 8), generator=g)
    assert x.shape == (4000, 8) and x.dtype == torch.long
    assert_frequencies(x, torch.full((5,), 0.2), "uniform prior")
    assert torch.allclose(uni.prior_log_prob(x[:3]), torch.full((3,), -8 * math.log(5)))
    ab = AbsorbingCTMC(5, event_shape=(8,))
    xm = ab.prior_sample((3, 8), generator=g)
    assert torch.equal(xm, torch.full((3, 8), 5))
    lp = ab.prior_log_prob(torch.cat([xm, torch.zeros(1, 8, dtype=torch.long)]))
    assert torch.equal(lp[:3], torch.zeros(3)) and lp[3] == -math.inf
    gen = CTMC(random_Q(), schedule={"name": "constant", "rate": 1.0})
    P01 = gen.transition(0.0, 1.0, dtype=F64)
    assert torch.allclose(gen.prior_probs(F64), P01.mean(0), atol=1e-12)
    w = torch.tensor([0.5, 0.0, 0.25, 0.25], dtype=F64)
    gen_w = CTMC(random_Q(), schedule={"name": "constant", "rate": 1.0}, initial=w.tolist())
    assert torch.allclose(gen_w.prior_probs(F64), w @ P01, atol=1e-12)
    xs = gen.prior_sample((20_000,), generator=g)
    assert_frequencies(xs, gen.prior_probs(F64), "generic prior")
    x2 = torch.tensor([[0, 3], [1, 1]])
    expect = torch.log(gen.prior_probs(F64))[x2].sum(1)
    assert torch.allclose(gen.prior_log_prob(x2).to(F64), expect, atol=1e-6)


@pytest.mark.parametrize("chain", CHAINS)
def test_config_round_trip_through_json(chain):
    proc = make(chain, SCHEDULES[1])
    rebuilt = from_spec(json.loads(json.dumps(proc.spec())))
    assert type(rebuilt) is type(proc) and rebuilt.config() == proc.config()
    assert torch.allclose(rebuilt.transition(0.1, 0.7, dtype=F64), proc.transition(0.1, 0.7, dtype=F64), atol=0)


# ---------------------------------------------------------------------------
# reverse-time rates
# ---------------------------------------------------------------------------


def _posterior(proc: CTMC, p_data: torch.Tensor, t: float):
    """Exact p_t and p(x0 | x_t = x) (rows x) for data law ``p_data`` by Bayes."""
    P = proc.transition(0.0, torch.tensor(t, dtype=F64))
    p_t = p_data @ P
    post = (p_data.unsqueeze(1) * P).T / p_t.unsqueeze(1)  # [x, x0]
    return p_t, post


@pytest.mark.parametrize("t", [0.05, 0.5, 0.97])
@pytest.mark.parametrize("spec", SCHEDULES, ids=SCHED_IDS)
@pytest.mark.parametrize("chain", CHAINS)
def test_reverse_rates_balance_flux_and_reverse_kolmogorov(chain, spec, t):
    proc = make(chain, spec)
    K = proc.num_categories
    p_data = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=F64)[:K]
    if proc.mask_index is not None:  # data never sits on the mask
        p_data = torch.cat([torch.tensor([0.6, 0.3, 0.1], dtype=F64), torch.zeros(1, dtype=F64)])
    p_t, post = _posterior(proc, p_data, t)
    x = torch.arange(K).reshape(K, 1)
    Rrev = proc.reverse_rates(x, torch.tensor(t, dtype=F64), post.reshape(K, 1, K))[:, 0]
    Rt = proc.rate_matrix(torch.tensor(t, dtype=F64))
    off = ~torch.eye(K, dtype=torch.bool)
    # detailed flux balance p_t(x) R_rev(x -> y) = p_t(y) R_t(y -> x)
    lhs = p_t.unsqueeze(1) * Rrev
    rhs = (p_t.unsqueeze(1) * Rt).T
    assert torch.allclose(lhs[off], rhs[off], rtol=1e-9, atol=1e-12)
    assert float(Rrev[off].min()) >= 0.0
    assert torch.allclose(Rrev.sum(1), torch.zeros(K, dtype=F64), atol=1e-9)
    # running backwards with R_rev reproduces the forward marginals: -dp_t/dt = p_t R_rev
    h = 1e-6
    dp = (_posterior(proc, p_data, t + h)[0] - _posterior(proc, p_data, t - h)[0]) / (2 * h)
    assert torch.allclose(-dp, p_t @ Rrev, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("chain", ["uniform", "absorbing"])
def test_closed_form_reverse_rates_match_generic(chain):
    proc = make(chain, SCHEDULES[2])
    generic = CTMC(proc.Q, schedule=SCHEDULES[2])
    K = proc.num_categories
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, K, (6, 5), generator=g)
    t = torch.rand(6, generator=g, dtype=F64) * 0.9 + 0.05
    p0 = torch.softmax(torch.randn(6, 5, K, generator=g, dtype=F64), -1)
    if proc.mask_index is not None:
        p0[..., -1] = 0.0
        # the data-state-only layout (no mask column) gives the same rates
        assert torch.allclose(proc.reverse_rates(x, t, p0[..., :-1]), proc.reverse_rates(x, t, p0), atol=0)
    assert torch.allclose(proc.reverse_rates(x, t, p0), generic.reverse_rates(x, t, p0), rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "Q, match",
    [
        ([[-1.0, 1.0], [1.0, -0.5]], "sum to 0"),
        ([[1.0, -1.0], [1.0, -1.0]], "negative off-diagonal"),
        ([[-1.0, 1.0, 0.0], [1.0, -1.0, 0.0]], "square"),
        ([[float("nan"), 1.0], [1.0, -1.0]], "NaN"),
        ([[0.0, 0.0], [0.0, 0.0]], "never moves"),
        ([[0.0]], "at least 2"),
    ],
)
def test_invalid_rate_matrix(Q, match):
    with pytest.raises(ValueError, match=match):
        CTMC(Q)
    with pytest.raises(ValueError, match=match):
        check_rate_matrix(Q)


def test_bad_states_and_times_raise_clear_errors():
    proc = UniformCTMC(4, event_shape=(3,))
    x = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="integer"):
        proc.marginal(x.float(), 0.5)
    with pytest.raises(ValueError, match="out-of-range"):
        proc.marginal(x + 4, 0.5)
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        proc.rates(torch.zeros(2, 4, dtype=torch.long), 0.5)
    with pytest.raises(ValueError, match=r"time range \[0, 1\]"):
        proc.marginal(x, 1.5)
    with pytest.raises(ValueError, match=r"time range \[0, 1\]"):
        proc.transition(-0.1, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        proc.rates(x, float("nan"))
    with pytest.raises(ValueError, match="s <= t"):
        proc.transition(0.7, 0.3)
    with pytest.raises(ValueError, match="t0 <= t1"):
        proc.gillespie(x, 0.7, 0.3)
    with pytest.raises(ValueError, match="singular at t = 0"):
        proc.reverse_rates(x, 0.0, torch.full((2, 3, 4), 0.25))
    with pytest.raises(ValueError, match="p0_probs must have shape"):
        proc.reverse_rates(x, 0.5, torch.full((2, 3, 5), 0.2))
    with pytest.raises(ValueError, match="NaN"):
        proc.reverse_rates(x, 0.5, torch.full((2, 3, 4), float("nan")))
    with pytest.raises(ValueError, match="non-negative"):
        proc.reverse_rates(x, 0.5, torch.full((2, 3, 4), -0.25))
    with pytest.raises(ValueError, match="initial must have 4 entries"):
        CTMC(random_Q(), initial=[1.0, 0.0])
    with pytest.raises(ValueError, match="t_min"):
        UniformCTMC(4, t_min=1.0)
