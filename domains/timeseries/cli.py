"""The timeseries domain's command: ``stochgen forecast CKPT SERIES.csv -o forecast.csv``."""
from __future__ import annotations

import os

import numpy as np

__all__ = ["add_verbs", "run_forecast", "plot_fan", "quantile_frame"]

_DESCRIPTION = (
    "Probabilistic forecast of every series in SERIES (a CSV in the long unique_id, ds, y format, or a ds, y / "
    "single-column file) with a model trained by stochgen.fit on the timeseries domain. Writes, per series and "
    "step, the mean and the quantiles 0.1 .. 0.9 of the sample paths (long format: unique_id, ds, mean, q0.1, "
    "..., q0.9). --holdout H forecasts the last H values of each series from the values before them, prints "
    "their weighted quantile loss, MASE and 80% coverage, and draws the truth in the fan chart.")
_PLOT_SUFFIXES = (".png", ".pdf", ".svg")
LEVELS = tuple(round(0.1 * k, 1) for k in range(1, 10))


def add_verbs(subparsers) -> None:
    """Add ``forecast`` to ``subparsers``."""
    from stochgen.cli import positive_int, seed_int, verb_parser

    p = verb_parser(subparsers, "forecast", help="probabilistic forecast of a series (timeseries diffusion model)",
                    description=_DESCRIPTION)
    p.add_argument("model", metavar="CKPT", help="a timeseries model (stochgen.fit(domain, history).save(...)), "
                   "or 'zeroshot': the shipped model trained across many series")
    p.add_argument("series", metavar="SERIES.csv", help="the history: unique_id, ds, y (or ds, y) CSV")
    p.add_argument("--horizon", metavar="H", type=positive_int, default=None,
                   help="steps to forecast (default: the model's horizon; longer ones roll forward)")
    p.add_argument("-n", "--samples", metavar="N", type=positive_int, default=100, help="sample paths (default 100)")
    p.add_argument("-o", "--output", metavar="forecast.csv", required=True, help="write the quantiles here (CSV)")
    p.add_argument("--plot", metavar="fan.png", default=None, help="fan chart of history, bands and truth")
    p.add_argument("--holdout", metavar="H", type=positive_int, default=None,
                   help="forecast the last H values of each series from the rest and score them")
    p.add_argument("--base", choices=("auto", "seasonal-naive", "none"), default="auto",
                   help="auto (default): a conditional model refines seasonal naive paths (TSDiff refinement), "
                   "an unconditional one samples from noise; none: sample from the model alone")
    p.add_argument("--refine-strength", metavar="S", type=float, default=2.0,
                   help="refinement noise level in units of the context's scale (default 2.0)")
    p.add_argument("--season", metavar="M", type=positive_int, default=None,
                   help="season length of the seasonal naive base and --holdout's MASE (default: the model's)")
    p.add_argument("--steps", metavar="N", type=positive_int, default=None, help="sampler steps (default: the model's)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.set_defaults(func=run_forecast)


def quantile_frame(uid: str, ds, samples: np.ndarray):
    """The long-format rows of one forecast: ``unique_id, ds, mean, q0.1 .. q0.9``."""
    from .data import to_long_frame

    cols = {"mean": samples.mean(axis=0)}
    qs = np.quantile(samples, LEVELS, axis=0)
    for q, v in zip(LEVELS, qs):
        cols[f"q{q}"] = v
    return to_long_frame(uid, ds, cols)


def plot_fan(path: str, panels: list[dict]) -> str:
    """Fan charts (one panel per series): the last history, the 10-90 / 20-80 / 30-70 / 40-60% bands,
    the median and, when known, the truth. ``panels``: dicts with ``uid, history, samples, truth``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(panels)
    fig, axes = plt.subplots(k, 1, figsize=(9, 2.8 * k), squeeze=False)
    for ax, p in zip(axes[:, 0], panels):
        hist, smp = np.asarray(p["history"], float), np.asarray(p["samples"], float)
        show = hist[-max(3 * smp.shape[1], 48):]
        x0 = len(show)
        ax.plot(np.arange(x0), show, color="k", lw=1.0, label="history")
        xf = np.arange(x0, x0 + smp.shape[1])
        for lo, alpha in ((0.1, 0.15), (0.2, 0.2), (0.3, 0.25), (0.4, 0.3)):
            a, b = np.quantile(smp, [lo, 1 - lo], axis=0)
            ax.fill_between(xf, a, b, color="tab:blue", alpha=alpha, lw=0,
                            label=f"{int(lo * 100)}-{int(100 - lo * 100)}%" if lo in (0.1, 0.4) else None)
        ax.plot(xf, np.median(smp, axis=0), color="tab:blue", lw=1.3, label="median")
        if p.get("truth") is not None:
            ax.plot(xf, p["truth"], color="tab:red", lw=1.2, label="truth")
        ax.set_title(str(p["uid"]), fontsize=10)
        ax.legend(loc="upper left", fontsize=7, ncol=5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_forecast(args) -> int:
    import pandas as pd

    import stochgen
    from stochgen.cli import CLIError, check_output

    from . import data as D
    from . import metrics as M

    check_output(args.output, "forecast")
    if args.plot is not None:
        if os.path.splitext(args.plot)[1].lower() not in _PLOT_SUFFIXES:
            raise CLIError(f"--plot {args.plot}: the figure must be a {' / '.join(_PLOT_SUFFIXES)} file")
        check_output(args.plot, "figure")
    if args.model == "zeroshot":  # the shipped model across many series
        from . import zeroshot

        try:
            model = zeroshot.load()
        except FileNotFoundError as exc:
            raise CLIError(str(exc)) from None
    elif not os.path.isfile(args.model):
        raise CLIError(f"model {args.model}: no such file (or 'zeroshot' for the shipped zero-shot model)")
    else:
        model = stochgen.load(args.model)
    dom = model.domain
    if getattr(dom, "name", None) != "timeseries":
        raise CLIError(f"{args.model} is a {getattr(dom, 'name', '?')!r} model, not a timeseries one")
    try:
        series = D.read_series(args.series)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    frames, panels = [], []
    for s in series:
        y, ds = s.y, s.ds
        truth = None
        H = args.holdout or args.horizon or dom.horizon
        if args.holdout:
            if len(y) <= args.holdout + 2:
                raise CLIError(f"series {s.uid!r} has {len(y)} points: too short to hold out {args.holdout}")
            y, truth = y[: -args.holdout], y[-args.holdout:]
            ds_out = None if ds is None else ds[len(y):]
        else:
            ds_out = D.future_ds(ds, H)
        caller = dom if not args.season else stochgen.domain("timeseries", season=args.season, horizon=dom.horizon)
        try:
            samples = caller.forecast(y, model=model, num_samples=args.samples, seed=args.seed, steps=args.steps,
                                   horizon=H, base=None if args.base == "none" else args.base,
                                   refine_strength=args.refine_strength)
        except ValueError as exc:
            raise CLIError(f"series {s.uid!r}: {exc}") from None
        if ds_out is None:
            ds_out = np.arange(len(y), len(y) + H)
        frames.append(quantile_frame(s.uid, ds_out, samples))
        if truth is not None:
            sc = M.summary(truth, samples, y, args.season or dom.season)
            print(f"{s.uid}: wQL {sc['wql']:.4f}  CRPS {sc['crps']:.4g}  MASE {sc['mase']:.3f}  "
                  f"80% coverage {sc['coverage80']:.2f}")
        panels.append({"uid": s.uid, "history": y, "samples": samples, "truth": truth})
    out = pd.concat(frames, ignore_index=True)
    tmp = args.output + ".tmp"
    out.to_csv(tmp, index=False)
    os.replace(tmp, args.output)
    print(f"wrote {args.output} ({len(out)} rows: {len(series)} series x {H} steps)")
    if args.plot:
        print(f"wrote {plot_fan(args.plot, panels)}")
    return 0
