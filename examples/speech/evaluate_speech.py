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
import time

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

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from domains.speech.audio import load_pairs
    from domains.speech.domain import SpeechDomain
    from domains.speech.metrics import evaluate_pair

    dom = SpeechDomain(task=args.task)
    pairs = load_pairs(args.corpus, args.split)[::args.every][:args.limit]
    classical = args.sampler in ("none", "noisereduce")
    model = None if classical else dom.resolve_model(args.model, args.task)
    if args.sampler == "noisereduce":
        import noisereduce
    opts = json.loads(args.options)
    rows, secs, audio, nfe = [], 0.0, 0.0, None
    for name, noisy, clean in pairs:
        if args.sampler == "noisereduce":
            t0 = time.perf_counter()
            est = noisereduce.reduce_noise(y=noisy, sr=16000, stationary=False, n_jobs=1).astype(np.float32)
            secs += time.perf_counter() - t0
            est = est[:noisy.size] if est.size >= noisy.size else np.pad(est, (0, noisy.size - est.size))
        elif model is None:
            est = noisy
        else:
            kw = dict(opts)
            if args.sampler:
                kw["sampler"] = args.sampler
            if args.steps:
                kw["steps"] = args.steps
            t0 = time.perf_counter()
            est = dom.enhance(noisy, 16000, model=model, **kw)
            secs += time.perf_counter() - t0
            if nfe is None:  # evaluations per chunk, from one direct call
                y = dom.encode(noisy[None] / max(1e-9, float(np.abs(noisy).max())))[..., :64]
                nfe = dom.enhance_states(model, y, return_info=True, **kw)[1]["nfe"]
        audio += noisy.size / 16000
        r = evaluate_pair(clean, est)
        r["file"] = name
        rows.append(r)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("si_sdr", "estoi", "pesq")}
    summary = {"model": args.model or f"shipped:{args.task}", "sampler": args.sampler or "default",
               "steps": args.steps, "options": opts, "files": len(rows), "nfe": nfe,
               "rtf": secs / audio if args.sampler != "none" else None, "threads": args.threads, **mean}
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
