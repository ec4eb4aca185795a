"""Multi-state panel models: stochgen's ``fit_panel`` vs R's ``msm`` on msm's own data, in one run.

Data: msm's own examples, exported by ``Rscript`` from the Debian package ``r-cran-msm``, each fit by
both libraries on the same data with the same model:

* ``cav`` (622 heart-transplant recipients, 2846 observations, states 1-3 CAV grades and 4 death), the
  manual's model (transitions 1-2, 1-4, 2-1, 2-3, 2-4, 3-2, 3-4 and its initial values): ``death
  exact`` (msm ``deathexact = 4``), ``panel`` (death observed at the panel times too), ``death exact +
  sex`` (``covariates = ~ sex``; the 2-4 coefficient is not identified in these data: both libraries
  drive it towards minus infinity, so the Q entries at the covariate means are compared only where
  their hazard ratio has a finite interval);
* ``psor`` (psoriatic arthritis, 305 patients, 4 progressive states of damaged joints), alone and with
  ``covariates = ~ ollwsdrt + hieffusn`` (unconstrained; observations with a missing covariate are
  dropped, as msm's ``na.action`` does);
* ``bos3`` (bronchiolitis obliterans syndrome after lung transplant, 204 patients, 3 states, death
  exact): the 1-3 intensity's MLE is on the boundary (0); intensities whose interval spans more than
  6 decades in either fit are left out of the comparison (both optimisers stop somewhere near 0).

Printed per fit: -2 log L of each, the largest relative difference of the Q entries and of the 95%
interval bounds (msm's delta-method intervals), and the CPU seconds of each fit (msm: ``proc.time``
around the ``msm()`` call only; ours: ``time.process_time`` around ``fit_panel``, data preparation
included, on ``--threads`` torch threads), with the ratio.

Run:  apt-get install -y r-base-core r-cran-msm
      python benchmarks/bench_multistate.py [--threads 1] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

Q0 = [[0, 0.25, 0, 0.25], [0.166, 0, 0.166, 0.166], [0, 0.25, 0, 0.25], [0, 0, 0, 0]]
PSOR_Q = [[0, 0.1, 0, 0], [0, 0, 0.1, 0], [0, 0, 0, 0.1], [0, 0, 0, 0]]
BOS_Q = [[0, 0.0005, 0.0005], [0, 0, 0.0005], [0, 0, 0]]
# name: (data set, time column, subject column, qmatrix, our options, msm's extra arguments)
FITS = {"cav, death exact": ("cav", "years", "PTNUM", Q0, {"death_exact": [4]}, ", deathexact=4"),
        "cav, panel": ("cav", "years", "PTNUM", Q0, {}, ""),
        "cav, death exact + sex": ("cav", "years", "PTNUM", Q0, {"death_exact": [4], "covariates": ["sex"]},
                                   ", deathexact=4, covariates=~sex"),
        "psor": ("psor", "months", "ptnum", PSOR_Q, {}, ""),
        "psor + 2 covariates": ("psor", "months", "ptnum", PSOR_Q, {"covariates": ["ollwsdrt", "hieffusn"]},
                                ", covariates=~ollwsdrt+hieffusn"),
        "bos3, death exact": ("bos3", "time", "ptnum", BOS_Q, {"death_exact": [3]}, ", deathexact=3")}


def _r_matrix(Q) -> str:
    return "rbind(" + ", ".join("c(" + ", ".join(repr(float(v)) for v in row) + ")" for row in Q) + ")"


def run_msm(tmp: str, repeats: int) -> dict:
    sets = sorted({v[0] for v in FITS.values()})
    lines = ["suppressMessages(library(msm))"] + [f'write.csv({d}, "{tmp}/{d}.csv", row.names=FALSE)' for d in sets]
    for k, (name, (data, tcol, scol, Q, _, extra)) in enumerate(FITS.items()):
        lines += [f"Q <- {_r_matrix(Q)}",
                  f"best <- Inf; for (i in 1:{repeats}) {{ t0 <- proc.time(); "
                  f"m <- msm(state ~ {tcol}, subject={scol}, data={data}, qmatrix=Q{extra}); d <- proc.time() - t0; "
                  f"best <- min(best, d[1] + d[2]) }}",
                  "q <- qmatrix.msm(m, ci='delta')",
                  f'write.csv(q$estimates, "{tmp}/Q{k}.csv"); write.csv(q$L, "{tmp}/L{k}.csv"); '
                  f'write.csv(q$U, "{tmp}/U{k}.csv")',
                  f'writeLines(c(sprintf("%.8f", m$minus2loglik), sprintf("%.4f", best)), "{tmp}/m{k}.txt")']
    subprocess.run(["Rscript", "-e", "\n".join(lines)], check=True)
    import pandas as pd

    out = {}
    for k, name in enumerate(FITS):
        read = lambda n: pd.read_csv(f"{tmp}/{n}{k}.csv", index_col=0).to_numpy()  # noqa: E731
        m2ll, secs = (float(v) for v in open(f"{tmp}/m{k}.txt").read().split())
        out[name] = {"Q": read("Q"), "L": read("L"), "U": read("U"), "m2ll": m2ll, "cpu_s": secs}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="fits per library and model; the fastest is reported")
    args = p.parse_args(argv)
    if shutil.which("Rscript") is None:
        sys.exit("Rscript not found: apt-get install -y r-base-core r-cran-msm")
    import numpy as np
    import torch

    from domains.multistate.panel import fit_panel

    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix="bench_msm_")
    ref = run_msm(tmp, args.repeats)
    import pandas as pd

    print(f"torch {torch.__version__}, {args.threads} thread(s); best of {args.repeats} fits each")
    print(f"{'model':24s} {'-2LL msm':>12s} {'-2LL ours':>12s} {'max rel Q':>10s} {'max rel CI':>10s} "
          f"{'msm CPU s':>10s} {'ours CPU s':>10s} {'ratio':>6s}")
    for name, (data, tcol, scol, Q, kw, _) in FITS.items():
        df = pd.read_csv(f"{tmp}/{data}.csv")
        if kw.get("covariates"):  # msm drops observations with a missing covariate (na.action = na.omit)
            df = df.dropna(subset=kw["covariates"])
        best, fit = float("inf"), None
        for _ in range(args.repeats):
            c0 = time.process_time()
            fit = fit_panel(df, subject=scol, time=tcol, state="state", qmatrix=Q, **kw)
            best = min(best, time.process_time() - c0)
        r = ref[name]
        mask = r["Q"] != 0
        # an intensity whose interval spans more than 6 decades in either fit is not identified by the data
        # (its MLE is on the boundary, 0): both optimisers stop somewhere near it; left out of the comparison
        lo_, hi_ = fit.Q_ci
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            flat = ((hi_ / np.maximum(lo_, 1e-300) > 1e6) | (r["U"] / np.where(r["L"] == 0, 1e-300, r["L"]) > 1e6)) \
                & ~np.eye(len(Q), dtype=bool) & mask
        for i, j in zip(*np.nonzero(flat)):
            mask[i, j] = mask[i, i] = False
        if fit.covariates:
            hr = fit.hazard_ratios()
            finite = {tr for c in hr.values() for tr, (_, lo, hi) in c.items() if hi / max(lo, 1e-300) < 1e6}
            for i, a in enumerate(fit.states):
                for j, b in enumerate(fit.states):
                    if i != j and mask[i, j] and (a, b) not in finite:
                        mask[i, j] = mask[i, i] = False
        rel_q = float(np.abs(fit.Q[mask] / r["Q"][mask] - 1).max())
        rel_ci = float(max(np.abs(fit.Q_ci[0][mask] / r["L"][mask] - 1).max(),
                           np.abs(fit.Q_ci[1][mask] / r["U"][mask] - 1).max()))
        print(f"{name:24s} {r['m2ll']:12.4f} {fit.minus2loglik:12.4f} {rel_q:10.2e} {rel_ci:10.2e} "
              f"{r['cpu_s']:10.3f} {best:10.3f} {best / r['cpu_s']:6.2f}")
    print("ratio: our CPU seconds / msm's (below 1: faster)")


if __name__ == "__main__":
    main()
