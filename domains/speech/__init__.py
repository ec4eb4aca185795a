"""Speech domain plug-in: enhancement and dereverberation in the compressed complex STFT domain.

Modules (each imported on first use, so ``domains.speech.cli`` stays light):

* :mod:`~domains.speech.stft`: waveform <-> compressed complex STFT (16 kHz, n_fft 510,
  hop 128, |z|^0.5 * 0.15 with the phase kept), exact inverse; (B, F, T) <-> (B, 2, F, T);
* :mod:`~domains.speech.audio`: wav reading (any rate -> 16 kHz, mono, clear errors) and
  writing (16-bit PCM); the paired ``ROOT/{train,valid,test}/{clean,noisy}`` layout;
* :mod:`~domains.speech.corpus`: offline corpus generator (espeak-ng / flite speech, noise,
  babble, shoebox reverberation), ``python -m domains.speech.corpus``;
* :mod:`~domains.speech.metrics`: SI-SDR, PESQ wide-band, ESTOI, folder evaluation;
* :mod:`~domains.speech.cli`: the ``speech-metrics`` verb for ``stochgen``;
* :mod:`~domains.speech.nets`: :class:`SpeechUNet`, the conditional spectrogram U-Net;
* :mod:`~domains.speech.domain`: :class:`SpeechDomain` (``stochgen.domain("speech")``: paired folders ->
  spectrogram crops, OU-VE / IR-SDE / predictive baseline, ``enhance(wave, sr, model=None, task=...)``,
  shipped default weights in ``domains/speech/weights/``); the ``enhance`` verb is in :mod:`~domains.speech.cli`.
"""
from __future__ import annotations

import importlib

__all__ = ["SpecCodec", "to_channels", "from_channels", "read_wav", "write_wav", "pair_files", "split_pairs",
           "load_pairs", "make_corpus", "si_sdr", "pesq_wb", "estoi", "evaluate_dirs", "SAMPLE_RATE",
           "SpeechUNet", "SpeechDomain", "Predictive"]

_WHERE = {
    "SpecCodec": "stft", "to_channels": "stft", "from_channels": "stft",
    "SAMPLE_RATE": "audio", "read_wav": "audio", "write_wav": "audio", "pair_files": "audio",
    "split_pairs": "audio", "load_pairs": "audio",
    "make_corpus": "corpus",
    "si_sdr": "metrics", "pesq_wb": "metrics", "estoi": "metrics", "evaluate_dirs": "metrics",
    "SpeechUNet": "nets",
    "SpeechDomain": "domain", "Predictive": "domain",
}


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_WHERE))
