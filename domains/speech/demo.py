"""The speech part of ``stochgen demo``: enhance a generated noisy clip with the shipped model.

The clean clip ships in ``domains/speech/data/demo_clean.wav`` (3.2 s, espeak-ng voice
en-us-nyc+m6, a sentence of the generator's test split; neither is used in training). Pink
noise at 5 dB SNR is added here (numpy, seeded), so the demo needs no speech engine.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

DEMO_CLIP = Path(__file__).resolve().parent / "data" / "demo_clean.wav"
DEMO_SNR_DB = 5.0


def run(domain, out: str, quick: bool = False, seed: int = 0, device: str = "cpu", progress: bool = True) -> list[str]:
    """Write clean / noisy / enhanced wavs and their spectrograms to ``out``; return the lines to print."""
    from .audio import read_wav, write_wav
    from .cli import plot_spectrograms
    from .corpus import colored_noise, mix_at_snr
    from .domain import default_weights
    from .metrics import si_sdr

    if not default_weights("enhance").is_file():
        return [f"no shipped enhance model at {default_weights('enhance')}; nothing to show"]
    clean, sr = read_wav(str(DEMO_CLIP)), 16000
    noise = colored_noise(clean.size, "pink", np.random.default_rng(seed))
    noisy, _ = mix_at_snr(clean, noise, DEMO_SNR_DB)
    t0 = time.perf_counter()
    est = domain.enhance(noisy, sr, task="enhance", seed=seed, progress=progress)
    took = time.perf_counter() - t0
    os.makedirs(out, exist_ok=True)
    for name, wave in (("clean", clean), ("noisy", noisy), ("enhanced", est)):
        write_wav(os.path.join(out, f"{name}.wav"), wave, sr)
    fig = plot_spectrograms(os.path.join(out, "spectrograms.png"),
                            [("noisy (pink, 5 dB)", noisy), ("enhanced", est), ("clean", clean)], sr=sr)
    lines = [f"enhanced a {clean.size / sr:.1f} s clip with pink noise at {DEMO_SNR_DB:g} dB SNR with the shipped "
             f"model in {took:.1f} s (real-time factor {took / (clean.size / sr):.2f})",
             f"SI-SDR {si_sdr(clean, noisy):.1f} dB -> {si_sdr(clean, est):.1f} dB"]
    try:
        from .metrics import estoi, pesq_wb

        lines.append(f"ESTOI {estoi(clean, noisy):.3f} -> {estoi(clean, est):.3f}, "
                     f"PESQ-wb {pesq_wb(clean, noisy):.2f} -> {pesq_wb(clean, est):.2f}")
    except ImportError:
        lines.append('(ESTOI and PESQ need the speech extra: pip install -e ".[speech]")')
    lines.append(f"wrote clean.wav, noisy.wav, enhanced.wav and {os.path.basename(fig)} to {out}")
    return lines
