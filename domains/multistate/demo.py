"""The multistate part of ``stochgen demo``: the amortized estimator and the MLE on a simulated panel.

A 500-subject panel of an illness-death chain with recovery (states 1-3 and 4 absorbing, rates per
year), observed about once a year, is simulated with the core's Gillespie sampler
(:func:`domains.multistate.panel.simulate_panel`); the shipped estimator reads it (no optimisation),
then the maximum-likelihood fit starts from its answer. Prints both against the true rates and
draws observed vs expected prevalence over the follow-up every subject has.
"""
from __future__ import annotations

import os
import time
import warnings

import numpy as np

DEMO_Q = np.array([[-0.20, 0.15, 0.0, 0.05], [0.10, -0.40, 0.20, 0.10], [0.0, 0.10, -0.40, 0.30],
                   [0.0, 0.0, 0.0, 0.0]])


def run(domain, out: str, quick: bool = False, seed: int = 0, device: str = "cpu", progress: bool = True) -> list[str]:
    from . import amortized, panel

    if not amortized.default_weights().is_file():
        return [f"no shipped rate estimator at {amortized.default_weights()}; nothing to show"]
    rng = np.random.default_rng(seed)
    n = 500
    times = [np.cumsum(np.r_[0.0, rng.uniform(0.6, 1.4, size=7)]) for _ in range(n)]
    df = panel.simulate_panel(DEMO_Q, times, initial=1, seed=seed)
    qm = np.where(DEMO_Q > 0, 1.0, 0.0)
    domain.estimate_rates(df, qmatrix=qm, seed=seed)  # loads the model
    est = domain.estimate_rates(df, qmatrix=qm, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        fit = panel.fit_panel(df, qmatrix=qm, init=est)
        took = time.perf_counter() - t0
    m = DEMO_Q > 0
    err_net = np.median(np.abs(est.Q[m] / DEMO_Q[m] - 1)) * 100
    err_mle = np.median(np.abs(fit.Q[m] / DEMO_Q[m] - 1)) * 100
    os.makedirs(out, exist_ok=True)
    lo, hi = fit.Q_ci
    pd_rows = [(f"{a} -> {b}", DEMO_Q[r, s], est.Q[r, s], est.lower[r, s], est.upper[r, s], fit.Q[r, s], lo[r, s],
                hi[r, s]) for (r, s), (a, b) in zip(est.transitions, fit.transitions)]
    with open(os.path.join(out, "rates.csv"), "w") as f:
        f.write("transition,true,amortized,amortized_lower,amortized_upper,mle,mle_lower,mle_upper\n")
        f.writelines(f"{row[0]}," + ",".join(f"{v:.6g}" for v in row[1:]) + "\n" for row in pd_rows)
    lines = [f"estimated the 7 intensities of a 4-state chain from a {n}-subject panel ({len(df)} observations) "
             f"in {est.seconds * 1000:.0f} ms with the shipped estimator: median error {err_net:.0f}% "
             f"against the truth",
             f"maximum likelihood started there: {fit.info['iterations']} BFGS iterations, {took:.2f} s, "
             f"median error {err_mle:.0f}%; -2 log L {fit.minus2loglik:.1f}"]
    try:
        # up to the end of the shortest follow-up (beyond it "observed" carries the last state forward)
        horizon = min(float(t[-1]) for t in times)
        fig = fit.plot_prevalence(os.path.join(out, "prevalence.png"), times=np.linspace(0.0, horizon, 17))
        lines.append(f"wrote rates.csv and {os.path.basename(fig)} to {out}")
    except ImportError:
        lines.append(f"wrote rates.csv to {out} (the figure needs matplotlib: pip install matplotlib)")
    return lines
