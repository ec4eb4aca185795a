"""The speech domain's command-line verbs, added to ``stochgen`` through the ``stochgen.verbs`` entry point.

    stochgen speech-metrics CLEAN_DIR EST_DIR [--csv F]
    stochgen enhance INPUT -o OUTPUT [--model CKPT] [--sampler NAME] [--steps N] [--task enhance|dereverb]
                     [--plot FIG.png [--clean REF]] [--device D] [--seed S] [--no-progress]

:func:`add_verbs` adds them to an argparse sub-parsers object. Module-level imports stay
light (argparse only): numpy, pesq and pystoi load when a verb runs.
"""
from __future__ import annotations

import argparse

__all__ = ["add_verbs", "run_speech_metrics", "run_enhance"]

_METRICS_DESCRIPTION = (
    "Score enhanced speech against clean references: wide-band PESQ (pesq), ESTOI (pystoi) and SI-SDR, per file "
    "and mean. Every .wav in EST_DIR is paired with the file of the same name in CLEAN_DIR, else with the one "
    "named by the part of its name before '__' (u1__white_snr05.wav -> u1.wav). Files at any sample rate are "
    "resampled to 16 kHz; an estimate must have its reference's length. Needs the speech extra: "
    'pip install -e ".[speech]".')


def add_verbs(subparsers) -> None:
    """Add ``speech-metrics`` to ``subparsers`` (the object ``ArgumentParser.add_subparsers()`` returns)."""
    from stochgen.cli import verb_parser

    p = verb_parser(subparsers, "speech-metrics", help="PESQ-wb, ESTOI and SI-SDR of enhanced speech vs clean",
                    description=_METRICS_DESCRIPTION)
    p.add_argument("clean_dir", metavar="CLEAN_DIR", help="folder of clean reference .wav files")
    p.add_argument("est_dir", metavar="EST_DIR", help="folder of estimated (enhanced or noisy) .wav files")
    p.add_argument("--csv", metavar="F", default=None, help="also write per-file rows and the means to this CSV file")
    p.add_argument("--quiet", action="store_true", help="print only the means (a progress bar instead of rows)")
    p.set_defaults(func=run_speech_metrics)

    e = verb_parser(subparsers, "enhance", help="enhance (denoise) or dereverberate speech .wav files",
                    description=_ENHANCE_DESCRIPTION)
    e.add_argument("input", metavar="INPUT", help="a .wav file or a folder of .wav files")
    e.add_argument("-o", "--output", metavar="OUTPUT", required=True,
                   help="output .wav file (for a file INPUT; an existing folder takes the input's name) or folder")
    e.add_argument("--model", metavar="CKPT", default=None,
                   help="a speech model checkpoint (default: the shipped model of --task)")
    e.add_argument("--sampler", metavar="NAME", default=None,
                   help="mr-exact (default, few-step semi-analytic solver), mr-pc (predictor-corrector, SGMSE+) or "
                        "ode (probability flow)")
    e.add_argument("--steps", metavar="N", type=int, default=None, help="sampler steps (default: the model's)")
    e.add_argument("--task", choices=("enhance", "dereverb"), default="enhance",
                   help="which shipped default model to use without --model (default: enhance)")
    e.add_argument("--plot", metavar="FIG", default=None,
                   help="write noisy / enhanced (/ clean with --clean) log-spectrograms side by side (.png/.pdf/.svg)")
    e.add_argument("--clean", metavar="REF", default=None,
                   help="clean reference (.wav file, or folder for a folder INPUT) shown in --plot")
    e.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    e.add_argument("--seed", type=int, default=0, help="seed of the sampler noise (default: 0)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=run_enhance)


_ENHANCE_DESCRIPTION = (
    "Enhance noisy (or dereverberate reverberant) speech with a score-based model in the compressed STFT domain. "
    "INPUT is a .wav file or a folder of them (mono, 16-bit/24-bit/float, any sample rate); each output keeps the "
    "input's file name, sample rate and length and is written as 16-bit PCM. Long files are processed in "
    "overlapping 4 s chunks (bounded memory). Without --model the shipped default model of --task is used. "
    "Every output path is checked before any work; outputs appear only when all inputs succeeded.")
_PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


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


# --- enhance ------------------------------------------------------------------------------------------

def _writable_dir(folder: str, what: str) -> None:
    """``folder`` exists (or can be created under an existing writable parent) and accepts a new file."""
    import os
    import tempfile

    probe = folder
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    probe = probe or "."
    if not os.path.isdir(probe):
        raise ValueError(f"{what}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{what}: cannot write to {probe} (permission denied)")
    try:
        fd, name = tempfile.mkstemp(prefix=".stochgen-probe-", dir=probe)
        os.close(fd)
        os.remove(name)
    except OSError as exc:
        raise ValueError(f"{what}: cannot write to {probe} ({exc.strerror or exc})") from None


def _plan(args):
    """``[(input, output, clean_or_None)], out_dir_to_create_or_None`` with every path checked (no work done)."""
    import os

    from .audio import wav_files

    src, dst = args.input, args.output
    if not dst or not str(dst).strip():
        raise ValueError("-o OUTPUT must not be empty")
    if not os.path.exists(src):
        raise FileNotFoundError(f"{src}: no such file or folder")
    if os.path.isdir(src):
        files = wav_files(src)
        if not files:
            raise ValueError(f"{src}: holds no .wav files")
        if os.path.exists(dst) and not os.path.isdir(dst):
            raise ValueError(f"-o {dst}: is a file, but INPUT {src} is a folder; give an output folder")
        if os.path.abspath(dst) == os.path.abspath(src):
            raise ValueError(f"-o {dst}: is the input folder; choose another folder (inputs are never overwritten)")
        _writable_dir(dst, f"-o {dst}")
        outs = [os.path.join(dst, p.name) for p in files]
        for o in outs:
            if os.path.isdir(o):
                raise ValueError(f"{o}: is a folder, cannot write the output there")
        cleans = [None] * len(files)
        if args.clean:
            if not os.path.isdir(args.clean):
                raise ValueError(f"--clean {args.clean}: INPUT is a folder, so --clean must be a folder of references")
            from .audio import clean_name

            cleans = []
            for p in files:
                c = os.path.join(args.clean, p.name)
                if not os.path.isfile(c):
                    c = os.path.join(args.clean, clean_name(p.name))
                if not os.path.isfile(c):
                    raise ValueError(f"{p}: no clean partner ({p.name} or {clean_name(p.name)}) in {args.clean}")
                cleans.append(c)
        return [(str(p), o, c) for p, o, c in zip(files, outs, cleans)], (None if os.path.isdir(dst) else dst)
    if not os.path.isfile(src):
        raise ValueError(f"{src}: is not a regular file")
    if os.path.isdir(dst):
        out = os.path.join(dst, os.path.basename(src))
        if os.path.isdir(out):
            raise ValueError(f"{out}: is a folder, cannot write the output there")
    else:
        out = dst
        if not out.lower().endswith(".wav"):
            raise ValueError(f"-o {dst}: an output file must end in .wav (or give an existing folder)")
        if out.endswith(os.sep):
            raise ValueError(f"-o {dst}: not a file name")
    if os.path.abspath(out) == os.path.abspath(src):
        raise ValueError(f"-o {dst}: is the input file; choose another name (inputs are never overwritten)")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise ValueError(f"-o {dst}: folder {parent} does not exist")
    _writable_dir(parent, f"-o {dst}")
    if os.path.exists(out) and not os.access(out, os.W_OK):
        raise ValueError(f"-o {dst}: cannot overwrite {out} (permission denied)")
    clean = None
    if args.clean:
        if not os.path.isfile(args.clean):
            raise ValueError(f"--clean {args.clean}: no such file")
        clean = args.clean
    return [(src, out, clean)], None


def _check_plot(path: str) -> None:
    import os

    if os.path.splitext(path)[1].lower() not in _PLOT_SUFFIXES:
        raise ValueError(f"--plot {path}: the figure must be a {' / '.join(_PLOT_SUFFIXES)} file")
    if os.path.isdir(path):
        raise ValueError(f"--plot {path}: is a folder")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"--plot {path}: folder {parent} does not exist")
    _writable_dir(parent, f"--plot {path}")


def _device(name: str):
    """The torch device of ``--device``, checked as every stochgen verb checks it."""
    import torch

    from stochgen.cli import check_device

    return torch.device(check_device(name))


def _load_speech_model(args, dev):
    import os

    import stochgen

    from .domain import SpeechDomain, default_weights

    path = args.model
    if path is None:
        path = str(default_weights(args.task))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no shipped {args.task} model at {path}; give --model CKPT")
    else:
        if os.path.isdir(path):
            raise ValueError(f"--model {path}: is a folder, not a checkpoint file")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--model {path}: checkpoint not found")
    try:
        info = stochgen.checkpoint.info(path)
        name = ((info.get("spec") or {}).get("domain") or {}).get("name")
    except Exception as exc:
        raise ValueError(f"--model {path}: not a stochgen checkpoint ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if name != "speech":
        raise ValueError(f"--model {path}: a model of the {name!r} domain, not a speech model")
    try:
        model = stochgen.load(path, device=dev)
    except (ValueError, KeyError, RuntimeError, TypeError, OSError) as exc:
        raise ValueError(f"--model {path}: cannot load ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not isinstance(model.domain, SpeechDomain):
        raise ValueError(f"--model {path}: a model of the {model.domain.name!r} domain, not a speech model")
    return model


def _check_sampler(model, sampler, steps) -> None:
    from stochgen import samplers
    from stochgen.families import samplers_for

    if steps is not None and steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    if steps is not None and steps > 10000:
        raise ValueError(f"--steps {steps}: too many (at most 10000)")
    if sampler is not None:
        ok = samplers_for(model.process)
        if sampler not in samplers.names():
            raise ValueError(f"--sampler {sampler!r}: unknown; samplers for this model: {', '.join(ok)}")
        if sampler not in ok:
            raise ValueError(f"--sampler {sampler!r} does not apply to this model's process; use one of {', '.join(ok)}")


def plot_spectrograms(path: str, panels: list, sr: int = 16000) -> str:
    """Log-magnitude spectrograms of ``[(title, wave), ...]`` side by side in one figure at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from .stft import SpecCodec

    codec = SpecCodec(alpha=1.0, beta=1.0)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), sharey=True, squeeze=False)
    for ax, (title, wave) in zip(axes[0], panels):
        w = np.asarray(wave, dtype=np.float32)
        if w.size <= codec.n_fft // 2:
            w = np.pad(w, (0, codec.n_fft // 2 + 1 - w.size))
        mag = codec.stft(torch.from_numpy(w)).abs().numpy()
        db = 20 * np.log10(mag + 1e-5)
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=db.max() - 80, vmax=db.max(),
                  extent=(0, w.size / sr, 0, sr / 2000))
        ax.set_title(title)
        ax.set_xlabel("time / s")
    axes[0][0].set_ylabel("frequency / kHz")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_enhance(args: argparse.Namespace) -> int:
    """Enhance INPUT into OUTPUT; every path is checked first and outputs appear (renamed from temporary
    files) only when every input went through. One-line errors as ``ValueError`` / ``FileNotFoundError``."""
    import os
    import uuid

    from .audio import read_wav, write_wav

    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    jobs, create_dir = _plan(args)
    if args.plot:
        _check_plot(args.plot)
        if any(os.path.abspath(args.plot) == os.path.abspath(o) for _, o, _ in jobs):
            raise ValueError(f"--plot {args.plot}: is also an output wav")
    dev = _device(args.device)
    # every input readable before any work (a bad file fails the run up front, naming it)
    for src, _, clean in jobs:
        read_wav(src, sr=None)
        if clean is not None:
            read_wav(clean, sr=None)
    model = _load_speech_model(args, dev)
    _check_sampler(model, args.sampler, args.steps)
    from .domain import SpeechDomain

    dom = model.domain if isinstance(model.domain, SpeechDomain) else SpeechDomain()
    opts = {"seed": int(args.seed)}
    if args.sampler:
        opts["sampler"] = args.sampler
    if args.steps:
        opts["steps"] = int(args.steps)
    temps, made_dir, first = [], False, None
    try:
        from tqdm.auto import tqdm

        bar = tqdm(jobs, desc="enhance", unit="file", disable=bool(args.no_progress) or None, dynamic_ncols=True)
        for src, out, clean in bar:
            wave, sr = read_wav(src, sr=None, return_sr=True)
            try:
                est = dom.enhance(wave, sr, model=model, task=args.task, **opts)
            except (TypeError, RuntimeError) as exc:
                raise ValueError(f"{src}: enhancement failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
            if create_dir and not made_dir:
                os.makedirs(create_dir, exist_ok=True)
                made_dir = True
            folder = os.path.dirname(os.path.abspath(out))
            tmp = os.path.join(folder, f".{os.path.basename(out)}.{uuid.uuid4().hex[:8]}.tmp")
            temps.append((tmp, out))
            try:
                write_wav(tmp, est, sr)
            except OSError as exc:
                raise ValueError(f"{out}: cannot write ({exc.strerror or exc})") from None
            if first is None:
                first = (wave, est, clean, sr)
        for tmp, out in temps:
            os.replace(tmp, out)
        temps = []
    except BaseException:
        for tmp, _ in temps:
            try:
                os.remove(tmp)
            except OSError:
                pass
        if made_dir:
            try:
                os.rmdir(create_dir)
            except OSError:
                pass
        raise
    if args.plot and first is not None:
        wave, est, clean, sr = first
        panels = [("noisy", wave), ("enhanced", est)]
        if clean is not None:
            panels.append(("clean", read_wav(clean, sr=sr)))
        try:
            plot_spectrograms(args.plot, panels, sr)
        except OSError as exc:
            raise ValueError(f"--plot {args.plot}: cannot write ({exc.strerror or exc})") from None
        print(f"wrote {args.plot}")
    where = jobs[0][1] if len(jobs) == 1 else os.path.dirname(jobs[0][1])
    print(f"enhanced {len(jobs)} file{'s' if len(jobs) != 1 else ''} -> {where}")
    return 0
