"""Speech enhancement / dereverberation: stochgen's shipped models vs noisereduce, in one run.

Every method enhances the same held-out clips of the built-in generator (test voices and
test sentences only: the training recipe never sees them; 0/5/10 dB x white/pink/brown/babble
for ``enhance``, RT60 0.4..1.0 s shoebox rooms for ``dereverb``) and is scored with the
domain's metrics (SI-SDR, ESTOI, PESQ wide-band). The real-time factor is the time inside the
method divided by the audio duration, on the threads given (``--threads``, default 1).

Rows: the unprocessed input; noisereduce's spectral gating (non-stationary, its default, and
stationary); stochgen's default model with its default sampler and, unless ``--quick``, the
same model with 1 step, the 30-step predictor-corrector reference (60 evaluations), the
probability-flow ODE; and, when ``--predictive MODEL`` names one (or the package ships it), the
predictive baseline (same network trained by regression) and the StoRM-style warm start from
it. The last lines give ours vs noisereduce (non-stationary) as differences of each metric and
the ratio of RTFs.

Run:  pip install -e '.[speech,bench]'
      python benchmarks/bench_speech.py                   # enhance, 40 clips, all rows (~15 min)
      python benchmarks/bench_speech.py --quick           # 12 clips, the cheap rows (~2 min)
      python benchmarks/bench_speech.py --task dereverb   # the reverberant test split
The clips are generated once into ``--corpus`` (default: the temp dir) with the seed below.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import datetime
import json
import os
import platform
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SEED = 0  # the generator's seed of the test split (the shipped models' README tables use the same clips)


def ensure_test_split(root: str, task: str, n: int) -> str:
    """The generator's test split of ``task`` under ``root`` (written once; test voices only)."""
    from domains.speech.corpus import make_corpus

    if not os.path.isdir(os.path.join(root, "test", "noisy")):
        print(f"generating {n} {task} test clips in {root} ...", flush=True)
        make_corpus(root, task, n_train=0, n_valid=0, n_test=n, seed=SEED)
    return root


def rows_for(args, model, predictive) -> list[tuple[str, str, dict]]:
    """(label, kind, options) of every row: kind "input", "noisereduce" or "stochgen" (options of
    ``SpeechDomain.enhance``)."""
    rows = [("unprocessed input", "input", {})]
    if args.task == "enhance":
        rows += [("noisereduce (non-stationary)", "noisereduce", {"stationary": False}),
                 ("noisereduce (stationary)", "noisereduce", {"stationary": True})]
    ws = model.domain.settings.get("warm_start")
    if ws is not None:
        rows.append((f"stochgen default (predictive estimate, warm start t={ws:g}, {model.sampler} "
                     f"{int(model.steps)} steps)", "stochgen", {"model": model}))
        rows.append((f"stochgen {model.sampler}, {int(model.steps)} steps from the prior", "stochgen",
                     {"model": model, "warm_start": None}))
    else:
        rows.append((f"stochgen default ({model.sampler}, {int(model.steps)} steps)", "stochgen", {"model": model}))
    if not args.quick:
        rows += [("stochgen mr-exact, 1 step", "stochgen", {"model": model, "steps": 1}),
                 ("stochgen mr-pc, 30 steps (reference)", "stochgen", {"model": model, "sampler": "mr-pc", "steps": 30}),
                 ("stochgen probability-flow ODE", "stochgen", {"model": model, "sampler": "ode", "steps": 10})]
    if predictive is not None:
        rows.append(("predictive baseline (regression)", "stochgen", {"model": predictive}))
        if not args.quick:
            rows.append(("stochgen warm start from predictive (t=0.5)", "stochgen",
                         {"model": model, "warm_start": 0.5, "predictive": predictive}))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=("enhance", "dereverb"), default="enhance")
    ap.add_argument("--corpus", default=None, help="folder of the generated test split (default: temp dir)")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--model", default=None, help="diffusion model (default: the shipped model of --task)")
    ap.add_argument("--predictive", default=None, help="predictive baseline model (default: the shipped one, if any)")
    ap.add_argument("--quick", action="store_true", help="12 clips and the cheap rows only")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="write the table as JSON to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.clips = min(args.clips, 12)

    import torch

    torch.set_num_threads(args.threads)

    from domains.speech.audio import load_pairs
    from domains.speech.domain import WEIGHTS_DIR, SpeechDomain
    from domains.speech.metrics import score_method

    root = args.corpus or os.path.join(tempfile.gettempdir(), f"stochgen-bench-speech-{args.task}-{args.clips}")
    ensure_test_split(root, args.task, args.clips)
    pairs = load_pairs(root, "test")
    dom = SpeechDomain(task=args.task)
    model = dom.resolve_model(args.model, args.task)
    pred_path = args.predictive
    if pred_path is None:
        shipped = WEIGHTS_DIR / f"{args.task}-predictive.safetensors"
        pred_path = str(shipped) if shipped.is_file() else None
    predictive = dom.resolve_model(pred_path, args.task) if pred_path else None

    import stochgen

    print(f"# bench_speech {args.task}: {len(pairs)} clips, {args.threads} thread(s), "
          f"{datetime.datetime.now().isoformat(timespec='seconds')}, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, stochgen {stochgen.__version__}, noisereduce {_version('noisereduce')}")
    from domains.speech.baselines import spectral_gating

    table = []
    for label, kind, kw in rows_for(args, model, predictive):
        if kind == "input":
            method = lambda w: w  # noqa: E731
        elif kind == "noisereduce":
            method = lambda w, kw=kw: spectral_gating(w, 16000, **kw)  # noqa: E731
        else:
            method = lambda w, kw=kw: dom.enhance(w, 16000, **kw)  # noqa: E731
        _, s = score_method(pairs, method, progress=label[:32])
        nfe = None
        if kind == "stochgen":  # evaluations per chunk, counted on one direct call
            opts = {k: v for k, v in kw.items() if k != "model"}
            nfe = dom.evaluations(kw["model"], pairs[0][1], **opts)
        table.append(dict(s, method=label, nfe=nfe, rtf=None if kind == "input" else s["rtf"]))
    print("\n| method | NFE | SI-SDR / dB | ESTOI | PESQ-wb | RTF |\n|---|---|---|---|---|---|")
    for r in table:
        rtf = "-" if r["rtf"] is None else f"{r['rtf']:.3f}"
        print(f"| {r['method']} | {r['nfe'] or '-'} | {r['si_sdr']:.2f} | {r['estoi']:.3f} | {r['pesq']:.3f} | {rtf} |")
    ours = next(r for r in table if r["method"].startswith("stochgen default"))
    peer = next((r for r in table if r["method"] == "noisereduce (non-stationary)"), None)
    if peer is not None:
        print(f"\nours (default) - noisereduce: SI-SDR {ours['si_sdr'] - peer['si_sdr']:+.2f} dB, "
              f"ESTOI {ours['estoi'] - peer['estoi']:+.3f}, PESQ {ours['pesq'] - peer['pesq']:+.3f}; "
              f"RTF ours / noisereduce = {ours['rtf'] / peer['rtf']:.1f}")
    ref = next((r for r in table if "mr-pc" in r["method"]), None)
    if ref is not None:
        print(f"few steps: default ({ours['nfe']} NFE) - 30-step PC ({ref['nfe']} NFE): "
              f"PESQ {ours['pesq'] - ref['pesq']:+.3f}; RTF ratio {ours['rtf'] / ref['rtf']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"task": args.task, "clips": len(pairs), "threads": args.threads, "rows": table}, f, indent=1)
    return 0


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"bench_speech needs {dist}: pip install -e '.[speech,bench]'") from None


if __name__ == "__main__":
    sys.exit(main())
