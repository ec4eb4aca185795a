"""Reading and writing wav files, and the paired-folder layout speech users already have.

* :func:`read_wav`: a mono wav at any sample rate -> float32 wave at 16 kHz (resampled with
  librosa). A stereo, 8-bit, empty, non-wav / unreadable file, or one holding NaN or inf,
  is a ``ValueError`` naming the file and the problem; a missing one a ``FileNotFoundError``.
* :func:`write_wav`: 16-bit PCM at a given rate (values clipped to [-1, 1]).
* :func:`pair_files` / :func:`split_pairs` / :func:`load_pairs`: the VoiceBank-DEMAND /
  sgmse layout ``ROOT/{train,valid,test}/{clean,noisy}/*.wav``. A noisy file is paired with
  the clean file of the same name, else with the clean file named by the part of its name
  before ``__`` (``utt__white_snr05.wav`` -> ``utt.wav``); a noisy file with no clean partner
  is a ``ValueError`` naming it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["SAMPLE_RATE", "read_wav", "write_wav", "wav_files", "clean_name", "pair_files", "split_pairs", "load_pairs",
           "SPLITS", "WAV_FORMATS"]

SAMPLE_RATE = 16000  # the speech domain's rate: every wave is resampled to it on reading
SPLITS = ("train", "valid", "test")
WAV_FORMATS = ("WAV", "WAVEX", "RF64")
_SPEECH_EXTRA = 'pip install -e ".[speech]"'


def _soundfile():
    try:
        import soundfile
    except ImportError as exc:
        raise ImportError(f"reading and writing wav files needs soundfile: {_SPEECH_EXTRA} "
                          "(or pip install soundfile)") from exc
    return soundfile


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """``wave`` from ``orig_sr`` to ``target_sr`` with librosa (soxr, high quality); unchanged when equal."""
    if int(orig_sr) == int(target_sr):
        return wave
    try:
        import librosa
    except ImportError as exc:
        raise ImportError(f"resampling needs librosa: {_SPEECH_EXTRA} (or pip install librosa)") from exc
    return librosa.resample(wave, orig_sr=int(orig_sr), target_sr=int(target_sr)).astype(wave.dtype, copy=False)


def read_wav(path, sr: int | None = SAMPLE_RATE, return_sr: bool = False):
    """Mono wav -> float32 wave in [-1, 1], resampled to ``sr`` (``None`` keeps the file's rate).

    With ``return_sr=True`` returns ``(wave, file_rate)``: the file's own rate, so that
    an output can be written back at it.
    """
    sf = _soundfile()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder, not a wav file")
    try:
        info = sf.info(path)
    except Exception as exc:  # soundfile.LibsndfileError and friends
        raise ValueError(f"{path}: not a readable wav file ({_short(exc)})") from None
    if info.format not in WAV_FORMATS:
        raise ValueError(f"{path}: not a wav file (its content is {info.format_info or info.format})")
    if info.channels != 1:
        raise ValueError(f"{path}: has {info.channels} channels; only mono is supported "
                         f"(mix down first, e.g. sox in.wav -c 1 out.wav)")
    if info.subtype in ("PCM_U8", "PCM_S8"):
        raise ValueError(f"{path}: 8-bit PCM is not supported (too coarse for speech); "
                         f"convert to 16-bit, e.g. sox in.wav -b 16 out.wav")
    if info.frames == 0:
        raise ValueError(f"{path}: is empty (no samples)")
    try:
        wave, rate = sf.read(path, dtype="float32", always_2d=False)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable wav file ({_short(exc)})") from None
    if wave.size == 0:
        raise ValueError(f"{path}: is empty (no samples)")
    bad = ~np.isfinite(wave)
    if bad.any():
        kind = "NaN" if np.isnan(wave).any() else "infinite"
        raise ValueError(f"{path}: holds {kind} samples ({int(bad.sum())} of {wave.size}, first at sample "
                         f"{int(np.argmax(bad))})")
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if sr is not None:
        wave = resample(wave, rate, sr)
    return (wave, int(rate)) if return_sr else wave


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def write_wav(path, wave, sr: int = SAMPLE_RATE) -> str:
    """Write a mono wave (values in [-1, 1], clipped beyond) as 16-bit PCM at ``sr``; returns the path."""
    sf = _soundfile()
    wave = np.asarray(wave.detach().cpu() if hasattr(wave, "detach") else wave, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"{path}: expected a mono wave (L,), got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise ValueError(f"{path}: the wave to write holds NaN or infinite samples")
    if int(sr) != sr or sr <= 0:
        raise ValueError(f"{path}: sample rate must be a positive integer, got {sr!r}")
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    sf.write(path, np.clip(wave, -1.0, 1.0), int(sr), subtype="PCM_16", format="WAV")
    return path


def wav_files(folder) -> list[Path]:
    """The ``*.wav`` files directly in ``folder``, sorted by name (FileNotFoundError if it is missing)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file())


def clean_name(name: str) -> str:
    """The clean partner's file name for a noisy / estimated file name: the part before ``__``.

    ``utt__white_snr05.wav`` -> ``utt.wav``; a name without ``__`` is returned unchanged.
    """
    stem, ext = os.path.splitext(os.path.basename(name))
    return stem.split("__", 1)[0] + ext if "__" in stem else stem + ext


def pair_files(clean_dir, noisy_dir) -> list[tuple[Path, Path]]:
    """``[(noisy, clean), ...]`` for every wav in ``noisy_dir``, sorted by noisy name.

    A noisy file pairs with the clean file of the same name, else with :func:`clean_name` of
    it. Clean files without a noisy partner are ignored; a noisy file without a clean one is
    a ``ValueError`` naming it.
    """
    noisy = wav_files(noisy_dir)
    clean = {p.name: p for p in wav_files(clean_dir)}
    if not noisy:
        raise ValueError(f"{noisy_dir}: holds no .wav files")
    pairs = []
    for p in noisy:
        partner = clean.get(p.name) or clean.get(clean_name(p.name))
        if partner is None:
            want = p.name if clean_name(p.name) == p.name else f"{p.name} or {clean_name(p.name)}"
            raise ValueError(f"{p}: no clean partner ({want}) in {clean_dir}")
        pairs.append((p, partner))
    return pairs


def split_pairs(root, split: str) -> list[tuple[Path, Path]]:
    """:func:`pair_files` of ``root/split/clean`` and ``root/split/noisy``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    base = Path(root) / split
    for sub in ("clean", "noisy"):
        if not (base / sub).is_dir():
            raise FileNotFoundError(f"{base / sub}: no such folder (expected the layout "
                                    f"ROOT/{{train,valid,test}}/{{clean,noisy}}/*.wav)")
    return pair_files(base / "clean", base / "noisy")


def load_pairs(root, split: str, sr: int = SAMPLE_RATE) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(noisy_name, noisy_wave, clean_wave), ...]`` of one split, resampled to ``sr``.

    A pair whose lengths differ (after resampling) is a ``ValueError`` naming both files.
    """
    out = []
    for noisy_path, clean_path in split_pairs(root, split):
        noisy = read_wav(noisy_path, sr)
        clean = read_wav(clean_path, sr)
        if noisy.shape != clean.shape:
            raise ValueError(f"{noisy_path}: {noisy.size} samples but its clean partner {clean_path} has "
                             f"{clean.size} (at {sr} Hz); paired files must have the same length")
        out.append((noisy_path.name, noisy, clean))
    return out
