"""Train the protein domain's segment co-design model (issue 14) on the offline chains, on CPU.

    # the shipped model (these are the defaults)
    python examples/protein/train_design.py --out runs/design --steps 6000 --batch-size 64 --hidden 128 --depth 4
    ... --resume                        # continue runs/design/train.ckpt
    python examples/protein/train_design.py --out runs/design --export domains/protein/weights/design.safetensors

Data recipe: the 50 MDAnalysisTests DSSP chains (``pip install --no-deps MDAnalysisTests==2.11.0``),
split at 40% sequence identity (:func:`domains.protein.data.identity_split`, seed 0, 20% test:
40 training / 10 test chains); every start position of a training chain with ``--lengths-per-start``
random segment lengths in 4..16 (seed ``--seed``), windows crossing a chain break left out
(:meth:`domains.protein.domain.ProteinDomain.load`). The test chains are never read here. Model: the
composite SE(3)^16 x absorbing-CTMC process and :class:`domains.protein.nets.SegmentNet`, trained
by ``stochgen.fit``. Writes ``OUT/train.ckpt`` every ``--ckpt-every`` steps (resumable),
``OUT/train.csv`` and ``OUT/settings.json``.
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
    p.add_argument("--out", default="runs/design")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--lengths-per-start", type=int, default=2)
    p.add_argument("--corpus", default="dssp", choices=("dssp", "extended"),
                   help="dssp: the 40 training chains of the split; extended: plus the other offline structures "
                        "(domains.protein.data.extra_chains)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--sample-steps", type=int, default=100, help="with --export: the model's default steps")
    p.add_argument("--export", default=None, metavar="WEIGHTS",
                   help="write OUT/train.ckpt's EMA weights as the shipped safetensors file and stop")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    import torch

    torch.set_num_threads(int(args.threads))
    import stochgen
    from domains.protein.domain import ProteinDomain

    ckpt = os.path.join(args.out, "train.ckpt")
    if args.export:
        model = stochgen.load(ckpt).for_sampling(steps=args.sample_steps)
        path = model.save(args.export)
        print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB)")
        return 0
    os.makedirs(args.out, exist_ok=True)
    dom = ProteinDomain(hidden=args.hidden, depth=args.depth, heads=args.heads,
                        lengths_per_start=args.lengths_per_start, seed=args.seed, corpus=args.corpus)
    t0 = time.time()
    data = dom.load("chains")
    print(f"{data.info['windows']} windows of {data.info['chains']} training chains in {time.time() - t0:.0f} s",
          flush=True)
    with open(os.path.join(args.out, "settings.json"), "w") as f:
        json.dump(dict(vars(args), command=" ".join(sys.argv), windows=data.info["windows"],
                       chains=data.info["chains"]), f, indent=1)
    t0 = time.time()
    model = stochgen.fit(dom, data, steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                         lr_schedule="cosine", ema=args.ema, seed=args.seed, ckpt_every=args.ckpt_every,
                         ckpt_path=ckpt, resume=ckpt if (args.resume and os.path.exists(ckpt)) else None,
                         log=os.path.join(args.out, "train.csv"), log_every=100, progress=False, cond_drop=0.0)
    print(f"trained {args.steps} steps in {time.time() - t0:.0f} s; final loss {model.history['loss'][-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
