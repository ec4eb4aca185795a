"""Time-series forecast metrics (domains/timeseries/metrics.py): hand cases, closed forms, GluonTS rules."""
import math
import re
import sys

import numpy as np
import pytest
from scipy.stats import norm

from domains.timeseries import metrics as M

# The hand window used by several tests: y = [2, 4, 6], levels 0.1 / 0.5 / 0.9 with (non-crossing)
# quantile forecasts
#   q0.1: [1, 3, 4]   q0.5: [2, 5, 5]   q0.9: [3, 6, 8]
# quantile_loss = 2 * sum_t |(y_t - p_t) * (1{y_t <= p_t} - q)|:
#   q0.1: t0 y=2 > 1: |1 * (0 - .1)| = .1;  t1 4 > 3: .1;  t2 6 > 4: |2 * (-.1)| = .2;    sum .4 -> QL 0.8
#   q0.5: t0 y=2 <= 2: 0;  t1 4 <= 5: |-1 * (1 - .5)| = .5;  t2 6 > 5: |1 * (-.5)| = .5;   sum 1.0 -> QL 2.0
#   q0.9: t0 2 <= 3: |-1 * (1 - .9)| = .1;  t1 4 <= 6: |-2 * .1| = .2;  t2 6 <= 8: .2;  sum .5 -> QL 1.0
# sum|y| = 12, so wQL = (0.8/12 + 2.0/12 + 1.0/12) / 3 = 3.8 / 36 = 0.105555...
HAND_Y = np.array([2.0, 4.0, 6.0])
HAND_LEVELS = (0.1, 0.5, 0.9)
HAND_Q = np.array([[1.0, 3.0, 4.0], [2.0, 5.0, 5.0], [3.0, 6.0, 8.0]])
HAND_QL = (0.8, 2.0, 1.0)
HAND_WQL = 3.8 / 36


def _gauss_crps(y, mu, s):
    z = (y - mu) / s
    return s * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))


def test_quantile_levels():
    assert M.QUANTILES == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert all(isinstance(q, float) for q in M.QUANTILES)


def test_quantile_loss_hand():
    for q, row, expect in zip(HAND_LEVELS, HAND_Q, HAND_QL):
        assert M.quantile_loss(HAND_Y, row, q) == pytest.approx(expect, abs=1e-12)


def test_wql_hand_all_forecast_forms():
    as_dict = {q: row for q, row in zip(HAND_LEVELS, HAND_Q)}
    as_str_dict = {str(q): row for q, row in zip(HAND_LEVELS, HAND_Q)} | {"mean": HAND_Q[1]}
    assert M.wql(HAND_Y, as_dict, HAND_LEVELS) == pytest.approx(HAND_WQL, abs=1e-12)
    assert M.wql(HAND_Y, as_str_dict, HAND_LEVELS) == pytest.approx(HAND_WQL, abs=1e-12)
    assert M.wql(HAND_Y, HAND_Q, HAND_LEVELS) == pytest.approx(HAND_WQL, abs=1e-12)
    # samples: with S = 5 the rule sort()[round((S-1) q)] picks indices 0 / 2 / 4 for 0.1 / 0.5 / 0.9;
    # per step the sorted samples are [1, 1.5, 2, 2.5, 3], [3, 4, 5, 5.5, 6], [4, 4.5, 5, 7, 8]
    srt = np.array([[1, 3, 4], [1.5, 4, 4.5], [2, 5, 5], [2.5, 5.5, 7], [3, 6, 8]], dtype=float)
    rng = np.random.default_rng(0)
    samples = np.stack([rng.permutation(srt[:, t]) for t in range(3)], axis=1)
    np.testing.assert_array_equal(M.sample_quantiles(samples, HAND_LEVELS), HAND_Q)
    assert M.wql(HAND_Y, samples, HAND_LEVELS) == pytest.approx(HAND_WQL, abs=1e-12)


def test_sample_quantile_rule_is_gluonts_order_statistic():
    # S = 4: q=0.5 -> round(1.5) = 2 (half to even) -> 3rd smallest (30), not the interpolated 25;
    # q=0.1 -> round(0.3) = 0 -> 10;  q=0.9 -> round(2.7) = 3 -> 40
    x = np.array([[30.0], [10.0], [40.0], [20.0]])
    np.testing.assert_array_equal(M.sample_quantiles(x, (0.1, 0.5, 0.9)), [[10.0], [30.0], [40.0]])
    # S = 6: q=0.5 -> round(2.5) = 2 -> 3rd smallest (half to even again)
    x6 = np.arange(6.0)[::-1, None]
    assert M.sample_quantiles(x6, (0.5,))[0, 0] == 2.0
    assert M.sample_quantiles(np.zeros((7, 4))).shape == (9, 4)


def test_wql_exact_gaussian_quantiles_match_closed_form():
    # y ~ N(mu_w, 1) per window, forecast = the exact quantiles mu_w + z_q. For an exact quantile
    # E[2 * pinball] = 2 * sigma * phi(z_q), and E|y| = mu(1 - 2 Phi(-mu)) + 2 phi(mu) (sigma = 1), so
    # wQL_dataset -> mean_q 2 phi(z_q) / mean_w E|y_w|. Tolerance: 5 delta-method standard errors of
    # the ratio sum_w a_w / sum_w b_w (a_w: window's mean-over-levels loss, b_w: its sum|y|).
    rng = np.random.default_rng(1)
    n, H = 1500, 12
    levels = np.array(M.QUANTILES)
    z = norm.ppf(levels)
    mus = rng.uniform(1.0, 4.0, size=n)
    ys = mus[:, None] + rng.standard_normal((n, H))
    qfs = [mu + np.repeat(z[:, None], H, axis=1) for mu in mus]
    got = M.wql_dataset(ys, qfs)
    e_abs = np.mean(mus * (1 - 2 * norm.cdf(-mus)) + 2 * norm.pdf(mus)) * H
    expect = np.mean(2 * norm.pdf(z)) * H / e_abs
    a = np.array([np.mean([M.quantile_loss(y, q[i], lv) for i, lv in enumerate(levels)]) for y, q in zip(ys, qfs)])
    b = np.abs(ys).sum(axis=1)
    r = a.sum() / b.sum()
    assert got == pytest.approx(r, rel=1e-12)
    se = math.sqrt(np.sum((a - r * b) ** 2)) / b.sum()
    assert abs(got - expect) < 5 * se, (got, expect, se)


@pytest.mark.parametrize("implementation", ["auto", "numpy"])
def test_crps_gaussian_samples_match_closed_form(implementation):
    # per step: S samples of N(mu_t, s_t^2), y_t fixed; the fair estimator is unbiased for the Gaussian
    # CRPS, so d_t = est_t - CRPS_t are independent mean-0 draws: |mean d| < 5 std(d) / sqrt(H)
    rng = np.random.default_rng(2)
    S, H = 400, 80
    mu = rng.normal(size=H)
    s = rng.uniform(0.5, 2.0, size=H)
    y = mu + s * rng.normal(size=H) * 1.5
    x = mu + s * rng.standard_normal((S, H))
    d = np.array([M.crps(y[t:t + 1], x[:, t:t + 1], implementation=implementation) - _gauss_crps(y[t], mu[t], s[t])
                  for t in range(H)])
    assert abs(d.mean()) < 5 * d.std(ddof=1) / math.sqrt(H)
    assert M.crps(y, x, implementation=implementation) == pytest.approx(np.mean(d + _gauss_crps(y, mu, s)),
                                                                        rel=1e-12)


def test_crps_numpy_equals_scoringrules_and_properscoring(monkeypatch):
    pytest.importorskip("scoringrules")
    rng = np.random.default_rng(3)
    x = rng.gamma(2.0, size=(37, 11)) - 1.0
    y = rng.normal(size=11)
    for est in ("fair", "nrg"):
        a = M.crps(y, x, estimator=est, implementation="numpy")
        b = M.crps(y, x, estimator=est, implementation="scoringrules")
        assert a == pytest.approx(b, rel=1e-12, abs=1e-14)
        for t in (0, 5):  # single steps too, not just the mean
            assert M.crps(y[t:t + 1], x[:, t:t + 1], estimator=est, implementation="numpy") == pytest.approx(
                M.crps(y[t:t + 1], x[:, t:t + 1], estimator=est, implementation="scoringrules"), rel=1e-12)
    # scoringrules without numba: its NumPy backend, the horizon chunked to bound the (S, S) pair arrays
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.setattr(M, "_NUMPY_PAIR_BUDGET", 37 * 37 * 4)  # 4 steps per chunk -> 3 chunks
    for est in ("fair", "nrg"):
        assert M.crps(y, x, estimator=est, implementation="scoringrules") == pytest.approx(
            M.crps(y, x, estimator=est, implementation="numpy"), rel=1e-12)
    monkeypatch.undo()
    # fair - nrg = 1/2 E|X-X'| (1/(S^2) - 1/(S(S-1))) < 0: the estimators differ
    assert M.crps(y, x, estimator="fair") < M.crps(y, x, estimator="nrg")
    # the fallback path: without scoringrules, "auto" computes the same numbers in NumPy
    monkeypatch.setattr(M, "_load_scoringrules", lambda: None)
    assert M.crps(y, x) == M.crps(y, x, implementation="numpy")
    with pytest.raises(ImportError, match="scoringrules"):
        M.crps(y, x, implementation="scoringrules")
    ps = pytest.importorskip("properscoring")
    assert M.crps(y, x, estimator="nrg", implementation="numpy") == pytest.approx(
        float(np.mean(ps.crps_ensemble(y, x.T))), rel=1e-12)


def test_crps_hand():
    # samples {0, 2}, y = 1: E|X-y| = 1; sum_ij |x_i - x_j| = 4; nrg: 1 - 4/(2*4) = 0.5; fair: 1 - 4/(2*2) = 0
    x = np.array([[0.0], [2.0]])
    assert M.crps([1.0], x, estimator="nrg", implementation="numpy") == pytest.approx(0.5)
    assert M.crps([1.0], x, estimator="fair", implementation="numpy") == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="at least 2 samples"):
        M.crps([1.0], x[:1])


def test_mase_hand():
    # history [1, 3, 2, 5], lag 1: |3-1|, |2-3|, |5-2| = 2, 1, 3 -> scale 2; y [4, 6] vs [5, 2]: errors 1, 4 -> 2.5
    assert M.mase([4.0, 6.0], [5.0, 2.0], [1.0, 3.0, 2.0, 5.0]) == pytest.approx(2.5 / 2)
    # lag 2 on [1, 3, 2, 5, 4]: |2-1|, |5-3|, |4-2| = 1, 2, 2 -> scale 5/3 -> 2.5 / (5/3) = 1.5
    assert M.mase([4.0, 6.0], [5.0, 2.0], [1.0, 3.0, 2.0, 5.0, 4.0], season=2) == pytest.approx(1.5)
    # NaN in the history drops the two differences that touch it: only |5-2| = 3 is left
    assert M.mase([4.0, 6.0], [5.0, 2.0], [1.0, np.nan, 2.0, 5.0]) == pytest.approx(2.5 / 3)
    with pytest.raises(ValueError, match=r"too short for season 4"):
        M.mase([4.0], [5.0], [1.0, 2.0, 3.0, 4.0], season=4)
    with pytest.raises(ValueError, match="is 0"):
        M.mase([4.0], [5.0], [2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="no finite"):
        M.mase([4.0], [5.0], [np.nan, 1.0, np.nan])


def test_coverage_hand():
    # t0 0<=1<=2 in; t1 2 in [2, 2] in (closed); t2 3 < 3.5 out; t3 4 > 3 out; t4 NaN ignored -> 2/4
    y = [1.0, 2.0, 3.0, 4.0, np.nan]
    assert M.coverage(y, [0, 2, 3.5, 0, 0], [2, 2, 5, 3, 1]) == 0.5
    # 11 samples 0..10 per step: level 0.8 -> quantiles 0.1 / 0.9 -> indices round(1.0) = 1, round(9.0) = 9,
    # interval [1, 9]; y = 0.5 out, 1 in, 5 in, 9 in, 9.5 out -> 3/5
    x = np.repeat(np.arange(11.0)[::-1, None], 5, axis=1)
    assert M.interval_coverage([0.5, 1.0, 5.0, 9.0, 9.5], x) == pytest.approx(0.6)
    # S = 16: 15 * 0.1 = 1.5000000000000002 -> index 2, as sample_quantiles(.., 0.1) gives
    x16 = np.arange(16.0)[:, None]
    assert M.interval_coverage([1.0], x16) == 0.0 and M.interval_coverage([2.0], x16) == 1.0
    with pytest.raises(ValueError, match="lower exceeds upper"):
        M.coverage([1.0], [2.0], [0.0])


def test_nan_targets_ignored():
    rng = np.random.default_rng(4)
    x = rng.normal(3.0, 1.0, size=(50, 6))
    y = rng.normal(3.0, 1.0, size=6)
    hist = rng.normal(3.0, 1.0, size=20)
    yn = y.copy()
    yn[[1, 4]] = np.nan
    keep = [0, 2, 3, 5]
    yk, xk = y[keep], x[:, keep]
    q = M.sample_quantiles(x)
    assert M.quantile_loss(yn, q[4], 0.5) == pytest.approx(M.quantile_loss(yk, q[4, keep], 0.5))
    assert M.wql(yn, x) == pytest.approx(M.wql(yk, xk))
    assert M.crps(yn, x) == pytest.approx(M.crps(yk, xk))
    med = q[4]
    assert M.mase(yn, med, hist) == pytest.approx(M.mase(yk, med[keep], hist))
    assert M.interval_coverage(yn, x) == pytest.approx(M.interval_coverage(yk, xk))
    assert M.summary(yn, x, hist, 1) == pytest.approx(M.summary(yk, xk, hist, 1))
    # datasets: the NaN steps leave both sums; an all-missing window is skipped entirely
    assert M.wql_dataset([yn, y], [x, x]) == pytest.approx(M.wql_dataset([yk, y], [xk, x]))
    allnan = np.full(6, np.nan)
    assert M.wql_dataset([y, allnan], [x, x]) == pytest.approx(M.wql(y, x))
    for v in (M.wql(allnan, x), M.crps(allnan, x), M.mase(allnan, med, hist), M.interval_coverage(allnan, x),
              M.quantile_loss(allnan, med, 0.5)):
        assert math.isnan(v)


def test_bad_shapes_and_values_raise():
    y = np.ones(3)
    x = np.ones((10, 4))
    cases = [
        (lambda: M.wql(y, x), ["(3,)", "(10, 4)"]),
        (lambda: M.crps(y, x), ["(3,)", "(10, 4)"]),
        (lambda: M.summary(y, x, np.arange(10.0), 1), ["(3,)", "(10, 4)"]),
        (lambda: M.interval_coverage(y, x), ["(3,)", "(10, 4)"]),
        (lambda: M.quantile_loss(y, np.ones(4), 0.5), ["(4,)", "(3,)"]),
        (lambda: M.mase(y, np.ones(2), np.arange(5.0)), ["(2,)", "(3,)"]),
        (lambda: M.mase(y, y, np.ones((5, 2))), ["(5, 2)"]),
        (lambda: M.coverage(y, np.zeros(3), np.ones((3, 1))), ["(3, 1)", "(3,)"]),
        (lambda: M.wql(np.ones((2, 3)), x), ["(2, 3)"]),
        (lambda: M.wql(y, np.ones(3)), ["(3,)"]),
        (lambda: M.wql(y, {0.1: np.ones(3), 0.5: np.ones(2)}, (0.1, 0.5)), ["(2,)", "(3,)"]),
        (lambda: M.wql(y, np.ones((9, 3)), (0.1, 0.5), kind="quantiles"), ["(9, 3)", "(2, 3)"]),
        (lambda: M.sample_quantiles(np.ones(5)), ["(5,)"]),
        (lambda: M.wql_dataset([y, y], [x[:, :3]]), ["2 target windows", "1 forecasts"]),
    ]
    for fn, parts in cases:
        with pytest.raises(ValueError) as err:
            fn()
        for p in parts:
            assert p in str(err.value), (p, str(err.value))
    bad = np.ones((10, 3))
    bad[2, 1] = np.nan
    for fn in (lambda: M.wql(y, bad), lambda: M.crps(y, bad), lambda: M.sample_quantiles(bad),
               lambda: M.mase(y, [1.0, np.inf, 1.0], np.arange(5.0)), lambda: M.coverage(y, [0, 0, np.nan], y)):
        with pytest.raises(ValueError, match="non-finite"):
            fn()
    with pytest.raises(ValueError, match=re.escape("no level 0.9")):
        M.wql(y, {0.1: y, 0.5: y}, (0.1, 0.5, 0.9))
    with pytest.raises(ValueError, match="sum \\|y\\|"):
        M.wql(np.zeros(3), np.ones((10, 3)))


def test_quantile_array_vs_samples_kind():
    # a (9, H) array is read as the nine quantiles by default; kind="samples" reads it as 9 samples
    rng = np.random.default_rng(5)
    q = np.sort(rng.normal(size=(9, 4)), axis=0) + 5
    y = rng.normal(size=4) + 5
    as_q = M.wql(y, q)
    assert as_q == pytest.approx(M.wql(y, dict(zip(M.QUANTILES, q))))
    as_s = M.wql(y, q, kind="samples")
    assert as_s == pytest.approx(M.wql(y, M.sample_quantiles(q), kind="quantiles"))
    assert as_q != pytest.approx(as_s)  # 9 samples: level 0.1 takes index round(0.8) = 1, not row 0


def test_wql_dataset_gluonts_aggregation():
    rng = np.random.default_rng(6)
    x = rng.normal(5.0, 1.0, size=(30, 7))
    y = rng.normal(5.0, 1.0, size=7)
    assert M.wql_dataset([y], [x]) == pytest.approx(M.wql(y, x), rel=1e-12)
    # hand: the hand window (QL 0.8, 2.0, 1.0; sum|y| 12) plus a perfectly forecast window y = [100] * 3
    # (QL 0, wQL 0). GluonTS sums losses and |y| over windows: (0.8 + 2.0 + 1.0) / (12 + 300) / 3
    # = 3.8 / 936 = 0.00406, while the mean of per-window wQL is (3.8/36 + 0) / 2 = 0.0528
    big = np.full(3, 100.0)
    ys, fs = [HAND_Y, big], [HAND_Q, np.full((3, 3), 100.0)]
    got = M.wql_dataset(ys, fs, HAND_LEVELS)
    assert got == pytest.approx(3.8 / 936, rel=1e-12)
    per_window = [M.wql(a, f, HAND_LEVELS) for a, f in zip(ys, fs)]
    assert np.mean(per_window) == pytest.approx((3.8 / 36) / 2, rel=1e-12)
    assert abs(got - np.mean(per_window)) > 0.04
    # scale invariance: the hand window and 10x it aggregate to the hand wQL
    assert M.wql_dataset([HAND_Y, 10 * HAND_Y], [HAND_Q, 10 * HAND_Q], HAND_LEVELS) == pytest.approx(HAND_WQL)
    # windows of different lengths and an (N, H) array / (N, S, H) stack both work
    assert np.isfinite(M.wql_dataset([y, y[:3]], [x, x[:, :3]]))
    xs = rng.normal(5.0, 1.0, size=(4, 30, 7))
    yss = rng.normal(5.0, 1.0, size=(4, 7))
    assert M.wql_dataset(yss, xs) == pytest.approx(M.wql_dataset(list(yss), list(xs)))


def test_summary_keys_and_values():
    rng = np.random.default_rng(7)
    x = rng.normal(10.0, 2.0, size=(200, 5))
    y = rng.normal(10.0, 2.0, size=5)
    hist = rng.normal(10.0, 2.0, size=30)
    out = M.summary(y, x, hist, 2)
    assert set(out) == {"wql", "crps", "mase", "coverage80"}
    assert out["wql"] == pytest.approx(M.wql(y, x))
    assert out["crps"] == pytest.approx(M.crps(y, x, estimator="fair"))
    assert out["mase"] == pytest.approx(M.mase(y, np.sort(x, axis=0)[int(np.round(199 * 0.5))], hist, 2))
    assert out["coverage80"] == pytest.approx(M.interval_coverage(y, x, 0.8))
    assert all(isinstance(v, float) for v in out.values())


def test_torch_inputs():
    torch = pytest.importorskip("torch")
    x = torch.tensor(np.random.default_rng(8).normal(size=(20, 3)), dtype=torch.float32)
    y = torch.tensor([0.1, -0.2, 0.3])
    assert M.crps(y, x) == pytest.approx(M.crps(y.numpy(), x.numpy()))
