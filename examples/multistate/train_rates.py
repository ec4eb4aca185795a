"""Train the multistate domain's amortized rate estimator (issue 13) on simulated panels, on CPU.

    # the shipped model (these are the defaults)
    python examples/multistate/train_rates.py --out runs/rates --sets 100000 --steps 30000 --batch-size 256 \
        --hidden 512 --depth 4 --lr 1e-3
    ... --resume                        # continue runs/rates/train.ckpt
    python examples/multistate/train_rates.py --out runs/rates --export domains/multistate/weights/rates.safetensors \
        --sampler dpm++2m --sample-steps 6

Data recipe: :func:`domains.multistate.amortized.simulated_sets` (``--sets`` panels, seed ``--seed``):
random generators of 2-6 states (random sparse, progressive with recovery, or illness-death
structures), intensities log-uniform in [0.01, 3] per median interval, 50-2000 subjects with 2-12
observations at log-normal intervals, misclassified states in a quarter of the sets; each set reduced
to its interval-count statistics. The sets are cached in ``OUT/sets.npz``. Model: the base domain's EDM
diffusion on the 36 standardised log intensities measured from the clipped matrix-logarithm estimate
(the domain's ``residual`` setting), the core's residual MLP reading the statistics,
``stochgen.fit``. Writes ``OUT/train.ckpt`` every ``--ckpt-every`` steps (resumable), ``OUT/train.csv``
and ``OUT/settings.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/rates")
    p.add_argument("--sets", type=int, default=100000)
    p.add_argument("--steps", type=int, default=30000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--ckpt-every", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--sampler", default="dpm++2m", help="with --export: the model's default sampler")
    p.add_argument("--sample-steps", type=int, default=6, help="with --export: its default steps")
    p.add_argument("--export", default=None, metavar="WEIGHTS",
                   help="instead of training: write OUT/train.ckpt's EMA network as a model file WEIGHTS")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    import numpy as np
    import torch

    torch.set_num_threads(int(args.threads))
    import stochgen
    from domains.multistate import amortized
    from domains.multistate.domain import MultistateDomain

    ckpt = os.path.join(args.out, "train.ckpt")
    if args.export:
        model = stochgen.load(ckpt).for_sampling(steps=args.sample_steps)
        model.sampler = args.sampler
        path = model.save(args.export)
        print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB)")
        return 0
    os.makedirs(args.out, exist_ok=True)
    cache = os.path.join(args.out, "sets.npz")
    t0 = time.time()
    if os.path.exists(cache):
        z = np.load(cache)
        x, stats = z["x"], amortized.upgrade_statistics(z["stats"])  # a cache of an earlier layout: recomputed
    else:
        x, stats = amortized.simulated_sets(args.sets, seed=args.seed)
        tmp = cache + ".tmp.npz"
        np.savez(tmp, x=x, stats=stats)
        os.replace(tmp, cache)
    print(f"{len(x)} simulated sets in {time.time() - t0:.0f} s", flush=True)
    dom = MultistateDomain(hidden=args.hidden, depth=args.depth, seed=args.seed)
    data = dom.load({"x": x, "stats": stats})
    with open(os.path.join(args.out, "settings.json"), "w") as f:
        json.dump(dict(vars(args), command=" ".join(sys.argv)), f, indent=1)
    t0 = time.time()
    model = stochgen.fit(dom, data, steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                         lr_schedule="cosine", ema=args.ema, seed=args.seed, ckpt_every=args.ckpt_every,
                         ckpt_path=ckpt, resume=ckpt if (args.resume and os.path.exists(ckpt)) else None,
                         log=os.path.join(args.out, "train.csv"), log_every=100, progress=False, cond_drop=0.0)
    print(f"trained {args.steps} steps in {time.time() - t0:.0f} s; final loss {model.history['loss'][-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
