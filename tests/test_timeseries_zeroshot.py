"""The zero-shot forecaster: windows that start before their series, the synthetic pre-training
series, and the shipped model on series it never saw (a sine, a trend), from Python and the CLI."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import stochgen
from domains.timeseries import domain as _register  # noqa: F401  (registers "timeseries")
from domains.timeseries import zeroshot

SHIFT = int(os.environ.get("STOCHGEN_TEST_SEED_SHIFT", "0"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_min_context_windows_start_before_the_series_and_never_see_the_future():
    dom = stochgen.domain("timeseries", season=1, horizon=4, context=12, min_context=3, level_channels=False)
    ramp = np.arange(14.0)  # shorter than one window of 16
    d = dom.load([ramp])
    # windows end at every index from 3 + 4 - 1 .. 13: 14 - (3 + 4) + 1 = 8 windows
    assert len(d) == 8
    x, y = d.x[:, 0].numpy(), d.cond["y"].numpy()
    mask = y[:, 1]
    assert (mask[:, 12:] == 0).all()  # the horizon is never an input
    n_obs = mask[:, :12].sum(axis=1)
    np.testing.assert_array_equal(n_obs, np.arange(3, 11))
    assert (x[:, :12][mask[:, :12] == 0] == 0).all()  # unobserved context: the placeholder 0
    assert (y[:, 2:] == 0).all()  # level_channels=False
    for i, k in enumerate(n_obs.astype(int)):
        # the observed context is the ramp's first k values; its standardised future continues the ramp
        ctx = ramp[:k]  # centred on its last value (the default anchor), scaled by its mean absolute deviation
        loc, sc = ctx[-1], np.abs(ctx - ctx.mean()).mean()
        np.testing.assert_allclose(x[i, 12 - k:12], (ctx - loc) / sc, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(x[i, 12:], (ramp[k:k + 4] - loc) / sc, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="min_context"):
        stochgen.domain("timeseries", horizon=4, context=12, min_context=20).load([ramp])


def test_synthetic_series_are_reproducible_positive_and_varied():
    a = zeroshot.synthetic_series(40, seed=3)
    b = zeroshot.synthetic_series(40, seed=3)
    c = zeroshot.synthetic_series(40, seed=4)
    assert len(a) == 40
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert any(len(u) != len(w) or not np.array_equal(u, w) for u, w in zip(a, c))
    for u in a:
        assert 120 <= len(u) <= 400 and np.isfinite(u).all() and (u > 0).all()
    # scales span orders of magnitude (the model must not rely on the level)
    med = np.array([np.median(u) for u in a])
    assert med.max() / med.min() > 100


needs_weights = pytest.mark.skipif(not zeroshot.default_weights().is_file(), reason="no shipped zero-shot weights")


@needs_weights
def test_shipped_zero_shot_model_forecasts_an_unseen_sine():
    m = 7  # a weekly pattern on a daily series; the model never saw this one
    t = np.arange(200)
    rng = np.random.default_rng(SHIFT)
    y = 50 + 10 * np.sin(2 * np.pi * t / m) + rng.normal(0, 0.5, t.size)
    dom = stochgen.domain("timeseries", season=m, horizon=14)
    s = dom.forecast(y[:186], model="zeroshot", num_samples=100, seed=SHIFT)
    assert s.shape == (100, 14)  # the domain's horizon, not the model's 24
    truth = 50 + 10 * np.sin(2 * np.pi * t[186:] / m)
    med = np.median(s, axis=0)
    # amplitude 10, noise 0.5: a forecast without the season would be off by ~6 on average
    assert np.abs(med - truth).mean() < 2.0, np.abs(med - truth).mean()
    assert np.corrcoef(med, truth)[0, 1] > 0.9


@needs_weights
def test_cli_forecasts_with_the_shipped_zero_shot_model(tmp_path):
    t = np.arange(120)
    y = 100 + 2.0 * t + 0.5 * np.random.default_rng(SHIFT).standard_normal(t.size)  # a trend it never saw
    ds = pd.date_range("2020-01-01", periods=t.size, freq="D")
    pd.DataFrame({"unique_id": "trend", "ds": ds, "y": y}).to_csv(tmp_path / "s.csv", index=False)
    r = subprocess.run([sys.executable, "-m", "stochgen.cli", "forecast", "zeroshot", str(tmp_path / "s.csv"),
                        "--horizon", "10", "-n", "50", "-o", str(tmp_path / "f.csv")],
                       capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr
    f = pd.read_csv(tmp_path / "f.csv", parse_dates=["ds"])
    assert len(f) == 10 and f["ds"].iloc[0] == pd.Timestamp("2020-04-30")
    truth = 100 + 2.0 * np.arange(120, 130)
    # the trend continues: repeating the last value would be off by 2..20 (11 on average)
    err = np.abs(f["q0.5"].to_numpy() - truth)
    assert err.mean() < 5 and err.max() < 10, err


def test_missing_zero_shot_weights_name_the_training_script(monkeypatch, tmp_path):
    monkeypatch.setattr(zeroshot, "default_weights", lambda: tmp_path / "absent.safetensors")
    dom = stochgen.domain("timeseries", horizon=4)
    with pytest.raises(FileNotFoundError, match="train_zeroshot.py"):
        dom.forecast(np.arange(50.0), model="zeroshot")
