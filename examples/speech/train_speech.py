"""Train the speech domain's default models (issue 10) on the built-in offline corpus, on CPU.

    # the shipped enhance model (1 thread, about an hour on this project's 2-core machine)
    OMP_NUM_THREADS=1 python examples/speech/train_speech.py --task enhance --corpus /tmp/sp2/enh \\
        --out runs/enhance --steps 3000 --batch-size 8 --threads 1
    # continue an interrupted run (same command plus --resume; it picks up runs/enhance/train.ckpt)
    ... --resume
    # write the shipped weights (EMA network only, safetensors, ~12 MB) and the settings json
    python examples/speech/train_speech.py --task enhance --out runs/enhance --export domains/speech/weights/enhance.safetensors

Data recipe: ``make_corpus(corpus, task, n_train, n_valid=16, n_test=40, seed=0)`` when the folder
does not exist yet (espeak-ng / flite speech; white / pink / brown noise and babble at -5..15 dB,
or shoebox reverberation at RT60 0.2..1.2 s; the held-out voices and sentences are never used).
Every clip is scaled by its noisy peak and cut into ``--segment``-frame crops (~1 s at 128).

Model: OU-VE (theta 1.5, sigma 0.05..0.5), SpeechUNet (2.9 M parameters, residual x0 prediction),
the core's DSM objective; ``--process predictive`` trains the predictive baseline (same network,
plain regression). Training writes ``OUT/train.ckpt`` every ``--ckpt-every`` steps (resumable)
and logs to ``OUT/train.csv``.
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
    p.add_argument("--task", choices=("enhance", "dereverb"), default="enhance")
    p.add_argument("--process", choices=("ouve", "irsde", "predictive"), default="ouve")
    p.add_argument("--corpus", default=None, help="corpus root (generated when missing; default /tmp/sp2/<task>)")
    p.add_argument("--n-train", type=int, default=1500, help="training clips when the corpus is generated")
    p.add_argument("--out", default=None, help="run folder (default runs/<task>)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--lr-schedule", choices=("constant", "cosine", "linear"), default="constant",
                   help="learning-rate decay after the warm-up (stochgen.fit's lr_schedule)")
    p.add_argument("--lr-min", type=float, default=0.0, help="final learning rate of a decaying schedule")
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--segment", type=int, default=128, help="training crop in STFT frames")
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", action="store_true", help="continue OUT/train.ckpt")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="start from the (EMA) weights of this speech model, e.g. the shipped enhance model "
                        "(fine-tuning dereverb from enhance)")
    p.add_argument("--export", default=None, metavar="WEIGHTS",
                   help="instead of training: write OUT/train.ckpt's EMA network as a model file WEIGHTS")
    return p.parse_args(argv)


def export(ckpt: str, dest: str, extra: dict | None = None) -> str:
    """The EMA weights of a training checkpoint as a plain model file (no optimizer, one network copy)."""
    import stochgen
    from stochgen.model import Model

    m = stochgen.load(ckpt)
    net = m.weights
    out = Model(m.domain, m.process, net, prediction=m.prediction, precondition=m.precondition, ema=None,
                ema_decay=None, state_shape=m.state_shape, num_classes=m.num_classes, sampler=m.sampler,
                steps=m.steps, extra_spec=m.extra_spec)
    out.history = m.history
    path = out.save(dest)
    meta = {"from": os.path.abspath(ckpt), "bytes": os.path.getsize(path), "spec": out.spec, **(extra or {})}
    with open(os.path.splitext(dest)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=1, default=str)
    return path


def main(argv=None) -> int:
    args = parse(argv)
    import torch

    torch.set_num_threads(int(args.threads))
    import stochgen
    from domains.speech.corpus import make_corpus
    from domains.speech.domain import SpeechDomain

    out = args.out or os.path.join("runs", args.task if args.process != "predictive" else f"{args.task}-predictive")
    ckpt = os.path.join(out, "train.ckpt")
    if args.export:
        path = export(ckpt, args.export, {"command": " ".join(sys.argv)})
        print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
        return 0
    os.makedirs(out, exist_ok=True)
    corpus = args.corpus or os.path.join("/tmp/sp2", "enh" if args.task == "enhance" else "rev")
    if not os.path.isdir(os.path.join(corpus, "train", "noisy")):
        print(f"generating the {args.task} corpus in {corpus} ...", flush=True)
        make_corpus(corpus, args.task, args.n_train, 16, 40, seed=0)
    t0 = time.time()
    dom = SpeechDomain(task=args.task, process=args.process, segment=args.segment)
    data = dom.load(corpus)
    print(f"{len(data)} crops of {data.x.shape[1:]} from {data.info['clips']} clips in {time.time() - t0:.0f} s",
          flush=True)
    settings = {k: getattr(args, k) for k in ("task", "process", "steps", "batch_size", "lr", "warmup", "lr_schedule",
                                              "lr_min", "ema",
                                              "segment", "ckpt_every", "seed", "threads")}
    settings.update(corpus=corpus, crops=len(data), clips=data.info["clips"], command=" ".join(sys.argv))
    with open(os.path.join(out, "settings.json"), "w") as f:
        json.dump(settings, f, indent=1)
    network = None
    if args.init and not (args.resume and os.path.exists(ckpt)):
        import copy

        network = copy.deepcopy(stochgen.load(args.init).weights).train().requires_grad_(True)
    t0 = time.time()
    model = stochgen.fit(dom, data, network=network, steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                         lr_schedule=args.lr_schedule, lr_min=args.lr_min,
                         ema=args.ema, seed=args.seed, ckpt_every=args.ckpt_every, ckpt_path=ckpt,
                         resume=ckpt if (args.resume and os.path.exists(ckpt)) else None,
                         log=os.path.join(out, "train.csv"), log_every=20, progress=False, cond_drop=0.0)
    print(f"trained {args.steps} steps in {time.time() - t0:.0f} s; final loss {model.history['loss'][-1]:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
