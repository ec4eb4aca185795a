"""Speech-quality metrics: SI-SDR (own), PESQ wide-band (``pesq``) and ESTOI (``pystoi``).

* :func:`si_sdr`: scale-invariant signal-to-distortion ratio (Le Roux et al. 2019) in dB,
  ``10 log10(|a s|^2 / |a s - e|^2)`` with ``a = <e, s> / <s, s>``; capped at
  :data:`SI_SDR_CAP_DB` (a scaled copy of the reference reaches the cap). No mean is
  removed unless ``zero_mean=True`` (the sgmse convention).
* :func:`pesq_wb`: ITU-T P.862.2 wide-band PESQ at 16 kHz (identical signals: 4.64).
* :func:`estoi`: extended short-time objective intelligibility (pystoi, ``extended=True``).
* :func:`evaluate_dirs`: every estimate in a folder against its clean partner (same name,
  or the part of the estimate's name before ``__``), per file and mean; :func:`write_csv`.

PESQ and ESTOI need the ``speech`` extra; without it they raise an ``ImportError`` naming
the pip command.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE, pair_files, read_wav

__all__ = ["si_sdr", "pesq_wb", "estoi", "evaluate_pair", "evaluate_dirs", "write_csv", "SI_SDR_CAP_DB",
           "METRICS"]

SI_SDR_CAP_DB = 100.0
METRICS = ("si_sdr", "pesq", "estoi")
_SPEECH_EXTRA = 'pip install -e ".[speech]"'


def _pair(reference, estimate, what: str) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference.detach().cpu() if hasattr(reference, "detach") else reference, dtype=np.float64)
    est = np.asarray(estimate.detach().cpu() if hasattr(estimate, "detach") else estimate, dtype=np.float64)
    if ref.ndim != 1 or est.ndim != 1:
        raise ValueError(f"{what} takes mono waves (L,), got shapes {ref.shape} and {est.shape}")
    if ref.shape != est.shape:
        raise ValueError(f"{what}: reference has {ref.size} samples, estimate {est.size}; they must match")
    if ref.size == 0:
        raise ValueError(f"{what}: empty waves")
    if not (np.isfinite(ref).all() and np.isfinite(est).all()):
        raise ValueError(f"{what}: waves hold NaN or infinite samples")
    return ref, est


def si_sdr(reference, estimate, zero_mean: bool = False, cap_db: float = SI_SDR_CAP_DB) -> float:
    """Scale-invariant SDR of ``estimate`` against ``reference`` (mono, same length), in dB, at most ``cap_db``."""
    ref, est = _pair(reference, estimate, "SI-SDR")
    if zero_mean:
        ref, est = ref - ref.mean(), est - est.mean()
    rr = float(ref @ ref)
    if rr <= 0:
        raise ValueError("SI-SDR: the reference is silent (zero energy)")
    target = (float(est @ ref) / rr) * ref
    t2 = float(target @ target)
    e2 = float(np.sum((est - target) ** 2))
    if t2 == 0:
        return -cap_db
    if e2 == 0 or 10 * math.log10(t2 / e2) > cap_db:
        return float(cap_db)
    return float(max(10 * math.log10(t2 / e2), -cap_db))


def pesq_wb(reference, estimate, sr: int = SAMPLE_RATE) -> float:
    """Wide-band PESQ (P.862.2, MOS-LQO scale, 1.04..4.64) at 16 kHz."""
    try:
        from pesq import pesq as _pesq
    except ImportError as exc:
        raise ImportError(f"PESQ needs the pesq package: {_SPEECH_EXTRA} (or pip install pesq==0.0.4)") from exc
    ref, est = _pair(reference, estimate, "PESQ")
    if sr != 16000:
        raise ValueError(f"wide-band PESQ runs at 16000 Hz, got sr={sr}; resample first")
    try:
        return float(_pesq(16000, ref, est, "wb"))
    except Exception as exc:  # pesq.NoUtterancesError, pesq.InvalidSampleRateError, buffer too short
        raise ValueError(f"PESQ failed: {exc}") from None


def estoi(reference, estimate, sr: int = SAMPLE_RATE) -> float:
    """Extended STOI (Jensen & Taal 2016) via pystoi, 0..1 (higher is better)."""
    try:
        from pystoi import stoi
    except ImportError as exc:
        raise ImportError(f"ESTOI needs the pystoi package: {_SPEECH_EXTRA} (or pip install pystoi==0.4.1)") from exc
    ref, est = _pair(reference, estimate, "ESTOI")
    return float(stoi(ref, est, int(sr), extended=True))


def evaluate_pair(reference, estimate, sr: int = SAMPLE_RATE) -> dict:
    """``{"si_sdr": dB, "pesq": MOS, "estoi": 0..1}`` of one estimate."""
    return {"si_sdr": si_sdr(reference, estimate), "pesq": pesq_wb(reference, estimate, sr),
            "estoi": estoi(reference, estimate, sr)}


def evaluate_dirs(clean_dir, est_dir, sr: int = SAMPLE_RATE, progress: bool = False) -> tuple[list[dict], dict]:
    """Score every ``*.wav`` in ``est_dir`` against its partner in ``clean_dir``.

    Partners: the clean file of the same name, else the one named by the part before ``__``
    (``u1__white_snr05.wav`` -> ``u1.wav``). Files are read at any rate and resampled to
    ``sr`` (16 kHz). Returns ``(rows, means)``: one dict per estimate (``file``, ``clean``
    and the :data:`METRICS`) in name order, and the mean of each metric plus ``n``. An
    estimate without a clean partner, or whose length differs from it, is a ``ValueError``
    naming the file; missing folders a ``FileNotFoundError``.
    """
    # partners first: a missing one is reported before any slow scoring (the estimates pair like noisy files)
    pairs = pair_files(clean_dir, est_dir)
    it = pairs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(pairs, desc="speech metrics", unit="file")
    rows = []
    for est_path, clean_path in it:
        est = read_wav(est_path, sr)
        ref = read_wav(clean_path, sr)
        if est.shape != ref.shape:
            raise ValueError(f"{est_path}: {est.size} samples but its clean partner {clean_path} has {ref.size} "
                             f"(at {sr} Hz); an estimate must keep its input's length")
        try:
            scores = evaluate_pair(ref, est, sr)
        except ValueError as exc:
            raise ValueError(f"{est_path}: {exc}") from None
        rows.append({"file": est_path.name, "clean": clean_path.name, **scores})
    means = {m: float(np.mean([r[m] for r in rows])) for m in METRICS}
    means["n"] = len(rows)
    return rows, means


def score_method(pairs, method, sr: int = SAMPLE_RATE, progress: str | None = None) -> tuple[list[dict], dict]:
    """Run ``method(noisy) -> estimate`` on every ``(name, noisy, clean)`` of ``pairs`` and score it.

    Returns ``(rows, summary)``: per-file metrics, and their means with ``files``, ``seconds``
    (time spent inside ``method``), ``audio_seconds`` and ``rtf`` (seconds / audio seconds).
    An estimate of another length than its input is a ``ValueError`` naming the file.
    ``progress``: a tqdm bar with that description.
    """
    import time

    it = pairs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(pairs, desc=progress, unit="file")
    rows, secs, audio = [], 0.0, 0.0
    for name, noisy, clean in it:
        t0 = time.perf_counter()
        est = np.asarray(method(noisy), dtype=np.float32)
        secs += time.perf_counter() - t0
        if est.shape != noisy.shape:
            raise ValueError(f"{name}: the method returned shape {est.shape} for an input of {noisy.shape}")
        audio += noisy.size / sr
        rows.append({"file": name, **evaluate_pair(clean, est, sr)})
    summary = {m: float(np.mean([r[m] for r in rows])) for m in METRICS}
    summary.update(files=len(rows), seconds=secs, audio_seconds=audio, rtf=secs / max(audio, 1e-9))
    return rows, summary


def write_csv(rows: list[dict], means: dict, path) -> str:
    """Per-file rows and a last ``mean`` row to ``path`` (columns ``file, clean, si_sdr, pesq, estoi``)."""
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "clean", *METRICS])
        for r in rows:
            w.writerow([r["file"], r["clean"], *(f"{r[m]:.6f}" for m in METRICS)])
        w.writerow(["mean", f"n={means['n']}", *(f"{means[m]:.6f}" for m in METRICS)])
    return path
