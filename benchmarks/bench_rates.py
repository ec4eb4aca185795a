"""The amortized rate estimator (issue 13) against the maximum-likelihood fit, on held-out simulated panels and cav.

Held-out sets: ``--sets`` generators drawn by :func:`domains.multistate.amortized.random_generator` with
seed ``--seed`` (the training sets use seed 0 and their own stream), each observed for ``--subjects``
subjects by :func:`~domains.multistate.amortized.simulate_intervals` (no misclassification, so the
MLE's model is the true one). For every set:

* ``net``: ``estimate_rates`` (the shipped model unless ``--model``; ``--samples`` posterior draws),
  wall time per set (the first call, which loads the model, excluded);
* ``mle``: ``fit_panel`` from msm's crude initial values (transitions counted between consecutive
  observations over the time spent in the starting state, :func:`crude_init`), and again from the
  network's answer (``init=est``: its answer, with its posterior covariance as BFGS's first inverse
  Hessian): BFGS iterations of each, and the difference of their -2 log L;
* relative differences ``|q_net / q_mle - 1|`` over the allowed entries, and both estimators' relative
  errors against the true ``Q``.

Real data (when ``Rscript`` with msm is installed): cav (panel likelihood, every state observed at the
panel times), the network's ``Q`` against the MLE (which equals msm's, ``bench_multistate.py``).

Run:  python benchmarks/bench_rates.py [--sets 200] [--subjects 500] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CAV_Q0 = [[0, 0.25, 0, 0.25], [0.166, 0, 0.166, 0.166], [0, 0.25, 0, 0.25], [0, 0, 0, 0]]


def crude_init(df, allowed, subject="subject", time="time", state="state", states=None):
    """msm's ``crudeinits.msm`` idea: ``q_rs = n_rs / T_r`` (observed ``r -> s`` changes between consecutive
    observations over the time spent in ``r``, intervals credited to their starting state), floored at
    ``1e-3 / T_r``-scale values so that every allowed transition starts positive."""
    import numpy as np

    S = len(allowed)
    states = list(range(1, S + 1)) if states is None else list(states)
    idx = {v: i for i, v in enumerate(states)}
    d = df.sort_values([subject, time], kind="stable")
    sub, t, s = d[subject].to_numpy(), d[time].to_numpy(float), np.array([idx[v] for v in d[state]])
    same = sub[1:] == sub[:-1]
    a, b, dt = s[:-1][same], s[1:][same], (t[1:] - t[:-1])[same]
    n = np.zeros((S, S))
    np.add.at(n, (a, b), 1.0)
    T = np.bincount(a, weights=dt, minlength=S)
    Q = np.where(allowed, np.maximum(n, 0.5) / np.maximum(T, 1e-12)[:, None], 0.0)
    np.fill_diagonal(Q, 0.0)
    return Q


def _cav():
    if shutil.which("Rscript") is None:
        return None
    tmp = tempfile.mkdtemp(prefix="bench_rates_")
    r = subprocess.run(["Rscript", "-e", f'suppressMessages(library(msm)); write.csv(cav, "{tmp}/cav.csv", '
                                         f'row.names=FALSE)'], capture_output=True)
    if r.returncode != 0:
        return None
    import pandas as pd

    return pd.read_csv(f"{tmp}/cav.csv")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", type=int, default=200)
    p.add_argument("--subjects", type=int, default=500)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    import stochgen
    from domains.multistate import amortized as A
    from domains.multistate.panel import fit_panel

    dom = stochgen.domain("multistate")
    model = dom.resolve_model(args.model)
    rng = np.random.default_rng(args.seed)
    rel_mle, err_net, err_mle, secs, it_cold, it_warm, set_med, dll = [], [], [], [], [], [], [], []
    for k in range(args.sets):
        Q = A.random_generator(rng)
        allowed = Q > 0
        sub, t, s = A.simulate_intervals(Q, rng, args.subjects, spread=rng.uniform(0.0, 0.8))
        df = A.intervals_to_frame(sub, t, s)
        S = len(Q)
        qm = np.where(allowed, 1.0, 0.0)
        if k == 0:  # load and warm up
            dom.estimate_rates(df, qmatrix=qm, model=model, num_samples=args.samples, steps=args.steps)
        t0 = time.perf_counter()
        est = dom.estimate_rates(df, qmatrix=qm, model=model, num_samples=args.samples, steps=args.steps, seed=k)
        secs.append(time.perf_counter() - t0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cold = fit_panel(df, qmatrix=crude_init(df, allowed), states=list(range(1, S + 1)))
            warm = fit_panel(df, qmatrix=qm, init=est, states=list(range(1, S + 1)))
        it_cold.append(cold.info["iterations"])
        it_warm.append(warm.info["iterations"])
        m = allowed
        r = np.abs(est.Q[m] / cold.Q[m] - 1)
        rel_mle.append(r)
        set_med.append(float(np.median(r)))
        err_net.append(np.abs(est.Q[m] / Q[m] - 1))
        err_mle.append(np.abs(cold.Q[m] / Q[m] - 1))
        same = abs(warm.minus2loglik - cold.minus2loglik)
        dll.append(warm.minus2loglik - cold.minus2loglik)
        print(f"set {k:3d}: {S} states, {m.sum():2d} transitions; net vs MLE median {np.median(r) * 100:5.1f}% "
              f"(max {r.max() * 100:6.1f}%); vs truth net {np.median(err_net[-1]) * 100:5.1f}% MLE "
              f"{np.median(err_mle[-1]) * 100:5.1f}%; BFGS iterations {it_cold[-1]} -> {it_warm[-1]} "
              f"(|d -2LL| {same:.1e}); {secs[-1] * 1000:.1f} ms", flush=True)
    allr = np.concatenate(rel_mle)
    print(f"\n{args.sets} held-out sets of {args.subjects} subjects (2-6 states), {args.samples} draws, "
          f"{args.threads} thread(s):")
    print(f"  net vs MLE, relative difference of Q entries: median {np.median(allr) * 100:.1f}%, "
          f"{(allr <= 0.10).mean() * 100:.1f}% of entries within 10%; sets whose median entry is within 10%: "
          f"{(np.array(set_med) <= 0.10).mean() * 100:.1f}%")
    print(f"  vs the true Q: net median {np.median(np.concatenate(err_net)) * 100:.1f}%, "
          f"MLE median {np.median(np.concatenate(err_mle)) * 100:.1f}%")
    print(f"  time per estimate: mean {np.mean(secs) * 1000:.1f} ms, max {np.max(secs) * 1000:.1f} ms")
    print(f"  BFGS iterations from crude initial values {np.mean(it_cold):.1f}, from the network's answer "
          f"{np.mean(it_warm):.1f} (saved {np.mean(it_cold) - np.mean(it_warm):.1f} per fit, "
          f"{(1 - np.sum(it_warm) / np.sum(it_cold)) * 100:.0f}%); -2 log L of the warm fit minus the cold one: "
          f"{min(dll):+.1e} .. {max(dll):+.1e}")
    cav = _cav()
    if cav is None:
        print("cav: skipped (Rscript with msm not installed)")
        return
    est = dom.estimate_rates(cav, subject="PTNUM", time="years", state="state", qmatrix=CAV_Q0, model=model,
                             num_samples=args.samples, steps=args.steps)
    fit = fit_panel(cav, subject="PTNUM", time="years", state="state", qmatrix=CAV_Q0)
    warm = fit_panel(cav, subject="PTNUM", time="years", state="state", qmatrix=CAV_Q0, init=est)
    m = np.asarray(CAV_Q0) > 0
    r = np.abs(est.Q[m] / fit.Q[m] - 1)
    print(f"cav (panel likelihood): net vs MLE median {np.median(r) * 100:.1f}%, max {r.max() * 100:.1f}%; "
          f"{est.seconds * 1000:.1f} ms; BFGS iterations {fit.info['iterations']} from msm's initial values, "
          f"{warm.info['iterations']} from the network's answer")
    for (a, b), q_net, q_mle in zip(fit.transitions, est.Q[m], fit.Q[m]):
        print(f"   {a} -> {b}: net {q_net:.4f}  MLE {q_mle:.4f}")


if __name__ == "__main__":
    main()
