"""Held-out figures of a speech model: SI-SDR, ESTOI, PESQ-wb, NFE and real-time factor per sampler.

    OMP_NUM_THREADS=1 python examples/speech/evaluate_speech.py --corpus /tmp/sp2/enh \\
        --model domains/speech/weights/enhance.safetensors --sampler mr-exact --steps 6 --json out.json

Every ``CORPUS/test/noisy/*.wav`` is enhanced with ``SpeechDomain.enhance`` (the same chunked path
as ``stochgen enhance``) and scored against its clean partner; ``--sampler none`` scores the
unprocessed input. RTF = enhancement seconds / audio seconds on the threads given.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped model of --task)")
    p.add_argument("--task", default="enhance")
    p.add_argument("--sampler", default=None,
                   help="sampler name; 'none' scores the unprocessed input, 'noisereduce' the classical baseline "
                        "(noisereduce.reduce_noise, non-stationary spectral gating; the bench extra)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--options", default="{}", help="JSON sampler options, e.g. '{\"order\": 1}'")
    p.add_argument("--limit", type=int, default=None, help="only the first N files")
    p.add_argument("--every", type=int, default=1, help="every k-th file")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="append the summary as one JSON line to this file")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from domains.speech.audio import load_pairs
    from domains.speech.domain import SpeechDomain
    from domains.speech.baselines import spectral_gating
    from domains.speech.metrics import score_method

    dom = SpeechDomain(task=args.task)
    pairs = load_pairs(args.corpus, args.split)[::args.every][:args.limit]
    opts = json.loads(args.options)
    nfe, model = None, None
    if args.sampler == "noisereduce":
        method = spectral_gating
    elif args.sampler == "none":
        def method(noisy):
            return noisy
    else:
        model = dom.resolve_model(args.model, args.task)
        kw = dict(opts)
        if isinstance(kw.get("predictive"), str):  # the warm start's predictive model, loaded once
            kw["predictive"] = dom.resolve_model(kw["predictive"], args.task)
        if args.sampler:
            kw["sampler"] = args.sampler
        if args.steps:
            kw["steps"] = args.steps

        def method(noisy):
            return dom.enhance(noisy, 16000, model=model, **kw)

        # evaluations per chunk, from one direct call on a short piece
        nfe = dom.evaluations(model, pairs[0][1], **kw)
    rows, mean = score_method(pairs, method)
    summary = {"model": args.model or f"shipped:{args.task}", "sampler": args.sampler or "default",
               "steps": args.steps, "options": opts, "files": len(rows), "nfe": nfe,
               "rtf": mean["rtf"] if args.sampler != "none" else None, "threads": args.threads,
               **{k: mean[k] for k in ("si_sdr", "estoi", "pesq")}}
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
