"""Per-step sampler overhead: stochgen vs k-diffusion with a trivial model, in one run.

The model returns a precomputed x0 tensor (no compute of its own), so the time per
step is the sampler's own work: schedule coefficients, the prediction conversion,
the update arithmetic, Python overhead. Batch 10,000 x 64, float32, EDM process with
sigma in [0.002, 80], a Karras grid (rho = 7) for both sides, ``--steps`` grid intervals.
Each pair is timed interleaved (ours, theirs, ours, theirs, ...) after one warm-up
run each; the table gives the median over ``--repeats`` runs of the whole call
(grid construction included) divided by the number of steps.

Pairs: euler / sample_euler, heun / sample_heun, dpm++2m (karras grid) /
sample_dpmpp_2m, dpm++2m-sde (karras grid) / sample_dpmpp_2m_sde. k-diffusion's
SDE sampler defaults to a torchsde BrownianTree noise sampler, which costs far more
than the solver itself; it is timed twice: with its default and with plain
``torch.randn_like`` noise (what stochgen draws), and the ratio uses the latter.

Run:  python benchmarks/bench_overhead.py [--steps 50] [--repeats 9] [--profile]
``--profile`` (or any ratio above 1.0) prints a cProfile of our samplers, restricted to
the functions that take the time.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import os
import platform
import pstats
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import stochgen
from stochgen import processes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_samplers import SIGMA_MAX, SIGMA_MIN, RHO, load_k_diffusion_sampling, peer_versions  # noqa: E402


def make_pairs(kds, proc, x0_const, brownian=False):
    def ours_model(x, t, **cond):
        return x0_const

    def kd_model(x, sigma, **kw):
        return x0_const

    def ours(name, **opts):
        def run(x_T, steps):
            g = torch.Generator().manual_seed(0)
            return stochgen.sample(proc, ours_model, x_T=x_T, sampler=name, steps=steps, prediction="x0",
                                   generator=g, **opts)

        return run

    def theirs(fn_name, randn_noise=False, **kw):
        fn = getattr(kds, fn_name) if kds is not None else None

        def run(x_T, steps):
            sig = kds.get_sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX, rho=RHO)
            extra = {}
            if randn_noise:
                extra["noise_sampler"] = lambda s, sn: torch.randn_like(x_T)
            return fn(kd_model, x_T, sig, disable=True, **extra, **kw)

        return run if fn is not None else None

    return [
        ("euler", ours("euler"), "sample_euler", theirs("sample_euler"), 1),
        ("heun", ours("heun"), "sample_heun", theirs("sample_heun"), 2),
        ("dpm++2m", ours("dpm++2m", grid="karras"), "sample_dpmpp_2m", theirs("sample_dpmpp_2m"), 1),
        ("dpm++2m-sde", ours("dpm++2m-sde", grid="karras"), "sample_dpmpp_2m_sde (randn noise)",
         theirs("sample_dpmpp_2m_sde", randn_noise=True), 1),
    ] + ([(None, None, "sample_dpmpp_2m_sde (default BrownianTree)", theirs("sample_dpmpp_2m_sde"), 1)]
         if brownian else [])


class OpCounter(TorchDispatchMode):
    """Counts the aten ops a call dispatches: those whose output has the batch's size ("full",
    the arithmetic that scales with the batch) and the rest ("small": schedule scalars, casts,
    checks -- pure per-step overhead). Deterministic, unlike timings on a shared machine."""

    def __init__(self, numel):
        super().__init__()
        self.numel, self.full, self.small = numel, Counter(), Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        big = any(isinstance(o, torch.Tensor) and o.numel() >= self.numel for o in outs)
        (self.full if big else self.small)[func.__name__.split(".")[0]] += 1
        return out


def count_ops(fn, x_T, steps):
    with OpCounter(x_T.numel()) as c:
        fn(x_T, steps)
    return c


def timed(fn, x_T, steps):
    t0 = time.perf_counter()
    fn(x_T, steps)
    return time.perf_counter() - t0


def profile(run, x_T, steps, top=18):
    pr = cProfile.Profile()
    pr.enable()
    run(x_T, steps)
    pr.disable()
    buf = io.StringIO()
    st = pstats.Stats(pr, stream=buf).sort_stats("tottime")
    st.print_stats(top)
    return buf.getvalue()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: timings on a shared 2-core machine are steadier)")
    ap.add_argument("--profile", action="store_true", help="always print the cProfile of our samplers")
    ap.add_argument("--with-brownian-tree", action="store_true",
                    help="also time k-diffusion's dpmpp_2m_sde with its default BrownianTree noise (~1 s/step: "
                         "timed once, no repeats)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    kds = load_k_diffusion_sampling()
    if kds is None:
        sys.exit("k-diffusion is not installed: pip install -e '.[bench]' (see benchmarks/README.md)")
    proc = processes.EDM(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, sigma_data=0.5)
    g = torch.Generator().manual_seed(0)
    x_T = SIGMA_MAX * torch.randn(args.batch, args.dim, generator=g)
    x0_const = 0.5 * torch.randn(args.batch, args.dim, generator=g)
    pairs = make_pairs(kds, proc, x0_const, args.with_brownian_tree)

    rows, slow, ops_detail = [], [], []
    for ours_name, ours_run, kd_name, kd_run, nfe_per_step in pairs:
        runs = [r for r in (ours_run, kd_run) if r is not None]
        repeats = args.repeats if ours_run is not None else 1
        if ours_run is not None:
            for r in runs:  # warm-up
                r(x_T, args.steps)
        times = [[] for _ in runs]
        for _ in range(repeats):
            for i, r in enumerate(runs):
                times[i].append(timed(r, x_T, args.steps))
        med = [statistics.median(t) / args.steps * 1e3 for t in times]
        best = [min(t) / args.steps * 1e3 for t in times]
        if ours_run is not None:
            ops = [count_ops(r, x_T, args.steps) for r in runs]
            full = [sum(c.full.values()) / args.steps for c in ops]
            small = [sum(c.small.values()) / args.steps for c in ops]
            ratio = med[0] / med[1]
            rows.append((ours_name, f"{med[0]:.2f}", kd_name, f"{med[1]:.2f}", f"**{ratio:.2f}**",
                         f"{best[0]:.2f} / {best[1]:.2f} ({best[0] / best[1]:.2f})",
                         f"{full[0]:.1f} / {full[1]:.1f}", f"{small[0]:.1f} / {small[1]:.1f}"))
            ops_detail.append((ours_name, kd_name, ops))
            if ratio > 1.0:
                slow.append((ours_name, ours_run))
        else:
            rows.append(("–", "–", kd_name, f"{med[0]:.2f}", "–", f"– / {best[0]:.2f}", "–", "–"))

    vers = peer_versions()
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(f"## Per-step overhead, trivial model, batch {args.batch} x {args.dim} float32, {args.steps} steps, "
          f"median of {args.repeats}")
    print()
    print(f"{now}; {platform.machine()} CPU x{os.cpu_count()}, torch {torch.__version__} ({torch.get_num_threads()} "
          f"thread(s)), stochgen {getattr(stochgen, '__version__', '?')}, k-diffusion {vers['k-diffusion']}")
    print()
    print("| stochgen | ms/step | k-diffusion | ms/step | ours/theirs (median) | fastest run ms/step ours / theirs (ratio) "
          "| full-size ops/step ours / theirs | small ops/step ours / theirs |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print("full-size ops = aten ops whose output has the batch's size (arithmetic that scales with the batch); "
          "small ops = scalar/schedule ops, casts and checks (fixed cost per step).")
    for ours_name, kd_name, (co, ck) in ops_detail:
        fo = ", ".join(f"{k} {v / args.steps:g}" for k, v in co.full.most_common())
        fk = ", ".join(f"{k} {v / args.steps:g}" for k, v in ck.full.most_common())
        print(f"- {ours_name}: full-size ops/step [{fo}] vs {kd_name} [{fk}]")
    print()
    met = not slow
    print(f"target (ours/theirs <= 1.0 on every pair): {'MET' if met else 'NOT MET: ' + ', '.join(n for n, _ in slow)}")
    if slow or args.profile:
        targets = slow if slow else [(n, r) for n, r, _, _, _ in pairs if r is not None]
        for name, run in targets:
            print()
            print(f"### cProfile of stochgen {name} ({args.steps} steps), sorted by own time")
            print("```")
            print(profile(run, x_T, args.steps).strip())
            print("```")


if __name__ == "__main__":
    main()
