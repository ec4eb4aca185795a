"""Reading time series and cutting them into the windows a forecasting model trains on.

* :class:`Series`: one series: its id, its values (float64, NaN = missing) and its timestamps.
* :func:`read_series`: arrays, lists, dicts, pandas objects, Nixtla long-format frames
  (``unique_id, ds, y``), CSV and ``.npy`` files -> a list of :class:`Series`.
* :func:`check_horizon`, :func:`windows`, :func:`split_context`: forecast lengths and the slices
  of a series a model sees (training windows, held-out context / future).
* :func:`mean_abs_scale`: the mean absolute value of a context (GluonTS' ``MeanScaler``).
* :func:`future_ds`: the timestamps of the steps after a series (calendar-aware for months,
  quarters and years).
* :func:`to_long_frame`: forecast columns -> a long-format frame ``unique_id, ds, ...``.

Timestamps (``Series.ds``) are one of: a ``datetime64`` array (``datetime64[ns]`` when the dates
fit its range, tz-aware times converted to naive UTC), a numeric array (``int64`` when every value
is a whole number, else ``float64``; integer positions or years, say) or ``None`` when the data
carry none. Series with timestamps are sorted by them; without, values keep their given order.

Every problem with the data is a :class:`ValueError` naming where it is (the file or ``name``, the
column, the row or position, the series id) and what is wrong. Row numbers of a frame or CSV file
count data rows from 0 (the header is not a row); positions in an array count from 0.
"""
from __future__ import annotations

import numbers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["Series", "read_series", "check_horizon", "windows", "mean_abs_scale", "split_context",
           "future_ds", "to_long_frame"]


@dataclass
class Series:
    """One time series: ``uid``, values ``y`` (1-D float64, NaN = missing) and timestamps ``ds``
    (a ``datetime64`` or numeric array as long as ``y``, or ``None`` when unknown)."""

    uid: str
    y: np.ndarray
    ds: np.ndarray | None = None

    def __post_init__(self):
        self.uid = str(self.uid)
        self.y = np.asarray(self.y, dtype=np.float64)
        if self.y.ndim != 1:
            raise ValueError(f"series {self.uid!r}: values must be 1-D, got shape {self.y.shape}")
        if self.ds is not None:
            self.ds = np.asarray(self.ds)
            if self.ds.shape != self.y.shape:
                raise ValueError(f"series {self.uid!r}: {len(self.ds)} timestamps for {len(self.y)} values")

    def __len__(self) -> int:
        return len(self.y)


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def read_series(data, *, id_col: str = "unique_id", time_col: str = "ds", value_col: str = "y",
                name: str = "data") -> list[Series]:
    """Read one series or a panel of series from ``data``; returns a list of :class:`Series`.

    ``data`` may be:

    * a 1-D numpy array, a list / tuple of numbers or a pandas Series: one series, uid ``"series"``
      (a pandas Series with a ``DatetimeIndex`` keeps it as ``ds``; no timestamps otherwise);
    * a list / tuple of 1-D arrays (uids ``"0"``, ``"1"``, ...) or a dict ``{uid: 1-D array}``;
    * a DataFrame in long format (columns ``id_col, time_col, value_col``; other columns are
      ignored): one series per id, ids in order of first appearance, rows sorted by ``ds``
      within each id; a frame without ``id_col`` is one series (uid ``"series"``); a frame
      with a single column and no ``value_col`` is one series whose uid is the column name.
      ``ds`` is parsed as dates when it reads as dates, kept numeric when numeric; without a
      ``ds`` column a ``DatetimeIndex`` serves as timestamps;
    * a path (``str`` / ``pathlib.Path``) to a CSV file (``.tsv`` / ``.tab``: tab-separated) of
      any of those frame shapes, a headerless one-column CSV of numbers (one series, uid
      ``"series"``), or a ``.npy`` file of a 1-D array.

    NaN (an empty CSV cell) marks a missing value. ``name`` names the data in error messages
    (a path names itself). Raises ``ValueError`` for: a non-numeric value (column / position
    and the value), an infinite value, a file that does not exist or cannot be read, a frame
    without ``value_col`` and several columns, an empty series, a series of only NaN, a 2-D
    or 0-D array, a missing id or timestamp, a timestamp that is neither date nor number, and
    duplicated timestamps within one id.
    """
    if isinstance(data, (str, os.PathLike)):
        return _read_path(Path(data), id_col=id_col, time_col=time_col, value_col=value_col)
    if isinstance(data, Series):
        return [_one(data.y, data.uid, name, ds=data.ds)]
    if isinstance(data, pd.DataFrame):
        return _from_frame(data, id_col, time_col, value_col, name)
    if isinstance(data, pd.Series):
        return [_one(data, "series", name)]
    if isinstance(data, dict):
        if not data:
            raise ValueError(f"{name} is empty (a dict with no series)")
        uids = [str(k) for k in data]
        if len(set(uids)) != len(uids):
            raise ValueError(f"{name}: the dict keys {list(data)} give duplicate series ids {uids}")
        return [_one(v, u, name) for u, v in zip(uids, data.values())]
    if isinstance(data, (list, tuple)):
        if len(data) == 0:
            raise ValueError(f"{name} is empty (no values)")
        nested = [_is_sequence(v) for v in data]
        if all(nested):
            return [_one(v, str(i), name) for i, v in enumerate(data)]
        if any(nested):
            i = nested.index(True) if not nested[0] else nested.index(False)
            raise ValueError(f"{name} mixes numbers and sequences (item {i} is {type(data[i]).__name__}): "
                             "pass either one list of numbers or a list of 1-D arrays")
        return [_one(data, "series", name)]
    if isinstance(data, np.ndarray) or hasattr(data, "__array__"):
        return [_one(data, "series", name)]
    raise ValueError(f"{name}: cannot read a {type(data).__name__} as time series; pass an array, "
                     "a list of arrays, a dict, a pandas Series / DataFrame or a CSV / .npy path")


def _is_sequence(v) -> bool:
    return isinstance(v, (list, tuple, np.ndarray, pd.Series)) or (
        hasattr(v, "__array__") and np.ndim(v) > 0)


def _read_path(path: Path, *, id_col: str, time_col: str, value_col: str) -> list[Series]:
    if not path.exists():
        raise ValueError(f"file '{path}' does not exist")
    if path.is_dir():
        raise ValueError(f"'{path}' is a directory, not a data file")
    name = str(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:  # numpy raises ValueError / OSError / EOFError for bad files
            raise ValueError(f"cannot read '{path}' as a .npy array: {exc}") from None
        return [_one(arr, "series", name)]
    sep = "\t" if suffix in (".tsv", ".tab") else ","
    try:
        frame = pd.read_csv(path, sep=sep)
        if frame.shape[1] == 1 and _is_number_text(frame.columns[0]):
            frame = pd.read_csv(path, sep=sep, header=None, names=[value_col])  # headerless column
    except pd.errors.EmptyDataError:
        raise ValueError(f"'{path}' is empty (no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise ValueError(f"cannot read '{path}' as a CSV file: {exc}") from None
    return _from_frame(frame, id_col, time_col, value_col, name)


def _is_number_text(text) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def _one(values, uid: str, name: str, ds=None) -> Series:
    """One series from an array-like (a pandas Series brings its DatetimeIndex as ``ds``)."""
    label = _who(uid)
    if isinstance(values, pd.Series):
        if ds is None and isinstance(values.index, pd.DatetimeIndex):
            ds = _parse_ds(pd.Series(values.index), f"{label} index", name, unit="position")
        y = _numbers(values.reset_index(drop=True), label, name, unit="position")
    else:
        try:
            arr = np.asarray(values)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"{name}: {label} is not a 1-D sequence of numbers ({exc})") from None
        if arr.ndim == 0:
            raise ValueError(f"{name}: {label} is a single value ({arr!r}), not a 1-D series")
        if arr.ndim == 2:
            raise ValueError(f"{name}: {label} is a 2-D array of shape {arr.shape}; pass a list of "
                             "1-D arrays (one per series) or a long-format DataFrame instead")
        if arr.ndim > 2:
            raise ValueError(f"{name}: {label} has {arr.ndim} dimensions (shape {arr.shape}); "
                             "a series is a 1-D array")
        y = _numbers(arr, label, name, unit="position")
        if ds is not None:
            ds = np.asarray(ds)
    if ds is not None:
        y, ds = _sort_by_time(y, ds, uid, name, rows=None)
    _check_observed(y, uid, name)
    return Series(uid, y, ds)


def _from_frame(frame: pd.DataFrame, id_col, time_col, value_col, name) -> list[Series]:
    cols = list(frame.columns)
    if not cols:
        raise ValueError(f"{name} is empty (no columns)")
    if len(frame) == 0:
        raise ValueError(f"{name} is empty (columns {cols} but no rows)")
    if value_col in frame.columns:
        single_uid = "series"
    elif len(cols) == 1:
        value_col, single_uid = cols[0], str(cols[0])
    else:
        raise ValueError(f"{name}: no value column {value_col!r}; the columns are {cols} "
                         f"(long format is {id_col!r}, {time_col!r}, {value_col!r}; pass value_col= "
                         "to name the value column)")
    _single_column(frame, value_col, name)
    y = _numbers(frame[value_col].reset_index(drop=True), f"column {value_col!r}", name, unit="row")
    ds = None
    if time_col in frame.columns and time_col != value_col:
        _single_column(frame, time_col, name)
        ds = _parse_ds(frame[time_col].reset_index(drop=True), f"column {time_col!r}", name, unit="row")
    elif isinstance(frame.index, pd.DatetimeIndex):
        ds = _parse_ds(pd.Series(frame.index), "index", name, unit="row")
    if id_col not in frame.columns or id_col == value_col:
        rows = np.arange(len(frame))
        yk, dk = (y, ds) if ds is None else _sort_by_time(y, ds, single_uid, name, rows=rows)
        _check_observed(yk, single_uid, name)
        return [Series(single_uid, yk, dk)]
    _single_column(frame, id_col, name)
    ids = frame[id_col].reset_index(drop=True)
    missing = ids.isna().to_numpy()
    if missing.any():
        raise ValueError(f"{name}: column {id_col!r} row {int(np.argmax(missing))}: missing series id")
    codes, uniques = pd.factorize(ids, sort=False)  # first-appearance order
    uids = [str(u) for u in uniques]
    if len(set(uids)) != len(uids):
        raise ValueError(f"{name}: column {id_col!r} holds ids that read the same as text ({list(uniques)})")
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(uids)))[:-1]
    out = []
    for uid, rows in zip(uids, np.split(order, bounds)):
        yk = y[rows]
        dk = None
        if ds is not None:
            yk, dk = _sort_by_time(yk, ds[rows], uid, name, rows=rows)
        _check_observed(yk, uid, name)
        out.append(Series(uid, yk, dk))
    return out


def _single_column(frame: pd.DataFrame, col, name):
    if isinstance(frame[col], pd.DataFrame):
        raise ValueError(f"{name}: column {col!r} appears more than once")


def _numbers(values, label: str, name: str, unit: str) -> np.ndarray:
    """``values`` (array or pandas Series) as float64, NaN for missing; errors name the first bad entry."""
    s = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values), dtype=None, copy=False)
    if pd.api.types.is_bool_dtype(s.dtype):
        raise ValueError(f"{name}: {label} holds true/false values, not numbers")
    if pd.api.types.is_datetime64_any_dtype(s.dtype) or pd.api.types.is_timedelta64_dtype(s.dtype):
        raise ValueError(f"{name}: {label} holds dates / times, not numbers")
    if pd.api.types.is_complex_dtype(s.dtype):
        raise ValueError(f"{name}: {label} holds complex numbers; a series is real-valued")
    if pd.api.types.is_numeric_dtype(s.dtype):
        y = s.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        obj = s.astype(object)
        missing = obj.isna().to_numpy()
        try:
            num = pd.to_numeric(obj.where(~missing, np.nan), errors="coerce")
            y = num.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            y = np.full(len(obj), np.nan)
        bad = np.isnan(y) & ~missing
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name}: {label} {unit} {i}: {obj.iloc[i]!r} is not a number")
    inf = np.isinf(y)
    if inf.any():
        i = int(np.argmax(inf))
        raise ValueError(f"{name}: {label} {unit} {i}: infinite value {y[i]} (mark a missing value with "
                         "NaN / an empty cell)")
    return y


def _parse_ds(col: pd.Series, label: str, name: str, unit: str) -> np.ndarray:
    """A timestamp column as datetime64 (dates) or int64 / float64 (numbers)."""
    missing = col.isna().to_numpy()
    if missing.any():
        raise ValueError(f"{name}: {label} {unit} {int(np.argmax(missing))}: missing timestamp")
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return _datetimes(col)
    if pd.api.types.is_bool_dtype(col.dtype):
        raise ValueError(f"{name}: {label} holds true/false values, not timestamps")
    if pd.api.types.is_integer_dtype(col.dtype):
        return col.to_numpy(dtype=np.int64)
    if pd.api.types.is_numeric_dtype(col.dtype):
        return _numeric_ds(col.to_numpy(dtype=np.float64), col.dtype, label, name, unit)
    num = pd.to_numeric(col.astype(object), errors="coerce")
    if not num.isna().any():
        return _numeric_ds(num.to_numpy(dtype=np.float64), num.dtype, label, name, unit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the format of the first entry, else ISO 8601: no blind per-entry dateutil guessing (it reads
        # 't1' as one o'clock today); free-form dates ('Jan 2020') only when every entry holds a 4-digit year
        guessed = pd.tseries.api.guess_datetime_format(str(col.iloc[0]))
        fmts = ([guessed] if guessed else []) + ["ISO8601"]
        if col.astype(str).str.contains(r"\d{4}", regex=True).all():
            fmts.append("mixed")
        for fmt in fmts:
            try:
                parsed = pd.to_datetime(col, format=fmt)
            except (ValueError, TypeError, OverflowError):
                continue
            if pd.api.types.is_datetime64_any_dtype(parsed.dtype):
                return _datetimes(parsed)
        try:
            coerced = pd.to_datetime(col, errors="coerce", utc=True, format=guessed or "ISO8601").isna().to_numpy()
        except (ValueError, TypeError, OverflowError):
            coerced = np.ones(len(col), dtype=bool)
    bad = coerced & num.isna().to_numpy()
    i = int(np.argmax(bad)) if bad.any() else int(np.argmax(coerced))
    raise ValueError(f"{name}: {label} {unit} {i}: {col.iloc[i]!r} is neither a date nor a number "
                     "(or the dates are in mixed formats)")


def _datetimes(col: pd.Series) -> np.ndarray:
    if getattr(col.dt, "tz", None) is not None:
        col = col.dt.tz_convert(None)
    try:
        col = col.dt.as_unit("ns")
    except (pd.errors.OutOfBoundsDatetime, OverflowError, ValueError):
        pass
    return col.to_numpy()


def _numeric_ds(a: np.ndarray, dtype, label: str, name: str, unit: str) -> np.ndarray:
    if not np.isfinite(a).all():
        i = int(np.argmax(~np.isfinite(a)))
        raise ValueError(f"{name}: {label} {unit} {i}: infinite timestamp")
    if pd.api.types.is_integer_dtype(dtype) or (np.all(a == np.round(a)) and np.all(np.abs(a) < 2 ** 53)):
        return np.round(a).astype(np.int64)
    return a


def _sort_by_time(y: np.ndarray, ds: np.ndarray, uid: str, name: str, rows):
    """``y`` and ``ds`` sorted by ``ds`` (stable); ValueError on a repeated timestamp."""
    order = np.argsort(ds, kind="stable")
    ds_s = ds[order]
    dup = np.flatnonzero(ds_s[1:] == ds_s[:-1])
    if dup.size:
        j = int(dup[0])
        t = ds_s[j]
        shown = str(pd.Timestamp(t)) if np.issubdtype(ds_s.dtype, np.datetime64) else str(t)
        where = "rows" if rows is not None else "positions"
        a, b = sorted((order[j], order[j + 1]))
        if rows is not None:
            a, b = rows[a], rows[b]
        raise ValueError(f"{name}: {_who(uid)} has a duplicate timestamp {shown} ({where} {a} and {b})")
    return y[order], ds_s


def _who(uid: str) -> str:
    return "the series" if uid == "series" else f"series {uid!r}"


def _check_observed(y: np.ndarray, uid: str, name: str):
    if len(y) == 0:
        raise ValueError(f"{name}: {_who(uid)} is empty (no values)")
    if np.isnan(y).all():
        raise ValueError(f"{name}: {_who(uid)} has no observed value (all {len(y)} values are NaN)")


# ------------------------------------------------------------------------------------------------
# lengths and windows
# ------------------------------------------------------------------------------------------------
def _whole(v, what: str) -> int:
    """``v`` as an int >= 1 (ints, integral floats and digit strings); ValueError naming ``what``."""
    if isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{what} must be an integer >= 1, got {v!r}")
    if isinstance(v, numbers.Integral):
        out = int(v)
    elif isinstance(v, numbers.Real) and float(v).is_integer():
        out = int(v)
    elif isinstance(v, str) and v.strip().lstrip("+-").isdigit():
        out = int(v)
    else:
        raise ValueError(f"{what} must be an integer >= 1, got {v!r}")
    if out < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {v!r}")
    return out


def check_horizon(h) -> int:
    """The forecast horizon ``h`` as an int; ValueError ("horizon must be an integer >= 1, got ...")
    unless it is a whole number >= 1 (an int, an integral float or a string of digits; not a bool)."""
    return _whole(h, "horizon")


def _too_short(n: int, need: int, uid, context, horizon, what: str) -> ValueError:
    who = f"series {uid!r}" if uid is not None else "the series"
    detail = f" (context {context} + horizon {horizon})" if context is not None and horizon is not None else ""
    return ValueError(f"{who} has {n} points, shorter than {what} of {need}{detail}")


def windows(y, length, stride: int = 1, *, context=None, horizon=None, uid=None) -> np.ndarray:
    """All windows ``y[i:i+length]`` for ``i = 0, stride, 2*stride, ...`` that fit entirely, in order,
    as a new ``(N, length)`` array (``N = (len(y) - length) // stride + 1``; dtype of ``y``).

    ``length`` may be ``None`` when ``context`` and ``horizon`` are given (then it is their sum);
    ``context`` / ``horizon`` / ``uid`` only make the error message precise. Windows holding NaN
    are returned as they are. ValueError when ``y`` is not 1-D, when ``length`` or ``stride`` is
    not an integer >= 1, or when the series is shorter than one window ("series 'x' has 50 points,
    shorter than one window of 120 (context 96 + horizon 24)").
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"windows: the series must be 1-D, got shape {y.shape}")
    if length is None and context is not None and horizon is not None:
        length = int(context) + int(horizon)
    length = _whole(length, "window length")
    stride = _whole(stride, "stride")
    if len(y) < length:
        raise _too_short(len(y), length, uid, context, horizon, "one window")
    return np.lib.stride_tricks.sliding_window_view(y, length)[::stride].copy()


def split_context(y, context, horizon, *, uid=None) -> tuple[np.ndarray, np.ndarray]:
    """``(ctx, future)``: the final ``horizon`` points of ``y`` and the ``context`` points just before
    them (for held-out evaluation; the two are adjacent and do not overlap). Returns copies.
    ValueError when ``y`` is not 1-D, ``context`` / ``horizon`` is not an integer >= 1, or
    ``len(y) < context + horizon`` (the message says "shorter")."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"split_context: the series must be 1-D, got shape {y.shape}")
    context = _whole(context, "context")
    horizon = check_horizon(horizon)
    n, need = len(y), context + horizon
    if n < need:
        raise _too_short(n, need, uid, context, horizon, "context + horizon")
    return y[n - need:n - horizon].copy(), y[n - horizon:].copy()


def mean_abs_scale(context, min_scale: float = 1e-8):
    """The mean of ``|x|`` over the observed (finite; NaN = missing) entries of each row of ``context``
    (the last axis), as GluonTS' ``MeanScaler``. A row with no observed entry, or whose mean is 0,
    gets the mean of the scales of the rows that have one, else 1.0. No scale is below
    ``min_scale``. 1-D input -> a float; 2-D ``(N, T)`` -> an ``(N,)`` array. ValueError for
    other shapes or a negative ``min_scale``."""
    x = np.asarray(context, dtype=np.float64)
    if x.ndim not in (1, 2):
        raise ValueError(f"mean_abs_scale: context must be 1-D or 2-D, got shape {x.shape}")
    if not min_scale >= 0:
        raise ValueError(f"mean_abs_scale: min_scale must be >= 0, got {min_scale!r}")
    rows = x.reshape(1, -1) if x.ndim == 1 else x
    obs = np.isfinite(rows)
    count = obs.sum(axis=-1)
    total = np.where(obs, np.abs(rows), 0.0).sum(axis=-1)
    scale = total / np.maximum(count, 1)
    good = (count > 0) & (scale > 0)
    fallback = float(scale[good].mean()) if good.any() else 1.0
    scale = np.maximum(np.where(good, scale, fallback), min_scale)
    return float(scale[0]) if x.ndim == 1 else scale


# ------------------------------------------------------------------------------------------------
# timestamps and output
# ------------------------------------------------------------------------------------------------
def future_ds(ds, horizon, *, n: int | None = None):
    """The timestamps of the ``horizon`` steps after the timestamps ``ds`` (or after a :class:`Series`).

    * ``datetime64`` ``ds``: the step is ``pandas.infer_freq`` 's when it finds one (3+ regular
      dates; month / quarter / year starts or ends stay on them); else, when every date falls on
      the same day of the month (<= 28) or on month ends at one time of day, the greatest common
      divisor of the month gaps between dates (so monthly data with a gap, or two yearly dates,
      continue on the calendar); else the median difference. Returned in ``ds``' unit when it holds the result
      exactly, else ``datetime64[ns]``.
    * numeric ``ds``: ``last + step * k`` (``k = 1..horizon``), ``step`` the median difference
      (1 for a single value; rounded to a whole number for integer ``ds``); ``int64`` for integer
      ``ds``.
    * ``None`` (timestamps unknown): the relative positions ``n .. n + horizon - 1`` (int64) when
      the series length ``n`` is given (a :class:`Series` gives it), else ``None``.

    ValueError for a bad ``horizon``, empty / non-1-D ``ds``, a single date (no step to infer),
    timestamps that do not increase, or ``ds`` that is neither dates nor numbers.
    """
    if isinstance(ds, Series):
        ds, n = ds.ds, len(ds)
    horizon = check_horizon(horizon)
    if ds is None:
        if n is None:
            return None
        return np.arange(int(n), int(n) + horizon, dtype=np.int64)
    ds = np.asarray(ds)
    if ds.ndim != 1 or len(ds) == 0:
        raise ValueError(f"future_ds: ds must be a non-empty 1-D array, got shape {ds.shape}")
    if np.issubdtype(ds.dtype, np.datetime64):
        return _future_dates(ds, horizon)
    if ds.dtype.kind in "iuf":
        a = ds.astype(np.float64)
        diff = np.diff(a)
        if len(diff) and not (diff > 0).all():
            raise ValueError("future_ds: the timestamps must increase")
        step = float(np.median(diff)) if len(diff) else 1.0
        k = np.arange(1, horizon + 1)
        if ds.dtype.kind in "iu":
            return int(ds[-1]) + max(1, int(round(step))) * k.astype(np.int64)
        return a[-1] + step * k
    raise ValueError(f"future_ds: ds must hold dates (datetime64) or numbers, got dtype {ds.dtype}")


def _future_dates(ds: np.ndarray, horizon: int) -> np.ndarray:
    idx = pd.DatetimeIndex(ds)
    if len(idx) < 2:
        raise ValueError("future_ds: cannot infer the time step from a single timestamp")
    if not (np.diff(idx.asi8) > 0).all():
        raise ValueError("future_ds: the timestamps must increase (sorted, no duplicates)")
    offset = None
    if len(idx) >= 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas 3.1 warns that infer_freq will return an offset
            freq = pd.infer_freq(idx)
        if freq is not None:
            offset = pd.tseries.frequencies.to_offset(freq)
    if offset is None:
        offset = _calendar_step(idx)
    last = idx[-1]
    if offset is not None:
        out = pd.DatetimeIndex([last + k * offset for k in range(1, horizon + 1)])
    else:
        step = int(np.median(np.diff(idx.as_unit("ns").asi8)))
        out = pd.DatetimeIndex(last.as_unit("ns") + pd.to_timedelta(step * np.arange(1, horizon + 1), unit="ns"))
    out_ns = out.as_unit("ns").to_numpy()
    try:
        same = out.to_numpy().astype(ds.dtype)
        if (same.astype("datetime64[ns]") == out_ns).all():
            return same
    except (ValueError, OverflowError):
        pass
    return out_ns


def _calendar_step(idx: pd.DatetimeIndex):
    """A whole-month offset when ``idx`` sits on one day of the month (or on month ends), else None."""
    tod = (idx - idx.normalize()).asi8
    if (tod != tod[0]).any():
        return None
    months = np.diff(np.asarray(idx.year) * 12 + np.asarray(idx.month))
    if (months <= 0).any():
        return None
    step = int(np.gcd.reduce(months))  # gaps of 2, 3 steps still give the one-step offset
    day = np.asarray(idx.day)
    if np.asarray(idx.is_month_end).all():
        return pd.offsets.MonthEnd(step)
    if (day == day[0]).all() and day[0] <= 28:
        return pd.DateOffset(months=step)
    return None


def to_long_frame(uid, ds, columns: dict) -> pd.DataFrame:
    """A long-format frame with columns ``unique_id, ds`` then ``columns`` (name -> 1-D array), in that
    order, one row per timestamp (e.g. a forecast's mean and quantiles, to write as CSV). ``uid`` is
    one id (repeated) or an array of ids, one per row. ValueError when ``ds`` is None or not 1-D,
    a column is not 1-D or its length differs from ``ds``', or a column is named ``unique_id`` /
    ``ds``."""
    if ds is None:
        raise ValueError("to_long_frame: ds is None; pass the timestamps (future_ds(None, h, n=len(y)) "
                         "gives positions)")
    ds = np.asarray(ds)
    if ds.ndim != 1:
        raise ValueError(f"to_long_frame: ds must be 1-D, got shape {ds.shape}")
    n = len(ds)
    if np.ndim(uid) == 0:
        ids = np.full(n, str(uid), dtype=object)
    else:
        ids = np.asarray([str(u) for u in np.asarray(uid).ravel()], dtype=object)
        if len(ids) != n or np.ndim(uid) != 1:
            raise ValueError(f"to_long_frame: {np.shape(uid)} ids for {n} timestamps")
    out = {"unique_id": ids, "ds": ds}
    for key, values in columns.items():
        if key in out:
            raise ValueError(f"to_long_frame: column name {key!r} is reserved (unique_id, ds)")
        v = np.asarray(values)
        if v.ndim != 1 or len(v) != n:
            raise ValueError(f"to_long_frame: column {key!r} has shape {v.shape}, expected ({n},) like ds")
        out[key] = v
    return pd.DataFrame(out)
