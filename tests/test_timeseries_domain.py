"""The timeseries domain: forecasts of a seasonal sine, imputation of an AR(1) gap against its exact
conditional law, identical results from array / DataFrame / CSV input, the CLI, and clear errors."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import stochgen
from domains.timeseries import domain as _register  # noqa: F401  (registers "timeseries")

SHIFT = int(os.environ.get("STOCHGEN_TEST_SEED_SHIFT", "0"))
M, H, C = 12, 12, 24


def _sine(n, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 5.0 + np.sin(2 * np.pi * t / M) + noise * rng.standard_normal(n)


@pytest.fixture(scope="module")
def sine_model():
    torch.manual_seed(0)
    dom = stochgen.domain("timeseries", season=M, horizon=H, context=C, hidden=256, train_steps=600,
                          seed=SHIFT)
    y = _sine(600 + H, seed=SHIFT)
    model = stochgen.fit(dom, y[:600], progress=False, seed=SHIFT)
    return dom, model, y


def test_forecast_recovers_the_season(sine_model):
    dom, model, y = sine_model
    s = dom.forecast(y[:600], model=model, num_samples=200, seed=SHIFT)
    assert s.shape == (200, H) and np.isfinite(s).all()
    truth = 5.0 + np.sin(2 * np.pi * np.arange(600, 600 + H) / M)  # the noise-free continuation
    med = np.median(s, axis=0)
    # amplitude 1, noise 0.05: a forecast that lost the season would be off by up to 1
    assert np.abs(med - truth).max() < 0.3
    assert np.corrcoef(med, truth)[0, 1] > 0.95
    # the spread reflects the small noise, not the unit amplitude
    assert 0.01 < s.std(axis=0).mean() < 0.3


def test_self_guided_unconditional_model_recovers_the_season():
    # TSDiff's way: a model of windows alone, steered by the observed context (MSE energy)
    dom = stochgen.domain("timeseries", season=M, horizon=H, context=C, hidden=256, train_steps=600,
                          mode="unconditional", seed=SHIFT)
    y = _sine(600 + H, seed=SHIFT)
    torch.manual_seed(SHIFT)
    model = stochgen.fit(dom, y[:600], progress=False, seed=SHIFT)
    assert "y" not in model.weights.cond_keys  # no conditioning input: only the guidance sees the context
    s = dom.forecast(y[:600], model=model, num_samples=100, seed=SHIFT)
    truth = 5.0 + np.sin(2 * np.pi * np.arange(600, 600 + H) / M)
    med = np.median(s, axis=0)
    assert np.abs(med - truth).max() < 0.35  # measured 0.13; losing the phase would give up to 2
    assert np.corrcoef(med, truth)[0, 1] > 0.9
    # imputation by replacement inpainting: a gap of 6 at a crest and trough of the sine
    obs = y[:100].copy()
    obs[50:56] = np.nan
    out = dom.impute(obs, model=model, num_samples=50, seed=SHIFT)
    np.testing.assert_array_equal(out[:, :50], np.broadcast_to(y[:50], (50, 50)))
    gap = 5.0 + np.sin(2 * np.pi * np.arange(50, 56) / M)
    fill = np.median(out[:, 50:56], axis=0)
    assert np.abs(fill - gap).max() < 0.2, fill - gap  # measured 0.04-0.05; a flat fill is off by ~1
    assert 0.01 < out[:, 50:56].std(axis=0).mean() < 0.15  # the noise is 0.05 (measured 0.04)


def test_forecast_reads_only_the_context(sine_model):
    dom, model, y = sine_model
    h = y[:600].copy()
    a = dom.forecast(h, model=model, num_samples=20, seed=3, base=None)  # the model alone
    h[: 600 - C] = 100.0  # everything before the context window changed
    b = dom.forecast(h, model=model, num_samples=20, seed=3, base=None)
    np.testing.assert_array_equal(a, b)
    # the default refines seasonal naive paths, whose bootstrap of seasonal differences reads the whole history
    assert not np.array_equal(dom.forecast(h, model=model, num_samples=20, seed=3),
                              dom.forecast(y[:600], model=model, num_samples=20, seed=3))
    # a longer horizon rolls forward and starts with the same first window
    for kind, first in ((None, a), ("auto", dom.forecast(y[:600], model=model, num_samples=20, seed=3))):
        c = dom.forecast(y[:600], model=model, num_samples=20, seed=3, horizon=2 * H, base=kind)
        assert c.shape == (20, 2 * H)
        np.testing.assert_allclose(c[:, :H], first, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="base"):
        dom.forecast(y[:600], model=model, base="ets")


def test_refinement_moves_a_biased_base_forecast_to_the_learned_density(sine_model):
    # TSDiff's refinement: a base forecaster that is 0.5 too high and 6x too noisy (0.3 vs 0.05)
    dom, model, y = sine_model
    truth = 5.0 + np.sin(2 * np.pi * np.arange(600, 600 + H) / M)
    rng = np.random.default_rng(SHIFT)
    base = truth + 0.5 + 0.3 * rng.standard_normal((200, H))
    err = lambda s: np.abs(np.median(s, axis=0) - truth).mean()  # noqa: E731
    # a tiny noise level keeps the base paths (moves ~ strength x the context's scale, 0.64)
    kept = dom.refine(y[:600], base, model=model, method="sdedit", strength=0.05, seed=SHIFT)
    assert kept.shape == (200, H) and np.abs(kept - base).mean() < 0.1  # measured 0.05
    # noise level 1: the bias goes (0.5 -> measured 0.05) and the spread shrinks towards the true noise
    r = dom.refine(y[:600], base, model=model, method="sdedit", strength=1.0, seed=SHIFT)
    assert err(r) < 0.25 * err(base), (err(r), err(base))
    assert 0.02 < r.std(axis=0).mean() < 0.2  # measured 0.11 (base 0.3)
    # Langevin steps on the density at noise 0.1 (measured error 0.02)
    r = dom.refine(y[:600], base, model=model, method="langevin", strength=0.1, iters=20, seed=SHIFT)
    assert err(r) < 0.25 * err(base), (err(r), err(base))
    # only the context and the base paths matter; the result is reproducible
    h = y[:600].copy()
    h[: 600 - C] = -50.0
    np.testing.assert_array_equal(dom.refine(h, base[:5], model=model, seed=1),
                                  dom.refine(y[:600], base[:5], model=model, seed=1))
    with pytest.raises(ValueError, match=r"shape \(num_samples, 12\)"):
        dom.refine(y[:600], base[:, :5], model=model)
    with pytest.raises(ValueError, match="NaN"):
        dom.refine(y[:600], np.full((3, H), np.nan), model=model)
    with pytest.raises(ValueError, match="method"):
        dom.refine(y[:600], base, model=model, method="annealing")
    with pytest.raises(ValueError, match="strength"):
        dom.refine(y[:600], base, model=model, strength=0)


def test_array_dataframe_and_csv_give_the_same_windows_and_forecasts(sine_model, tmp_path):
    dom, model, y = sine_model
    hist = y[:600]
    ds = pd.date_range("2000-01-01", periods=600, freq="MS")
    df = pd.DataFrame({"unique_id": "a", "ds": ds, "y": hist})
    path = tmp_path / "s.csv"
    df.to_csv(path, index=False)
    loads = [dom.load(v) for v in (hist, list(hist), df, str(path))]
    for d in loads[1:]:
        torch.testing.assert_close(d.x, loads[0].x, rtol=0, atol=0)
        torch.testing.assert_close(d.cond["y"], loads[0].cond["y"], rtol=0, atol=0)
    fa = dom.forecast(hist, model=model, num_samples=10, seed=1)
    fb = dom.forecast(df, model=model, num_samples=10, seed=1)
    fc = dom.forecast(str(path), model=model, num_samples=10, seed=1)
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(fa, fc)


def _ar1_conditional(phi, gap, before, after):
    """Exact mean and variance of an AR(1) gap (unit innovations) between two observed values.

    The stationary covariance is phi^|i-j| / (1 - phi^2); Gaussian conditioning on the two ends."""
    idx = np.arange(gap + 2)
    S = phi ** np.abs(idx[:, None] - idx[None, :]) / (1 - phi ** 2)
    o = [0, gap + 1]
    u = list(range(1, gap + 1))
    Soo, Suo = S[np.ix_(o, o)], S[np.ix_(u, o)]
    K = Suo @ np.linalg.inv(Soo)
    mean = K @ np.array([before, after])
    cov = S[np.ix_(u, u)] - K @ Suo.T
    return mean, np.diag(cov)


def test_imputation_of_an_ar1_gap_matches_the_exact_conditional():
    phi, n = 0.8, 4000
    rng = np.random.default_rng(10 + SHIFT)
    x = np.zeros(n)
    x[0] = rng.standard_normal() / np.sqrt(1 - phi ** 2)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + rng.standard_normal()
    dom = stochgen.domain("timeseries", season=1, horizon=4, context=12, hidden=256, train_steps=2000,
                          impute_share=0.7, seed=SHIFT)
    torch.manual_seed(SHIFT)
    model = stochgen.fit(dom, x, progress=False, seed=SHIFT)
    # a test stretch: 16 fresh values with a gap of 3 inside; only the two neighbours matter (Markov)
    y = np.zeros(16)
    y[0] = rng.standard_normal() / np.sqrt(1 - phi ** 2)
    for i in range(1, 16):
        y[i] = phi * y[i - 1] + rng.standard_normal()
    gap = slice(7, 10)
    obs = y.copy()
    obs[gap] = np.nan
    out = dom.impute(obs, model=model, num_samples=400, seed=SHIFT)
    assert out.shape == (400, 16)
    np.testing.assert_array_equal(out[:, ~np.isnan(obs)], np.broadcast_to(y[~np.isnan(obs)], (400, 13)))
    mean, var = _ar1_conditional(phi, 3, y[6], y[10])
    got_m, got_v = out[:, gap].mean(0), out[:, gap].var(0)
    # 400 samples give a mean error of ~0.05 sd; the bound is the small model's own error (measured 0.3-0.7 sd
    # after 2000 steps): looser than the sampling error, but it still needs the model to use both ends, since
    # the answer that ignores them (the process mean 0) is off by |mean|
    sd = np.sqrt(var)
    assert np.all(np.abs(got_m - mean) < 0.8 * sd), (got_m, mean, sd)
    assert np.abs(got_m - mean).sum() < 0.6 * np.abs(mean).sum(), (got_m, mean)
    # the variance: the model under-disperses by up to half (measured 0.45-1.0x over seed shifts 0-2)
    assert np.all(got_v > 0.4 * var) and np.all(got_v < 2.0 * var), (got_v, var)


def test_cli_forecast_writes_quantiles_and_a_fan_chart(sine_model, tmp_path):
    dom, model, y = sine_model
    ckpt = tmp_path / "m.ckpt"
    model.save(str(ckpt))
    ds = pd.date_range("2000-01-01", periods=600, freq="MS")
    pd.DataFrame({"unique_id": "a", "ds": ds, "y": y[:600]}).to_csv(tmp_path / "s.csv", index=False)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "stochgen.cli", "forecast", str(ckpt), str(tmp_path / "s.csv"),
                        "-n", "50", "-o", str(tmp_path / "f.csv"), "--plot", str(tmp_path / "fan.png")],
                       capture_output=True, text=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert r.returncode == 0, r.stderr
    f = pd.read_csv(tmp_path / "f.csv", parse_dates=["ds"])
    qcols = [f"q{q / 10:.1f}" for q in range(1, 10)]
    assert list(f.columns) == ["unique_id", "ds", "mean"] + qcols and len(f) == H
    assert (np.diff(f[qcols].to_numpy(), axis=1) >= 0).all()  # quantiles ordered
    assert f["ds"].iloc[0] == pd.Timestamp("2050-01-01") and f["ds"].iloc[-1] == pd.Timestamp("2050-12-01")
    assert os.path.getsize(tmp_path / "fan.png") > 10_000
    # --holdout: forecasts the last 12 known values and scores them
    r = subprocess.run([sys.executable, "-m", "stochgen.cli", "forecast", str(ckpt), str(tmp_path / "s.csv"),
                        "-n", "50", "-o", str(tmp_path / "h.csv"), "--holdout", "12"],
                       capture_output=True, text=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert r.returncode == 0, r.stderr
    assert "wQL" in r.stdout and "80% coverage" in r.stdout
    h = pd.read_csv(tmp_path / "h.csv", parse_dates=["ds"])
    assert h["ds"].iloc[0] == pd.Timestamp("2049-01-01")
    truth = 5.0 + np.sin(2 * np.pi * np.arange(600, 600 + H) / M)
    assert np.abs(f["q0.5"].to_numpy() - truth).max() < 0.3  # amplitude 1: a lost season would be off by up to 2
    # --base none: the model alone; the sine continues too
    r = subprocess.run([sys.executable, "-m", "stochgen.cli", "forecast", str(ckpt), str(tmp_path / "s.csv"),
                        "-n", "50", "-o", str(tmp_path / "r.csv"), "--base", "none"],
                       capture_output=True, text=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert r.returncode == 0, r.stderr
    med = pd.read_csv(tmp_path / "r.csv")["q0.5"].to_numpy()
    assert np.abs(med - truth).max() < 0.3
    assert not np.allclose(med, f["q0.5"].to_numpy(), rtol=0, atol=1e-9)  # a different forecast


def test_bad_input_gives_clear_errors(sine_model, tmp_path):
    dom, model, y = sine_model
    with pytest.raises(ValueError, match="horizon"):
        stochgen.domain("timeseries", season=12, horizon=0)
    with pytest.raises(ValueError, match="horizon"):
        stochgen.domain("timeseries", season=12)
    with pytest.raises(ValueError, match="season"):
        stochgen.domain("timeseries", season=0, horizon=3)
    with pytest.raises(ValueError, match="shorter than one window"):
        dom.load(y[:20])
    bad = tmp_path / "bad.csv"
    bad.write_text("ds,y\n2000-01-01,1.0\n2000-02-01,abc\n")
    with pytest.raises(ValueError, match="abc"):
        dom.load(str(bad))
    with pytest.raises(ValueError, match="model="):
        dom.forecast(y[:100])
    with pytest.raises(ValueError, match="num_samples"):
        dom.forecast(y[:100], model=model, num_samples=0)
    with pytest.raises(ValueError, match="net"):
        stochgen.domain("timeseries", horizon=3, net="lstm").default_network_for(None, None)
