"""The amortized rate estimator of the multistate domain: simulation, statistics, training and estimation."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from scipy.linalg import expm

import stochgen
from domains.multistate import amortized as A
from domains.multistate.panel import fit_panel, simulate_panel

SHIFT = int(os.environ.get("STOCHGEN_TEST_SEED_SHIFT", "0"))
Q3 = np.array([[-0.5, 0.4, 0.1], [0.3, -0.6, 0.3], [0.0, 0.0, 0.0]])


def _frequencies(states_from, states_to, S):
    n = np.zeros((S, S))
    np.add.at(n, (states_from, states_to), 1.0)
    return n


def test_fast_panel_sampler_matches_expm_and_gillespie():
    """simulate_intervals draws the state after one interval from expm(Q dt); the core's Gillespie
    sampler (simulate_panel) gives the same law: both within 4.5 binomial standard errors of expm."""
    rng = np.random.default_rng(10 + SHIFT)
    n = 6000
    sub, t, s = A.simulate_intervals(Q3, rng, n, n_obs=2, spread=0.0, initial=0)
    assert np.allclose(t[1::2], 1.0) and (s[0::2] == 0).all()
    P = expm(Q3 * 1.0)[0]
    freq = np.bincount(s[1::2], minlength=3) / n
    se = np.sqrt(P * (1 - P) / n)
    assert (np.abs(freq - P) < 4.5 * se).all(), (freq, P)
    df = simulate_panel(Q3, [0.0, 1.0], initial=1, n_subjects=3000, seed=20 + SHIFT)
    end = df.groupby("subject")["state"].last().to_numpy() - 1
    freq_g = np.bincount(end, minlength=3) / 3000
    assert (np.abs(freq_g - P) < 4.5 * np.sqrt(P * (1 - P) / 3000)).all(), (freq_g, P)


def test_absorbing_state_ends_a_subject_and_misclassification_makes_impossible_moves():
    Qp = np.array([[-0.5, 0.5, 0.0], [0.0, -0.3, 0.3], [0.0, 0.0, 0.0]])  # progressive: 1 -> 0 impossible
    for mis in (0.0, 0.2):
        rng = np.random.default_rng(3 + SHIFT)
        sub, t, s = A.simulate_intervals(Qp, rng, 400, n_obs=8, misclassification=mis, initial=0)
        back = 0
        for k in np.unique(sub):
            seq = s[sub == k]
            dead = np.flatnonzero(seq == 2)
            assert len(dead) <= 1 and (len(dead) == 0 or dead[0] == len(seq) - 1)
            assert (np.diff(t[sub == k]) > 0).all() and seq[0] == 0
            back += int(((seq[:-1] == 1) & (seq[1:] == 0)).sum())
        if mis == 0.0:
            assert back == 0
        else:
            assert back > 20


def test_panel_statistics_by_hand():
    # intervals: 0->1 (dt 1), 0->0 (dt 1), 1->2 (dt 4), 0->1 (dt 0.5); median dt = 1
    start, end, dt = np.array([0, 0, 1, 0]), np.array([1, 0, 2, 1]), np.array([1.0, 1.0, 4.0, 0.5])
    allowed = np.array([[0, 1, 0], [1, 0, 1], [0, 0, 0]], dtype=bool)
    stats, tau = A.panel_statistics(start, end, dt, n_subjects=2, allowed=allowed)
    assert tau == 1.0 and stats.shape == (A.STATS_DIM,)
    K, B = A.MAX_STATES, A.N_BINS
    frac = stats[: K * K * B].reshape(K, K, B)
    b1 = int(np.searchsorted(A.BIN_EDGES, 1.0))
    b05 = int(np.searchsorted(A.BIN_EDGES, 0.5))
    b4 = int(np.searchsorted(A.BIN_EDGES, 4.0))
    assert b05 < b1 < b4
    assert frac[0, 1, b1] == pytest.approx(0.5) and frac[0, 0, b1] == pytest.approx(0.5)
    assert frac[0, 1, b05] == pytest.approx(1.0) and frac[1, 2, b4] == pytest.approx(1.0)
    assert frac.sum() == pytest.approx(3.0)  # three (state, bin) cells hold intervals
    leave = stats[K * K * B: K * K * B + K * B].reshape(K, B) * 5.0
    assert leave[0, b1] == pytest.approx(np.log(3.0)) and leave[1, b4] == pytest.approx(np.log(2.0))
    mask = stats[K * K * B + 2 * K * B: K * K * B + 2 * K * B + K * K].reshape(K, K)
    assert mask[:3, :3].tolist() == allowed.astype(float).tolist() and mask[3:].sum() == 0
    crude = stats[K * K * B + 2 * K * B + K * K: K * K * B + 2 * K * B + 2 * K * K].reshape(K, K)
    # from 0: two changes (to 1) in 2.5 time units; from 1: one change in 4
    assert crude[0, 1] == pytest.approx((np.log(2.5 / (2.5 + 1e-3)) - A.LOG_MID) / A.LOG_SCALE)
    assert crude[1, 2] == pytest.approx((np.log(1.5 / (4 + 1e-3)) - A.LOG_MID) / A.LOG_SCALE)
    assert crude[1, 0] == pytest.approx((np.log(0.5 / (4 + 1e-3)) - A.LOG_MID) / A.LOG_SCALE)
    assert crude[0, 2] == 0.0 and crude[2, 0] == 0.0
    with pytest.raises(ValueError, match="2 to 6 states"):
        A.panel_statistics(start, end, dt, 2, np.ones((7, 7), dtype=bool))
    with pytest.raises(ValueError, match="no observed interval"):
        A.panel_statistics([], [], [], 2, allowed)


def test_rate_encoding_round_trip():
    Q = A.random_generator(np.random.default_rng(5 + SHIFT), n_states=4)
    x = A.encode_rates(Q, tau=2.0)
    back = A.decode_rates(x, Q > 0, tau=2.0)
    assert np.allclose(back, Q, rtol=1e-5, atol=1e-9)
    assert np.allclose(back.sum(1), 0.0, atol=1e-9)


def test_load_rejects_bad_training_data():
    dom = stochgen.domain("multistate")
    with pytest.raises(ValueError, match=r"x must be \(P, 36\)"):
        dom.load({"x": np.zeros((3, 5)), "stats": np.zeros((3, A.STATS_DIM))})
    with pytest.raises(ValueError, match="needs keys x"):
        dom.load({"x": np.zeros((3, 36))})
    with pytest.raises(ValueError, match="simulated panels"):
        dom.load("cav.csv")


@pytest.fixture(scope="module")
def tiny_two_state_model():
    """An estimator trained in seconds on 2-state chains only (one rate each way)."""
    x, stats = A.simulated_sets(400, seed=1, subjects=(300, 600), n_states=2, progress=False)
    dom = stochgen.domain("multistate", hidden=64, depth=2)
    return stochgen.fit(dom, {"x": x, "stats": stats}, steps=1500, batch_size=128, lr=3e-3, progress=False,
                        cond_drop=0.0, seed=0)


def test_tiny_estimator_recovers_two_state_rates_and_starts_the_mle(tiny_two_state_model):
    dom = stochgen.domain("multistate")
    rng = np.random.default_rng(40 + SHIFT)
    errs, covered = [], 0
    for k in range(4):
        q01, q10 = np.exp(rng.uniform(np.log(0.1), np.log(1.0), size=2))
        Q = np.array([[-q01, q01], [q10, -q10]])
        sub, t, s = A.simulate_intervals(Q, rng, 800, spread=0.3)
        df = A.intervals_to_frame(sub, t, s)
        est = dom.estimate_rates(df, qmatrix=[[0, 1], [1, 0]], model=tiny_two_state_model, num_samples=32, seed=k)
        assert est.Q.shape == (2, 2) and np.allclose(est.Q.sum(1), 0.0)
        off = ~np.eye(2, dtype=bool)
        assert (est.lower[off] <= est.Q[off]).all() and (est.Q[off] <= est.upper[off]).all()
        errs.append(np.abs(np.array([est.Q[0, 1] / q01, est.Q[1, 0] / q10]) - 1))
        covered += int((est.lower[0, 1] <= q01 <= est.upper[0, 1]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cold = fit_panel(df, qmatrix=[[0, 1.0], [1.0, 0]])
            warm = fit_panel(df, qmatrix=[[0, 1.0], [1.0, 0]], init=est.theta)
        assert warm.minus2loglik == pytest.approx(cold.minus2loglik, abs=1e-3)
    # the MLE's own error at 800 subjects is about 5-10%; a 600-step model within 35% (median)
    assert np.median(np.concatenate(errs)) < 0.35, errs
    assert covered >= 2


def test_estimate_rates_rejects_bad_requests(tiny_two_state_model):
    dom = stochgen.domain("multistate")
    df = A.intervals_to_frame(*A.simulate_intervals(Q3, np.random.default_rng(0), 50))
    with pytest.raises(ValueError, match="num_samples must be >= 2"):
        dom.estimate_rates(df, qmatrix=np.where(Q3 > 0, 1.0, 0.0), model=tiny_two_state_model, num_samples=1)
    Q7 = np.ones((7, 7)) - np.eye(7)
    df7 = A.intervals_to_frame(np.array([0, 0]), np.array([0.0, 1.0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="2 to 6 states"):
        dom.estimate_rates(df7, qmatrix=Q7, model=tiny_two_state_model, states=list(range(1, 8)))


def test_rate_estimate_theta_orders_like_fit_panel(tiny_two_state_model):
    Q = np.array([[-0.3, 0.3], [0.2, -0.2]])
    df = A.intervals_to_frame(*A.simulate_intervals(Q, np.random.default_rng(1 + SHIFT), 300))
    est = stochgen.domain("multistate").estimate_rates(df, qmatrix=[[0, 1], [1, 0]], model=tiny_two_state_model)
    assert est.transitions == [(0, 1), (1, 0)]
    assert np.allclose(np.exp(est.theta), [est.Q[0, 1], est.Q[1, 0]])
    assert "1 -> 2" in est.summary()
    assert est.samples.shape == (32, 2, 2) and (est.samples[:, 0, 1] > 0).all()


def test_matrix_log_estimate_is_exact_on_exact_transition_frequencies():
    """With counts proportional to expm(Q dt) (one length bin), log(P) / dt gives Q back."""
    Q = np.array([[-0.5, 0.4, 0.1], [0.3, -0.6, 0.3], [0.2, 0.2, -0.4]])
    K, B = A.MAX_STATES, A.N_BINS
    dt = 0.8
    b = int(np.searchsorted(A.BIN_EDGES, dt))
    counts = np.zeros((K, K, B))
    counts[:3, :3, b] = 1000.0 * expm(Q * dt)
    logdt = np.zeros((K, B))
    logdt[:3, b] = np.log(dt)
    mask = np.zeros((K, K))
    mask[:3, :3] = (Q > 0)
    est = A._log_estimate(counts, logdt, mask, 3)
    back = np.exp(est[:3, :3] * A.LOG_SCALE + A.LOG_MID)
    np.testing.assert_allclose(back[Q > 0], Q[Q > 0], rtol=1e-9)
    assert (est[mask == 0] == 0).all()


def test_residual_state_is_measured_from_the_clipped_matrix_log_estimate():
    """The default (residual) domain trains on log intensities minus the reference; the reference is the
    matrix-log block of the statistics clipped to [-1, 1], 0 off the model; residual=False keeps them."""
    x, st = A.simulated_sets(40, seed=8 + SHIFT, progress=False)
    res, absolute = stochgen.domain("multistate"), stochgen.domain("multistate", residual=False)
    xr, xa = res.load({"x": x, "stats": st}).x.numpy(), absolute.load({"x": x, "stats": st}).x.numpy()
    assert res.settings["residual"] is True and absolute.settings["residual"] is False
    np.testing.assert_array_equal(xa, x)
    K, B = A.MAX_STATES, A.N_BINS
    o = K * K * B + 2 * K * B + 2 * K * K
    logest = st[:, o:o + K * K]
    mask = st[:, K * K * B + 2 * K * B: K * K * B + 2 * K * B + K * K] > 0
    ref = A.reference_state(st)
    np.testing.assert_allclose(xa - xr, ref, atol=1e-6)
    assert (ref[~mask] == 0).all() and np.abs(ref).max() <= 1.0
    inside = mask & (np.abs(logest) < 1.0)
    assert inside.sum() > 100 and np.array_equal(ref[inside], logest[inside])
    assert (ref[mask & (logest < -1.0)] == -1.0).all()


def test_statistics_of_the_previous_layout_upgrade_to_the_current_one():
    x, st = A.simulated_sets(6, seed=3 + SHIFT, progress=False)
    K, B = A.MAX_STATES, A.N_BINS
    o = K * K * B + 2 * K * B + 2 * K * K  # the matrix-logarithm block follows the crude one
    old = np.concatenate([st[:, :o], st[:, o + K * K:]], 1)
    np.testing.assert_allclose(A.upgrade_statistics(old), st, atol=1e-6)
    with pytest.raises(ValueError, match="not a known layout"):
        A.upgrade_statistics(st[:, :100])


def test_shipped_estimator_on_a_held_out_panel_and_as_the_mle_start():
    """The shipped model on a fresh 3-state illness-death panel of 500 subjects: close to the MLE, and
    as the MLE's start (answer + posterior covariance) the same optimum in fewer BFGS iterations."""
    if not A.default_weights().exists():
        pytest.skip("no shipped amortized estimator")
    Q = np.array([[-0.35, 0.25, 0.1], [0.1, -0.4, 0.3], [0.0, 0.0, 0.0]])
    rng = np.random.default_rng(77 + SHIFT)
    df = A.intervals_to_frame(*A.simulate_intervals(Q, rng, 500, spread=0.4))
    qm = np.where(Q > 0, 1.0, 0.0)
    dom = stochgen.domain("multistate")
    est = dom.estimate_rates(df, qmatrix=qm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cold = fit_panel(df, qmatrix=qm)
        warm = fit_panel(df, qmatrix=qm, init=est)
    m = Q > 0
    rel = np.abs(est.Q[m] / cold.Q[m] - 1)
    assert np.median(rel) < 0.3, rel
    assert (est.lower[m] < cold.Q[m]).sum() >= 3 and (cold.Q[m] < est.upper[m]).sum() >= 3
    assert warm.minus2loglik == pytest.approx(cold.minus2loglik, abs=1e-3)
    assert warm.info["iterations"] < cold.info["iterations"]
    with pytest.raises(ValueError, match="transitions differ"):
        fit_panel(df, qmatrix=[[0, 1, 1], [1, 0, 0], [0, 0, 0]], init=est)


def test_demo_writes_the_rates_and_the_prevalence_figure(tmp_path):
    if not A.default_weights().exists():
        pytest.skip("no shipped amortized estimator")
    import pandas as pd

    from domains.multistate.demo import DEMO_Q

    lines = stochgen.domain("multistate").demo(str(tmp_path))
    table = pd.read_csv(tmp_path / "rates.csv")
    assert len(table) == int((DEMO_Q > 0).sum()) == 7
    np.testing.assert_allclose(table["true"], DEMO_Q[DEMO_Q > 0])
    # the MLE's 95% intervals (delta method on log q): at least 5 of the 7 cover the truth (4 or fewer has
    # probability 2e-4 for exact intervals), and every rate lies within 4 standard errors on the log scale
    tr, q, lo, hi = (table[k].to_numpy() for k in ("true", "mle", "mle_lower", "mle_upper"))
    assert (lo < q).all() and (q < hi).all()
    assert ((lo <= tr) & (tr <= hi)).sum() >= 5, table
    se = np.log(hi / lo) / (2 * 1.96)
    assert (np.abs(np.log(q / tr)) < 4 * se).all(), table
    # the amortized intervals hold its estimate
    assert ((table["amortized_lower"] <= table["amortized"]) & (table["amortized"] <= table["amortized_upper"])).all()
    assert (tmp_path / "prevalence.png").stat().st_size > 0 and "BFGS iterations" in lines[1]
