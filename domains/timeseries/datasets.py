"""Public univariate series that ship inside pip packages (no download at run time).

``load(name)`` returns a Nixtla long frame with columns ``unique_id`` (the name), ``ds`` and
``y`` (float64), sorted by ``ds``: ``ds`` is ``datetime64[ns]`` where the data has dates
(yearly and quarterly data at the period start, monthly at the first of the month) and
integer steps 0, 1, ... where it has none. ``SERIES[name]`` gives each series' ``freq``
(a pandas offset alias, or ``1`` for integer steps), its season length ``season`` (1: none),
the forecast ``horizon`` used by the benchmark, its ``source`` package and a ``description``.

Sources (install what you need; each loader reads only files inside its package):
    pip install statsmodels pmdarima sktime

Every loader here reads a file bundled with its package; loaders that fetch over the network
(pmdarima's gasoline, sktime's solar API, statsmodels' webuse / get_rdataset) are not used
(sktime's solar is read from its stored sample with ``api_version=None``).
"""
# Excluded on purpose, kept for an independent evaluation, never loaded here: pmdarima's taylor
# and monthly sunspots, statsmodels' co2, yearly sunspots and mstl_elec_vic.csv, vega_datasets'
# seattle-temps.
from __future__ import annotations

import importlib

import numpy as np
import pandas as pd

__all__ = ["SERIES", "load", "names"]

_PIP = {"statsmodels": "statsmodels", "pmdarima": "pmdarima", "sktime": "sktime"}

SERIES: dict[str, dict] = {
    "solar": dict(
        freq="30min", season=48, horizon=24, source="sktime",
        description="GB national solar generation as a fraction of installed capacity, half-hourly, "
                    "2021-05-01..2021-05-07 (sktime's stored sample of Sheffield Solar PV_Live); "
                    "daily cycle, zero at night. Horizon 24 (12 h): the sample holds only 6 days."),
    "heartrate": dict(
        freq=1, season=1, horizon=10, source="pmdarima",
        description="Heart rate of a subject, 150 samples at 0.5 s intervals (pmdarima); noisy, "
                    "no season, integer steps."),
    "msft": dict(
        freq="B", season=5, horizon=20, source="pmdarima",
        description="Microsoft daily close price, last 1000 trading days to 2017-11-10 (pmdarima's "
                    "msft); trading days only (holidays missing), random-walk-like with trend."),
    "msft_weekly": dict(
        freq="W-FRI", season=1, horizon=13, source="pmdarima",
        description="Microsoft weekly close (last trading day of each week ending Friday), last 520 "
                    "weeks to 2017-11-10, from pmdarima's daily msft; trending, no season."),
    "airline": dict(
        freq="MS", season=12, horizon=12, source="sktime",
        description="Monthly international airline passengers (thousands), 1949-1960 (Box-Jenkins, "
                    "sktime); trend with multiplicative yearly season."),
    "wineind": dict(
        freq="MS", season=12, horizon=12, source="pmdarima",
        description="Australian wine sales by winemakers in bottles <= 1 litre, monthly, "
                    "1980-01..1994-08 (pmdarima); strong yearly season, noisy."),
    "elec_equip": dict(
        freq="MS", season=12, horizon=12, source="statsmodels",
        description="Euro-area manufacture of electrical equipment, new orders index, monthly, "
                    "1995-01..2016-05 (statsmodels); yearly season, 2008-09 level break."),
    "elnino": dict(
        freq="MS", season=12, horizon=12, source="statsmodels",
        description="Sea surface temperature (deg C) of the El Nino region, monthly, 1950-2010 "
                    "(statsmodels' table of year x month, reshaped); yearly season plus ENSO cycles."),
    "ausbeer": dict(
        freq="QS", season=4, horizon=8, source="pmdarima",
        description="Australian quarterly beer production (megalitres), 1956 Q1..2008 Q3 "
                    "(pmdarima; its trailing missing value dropped); season and a rise then decline."),
    "woolyrnq": dict(
        freq="QS", season=4, horizon=8, source="pmdarima",
        description="Australian quarterly woollen yarn production (tonnes), 1965 Q1..1994 Q3 "
                    "(pmdarima); season, level shifts, noisy."),
    "austres": dict(
        freq="QS", season=4, horizon=8, source="pmdarima",
        description="Number of Australian residents (thousands), quarterly, 1971 Q2..1993 Q2 "
                    "(pmdarima); smooth trend."),
    "gdp": dict(
        freq="QS", season=4, horizon=8, source="statsmodels",
        description="US real GDP (billions of chained 2005 dollars), quarterly, 1959 Q1..2009 Q3 "
                    "(statsmodels' macrodata realgdp); seasonally adjusted, trending, 2008 dip."),
    "infl": dict(
        freq="QS", season=4, horizon=8, source="statsmodels",
        description="US inflation rate (annualised %), quarterly, 1959 Q1..2009 Q3 "
                    "(statsmodels' macrodata infl); noisy, mean-reverting, spikes."),
    "nile": dict(
        freq="YS", season=1, horizon=5, source="statsmodels",
        description="Annual flow of the river Nile at Aswan (10^8 m^3), 1871-1970 (statsmodels); "
                    "level shift near 1898, noisy."),
    "lynx": dict(
        freq="YS", season=1, horizon=8, source="pmdarima",
        description="Annual number of lynx trapped in the Mackenzie River district, 1821-1934 "
                    "(pmdarima); strong ~10-year cycle (not a fixed calendar season)."),
}


def names() -> list[str]:
    """The known series names, in the order of ``SERIES``."""
    return list(SERIES)


def _need(package: str):
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise ImportError(
            f"this series comes from the '{package}' package, which is not installed or does not "
            f"import ({e}); install it with:  pip install {_PIP[package]}") from e


def _dates(start: str, n: int, freq: str) -> pd.DatetimeIndex:
    return pd.date_range(start=start, periods=n, freq=freq)


def _pm(name: str) -> np.ndarray:
    _need("pmdarima")
    ds = importlib.import_module("pmdarima.datasets")
    return np.asarray(getattr(ds, "load_" + name)(as_series=False), dtype=float)


def _msft_close() -> pd.Series:
    _need("pmdarima")
    from pmdarima.datasets import load_msft
    df = load_msft()
    s = pd.Series(df["Close"].to_numpy(dtype=float), index=pd.to_datetime(df["Date"]))
    return s.sort_index()


def _sm_dataset(name: str) -> pd.DataFrame:
    _need("statsmodels")
    mod = importlib.import_module("statsmodels.datasets." + name)
    return mod.load_pandas().data


def _raw(name: str):
    """(ds, y) for ``name``: ds a DatetimeIndex / array of dates or None for integer steps."""
    if name == "solar":
        _need("sktime")
        from sktime.datasets import load_solar
        s = load_solar(api_version=None)  # the stored sample; never the web API
        idx = pd.DatetimeIndex(s.index)
        if idx.tz is not None:
            idx = idx.tz_convert("UTC").tz_localize(None)
        return idx, s.to_numpy(dtype=float)
    if name == "heartrate":
        return None, _pm("heartrate")
    if name == "msft":
        s = _msft_close().iloc[-1000:]
        return s.index, s.to_numpy()
    if name == "msft_weekly":
        s = _msft_close().resample("W-FRI").last().dropna()
        s = s.iloc[-520:]
        return s.index, s.to_numpy()
    if name == "airline":
        _need("sktime")
        from sktime.datasets import load_airline
        s = load_airline()
        return s.index.to_timestamp(how="start"), s.to_numpy(dtype=float)
    if name == "wineind":
        y = _pm("wineind")
        return _dates("1980-01-01", len(y), "MS"), y
    if name == "elec_equip":
        df = _sm_dataset("elec_equip")
        return pd.DatetimeIndex(df.index), df.iloc[:, 0].to_numpy(dtype=float)
    if name == "elnino":
        df = _sm_dataset("elnino")
        months = [c for c in df.columns if c.upper() != "YEAR"]
        y = df[months].to_numpy(dtype=float).reshape(-1)  # row-major: year by year, Jan..Dec
        start = f"{int(df['YEAR'].iloc[0])}-01-01"
        return _dates(start, len(y), "MS"), y
    if name == "ausbeer":
        y = _pm("ausbeer")
        y = y[np.isfinite(y)]
        return _dates("1956-01-01", len(y), "QS"), y
    if name == "woolyrnq":
        y = _pm("woolyrnq")
        return _dates("1965-01-01", len(y), "QS"), y
    if name == "austres":
        y = _pm("austres")
        return _dates("1971-04-01", len(y), "QS"), y
    if name in ("gdp", "infl"):
        df = _sm_dataset("macrodata")
        col = "realgdp" if name == "gdp" else "infl"
        start = f"{int(df['year'].iloc[0])}-{3 * (int(df['quarter'].iloc[0]) - 1) + 1:02d}-01"
        return _dates(start, len(df), "QS"), df[col].to_numpy(dtype=float)
    if name == "nile":
        df = _sm_dataset("nile")
        ds = pd.to_datetime(df["year"].astype(int).astype(str) + "-01-01")
        return pd.DatetimeIndex(ds), df["volume"].to_numpy(dtype=float)
    if name == "lynx":
        _need("pmdarima")
        from pmdarima.datasets import load_lynx
        s = load_lynx(as_series=True)
        ds = pd.to_datetime([f"{int(v)}-01-01" for v in s.index])
        return ds, s.to_numpy(dtype=float)
    raise AssertionError(name)  # every SERIES key has a branch above


def load(name: str) -> pd.DataFrame:
    """The series ``name`` as a long frame ``unique_id, ds, y`` (see the module docstring)."""
    if name not in SERIES:
        raise ValueError(f"unknown series {name!r}; known series: {', '.join(names())}")
    ds, y = _raw(name)
    y = np.asarray(y, dtype=np.float64)
    if ds is None:
        ds = np.arange(len(y), dtype=np.int64)
    else:
        ds = pd.DatetimeIndex(ds).as_unit("ns").to_numpy()
    if len(ds) != len(y):
        raise RuntimeError(f"{name}: {len(ds)} dates for {len(y)} values")
    df = pd.DataFrame({"unique_id": name, "ds": ds, "y": y})
    return df.sort_values("ds", kind="stable").reset_index(drop=True)
