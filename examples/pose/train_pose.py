"""Train the pose domain's registration model (issue 11) on generated pairs of the training shapes, on CPU.

    # the shipped model (these are the defaults; 38 min on one thread of the 2-core project machine)
    OMP_NUM_THREADS=1 python examples/pose/train_pose.py --out runs/pose --pairs 3000 --points 256 \
        --features fpfh --fpfh-radius 0.2 --steps 1200 --batch-size 16 --lr 2e-3 --ckpt-every 100
    ... --resume                       # continue runs/pose/train.ckpt
    python examples/pose/train_pose.py --out runs/pose --export domains/pose/weights/register.safetensors --sample-steps 5

Data recipe: ``PoseDomain(pairs=P, seed=S).load()`` draws P pairs of
:func:`domains.pose.shapes.random_training_pair` (training shapes only: the held-out and bench
meshes are refused by name; rotations uniform over SO(3), translations up to 0.1, crops keeping
60-90% of the target, noise up to 0.02), normalised and subsampled to ``--points`` points per
cloud. Model: SE3Diffusion (translation prior std ``--trans-scale``), RegistrationNet, the core's
``lie-dsm`` objective. Writes ``OUT/train.ckpt`` every ``--ckpt-every`` steps (resumable),
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
    p.add_argument("--out", default="runs/pose")
    p.add_argument("--pairs", type=int, default=3000)
    p.add_argument("--points", type=int, default=256)
    p.add_argument("--trans-scale", type=float, default=0.25)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--features", choices=("ppf", "fpfh", "both"), default="fpfh",
                   help="invariant point features: learned point-pair features, fixed FPFH histograms, or both")
    p.add_argument("--fpfh-radius", type=float, default=0.2)
    p.add_argument("--fpfh-k", type=int, default=64)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--lr-schedule", choices=("constant", "cosine", "linear"), default="cosine")
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--sample-steps", type=int, default=None,
                   help="with --export: the model's default sampler steps (default: the domain's, 10)")
    p.add_argument("--export", default=None, metavar="WEIGHTS",
                   help="instead of training: write OUT/train.ckpt's EMA network as a model file WEIGHTS")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    import torch

    torch.set_num_threads(int(args.threads))
    import stochgen
    from domains.pose.domain import PoseDomain

    ckpt = os.path.join(args.out, "train.ckpt")
    if args.export:
        path = stochgen.load(ckpt).for_sampling(steps=args.sample_steps).save(args.export)
        print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB)")
        return 0
    os.makedirs(args.out, exist_ok=True)
    dom = PoseDomain(pairs=args.pairs, seed=args.seed, n_points=args.points, trans_scale=args.trans_scale,
                     width=args.width, hidden=args.hidden, features=args.features, fpfh_radius=args.fpfh_radius,
                     fpfh_k=args.fpfh_k)
    t0 = time.time()
    data = dom.load()
    print(f"{len(data)} pairs of {args.points} points in {time.time() - t0:.0f} s", flush=True)
    settings = dict(vars(args), command=" ".join(sys.argv))
    with open(os.path.join(args.out, "settings.json"), "w") as f:
        json.dump(settings, f, indent=1)
    t0 = time.time()
    model = stochgen.fit(dom, data, steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                         lr_schedule=args.lr_schedule, ema=args.ema, seed=args.seed, ckpt_every=args.ckpt_every,
                         ckpt_path=ckpt, resume=ckpt if (args.resume and os.path.exists(ckpt)) else None,
                         log=os.path.join(args.out, "train.csv"), log_every=20, progress=False, cond_drop=0.0)
    print(f"trained {args.steps} steps in {time.time() - t0:.0f} s; final loss {model.history['loss'][-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
