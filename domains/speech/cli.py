"""The speech domain's command-line verbs, added to ``stochgen`` through the ``stochgen.verbs`` entry point.

    stochgen speech-metrics CLEAN_DIR EST_DIR [--csv F]

:func:`add_verbs` adds them to an argparse sub-parsers object. Module-level imports stay
light (argparse only): numpy, pesq and pystoi load when a verb runs.
"""
from __future__ import annotations

import argparse

__all__ = ["add_verbs", "run_speech_metrics"]

_METRICS_DESCRIPTION = (
    "Score enhanced speech against clean references: wide-band PESQ (pesq), ESTOI (pystoi) and SI-SDR, per file "
    "and mean. Every .wav in EST_DIR is paired with the file of the same name in CLEAN_DIR, else with the one "
    "named by the part of its name before '__' (u1__white_snr05.wav -> u1.wav). Files at any sample rate are "
    "resampled to 16 kHz; an estimate must have its reference's length. Needs the speech extra: "
    'pip install -e ".[speech]".')


def add_verbs(subparsers) -> None:
    """Add ``speech-metrics`` to ``subparsers`` (the object ``ArgumentParser.add_subparsers()`` returns)."""
    kw = {}
    formatter = getattr(getattr(subparsers, "_parser_class", None), "formatter_class", None)
    if formatter is not None:
        kw["formatter_class"] = formatter
    p = subparsers.add_parser("speech-metrics", help="PESQ-wb, ESTOI and SI-SDR of enhanced speech vs clean",
                              description=_METRICS_DESCRIPTION, **kw)
    p.add_argument("clean_dir", metavar="CLEAN_DIR", help="folder of clean reference .wav files")
    p.add_argument("est_dir", metavar="EST_DIR", help="folder of estimated (enhanced or noisy) .wav files")
    p.add_argument("--csv", metavar="F", default=None, help="also write per-file rows and the means to this CSV file")
    p.add_argument("--quiet", action="store_true", help="print only the means (a progress bar instead of rows)")
    p.set_defaults(func=run_speech_metrics)


def run_speech_metrics(args: argparse.Namespace) -> int:
    """Print one row per estimate (or a progress bar with ``--quiet``) and the means; 0 on success.

    User errors (missing folder, a file without a clean partner, unreadable audio) raise
    ``FileNotFoundError`` / ``ValueError`` with one line; a missing metric package ``ImportError``.
    """
    import os

    from .metrics import evaluate_dirs, write_csv

    for d in (args.clean_dir, args.est_dir):
        if not os.path.isdir(d):
            raise FileNotFoundError(f"{d}: no such folder")
    if args.csv:
        parent = os.path.dirname(os.path.abspath(args.csv))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"--csv {args.csv}: folder {parent} does not exist")
        if os.path.isdir(args.csv):
            raise ValueError(f"--csv {args.csv}: is a folder; give a file name")
    quiet = bool(getattr(args, "quiet", False))
    rows, means = evaluate_dirs(args.clean_dir, args.est_dir, progress=quiet)
    if not quiet:
        width = max(len("file"), *(len(r["file"]) for r in rows))
        print(f"{'file':<{width}}  {'SI-SDR/dB':>9}  {'PESQ-wb':>7}  {'ESTOI':>6}")
        for r in rows:
            print(f"{r['file']:<{width}}  {r['si_sdr']:9.2f}  {r['pesq']:7.3f}  {r['estoi']:6.3f}")
    print(f"mean over {means['n']} files: SI-SDR {means['si_sdr']:.2f} dB, PESQ-wb {means['pesq']:.3f}, "
          f"ESTOI {means['estoi']:.3f}")
    if args.csv:
        write_csv(rows, means, args.csv)
        print(f"wrote {args.csv}")
    return 0
