"""Offline paired speech corpus: synthetic speech, coloured noise, babble and shoebox reverberation.

Nothing can be downloaded on these machines, so training data are made here:

* clean speech: the Debian ``espeak-ng`` and ``flite`` voices reading this project's own
  sentences (:mod:`domains.speech.sentences`), resampled to 16 kHz, leading/trailing
  silence trimmed, clips of about 2-4 s;
* noise (task ``enhance``): white, pink (1/f) and brown (1/f^2) noise by spectral shaping,
  and babble (the sum of 3-6 utterances of other voices), mixed at a target SNR that is
  achieved exactly (:func:`mix_at_snr`);
* reverberation (task ``dereverb``): pyroomacoustics shoebox rooms (image-source model,
  absorption from Sabine's formula for the drawn RT60). The clean target is the direct path
  alone (the same room and positions with ``max_order = 0``), so it carries the same delay
  and distance gain as the reverberant input and is time-aligned with it; both are shifted
  by the integer direct-path delay.

Every clip is a pure function of ``(seed, split, index)``: the same seed gives the same
files whatever the split sizes or the number of workers.

Conditions (the issue's):

===========  ===============================  =====================================
split        enhance                          dereverb
===========  ===============================  =====================================
train/valid  SNR uniform in -5..15 dB,        RT60 uniform in 0.2..1.2 s
             noise uniform over the 4 kinds
test         SNR in {0, 5, 10} dB x noise in  RT60 uniform in 0.4..1.0 s
             {white, pink, brown, babble},
             the 12 pairs in turn
===========  ===============================  =====================================

Voices: the test split speaks with voices that train/valid never use (:data:`TRAIN_VOICES`
vs :data:`TEST_VOICES`, and one sentence in five is kept for the test split). Test babble
uses :data:`TEST_BABBLE_VOICES`; training babble must not (see below).

**Held out for an independent evaluation** (the project's binding data rule, DATA.md): the
flite voice ``slt`` and the espeak-ng voice ``en-gb-scotland`` are refused for any use, and
the test-babble voices flite ``awb`` / ``rms`` and espeak-ng ``en-us+f3`` / ``en-gb-x-rp`` are
refused as training (train/valid) babble. Harvard sentences and the audio of the Debian
package ``pocketsphinx-testdata`` are not used anywhere.

Layout written by :func:`make_corpus` (the one :mod:`domains.speech.audio` reads)::

    ROOT/corpus.json                         settings, voices of each split, timing
    ROOT/{train,valid,test}/clean/u00012.wav
    ROOT/{train,valid,test}/noisy/u00012__pink_snr05.wav      (enhance)
    ROOT/{train,valid,test}/noisy/u00012__rt60_0730ms.wav     (dereverb)
    ROOT/{train,valid,test}/meta.csv         voice, text, noise, snr, rt60, room, ...

Command line::

    python -m domains.speech.corpus ROOT --task enhance --n-train 2000 --n-valid 50 --n-test 40 --seed 0

Needs the Debian packages ``espeak-ng`` and ``flite`` and the ``speech`` extra (soundfile,
librosa, pyroomacoustics).
"""
from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE, SPLITS, resample, write_wav
from .sentences import sentence_split

__all__ = ["Voice", "parse_voice", "check_voice", "HeldOutVoiceError", "synthesize", "available_voices",
           "colored_noise", "babble", "mix_at_snr", "measure_snr", "shoebox_rirs", "reverberate",
           "make_clip", "make_corpus", "clip_names", "main",
           "TASKS", "NOISE_KINDS", "TEST_SNRS_DB", "TRAIN_SNR_DB", "TRAIN_RT60_S", "TEST_RT60_S",
           "TRAIN_VOICES", "TEST_VOICES", "TRAIN_BABBLE_VOICES", "TEST_BABBLE_VOICES", "HELD_OUT_RULE"]

TASKS = ("enhance", "dereverb")
NOISE_KINDS = ("white", "pink", "brown", "babble")
TRAIN_SNR_DB = (-5.0, 15.0)
TEST_SNRS_DB = (0.0, 5.0, 10.0)
TRAIN_RT60_S = (0.2, 1.2)
TEST_RT60_S = (0.4, 1.0)
CLIP_SECONDS = (2.0, 4.0)
SOURCE_MIC_M = (1.5, 4.5)  # source-microphone distance of the reverberant rooms
BABBLE_TALKERS = (3, 6)
COLOR_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectral density ~ 1 / f**exponent
NOISE_F_MIN_HZ = 20.0  # the 1/f shapes are flat below this (no sub-audible drift swallowing the SNR)
SPEECH_LEVEL_DBFS = (-32.0, -22.0)  # RMS of the clean clip (enhance) / reverberant clip (dereverb)
PEAK_LIMIT = 0.95
_SPLIT_CODE = {"train": 0, "valid": 1, "test": 2}
_TASK_CODE = {"enhance": 1, "dereverb": 2}
_ENGINES = ("espeak-ng", "flite")

HELD_OUT_RULE = ("held out for an independent evaluation (project data rule, DATA.md): flite slt and "
                 "espeak-ng en-gb-scotland are never used; flite awb / rms and espeak-ng en-us+f3 / "
                 "en-gb-x-rp are the test babble and never training babble")


class HeldOutVoiceError(ValueError):
    """A voice the project's data rule keeps out of this use."""


# --- voices -------------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Voice:
    """A synthetic speaker: ``engine`` (``espeak-ng`` or ``flite``) and its voice ``name``.

    espeak-ng names are a language code with an optional variant, ``en-us+m1``; flite names
    are a voice name (``kal16``).
    """

    engine: str
    name: str

    def __str__(self) -> str:
        return f"{self.engine}:{self.name}"


def parse_voice(spec) -> Voice:
    """``"espeak-ng:en-us+m1"`` / ``"flite:kal16"`` (or a :class:`Voice`) -> :class:`Voice`."""
    if isinstance(spec, Voice):
        return spec
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"a voice is written ENGINE:NAME with ENGINE one of {', '.join(_ENGINES)} "
                         f"(e.g. espeak-ng:en-us+m1, flite:kal16), got {spec!r}")
    engine, name = spec.split(":", 1)
    engine = engine.strip().lower()
    if engine == "espeak":
        engine = "espeak-ng"
    if engine not in _ENGINES:
        raise ValueError(f"unknown speech engine {engine!r} in {spec!r}; use one of {', '.join(_ENGINES)}")
    name = name.strip()
    if not name:
        raise ValueError(f"voice {spec!r} has no name")
    return Voice(engine, name)


def _voice_key(v: Voice) -> tuple[str, str, str]:
    """(engine, base, variant), lower case; flite names lose any path, extension and cmu_us_ prefix."""
    name = v.name.strip().lower()
    if v.engine == "flite":
        name = os.path.splitext(os.path.basename(name))[0]
        name = re.sub(r"^cmu_us_", "", name)
        return v.engine, name, ""
    base, _, variant = name.partition("+")
    return v.engine, base.strip(), variant.strip()


def _is_held_out(v: Voice) -> bool:
    engine, base, _ = _voice_key(v)
    if engine == "flite":
        return "slt" in base
    return "scotland" in base or base in ("en-sc", "en-gb-sc")


def _is_test_babble(v: Voice) -> bool:
    engine, base, variant = _voice_key(v)
    if engine == "flite":
        return base.startswith("awb") or base.startswith("rms")
    if "x-rp" in base or "received" in base:
        return True
    return base in ("en-us", "gmw/en-us", "english_(america)") and variant == "f3"


def check_voice(voice, role: str) -> Voice:
    """Refuse a voice the data rule keeps out of ``role``; returns the parsed voice.

    ``role``: ``"clean"`` (speech of any split), ``"test_babble"`` or ``"train_babble"``
    (babble of the train/valid splits). :data:`HELD_OUT_RULE` is the rule.
    """
    v = parse_voice(voice)
    if role not in ("clean", "train_babble", "test_babble"):
        raise ValueError(f"role must be clean, train_babble or test_babble, got {role!r}")
    if _is_held_out(v):
        raise HeldOutVoiceError(f"voice {v} is refused: {HELD_OUT_RULE}")
    if role == "train_babble" and _is_test_babble(v):
        raise HeldOutVoiceError(f"voice {v} is refused as training babble: {HELD_OUT_RULE}")
    return v


def _voices(specs) -> tuple[Voice, ...]:
    return tuple(parse_voice(s) for s in specs)


#: clean speech of the train and valid splits
TRAIN_VOICES = _voices([
    "espeak-ng:en-us+m1", "espeak-ng:en-us+m2", "espeak-ng:en-us+f1", "espeak-ng:en-us+f4",
    "espeak-ng:en-gb+m3", "espeak-ng:en-gb+f2", "espeak-ng:en-029+m4", "espeak-ng:en-029+f5",
    "espeak-ng:en-gb-x-gbclan+m5", "espeak-ng:en-gb-x-gbclan+f1", "flite:kal16",
])
#: clean speech of the test split: accents (New York, West Midlands) and variants train never uses
TEST_VOICES = _voices([
    "espeak-ng:en-us-nyc+m6", "espeak-ng:en-us-nyc+f2", "espeak-ng:en-gb-x-gbcwmd+m7",
    "espeak-ng:en-gb-x-gbcwmd+f5",
])
#: babble of the train and valid splits (never the test babble voices)
TRAIN_BABBLE_VOICES = _voices([
    "espeak-ng:en-us+m3", "espeak-ng:en-us+f2", "espeak-ng:en-gb+m1", "espeak-ng:en-gb+f4",
    "espeak-ng:en-029+m2", "espeak-ng:en-gb-x-gbclan+m7", "espeak-ng:en-us+m6", "flite:kal16",
])
#: babble of the test split: the voices of the independent evaluation's babble
TEST_BABBLE_VOICES = _voices(["flite:awb", "flite:rms", "espeak-ng:en-us+f3", "espeak-ng:en-gb-x-rp"])


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed; the speech corpus needs the Debian packages "
                                f"espeak-ng and flite: apt-get install -y espeak-ng flite")
    return path


@functools.lru_cache(maxsize=None)
def available_voices(engine: str) -> frozenset[str]:
    """Voice names the installed engine knows (espeak-ng: language codes and variant names; lower case).

    Both engines silently fall back to a default voice for an unknown name, so voices are
    checked against these lists before synthesis.
    """
    if engine == "flite":
        out = subprocess.run([_binary("flite"), "-lv"], capture_output=True, text=True, check=False).stdout
        names = out.split(":", 1)[1].split() if ":" in out else out.split()
        return frozenset(n.lower() for n in names)
    if engine == "espeak-ng":
        exe = _binary("espeak-ng")
        names = set()
        for line in subprocess.run([exe, "--voices"], capture_output=True, text=True, check=False).stdout.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 5 and not cols[4].startswith("mb/"):  # mbrola voices need the mbrola binary
                names.add("lang:" + cols[1].lower())
        for line in subprocess.run([exe, "--voices=variant"], capture_output=True, text=True,
                                   check=False).stdout.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 5 and cols[-1].startswith("!v/"):
                names.add("variant:" + cols[-1][3:].lower())
        return frozenset(names)
    raise ValueError(f"unknown speech engine {engine!r}; use one of {', '.join(_ENGINES)}")


def _check_available(v: Voice) -> None:
    known = available_voices(v.engine)
    if v.engine == "flite":
        if v.name.lower() not in known:
            raise ValueError(f"flite has no voice {v.name!r} here (it has: {', '.join(sorted(known))})")
        return
    base, _, variant = v.name.lower().partition("+")
    if "lang:" + base not in known:
        langs = sorted(k[5:] for k in known if k.startswith("lang:") and k[5:].startswith("en"))
        raise ValueError(f"espeak-ng has no voice {base!r} here (English ones: {', '.join(langs)})")
    if variant and "variant:" + variant not in known:
        raise ValueError(f"espeak-ng has no variant {variant!r} (voice {v}); see espeak-ng --voices=variant")


def synthesize(text: str, voice, rate: float = 1.0, pitch: int | None = None, sr: int = SAMPLE_RATE,
               trim_db: float | None = 40.0) -> np.ndarray:
    """``text`` spoken by ``voice`` -> float64 wave at ``sr`` (leading/trailing silence trimmed).

    ``rate`` scales the speaking rate (1 = the engine's default: espeak-ng 170 words/min,
    flite's own duration); ``pitch`` is espeak-ng's pitch 0..99 (``None``: the voice's).
    The voice must pass :func:`check_voice` as clean speech and exist in the installed engine.
    """
    v = check_voice(voice, "clean")
    _check_available(v)
    if not text or not text.strip():
        raise ValueError("nothing to say: empty text")
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate!r}")
    fd, tmp = tempfile.mkstemp(suffix=".wav", prefix="stochgen-tts-")
    os.close(fd)
    try:
        if v.engine == "espeak-ng":
            cmd = [_binary("espeak-ng"), "-v", v.name, "-s", str(int(round(170 * rate))), "-w", tmp]
            if pitch is not None:
                cmd += ["-p", str(int(pitch))]
            cmd += ["--", text]
        else:
            cmd = [_binary("flite"), "-voice", v.name, "--setf", f"duration_stretch={1.0 / rate:.4f}",
                   "-t", text, "-o", tmp]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0 or os.path.getsize(tmp) <= 44:
            raise RuntimeError(f"{v.engine} failed for voice {v} (exit {res.returncode}): "
                               f"{(res.stderr or res.stdout).strip()[:200]}")
        import soundfile as sf

        wave, rate_in = sf.read(tmp, dtype="float64", always_2d=False)
    finally:
        os.unlink(tmp)
    if wave.ndim != 1:
        wave = wave.mean(axis=1)
    wave = resample(wave, rate_in, sr)
    if trim_db is not None:
        wave = _trim(wave, trim_db)
    return wave


def _trim(wave: np.ndarray, top_db: float, frame: int = 256) -> np.ndarray:
    """Cut leading/trailing frames quieter than ``top_db`` below the loudest frame."""
    n = len(wave) // frame
    if n < 2:
        return wave
    e = (wave[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    loud = np.flatnonzero(e > e.max() * 10 ** (-top_db / 10))
    return wave[loud[0] * frame: (loud[-1] + 1) * frame].copy()


# --- noise --------------------------------------------------------------------------------------

def colored_noise(n: int, kind: str, rng: np.random.Generator, sr: int = SAMPLE_RATE,
                  f_min: float = NOISE_F_MIN_HZ) -> np.ndarray:
    """Gaussian noise of ``n`` samples with power spectral density ~ ``1 / f**e``, unit RMS, zero mean.

    ``kind``: ``white`` (e = 0), ``pink`` (1), ``brown`` (2); the shape is flat below
    ``f_min`` Hz and the DC bin is zero.
    """
    if kind not in COLOR_EXPONENT:
        raise ValueError(f"noise kind must be one of {', '.join(COLOR_EXPONENT)}, got {kind!r}")
    spec = np.fft.rfft(rng.standard_normal(int(n)))
    f = np.maximum(np.fft.rfftfreq(int(n), 1.0 / sr), f_min)
    spec *= f ** (-COLOR_EXPONENT[kind] / 2.0)
    spec[0] = 0.0
    x = np.fft.irfft(spec, int(n))
    x -= x.mean()
    return x / np.sqrt(np.mean(x ** 2))


def _speech_stream(n: int, voice: Voice, sentences, rng, gap=(0.1, 0.4)) -> np.ndarray:
    """Sentences by ``voice`` joined by short pauses until ``n`` samples, from a random start."""
    parts, total = [], 0
    start = int(rng.integers(0, SAMPLE_RATE))
    while total < n + start:
        s = synthesize(sentences[int(rng.integers(len(sentences)))], voice, rate=float(rng.uniform(0.9, 1.15)),
                       pitch=int(rng.integers(35, 66)) if voice.engine == "espeak-ng" else None)
        parts += [s, np.zeros(int(rng.uniform(*gap) * SAMPLE_RATE))]
        total += len(s) + len(parts[-1])
    return np.concatenate(parts)[start:start + n]


def babble(n: int, rng: np.random.Generator, voices, sentences, talkers: int | None = None):
    """``(wave, talker_voices)``: the sum of ``talkers`` (3..6 drawn when ``None``) speech streams, unit RMS.

    Each stream (sentences of one voice from a random start) is scaled to unit RMS before
    the sum. Voices are used in a shuffled cycle, so all of them speak before any speaks twice.
    """
    voices = list(voices)
    if not voices:
        raise ValueError("babble needs at least one voice")
    k = int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1)) if talkers is None else int(talkers)
    order = [voices[i] for _ in range(-(-k // len(voices))) for i in rng.permutation(len(voices))][:k]
    out = np.zeros(int(n))
    for v in order:
        s = _speech_stream(int(n), v, sentences, rng)
        out += s / np.sqrt(np.mean(s ** 2))
    return out / np.sqrt(np.mean(out ** 2)), [str(v) for v in order]


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """``(clean + g * noise, g * noise)`` with ``g`` making ``10 log10(|clean|^2 / |g noise|^2) = snr_db``."""
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    if clean.shape != noise.shape:
        raise ValueError(f"clean {clean.shape} and noise {noise.shape} must have the same shape")
    ec, en = float(np.sum(clean ** 2)), float(np.sum(noise ** 2))
    if ec <= 0 or en <= 0:
        raise ValueError("clean speech and noise must both have energy to mix at an SNR")
    g = np.sqrt(ec / (en * 10.0 ** (snr_db / 10.0)))
    return clean + g * noise, g * noise


def measure_snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    """``10 log10(|clean|^2 / |noisy - clean|^2)`` in dB."""
    clean = np.asarray(clean, dtype=np.float64)
    d = np.asarray(noisy, dtype=np.float64) - clean
    return float(10.0 * np.log10(np.sum(clean ** 2) / np.sum(d ** 2)))


# --- reverberation ------------------------------------------------------------------------------

def _pra():
    try:
        import pyroomacoustics as pra
    except ImportError as exc:
        raise ImportError('reverberation needs pyroomacoustics: pip install -e ".[speech]" '
                          "(or pip install pyroomacoustics==0.10.1)") from exc
    return pra


def shoebox_rirs(rng: np.random.Generator, rt60: float, sr: int = SAMPLE_RATE, distance=SOURCE_MIC_M):
    """A random shoebox room with Sabine RT60 ``rt60`` -> ``(rir, rir_direct, info)``.

    Room 4-10 x 3-8 x 2.5-4 m; microphone (0.8-1.6 m high) and source (1.2-1.9 m high) at
    least 0.5 m from the walls, ``distance`` (a range in metres, drawn uniformly) apart.
    ``rir`` is the image-source response up to the order Sabine's RT60 needs, ``rir_direct``
    the direct path alone (same geometry, ``max_order = 0``, so the same fractional delay
    and distance gain). ``info``: room, positions, distance, the RT60 measured on ``rir``
    (T30, extrapolated) and the direct-to-reverberant ratio.
    """
    pra = _pra()
    for _ in range(1000):
        dim = np.array([rng.uniform(4.0, 10.0), rng.uniform(3.0, 8.0), rng.uniform(2.5, 4.0)])
        mic = np.array([rng.uniform(0.5, dim[0] - 0.5), rng.uniform(0.5, dim[1] - 0.5), rng.uniform(0.8, 1.6)])
        z = rng.uniform(1.2, 1.9)
        d = rng.uniform(*distance)
        horizontal = d ** 2 - (z - mic[2]) ** 2
        if horizontal <= 0:
            continue
        phi = rng.uniform(0.0, 2 * np.pi)
        src = np.array([mic[0] + np.sqrt(horizontal) * np.cos(phi), mic[1] + np.sqrt(horizontal) * np.sin(phi), z])
        if not (np.all(src[:2] >= 0.5) and np.all(src[:2] <= dim[:2] - 0.5)):
            continue
        try:
            absorption, max_order = pra.inverse_sabine(float(rt60), dim)
        except ValueError:  # this room cannot be that dry
            continue
        break
    else:
        raise ValueError(f"could not place a room for RT60 {rt60} s")
    rirs = []
    for order, material in ((max_order, pra.Material(absorption)), (0, pra.Material(absorption))):
        room = pra.ShoeBox(dim, fs=sr, materials=material, max_order=order)
        room.add_source(src)
        room.add_microphone(mic)
        room.compute_rir()
        rirs.append(np.asarray(room.rir[0][0], dtype=np.float64))
    rir, direct = rirs
    n = max(len(rir), len(direct))
    rir, direct = np.pad(rir, (0, n - len(rir))), np.pad(direct, (0, n - len(direct)))
    try:
        measured = float(pra.experimental.measure_rt60(rir, sr, decay_db=30))
    except Exception:
        measured = float("nan")
    late = rir - direct
    info = {"room_m": [round(float(d), 3) for d in dim], "source_m": [round(float(p), 3) for p in src],
            "mic_m": [round(float(p), 3) for p in mic], "distance_m": float(np.linalg.norm(src - mic)),
            "absorption": float(absorption), "max_order": int(max_order), "rt60_measured_s": measured,
            "drr_db": float(10 * np.log10(np.sum(direct ** 2) / max(np.sum(late ** 2), 1e-30)))}
    return rir, direct, info


def reverberate(dry: np.ndarray, rir: np.ndarray, rir_direct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(reverberant, direct)``: ``dry`` through both responses, shifted by the direct-path delay, cut to ``len(dry)``."""
    from scipy.signal import fftconvolve

    shift = int(np.argmax(np.abs(rir_direct)))
    n = len(dry)
    wet = fftconvolve(dry, rir)[shift: shift + n]
    ref = fftconvolve(dry, rir_direct)[shift: shift + n]
    return np.pad(wet, (0, n - len(wet))), np.pad(ref, (0, n - len(ref)))


# --- clips --------------------------------------------------------------------------------------

def _speech_clip(rng, voice: Voice, sentences, seconds=CLIP_SECONDS):
    """About 2-4 s of ``voice``: one sentence (more if short) with silent margins; ``(wave, text, cropped)``."""
    lead, tail = rng.uniform(0.1, 0.25), rng.uniform(0.15, 0.35)
    lo = int((seconds[0] - lead - tail) * SAMPLE_RATE)
    hi = int((seconds[1] - lead - tail) * SAMPLE_RATE)
    rate = float(rng.uniform(0.9, 1.15))
    pitch = int(rng.integers(35, 66)) if voice.engine == "espeak-ng" else None

    def say(text):
        return synthesize(text, voice, rate=rate, pitch=pitch)

    best = None
    for _ in range(4):  # a first sentence that fits
        text = sentences[int(rng.integers(len(sentences)))]
        s = say(text)
        if best is None or len(s) < len(best[0]):
            best = (s, text)
        if len(s) <= hi:
            break
    s, text = best
    parts, texts, total = [s], [text], len(s)
    while total < lo:
        gap = np.zeros(int(rng.uniform(0.15, 0.3) * SAMPLE_RATE))
        text = sentences[int(rng.integers(len(sentences)))]
        s = say(text)
        parts += [gap, s]
        texts.append(text)
        total += len(gap) + len(s)
    wave = np.concatenate(parts)
    cropped = len(wave) > hi
    if cropped:
        wave = wave[:hi].copy()
        fade = int(0.03 * SAMPLE_RATE)
        wave[-fade:] *= np.linspace(1.0, 0.0, fade)
    wave = np.concatenate([np.zeros(int(lead * SAMPLE_RATE)), wave, np.zeros(int(tail * SAMPLE_RATE))])
    return wave, " ".join(texts), cropped


def clip_names(index: int, task: str, noise: str | None = None, snr_db: float | None = None,
               rt60: float | None = None) -> tuple[str, str]:
    """``(noisy_name, clean_name)``: ``u00012__pink_snr05.wav`` / ``u00012__rt60_0730ms.wav`` and ``u00012.wav``."""
    stem = f"u{int(index):05d}"
    if task == "enhance":
        r = int(round(snr_db))
        suffix = f"{noise}_snr{r:02d}" if r >= 0 else f"{noise}_snrm{-r:02d}"
    else:
        suffix = f"rt60_{int(round(rt60 * 1000)):04d}ms"
    return f"{stem}__{suffix}.wav", f"{stem}.wav"


@dataclass(frozen=True)
class _Plan:
    """What a split speaks and hears."""

    voices: tuple
    babble_voices: tuple
    sentences: tuple
    test: bool


def _plans(train_voices, test_voices, train_babble, test_babble) -> dict:
    train_voices = tuple(check_voice(v, "clean") for v in train_voices)
    test_voices = tuple(check_voice(v, "clean") for v in test_voices)
    train_babble = tuple(check_voice(v, "train_babble") for v in train_babble)
    test_babble = tuple(check_voice(v, "test_babble") for v in test_babble)
    for group in (train_voices, test_voices, train_babble, test_babble):
        if not group:
            raise ValueError("each voice list (train, test, train babble, test babble) needs at least one voice")
        for v in group:
            _check_available(v)
    both = sorted(str(v) for v in set(train_voices) & set(test_voices))
    if both:
        raise ValueError(f"test voices must not speak in training: {', '.join(both)} is in both lists")
    train_s, test_s = sentence_split()
    train = _Plan(train_voices, train_babble, train_s, False)
    return {"train": train, "valid": train, "test": _Plan(test_voices, test_babble, test_s, True)}


def make_clip(task: str, split: str, index: int, seed: int, plan: _Plan | None = None):
    """One clip ``(clean, noisy, meta)`` (float64 waves at 16 kHz), a pure function of its arguments.

    The speech depends on ``(seed, split, index)`` only (the same utterance in both tasks);
    the noise or room also on ``task``.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    plan = plan or _default_plans()[split]
    speech_rng = np.random.default_rng([int(seed), _SPLIT_CODE[split], int(index), 0])
    cond_rng = np.random.default_rng([int(seed), _SPLIT_CODE[split], int(index), _TASK_CODE[task]])
    voice = plan.voices[int(speech_rng.integers(len(plan.voices)))]
    dry, text, cropped = _speech_clip(speech_rng, voice, plan.sentences)
    level = float(cond_rng.uniform(*SPEECH_LEVEL_DBFS))
    meta = {"voice": str(voice), "text": text, "cropped": cropped, "duration_s": len(dry) / SAMPLE_RATE}
    if task == "enhance":
        if plan.test:
            noise_kind, snr = [(k, s) for k in NOISE_KINDS for s in TEST_SNRS_DB][int(index) % 12]
        else:
            noise_kind = NOISE_KINDS[int(cond_rng.integers(len(NOISE_KINDS)))]
            snr = float(cond_rng.uniform(*TRAIN_SNR_DB))
        clean = dry * (10 ** (level / 20) / np.sqrt(np.mean(dry ** 2)))
        talkers = []
        if noise_kind == "babble":
            others = [v for v in plan.babble_voices if v != voice] or list(plan.babble_voices)
            noise, talkers = babble(len(clean), cond_rng, others, plan.sentences)
        else:
            noise = colored_noise(len(clean), noise_kind, cond_rng)
        noisy, _ = mix_at_snr(clean, noise, snr)
        meta.update(noise=noise_kind, snr_db=snr, babble_voices=";".join(talkers))
    else:
        rt60 = float(cond_rng.uniform(*(TEST_RT60_S if plan.test else TRAIN_RT60_S)))
        rir, direct, info = shoebox_rirs(cond_rng, rt60)
        noisy, clean = reverberate(dry, rir, direct)
        g = 10 ** (level / 20) / np.sqrt(np.mean(noisy ** 2))
        noisy, clean = noisy * g, clean * g
        meta.update(noise="none", rt60_s=rt60, **{k: info[k] for k in
                    ("rt60_measured_s", "drr_db", "distance_m", "room_m", "source_m", "mic_m", "max_order")})
    peak = max(np.max(np.abs(noisy)), np.max(np.abs(clean)))
    if peak > PEAK_LIMIT:  # one factor for both: SNR and alignment unchanged
        noisy, clean = noisy * (PEAK_LIMIT / peak), clean * (PEAK_LIMIT / peak)
        level += 20 * np.log10(PEAK_LIMIT / peak)
    meta["level_dbfs"] = level
    noisy_name, clean_name = clip_names(index, task, meta.get("noise"), meta.get("snr_db"), meta.get("rt60_s"))
    meta = {"noisy": noisy_name, "clean": clean_name, **meta}
    return clean, noisy, meta


@functools.lru_cache(maxsize=1)
def _default_plans():
    return _plans(TRAIN_VOICES, TEST_VOICES, TRAIN_BABBLE_VOICES, TEST_BABBLE_VOICES)


_META_COLUMNS = ["noisy", "clean", "voice", "text", "noise", "snr_db", "rt60_s", "rt60_measured_s", "drr_db",
                 "distance_m", "room_m", "source_m", "mic_m", "max_order", "babble_voices", "level_dbfs",
                 "duration_s", "cropped"]


def _write_clip(args):
    root, task, split, index, seed, plan = args
    clean, noisy, meta = make_clip(task, split, index, seed, plan)
    base = Path(root) / split
    write_wav(base / "clean" / meta["clean"], clean)
    write_wav(base / "noisy" / meta["noisy"], noisy)
    return split, index, meta


def _tool_version(exe: str, flag: str) -> str:
    try:
        out = subprocess.run([exe, flag], capture_output=True, text=True, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0][:120]
    except Exception:
        return "unknown"


def make_corpus(root, task: str = "enhance", n_train: int = 1000, n_valid: int = 50, n_test: int = 40,
                seed: int = 0, *, train_voices=TRAIN_VOICES, test_voices=TEST_VOICES,
                train_babble=TRAIN_BABBLE_VOICES, test_babble=TEST_BABBLE_VOICES, workers: int = 1,
                overwrite: bool = False, progress: bool = False) -> dict:
    """Write a paired corpus ``root/{train,valid,test}/{clean,noisy}/*.wav`` plus ``meta.csv`` per split.

    Returns the summary also written to ``root/corpus.json`` (settings, voices per split,
    clip counts, seconds taken). A split folder that already holds wav files is an error
    unless ``overwrite`` (which first deletes that split's wav files and meta.csv).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    counts = {"train": n_train, "valid": n_valid, "test": n_test}
    for split, n in counts.items():
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise ValueError(f"n_{split} must be an integer >= 0, got {n!r}")
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    plans = _plans(train_voices, test_voices, train_babble, test_babble)
    root = Path(root)
    for split in SPLITS:
        for sub in ("clean", "noisy"):
            folder = root / split / sub
            old = sorted(folder.glob("*.wav")) if folder.is_dir() else []
            if old and not overwrite:
                raise ValueError(f"{folder} already holds {len(old)} wav files; choose an empty folder "
                                 f"or pass overwrite=True (--overwrite)")
            for p in old:
                p.unlink()
            folder.mkdir(parents=True, exist_ok=True)
        if overwrite and (root / split / "meta.csv").exists():
            (root / split / "meta.csv").unlink()
    jobs = [(str(root), task, split, i, int(seed), plans[split]) for split in SPLITS for i in range(int(counts[split]))]
    rows = {split: [None] * int(counts[split]) for split in SPLITS}
    t0 = time.time()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=f"speech corpus ({task})", unit="clip")
    try:
        if workers == 1:
            results = map(_write_clip, jobs)
            pool = None
        else:
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(max_workers=int(workers))
            results = pool.map(_write_clip, jobs, chunksize=4)
        for split, index, meta in results:
            rows[split][index] = meta
            if bar is not None:
                bar.update(1)
        if pool is not None:
            pool.shutdown()
    finally:
        if bar is not None:
            bar.close()
    seconds = time.time() - t0
    for split in SPLITS:
        with open(root / split / "meta.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=_META_COLUMNS, extrasaction="ignore")
            w.writeheader()
            for meta in rows[split]:
                w.writerow({k: (json.dumps(v) if isinstance(v, list) else v) for k, v in meta.items()})
    summary = {
        "task": task, "seed": int(seed), "counts": counts, "sample_rate": SAMPLE_RATE, "seconds": round(seconds, 2),
        "clip_seconds": list(CLIP_SECONDS),
        "voices": {"train": [str(v) for v in plans["train"].voices], "valid": [str(v) for v in plans["valid"].voices],
                   "test": [str(v) for v in plans["test"].voices]},
        "babble_voices": {"train": [str(v) for v in plans["train"].babble_voices],
                          "valid": [str(v) for v in plans["valid"].babble_voices],
                          "test": [str(v) for v in plans["test"].babble_voices]},
        "sentences": {"train": len(plans["train"].sentences), "test": len(plans["test"].sentences)},
        "conditions": ({"train": {"snr_db": list(TRAIN_SNR_DB), "noise": list(NOISE_KINDS)},
                        "test": {"snr_db": list(TEST_SNRS_DB), "noise": list(NOISE_KINDS)}} if task == "enhance" else
                       {"train": {"rt60_s": list(TRAIN_RT60_S)}, "test": {"rt60_s": list(TEST_RT60_S)}}),
        "held_out_rule": HELD_OUT_RULE,
        "tools": {"espeak-ng": _tool_version(_binary("espeak-ng"), "--version"),
                  "flite": _tool_version(_binary("flite"), "--version")},
    }
    with open(root / "corpus.json", "w") as f:
        json.dump(summary, f, indent=2)
    return summary


# --- command line -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m domains.speech.corpus",
        description="Write an offline paired speech corpus (espeak-ng / flite speech, coloured noise and babble, "
                    "or shoebox reverberation) in the layout ROOT/{train,valid,test}/{clean,noisy}/*.wav.")
    p.add_argument("root", metavar="ROOT", help="output folder")
    p.add_argument("--task", choices=TASKS, default="enhance", help="additive noise or reverberation (default: enhance)")
    p.add_argument("--n-train", type=int, default=1000, help="training clips (default: 1000)")
    p.add_argument("--n-valid", type=int, default=50, help="validation clips (default: 50)")
    p.add_argument("--n-test", type=int, default=40, help="test clips (default: 40)")
    p.add_argument("--seed", type=int, default=0, help="seed; the same seed gives the same files (default: 0)")
    p.add_argument("--workers", type=int, default=1, help="processes (default: 1)")
    p.add_argument("--overwrite", action="store_true", help="replace wav files already in ROOT's split folders")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for name in ("n_train", "n_valid", "n_test"):
            if getattr(args, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
        summary = make_corpus(args.root, args.task, args.n_train, args.n_valid, args.n_test, args.seed,
                              workers=args.workers, overwrite=args.overwrite, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"python -m domains.speech.corpus: error: {exc}", file=sys.stderr)
        return 2
    n = sum(summary["counts"].values())
    print(f"wrote {n} {args.task} clips to {os.path.abspath(args.root)} in {summary['seconds']:.1f} s "
          f"(train voices: {', '.join(summary['voices']['train'])}; test voices: {', '.join(summary['voices']['test'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
