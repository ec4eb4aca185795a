"""Probabilistic forecasting: stochgen's time-series domain vs statsforecast baselines, in one run.

Data: the offline series of ``domains.timeseries.datasets`` (files inside statsmodels, pmdarima
and sktime), each with its own season length ``m`` and horizon ``h``. Rolling origin: the last
``--windows`` (default 5) non-overlapping windows of length ``h`` at the end of each series;
each window is forecast from all the history before it.

Methods:
* ``SeasonalNaive``, ``AutoETS``, ``AutoARIMA`` (statsforecast, ``season_length=m``), refit on
  the history before every window. Quantiles 0.1..0.9 from their prediction intervals:
  levels 20, 40, 60, 80 give the lo/hi pairs (0.4/0.6, 0.3/0.7, 0.2/0.8, 0.1/0.9) and 0.5 is
  the point forecast (``mean``).
* ``ours``: ``dom = stochgen.domain("timeseries", season=m, horizon=h)``; ``model =
  stochgen.fit(dom, history)`` once per series on all data before the first window, with the
  default training settings (``--fit-opts JSON`` adds keyword arguments); then per window
  ``dom.forecast(history_values, model=model, num_samples=100)`` (``--ours-opts JSON`` adds
  keyword arguments; by default that refines seasonal naive paths, ``--ours-opts '{"base": null}'``
  samples from the model alone). Quantiles and the point forecast (median) from the 100 sample paths.
  ``--no-ours`` runs the baselines only.
* ``ours-refine(B)`` (``--refine B[,B2]``, default ``SeasonalNaive``; ``--refine none`` for
  none): TSDiff's refinement of baseline B's forecast by our model, ``dom.refine(history,
  base, model=model, method="sdedit", strength=--refine-strength)`` (default 2.0), where
  ``base`` is 100 paths drawn from B's Gaussian predictive marginals (mean, and the standard
  deviation of its 80% interval; independent across steps). Its CPU time adds B's.
  ``--refine seasonal-naive``: the base paths of ``stochgen forecast --refine seasonal-naive``
  (:func:`domains.timeseries.baselines.seasonal_naive_paths`, a bootstrap of seasonal differences).
* ``ours-selfguided`` (``--selfguided``): the same, with ``mode="unconditional"`` (TSDiff's
  self-guidance; a second training run per series).
* ``zeroshot`` (``--zeroshot shipped``, or ``--zeroshot DIR0,DIR1``): no training on the series:
  ``dom.forecast(history, model=Z, num_samples=100)`` with the shipped model across series
  (``domains/timeseries/weights/zeroshot.safetensors``, which saw every series' history before
  its first window), or, for a series of fold ``k`` (``examples/timeseries/train_zeroshot.py``'s
  ``fold_of``), the checkpoint ``DIRk/train.ckpt`` trained without fold ``k``'s series: a model
  that never saw the series.

Metrics (``domains.timeseries.metrics``), each the plain mean over the windows: wQL (mean
weighted quantile loss over the levels 0.1..0.9), coverage of the 80% interval [q0.1, q0.9],
MASE of the point forecast (scale: lag-``m`` differences of the window's history), and CPU
seconds per window (``time.process_time``: baselines fit + forecast; ours forecast only, its
one training run per series is shown as ``fit s``). Each model is warmed up once on a
synthetic series before timing. Last lines: ours' wQL / the best baseline's wQL per series.

Run:  pip install statsmodels pmdarima sktime statsforecast
      python benchmarks/bench_forecast.py --no-ours           # baselines, every series
      python benchmarks/bench_forecast.py --quick             # 2 series, 2 windows
      python benchmarks/bench_forecast.py --series airline,nile --json out.json \\
          --fit-opts '{"steps": 2000}' --ours-opts '{"num_samples": 200}'
Progress goes to stderr, the table to stdout. Runtime of ``--no-ours`` on all 15 series, 5
windows, on a busy 2-core CPU: ~11 min, of which ~6 min is AutoARIMA on solar (m = 48) and
~2 min AutoARIMA on elnino (720 values, m = 12); ``--quick --no-ours``: ~20 s; all 15 series with
ours and ``--refine SeasonalNaive``: 13.5 min (2026-12-02, one thread).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from domains.timeseries import datasets  # noqa: E402
from domains.timeseries import metrics  # noqa: E402

LEVELS = (20, 40, 60, 80)  # prediction-interval levels that give the quantiles 0.1..0.9
QUANTILES = tuple(round(0.1 * k, 1) for k in range(1, 10))
BASELINES = ("SeasonalNaive", "AutoETS", "AutoARIMA")
QUICK_SERIES = ("airline", "nile")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def quantiles_from_intervals(fc: dict) -> np.ndarray:
    """``(9, H)`` quantiles 0.1..0.9 from statsforecast's ``mean`` and ``lo-L`` / ``hi-L`` arrays."""
    lo = [np.asarray(fc[f"lo-{L}"], float) for L in reversed(LEVELS)]  # 0.1, 0.2, 0.3, 0.4
    hi = [np.asarray(fc[f"hi-{L}"], float) for L in LEVELS]            # 0.6, 0.7, 0.8, 0.9
    return np.stack(lo + [np.asarray(fc["mean"], float)] + hi)


def make_baseline(name: str, m: int):
    from statsforecast import models as sfm
    if name == "SeasonalNaive":
        return sfm.SeasonalNaive(season_length=m)
    if name == "AutoETS":
        return sfm.AutoETS(season_length=m)
    if name == "AutoARIMA":
        return sfm.AutoARIMA(season_length=m)
    raise ValueError(name)


def warm_up(m: int, h: int) -> None:
    """One untimed call of every baseline, so that one-off start-up costs stay out of the timings."""
    t = np.arange(max(6 * m, 60), dtype=float)
    y = 10 + 0.05 * t + np.sin(2 * np.pi * t / max(m, 2)) + np.random.default_rng(0).normal(0, 0.3, t.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in BASELINES:
            make_baseline(name, m).forecast(y=y, h=h, level=list(LEVELS))


def windows_of(n: int, h: int, k: int) -> list[int]:
    """Start indices of the last ``k`` non-overlapping windows of length ``h`` in ``n`` values."""
    starts = [n - j * h for j in range(k, 0, -1)]
    if starts[0] < 2:
        raise ValueError(f"{k} windows of {h} leave no history in {n} values")
    return starts


def score(y, q: np.ndarray, point: np.ndarray, history: np.ndarray, m: int, samples=None) -> dict:
    """wQL, 80% coverage and MASE of one window (NaN with a warning where a metric is undefined)."""
    out = {}
    for key, fn in (("wql", lambda: metrics.wql(y, q, kind="quantiles")),
                    ("coverage80", lambda: metrics.coverage(y, q[0], q[-1])),
                    ("mase", lambda: metrics.mase(y, point, history, season=m))):
        try:
            out[key] = float(fn())
        except ValueError as e:
            log(f"    {key} undefined: {e}")
            out[key] = float("nan")
    if samples is not None:
        try:
            out["crps"] = float(metrics.crps(y, samples))
        except ValueError as e:
            log(f"    crps undefined: {e}")
            out["crps"] = float("nan")
    return out


def run_baselines(name: str, y: np.ndarray, starts: list[int], m: int, h: int) -> dict[str, list[dict]]:
    res = {b: [] for b in BASELINES}
    for w, s in enumerate(starts):
        hist, truth = y[:s], y[s:s + h]
        for b in BASELINES:
            model = make_baseline(b, m)
            t0 = time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fc = model.forecast(y=hist, h=h, level=list(LEVELS))
            cpu = time.process_time() - t0
            q = quantiles_from_intervals(fc)
            r = score(truth, q, q[4], hist, m)
            r["cpu_s"] = cpu
            res[b].append(r)
            log(f"  {name} window {w + 1}/{len(starts)} {b:13s} wQL {r['wql']:.4f}  cpu {cpu:.2f}s")
    return res


def _timeseries_domain(**settings):
    import stochgen
    try:
        return stochgen.domain("timeseries", **settings)
    except ValueError as e:
        if "unknown domain" not in str(e):
            raise
        # Not (yet) installed as a "stochgen.domains" entry point: importing the plug-in registers it in-process.
        import domains.timeseries.domain  # noqa: F401
        return stochgen.domain("timeseries", **settings)


def base_paths(fc: dict, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, H)`` draws from a baseline's Gaussian predictive marginals: its mean and the standard
    deviation implied by its 80% interval (statsforecast's intervals are Gaussian)."""
    mu = np.asarray(fc["mean"], float)
    sd = (np.asarray(fc["hi-80"], float) - np.asarray(fc["lo-80"], float)) / (2 * 1.2815515655446004)
    return mu + np.maximum(sd, 0.0) * rng.standard_normal((n, mu.size))


def run_ours(name: str, df, y: np.ndarray, starts: list[int], m: int, h: int, fit_opts: dict,
             ours_opts: dict, refine: tuple[str, ...] = (), strength: float = 2.0, selfguided: bool = False,
             dom_opts: dict | None = None) -> tuple[dict[str, list[dict]], dict[str, float]]:
    import stochgen
    train = df.iloc[:starts[0]].reset_index(drop=True)
    out, fits = {}, {}
    for label, mode in (("ours", "conditional"),) + ((("ours-selfguided", "unconditional"),) if selfguided else ()):
        dom = _timeseries_domain(season=m, horizon=h, mode=mode, **(dom_opts or {}))
        log(f"  {name}: fitting {label} on {len(train)} values (fit options {fit_opts or 'default'})")
        t0 = time.process_time()
        model = stochgen.fit(dom, train, **fit_opts)
        fits[label] = time.process_time() - t0
        log(f"  {name}: fit took {fits[label]:.1f} CPU s")
        opts = {"num_samples": 100, **ours_opts}
        for w, s in enumerate(starts):
            hist, truth = y[:s], y[s:s + h]
            t0 = time.process_time()
            samples = np.asarray(dom.forecast(hist, model=model, **opts), dtype=float)
            cpu = time.process_time() - t0
            if samples.ndim != 2 or samples.shape[1] != h:
                raise RuntimeError(f"ours returned shape {samples.shape}, expected (num_samples, {h})")
            q = metrics.sample_quantiles(samples, QUANTILES)
            r = score(truth, q, np.median(samples, axis=0), hist, m, samples=samples)
            r["cpu_s"] = cpu
            out.setdefault(label, []).append(r)
            log(f"  {name} window {w + 1}/{len(starts)} {label:13s} wQL {r['wql']:.4f}  cpu {cpu:.2f}s")
            if mode != "conditional":
                continue
            for b in refine:
                t0 = time.process_time()
                if b == "seasonal-naive":  # the numpy bootstrap of `stochgen forecast --refine seasonal-naive`
                    from domains.timeseries.baselines import seasonal_naive_paths
                    base = seasonal_naive_paths(hist, m, h, opts["num_samples"], seed=w)
                else:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fc = make_baseline(b, m).forecast(y=hist, h=h, level=list(LEVELS))
                    base = base_paths(fc, opts["num_samples"], np.random.default_rng(w))
                samples = dom.refine(hist, base, model=model, method="sdedit", strength=strength, seed=w)
                cpu = time.process_time() - t0
                q = metrics.sample_quantiles(samples, QUANTILES)
                r = score(truth, q, np.median(samples, axis=0), hist, m, samples=samples)
                r["cpu_s"] = cpu
                key = f"ours-refine({b})"
                out.setdefault(key, []).append(r)
                log(f"  {name} window {w + 1}/{len(starts)} {key:13s} wQL {r['wql']:.4f}  cpu {cpu:.2f}s")
    return out, fits


def run_zeroshot(name: str, y: np.ndarray, starts: list[int], m: int, h: int, spec: str) -> list[dict]:
    import stochgen
    if spec == "shipped":
        model, what = "zeroshot", "the shipped zero-shot model"
    else:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                                        "timeseries"))
        from train_zeroshot import fold_of
        dirs = spec.split(",")
        if len(dirs) != 2:
            raise SystemExit("--zeroshot takes 'shipped' or two run folders DIR0,DIR1 (trained without folds 0, 1)")
        k = fold_of(name)
        path = os.path.join(dirs[k], "train.ckpt")
        model, what = stochgen.load(path), f"{path} (never saw fold {k})"
    dom = _timeseries_domain(season=m, horizon=h)
    log(f"  {name}: zero-shot with {what}")
    out = []
    for w, s in enumerate(starts):
        hist, truth = y[:s], y[s:s + h]
        t0 = time.process_time()
        samples = np.asarray(dom.forecast(hist, model=model, num_samples=100), dtype=float)
        cpu = time.process_time() - t0
        q = metrics.sample_quantiles(samples, QUANTILES)
        r = score(truth, q, np.median(samples, axis=0), hist, m, samples=samples)
        r["cpu_s"] = cpu
        out.append(r)
        log(f"  {name} window {w + 1}/{len(starts)} {'zeroshot':13s} wQL {r['wql']:.4f}  cpu {cpu:.2f}s")
    return out


def _fit_of(fits: dict, method: str):
    """The training CPU seconds behind ``method``: its own run, or for a refinement the conditional model's."""
    return fits.get(method, fits.get("ours") if method.startswith("ours") else None)


def _mean(rows: list[dict], key: str) -> float:
    v = [r[key] for r in rows if key in r and math.isfinite(r[key])]
    return float(np.mean(v)) if v else float("nan")


def _fmt(x: float, nd: int = 3) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def _finite_or_none(x):
    """``x`` with NaN / inf floats replaced by None, so that the JSON file is strict JSON."""
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", default=None, help="comma-separated names (default: all of datasets.SERIES)")
    ap.add_argument("--windows", type=int, default=5, help="rolling-origin windows per series (default 5)")
    ap.add_argument("--quick", action="store_true", help=f"{', '.join(QUICK_SERIES)} with 2 windows")
    ap.add_argument("--no-ours", action="store_true", help="baselines only")
    ap.add_argument("--fit-opts", default="{}", help="JSON keyword arguments for stochgen.fit")
    ap.add_argument("--ours-opts", default="{}", help="JSON keyword arguments for dom.forecast")
    ap.add_argument("--refine", default="SeasonalNaive",
                    help="baselines whose forecasts our model refines (comma-separated, or 'none')")
    ap.add_argument("--refine-strength", type=float, default=2.0, help="refinement noise level (default 2.0)")
    ap.add_argument("--selfguided", action="store_true", help="also train and run the self-guided model")
    ap.add_argument("--zeroshot", default=None, metavar="shipped|DIR0,DIR1",
                    help="also the zero-shot model: the shipped one, or the two fold runs of train_zeroshot.py")
    ap.add_argument("--domain-opts", default="{}", help="JSON settings for stochgen.domain('timeseries', ...)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for ours (default 1)")
    ap.add_argument("--json", default=None, help="write the results as JSON to this file")
    args = ap.parse_args(argv)

    fit_opts, ours_opts, dom_opts = json.loads(args.fit_opts), json.loads(args.ours_opts), json.loads(args.domain_opts)
    if not all(isinstance(o, dict) for o in (fit_opts, ours_opts, dom_opts)):
        ap.error("--fit-opts, --ours-opts and --domain-opts take a JSON object")
    refine = () if args.refine.strip().lower() in ("", "none") else tuple(b.strip() for b in args.refine.split(","))
    bad = [b for b in refine if b not in BASELINES + ("seasonal-naive",)]
    if bad:
        ap.error(f"--refine: unknown baseline {', '.join(bad)}; choose from {', '.join(BASELINES)}, seasonal-naive")
    if args.quick:
        names, k = list(QUICK_SERIES), 2
    else:
        names, k = (args.series.split(",") if args.series else datasets.names()), args.windows
    names = [n.strip() for n in names if n.strip()]
    if args.series and args.quick:
        names = [n.strip() for n in args.series.split(",") if n.strip()]
    unknown = [n for n in names if n not in datasets.SERIES]
    if unknown:
        ap.error(f"unknown series {', '.join(unknown)}; known: {', '.join(datasets.names())}")
    if k < 1:
        ap.error("--windows must be >= 1")
    if not args.no_ours:
        import torch
        torch.set_num_threads(args.threads)

    t_start = time.time()
    results = []
    for name in names:
        e = datasets.SERIES[name]
        m, h = int(e["season"]), int(e["horizon"])
        df = datasets.load(name)
        y = df["y"].to_numpy(dtype=float)
        starts = windows_of(len(y), h, k)
        log(f"{name}: {len(y)} values, season {m}, horizon {h}, {k} windows from index {starts[0]}")
        warm_up(m, h)
        per = run_baselines(name, y, starts, m, h)
        fits = {}
        if not args.no_ours:
            ours, fits = run_ours(name, df, y, starts, m, h, fit_opts, ours_opts, refine, args.refine_strength,
                                  args.selfguided, dom_opts)
            per.update(ours)
        if args.zeroshot:
            per["zeroshot"] = run_zeroshot(name, y, starts, m, h, args.zeroshot)
        for method, rows in per.items():
            mine = method.startswith("ours") or method == "zeroshot"
            results.append(dict(series=name, method=method, season=m, horizon=h, length=len(y), windows=k,
                                wql=_mean(rows, "wql"), coverage80=_mean(rows, "coverage80"),
                                mase=_mean(rows, "mase"), crps=_mean(rows, "crps") if mine else None,
                                cpu_s_per_window=_mean(rows, "cpu_s"),
                                fit_cpu_s=_fit_of(fits, method) if mine else None, per_window=rows))
    wall = time.time() - t_start

    ratios = {}  # {method: {series: {best_baseline, ratio}}}
    for name in names:
        base = [r for r in results if r["series"] == name and r["method"] in BASELINES and math.isfinite(r["wql"])]
        if not base:
            continue
        best = min(base, key=lambda r: r["wql"])
        for r in results:
            if r["series"] == name and (r["method"].startswith("ours") or r["method"] == "zeroshot"):
                ratios.setdefault(r["method"], {})[name] = dict(best_baseline=best["method"],
                                                                ratio=r["wql"] / best["wql"])

    print(f"\nRolling origin, {k} window(s) per series; means over windows; CPU s per window "
          f"(python {platform.python_version()}, statsforecast {_version('statsforecast')})")
    hdr = (f"{'series':12s} {'m':>3s} {'h':>3s} {'method':26s} {'wQL':>7s} {'cov80':>6s} {'MASE':>7s} "
           f"{'CPU s/win':>9s} {'fit s':>7s}")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        fit = _fmt(r["fit_cpu_s"], 1) if r["fit_cpu_s"] is not None else ""
        print(f"{r['series']:12s} {r['season']:3d} {r['horizon']:3d} {r['method']:26s} {_fmt(r['wql'], 4):>7s} "
              f"{_fmt(r['coverage80'], 2):>6s} {_fmt(r['mase'], 3):>7s} {_fmt(r['cpu_s_per_window'], 3):>9s} {fit:>7s}")
    for method, per_series in ratios.items():
        print(f"\n{method} wQL / best baseline wQL")
        for name, v in per_series.items():
            print(f"  {name:12s} {_fmt(v['ratio'], 3)}  (best: {v['best_baseline']})")
        finite = [v["ratio"] for v in per_series.values() if math.isfinite(v["ratio"])]
        if finite:
            wins = sum(v < 1 for v in finite)
            print(f"  geometric mean {float(np.exp(np.mean(np.log(finite)))):.3f} over {len(finite)} series; "
                  f"below 1 on {wins}")
    zs = {r["series"]: r["wql"] for r in results if r["method"] == "zeroshot"}
    if zs:
        print("\nzeroshot wQL / SeasonalNaive wQL")
        rs = []
        for r in results:
            if r["method"] == "SeasonalNaive" and r["series"] in zs and r["wql"] > 0:
                rs.append(zs[r["series"]] / r["wql"])
                print(f"  {r['series']:12s} {_fmt(rs[-1], 3)}")
        if rs:
            print(f"  geometric mean {float(np.exp(np.mean(np.log(rs)))):.3f}; below 1 on {sum(v < 1 for v in rs)} "
                  f"of {len(rs)}")
    print(f"\ntotal wall time {wall:.1f} s")

    if args.json:
        meta = dict(windows=k, series=names, ours=not args.no_ours, fit_opts=fit_opts, ours_opts=ours_opts,
                    domain_opts=dom_opts, refine=list(refine), refine_strength=args.refine_strength,
                    selfguided=args.selfguided, zeroshot=args.zeroshot,
                    threads=args.threads, wall_s=wall, python=platform.python_version(),
                    versions={d: _version(d) for d in ("statsforecast", "statsmodels", "pmdarima", "sktime",
                                                       "numpy", "pandas", "torch")})
        with open(args.json, "w") as f:
            json.dump(_finite_or_none(dict(meta=meta, results=results, ratios=ratios)), f, indent=1)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
