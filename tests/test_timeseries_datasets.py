"""The offline series loaders of the time-series domain (domains/timeseries/datasets.py).

Each series is read from a file inside its pip package; a test is skipped when that package is
not installed (``pip install statsmodels pmdarima sktime``).
"""
import numpy as np
import pandas as pd
import pytest

from domains.timeseries import datasets as D

# The fewest observations each series must have (its documented length, rounded down).
MIN_LENGTH = {
    "solar": 280, "heartrate": 150, "msft": 1000, "msft_weekly": 500, "airline": 144,
    "wineind": 176, "elec_equip": 250, "elnino": 720, "ausbeer": 210, "woolyrnq": 119,
    "austres": 89, "gdp": 200, "infl": 200, "nile": 100, "lynx": 114,
}
FREQ_KINDS = {"30min", "B", "W-FRI", "MS", "QS", "YS", 1}


def test_every_series_has_a_stated_minimum_length():
    assert set(MIN_LENGTH) == set(D.names()) == set(D.SERIES)
    assert len(D.names()) >= 8


@pytest.mark.parametrize("name", D.names())
def test_series_entry_is_sensible(name):
    e = D.SERIES[name]
    assert {"freq", "season", "horizon", "source", "description"} <= set(e)
    assert isinstance(e["season"], int) and e["season"] >= 1
    assert isinstance(e["horizon"], int) and e["horizon"] >= 1
    assert e["freq"] in FREQ_KINDS
    assert e["source"] in {"statsmodels", "pmdarima", "sktime"}
    assert e["description"]


@pytest.mark.parametrize("name", D.names())
def test_loader_returns_long_frame(name):
    e = D.SERIES[name]
    pytest.importorskip(e["source"])
    df = D.load(name)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["unique_id", "ds", "y"]
    assert (df["unique_id"] == name).all()
    assert len(df) >= MIN_LENGTH[name]
    assert len(df) >= 6 * e["horizon"]
    assert len(df) >= 2 * e["season"]
    y = df["y"].to_numpy()
    assert y.dtype == np.float64 and np.isfinite(y).all()
    assert np.ptp(y) > 0
    ds = df["ds"]
    if e["freq"] == 1:
        assert pd.api.types.is_integer_dtype(ds)
        assert (ds.to_numpy() == np.arange(len(df))).all()
    else:
        assert pd.api.types.is_datetime64_dtype(ds)
    assert ds.is_monotonic_increasing and ds.is_unique
    if e["freq"] not in (1, "B"):  # trading days skip holidays; the others are regular
        grid = pd.date_range(ds.iloc[0], periods=len(df), freq=e["freq"])
        assert (pd.DatetimeIndex(ds) == grid).all()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown series") as info:
        D.load("no_such_series")
    for name in D.names():
        assert name in str(info.value)
