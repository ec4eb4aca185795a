"""Training throughput: ``stochgen.fit`` against a minimal hand-written PyTorch loop.

Same data (the embedded digits, 8x8, pixels in [-1, 1]), same network
(``nets.UNet(in_channels=1, channels=(32, 64), num_classes=10)``), same batch, same
EDM loss (log-normal sigma, EDM preconditioning and weighting), AdamW. The hand
loop has nothing else; ``fit`` runs with its defaults (EMA, warm-up, gradient
clipping, label dropout, progress off, metrics log off). Prints samples/second
of each and the ratio fit / hand loop (issue target: >= 0.9).

    python benchmarks/bench_fit.py [--steps 150] [--batch-size 64] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

import stochgen
from stochgen import nets, processes


def hand_loop(x, labels, steps, batch_size, seed):
    torch.manual_seed(seed)
    net = nets.UNet(in_channels=1, channels=(32, 64), num_classes=10)
    proc = processes.EDM(sigma_data=0.5)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4)
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, n, (batch_size,), generator=g)
        x0, y = x[idx], labels[idx]
        sigma = torch.exp(-1.2 + 1.2 * torch.randn(batch_size, generator=g))
        s = sigma.view(-1, 1, 1, 1)
        x_t = x0 + s * torch.randn(x0.shape, generator=g)
        sd = proc.sigma_data
        c_skip, c_out, c_in = sd**2 / (s**2 + sd**2), s * sd / (s**2 + sd**2).sqrt(), 1 / (s**2 + sd**2).sqrt()
        d = c_skip * x_t + c_out * net(c_in * x_t, 0.25 * sigma.log(), label=y)
        w = (sigma**2 + sd**2) / (sigma * sd) ** 2
        loss = (w * ((d - x0) ** 2).mean((1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch_size / (time.perf_counter() - t0)


def fit_run(dom, data, steps, batch_size, seed):
    t0 = time.perf_counter()
    stochgen.fit(dom, data, steps=steps, batch_size=batch_size, lr=2e-4, seed=seed, progress=False)
    return steps * batch_size / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dom = stochgen.domain("images")
    data = dom.load("digits")
    x, labels = data.x.float(), data.labels.long()
    hand_loop(x, labels, 10, args.batch_size, 0)  # warm-up
    fit_run(dom, data, 10, args.batch_size, 0)
    ours, theirs = [], []
    for r in range(args.repeats):  # interleaved, so load changes hit both
        theirs.append(hand_loop(x, labels, args.steps, args.batch_size, r))
        ours.append(fit_run(dom, data, args.steps, args.batch_size, r))
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(f"## Training throughput, digits 8x8, UNet(32, 64), batch {args.batch_size}, {args.steps} steps, "
          f"median of {args.repeats}, {args.threads} thread(s), torch {torch.__version__}\n")
    print("| loop | samples/s (median) | runs |")
    print("|---|---|---|")
    print(f"| stochgen.fit (EMA, warm-up, clipping, label dropout) | {mo:.0f} | {', '.join(f'{v:.0f}' for v in ours)} |")
    print(f"| minimal hand-written loop | {mt:.0f} | {', '.join(f'{v:.0f}' for v in theirs)} |")
    ratio = mo / mt
    print(f"\nfit / hand loop = {ratio:.2f}  (target >= 0.9: {'MET' if ratio >= 0.9 else 'NOT MET'})")
    return 0 if math.isfinite(ratio) else 1


if __name__ == "__main__":
    raise SystemExit(main())
