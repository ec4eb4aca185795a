"""domains.timeseries.data: every input shape reads the same, windows / splits never leak, bad data is
a ValueError that says what is wrong."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains.timeseries import data as D

Y = np.array([1.0, 2.0, np.nan, 4.0, 5.5])
DS = pd.date_range("2020-01-01", periods=5, freq="MS")


def _same(a: D.Series, b: D.Series, with_ds=True):
    assert a.uid == b.uid
    np.testing.assert_array_equal(a.y, b.y)  # NaN == NaN in assert_array_equal
    assert a.y.dtype == np.float64
    if with_ds:
        if a.ds is None or b.ds is None:
            assert a.ds is None and b.ds is None
        else:
            np.testing.assert_array_equal(a.ds, b.ds)


# ------------------------------------------------------------------------------------------------
# every input shape gives the same series
# ------------------------------------------------------------------------------------------------
def test_single_series_inputs_agree(tmp_path):
    ref = D.Series("series", Y.copy(), None)
    np.save(tmp_path / "y.npy", Y)
    (tmp_path / "plain.csv").write_text("1\n2\nnan\n4\n5.5\n")  # headerless, one column
    inputs = [Y, list(Y), tuple(Y), pd.Series(Y), pd.DataFrame({"y": Y}), tmp_path / "y.npy",
              str(tmp_path / "plain.csv")]
    for data in inputs:
        (s,) = D.read_series(data)
        _same(s, ref)
        assert len(s) == 5
        assert np.isnan(s.y[2]) and np.isfinite(np.delete(s.y, 2)).all()  # NaN stays where it was


def test_single_named_column_takes_its_name():
    (s,) = D.read_series(pd.DataFrame({"sales": Y}))
    assert s.uid == "sales" and s.ds is None
    np.testing.assert_array_equal(s.y, Y)


def test_dated_series_frame_and_csv_agree(tmp_path):
    ref = D.read_series(pd.Series(Y, index=DS))[0]
    assert ref.uid == "series" and np.issubdtype(ref.ds.dtype, np.datetime64)
    path = tmp_path / "dy.csv"
    pd.DataFrame({"ds": DS.strftime("%Y-%m-%d"), "y": Y}).to_csv(path, index=False)
    for data in (pd.DataFrame({"ds": DS, "y": Y}), path, str(path)):
        (s,) = D.read_series(data)
        _same(s, ref)
    np.testing.assert_array_equal(ref.ds, DS.to_numpy())


def test_panel_inputs_agree(tmp_path):
    a = np.array([1.0, np.nan, 3.0, 4.0])
    b = np.array([10.0, 20.0, 30.0])
    # long format with the rows shuffled: B appears first, rows out of time order
    long = pd.DataFrame({
        "unique_id": ["B", "A", "A", "B", "A", "B", "A"],
        "ds": [DS[2], DS[3], DS[0], DS[0], DS[1], DS[1], DS[2]],
        "y": [30.0, 4.0, 1.0, 10.0, np.nan, 20.0, 3.0],
        "extra": range(7),
    })
    path = tmp_path / "long.csv"
    long.assign(ds=long["ds"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    for data in (long, path):
        got = D.read_series(data)
        assert [s.uid for s in got] == ["B", "A"]  # first-appearance order
        np.testing.assert_array_equal(got[0].y, b)
        np.testing.assert_array_equal(got[1].y, a)
        np.testing.assert_array_equal(got[0].ds, DS[:3].to_numpy())
        np.testing.assert_array_equal(got[1].ds, DS[:4].to_numpy())
        assert np.issubdtype(got[1].ds.dtype, np.datetime64)
    for data, uids in (([a, b], ["0", "1"]), ((a, b), ["0", "1"]), ({"A": a, 7: b}, ["A", "7"])):
        got = D.read_series(data)
        assert [s.uid for s in got] == uids
        np.testing.assert_array_equal(got[0].y, a)
        np.testing.assert_array_equal(got[1].y, b)
        assert got[0].ds is None


def test_numeric_ds_kept_numeric_and_sorted(tmp_path):
    path = tmp_path / "int.csv"
    path.write_text("unique_id,ds,y\nx,3,30\nx,1,10\nx,2,\n")
    (s,) = D.read_series(path)
    assert s.ds.dtype == np.int64
    np.testing.assert_array_equal(s.ds, [1, 2, 3])
    np.testing.assert_array_equal(s.y, [10.0, np.nan, 30.0])
    # numbers written as text are numbers, not dates
    (t,) = D.read_series(pd.DataFrame({"ds": ["1", "2", "4"], "y": [1, 2, 3]}))
    np.testing.assert_array_equal(t.ds, [1, 2, 4])


def test_text_values_that_are_numbers_are_read():
    (s,) = D.read_series(pd.DataFrame({"ds": [1, 2, 3], "y": ["1.5", None, "2e3"]}))
    np.testing.assert_array_equal(s.y, [1.5, np.nan, 2000.0])


# ------------------------------------------------------------------------------------------------
# future timestamps
# ------------------------------------------------------------------------------------------------
def _dates(*xs):
    return np.array(xs, dtype="datetime64[ns]")


def test_monthly_csv_continues_on_month_starts(tmp_path):
    path = tmp_path / "monthly.csv"
    months = pd.date_range("2020-01-01", "2020-11-01", freq="MS")
    pd.DataFrame({"ds": months.strftime("%Y-%m-%d"), "y": np.arange(11.0)}).to_csv(path, index=False)
    (s,) = D.read_series(path)
    assert np.issubdtype(s.ds.dtype, np.datetime64)
    assert s.ds[-1] == np.datetime64("2020-11-01")
    np.testing.assert_array_equal(D.future_ds(s.ds, 3), _dates("2020-12-01", "2021-01-01", "2021-02-01"))
    np.testing.assert_array_equal(D.future_ds(s, 1), _dates("2020-12-01"))  # a Series works too


def test_calendar_steps():
    yearly = pd.date_range("2015-01-01", periods=5, freq="YS").to_numpy()
    np.testing.assert_array_equal(D.future_ds(yearly, 2), _dates("2020-01-01", "2021-01-01"))
    # two yearly dates are too few for infer_freq: the month rule continues them on the calendar
    np.testing.assert_array_equal(D.future_ds(_dates("2018-01-01", "2019-01-01"), 2),
                                  _dates("2020-01-01", "2021-01-01"))
    quarterly = pd.date_range("2020-01-01", periods=4, freq="QS").to_numpy()
    np.testing.assert_array_equal(D.future_ds(quarterly, 2), _dates("2021-01-01", "2021-04-01"))
    # month ends with a missing month stay month ends
    np.testing.assert_array_equal(D.future_ds(_dates("2019-01-31", "2019-02-28", "2019-04-30"), 2),
                                  _dates("2019-05-31", "2019-06-30"))
    # daily with a gap: the median difference (1 day)
    np.testing.assert_array_equal(D.future_ds(_dates("2020-02-27", "2020-02-28", "2020-02-29", "2020-03-02"), 2),
                                  _dates("2020-03-03", "2020-03-04"))
    hourly = pd.date_range("2020-01-01 22:00", periods=3, freq="h").to_numpy()
    np.testing.assert_array_equal(D.future_ds(hourly, 2), np.array(["2020-01-02T01", "2020-01-02T02"],
                                                                     dtype="datetime64[ns]"))


def test_integer_and_unknown_future_ds():
    out = D.future_ds(np.array([3, 5, 7]), 3)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [9, 11, 13])
    np.testing.assert_array_equal(D.future_ds(np.array([2019]), 2), [2020, 2021])
    np.testing.assert_array_equal(D.future_ds(None, 3, n=10), [10, 11, 12])
    assert D.future_ds(None, 3) is None
    np.testing.assert_array_equal(D.future_ds(D.Series("s", np.ones(4)), 2), [4, 5])
    with pytest.raises(ValueError, match="horizon"):
        D.future_ds(np.array([1, 2]), 0)
    with pytest.raises(ValueError, match="single timestamp"):
        D.future_ds(_dates("2020-01-01"), 2)


# ------------------------------------------------------------------------------------------------
# windows, split, scale
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,length,stride", [(10, 4, 1), (10, 4, 3), (23, 7, 5), (8, 8, 2), (30, 1, 4)])
def test_windows_on_a_ramp(n, length, stride):
    W = D.windows(np.arange(n), length, stride)
    assert W.shape == ((n - length) // stride + 1, length)
    np.testing.assert_array_equal(np.diff(W, axis=1), 1)  # consecutive integers
    np.testing.assert_array_equal(W[:, 0], np.arange(0, n - length + 1, stride))
    W[0, 0] = -1  # a copy, not a view of the series
    assert D.windows(np.arange(n), length, stride)[0, 0] == 0


def test_windows_keep_nan():
    y = np.arange(6.0)
    y[3] = np.nan
    W = D.windows(y, 3)
    assert np.isnan(W).sum() == 3 and np.isnan(W[1, 2]) and np.isnan(W[3, 0])


@pytest.mark.parametrize("n,context,horizon", [(20, 5, 3), (8, 5, 3), (100, 1, 1)])
def test_split_context_does_not_leak(n, context, horizon):
    ctx, fut = D.split_context(np.arange(n), context, horizon)
    assert len(ctx) == context and len(fut) == horizon
    assert ctx.max() + 1 == fut.min()
    assert fut[-1] == n - 1
    np.testing.assert_array_equal(np.diff(np.concatenate([ctx, fut])), 1)


def test_mean_abs_scale():
    assert D.mean_abs_scale(np.array([1.0, -3.0, np.nan, 2.0])) == pytest.approx(2.0)
    x = np.array([[1.0, -3.0, np.nan, 2.0],       # (1 + 3 + 2) / 3 = 2
                  [np.nan, np.nan, np.nan, np.nan],  # none observed -> mean of the others
                  [-4.0, 4.0, 4.0, -4.0],           # 4
                  [0.0, 0.0, np.nan, 0.0]])         # zero mean -> mean of the others
    np.testing.assert_allclose(D.mean_abs_scale(x), [2.0, 3.0, 4.0, 3.0])
    assert D.mean_abs_scale(np.full(3, np.nan)) == 1.0
    assert D.mean_abs_scale(np.zeros((2, 3))).tolist() == [1.0, 1.0]
    assert D.mean_abs_scale(np.full(3, 1e-12), min_scale=1e-6) == 1e-6
    assert isinstance(D.mean_abs_scale([1.0, 2.0]), float)


def test_to_long_frame(tmp_path):
    ds = D.future_ds(DS.to_numpy(), 2)
    f = D.to_long_frame("A", ds, {"mean": [1.0, 2.0], "q0.1": [0.5, 1.5]})
    assert list(f.columns) == ["unique_id", "ds", "mean", "q0.1"]
    assert f["unique_id"].tolist() == ["A", "A"]
    path = tmp_path / "fc.csv"
    f.to_csv(path, index=False)
    assert path.read_text().splitlines()[1] == "A,2020-06-01,1.0,0.5"
    (back,) = D.read_series(path, value_col="mean")
    np.testing.assert_array_equal(back.ds, ds)
    with pytest.raises(ValueError, match="'mean'"):
        D.to_long_frame("A", ds, {"mean": [1.0]})


# ------------------------------------------------------------------------------------------------
# bad inputs
# ------------------------------------------------------------------------------------------------
def test_non_numeric_value_names_column_row_and_value(tmp_path):
    y = [str(v) for v in range(30)]
    y[17] = "abc"
    path = tmp_path / "bad.csv"
    pd.DataFrame({"ds": range(30), "y": y}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"column 'y' row 17: 'abc' is not a number") as e:
        D.read_series(path)
    assert str(path) in str(e.value)
    with pytest.raises(ValueError, match=r"position 1: 'x' is not a number"):
        D.read_series([1.0, "x", 2.0])


@pytest.mark.parametrize("fname,content,words", [
    ("missing.csv", None, ["missing.csv", "does not exist"]),
    ("junk.npy", b"not an array at all", ["junk.npy", "cannot read"]),
    ("q.csv", b'a,b\n"1,2\n', ["q.csv", "cannot read"]),
    ("empty.csv", b"", ["empty.csv", "empty"]),
    ("", None, [" directory"]),
])
def test_bad_files_name_the_path(tmp_path, fname, content, words):
    path = tmp_path / fname
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError) as e:
        D.read_series(path)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("data,words", [
    (pd.DataFrame({"unique_id": ["a"], "ds": [1], "value": [2.0]}), ["'y'", "'unique_id'", "'ds'", "'value'"]),
    (np.array([]), ["empty"]),
    ([], ["empty"]),
    ({"a": []}, ["'a'", "empty"]),
    (np.array([np.nan, np.nan]), ["NaN"]),
    (pd.DataFrame({"unique_id": ["a", "b", "b"], "ds": [1, 1, 2], "y": [1.0, np.nan, np.nan]}), ["'b'", "NaN"]),
    (np.zeros((4, 2)), ["2-D", "list of 1-D arrays"]),
    ([1.0, np.inf, 2.0], ["infinite", "position 1"]),
    (pd.DataFrame({"y": [1.0, 2.0, -np.inf]}), ["infinite", "column 'y' row 2"]),
    (pd.DataFrame({"unique_id": ["a", "b", "a"], "ds": ["2020-01-01", "2020-01-01", "2020-01-01"], "y": [1, 2, 3]}),
     ["duplicate", "'a'", "2020-01-01", "rows 0 and 2"]),
    (pd.Series([1.0, 2.0], index=pd.DatetimeIndex(["2020-01-01", "2020-01-01"])), ["duplicate"]),
    (pd.DataFrame({"ds": ["2020-01-01", "t1"], "y": [1, 2]}), ["column 'ds' row 1", "'t1'"]),
    (pd.DataFrame({"unique_id": ["a", None], "y": [1, 2]}), ["column 'unique_id' row 1", "missing"]),
    (pd.DataFrame({"ds": [1.0, np.nan], "y": [1, 2]}), ["column 'ds' row 1", "missing timestamp"]),
    ([1.0, [2.0, 3.0]], ["mixes"]),
    (3.0, ["cannot read"]),
])
def test_bad_data_says_what_is_wrong(data, words):
    with pytest.raises(ValueError) as e:
        D.read_series(data)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


@pytest.mark.parametrize("h", [0, -3, 2.5, True, "x", None, [1]])
def test_bad_horizon(h):
    with pytest.raises(ValueError, match="horizon must be an integer >= 1, got"):
        D.check_horizon(h)


def test_good_horizon():
    assert D.check_horizon(24) == 24 and D.check_horizon(np.int64(3)) == 3
    assert D.check_horizon(6.0) == 6 and D.check_horizon("12") == 12


def test_too_short_messages():
    with pytest.raises(ValueError) as e:
        D.windows(np.zeros(50), 120, context=96, horizon=24, uid="x")
    assert str(e.value) == "series 'x' has 50 points, shorter than one window of 120 (context 96 + horizon 24)"
    with pytest.raises(ValueError, match="shorter"):
        D.windows(np.zeros(3), 4)
    with pytest.raises(ValueError, match="shorter"):
        D.split_context(np.arange(7), 5, 3)
    with pytest.raises(ValueError, match="horizon"):
        D.split_context(np.arange(7), 5, 0)
    with pytest.raises(ValueError, match="stride"):
        D.windows(np.arange(7), 3, 0)
    with pytest.raises(ValueError, match="1-D"):
        D.windows(np.zeros((2, 5)), 3)
