"""Waveform <-> compressed complex STFT, the speech domain's state (SGMSE convention).

The complex STFT at 16 kHz with ``n_fft = 510`` (256 frequency bins), ``hop = 128``, a
periodic Hann window and centred frames (``torch.stft(center=True)``, reflect padding);
then amplitude compression with the phase kept::

    s = beta * |z| ** alpha * exp(i * angle(z))          (alpha = 0.5, beta = 0.15)

:meth:`SpecCodec.decode` undoes both exactly (``|s| / beta`` to the power ``1 / alpha``,
then ``torch.istft`` with the original length), so ``decode(encode(w), len(w))`` returns
``w`` to float rounding (~1e-7 in float32).

Networks take real tensors: :func:`to_channels` turns a complex ``(B, F, T)`` into
``(B, 2, F, T)`` (real, imaginary) and :func:`from_channels` goes back.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .audio import SAMPLE_RATE

__all__ = ["SpecCodec", "SAMPLE_RATE", "to_channels", "from_channels"]


def _as_tensor(wave) -> torch.Tensor:
    if isinstance(wave, np.ndarray):
        wave = torch.from_numpy(np.ascontiguousarray(wave))
    if not isinstance(wave, torch.Tensor):
        raise TypeError(f"expected a waveform tensor or array, got {type(wave).__name__}")
    if not wave.is_floating_point():
        raise TypeError(f"expected a floating-point waveform, got {wave.dtype}")
    return wave


@dataclass(frozen=True)
class SpecCodec:
    """Compressed complex STFT with an exact inverse; all settings are plain numbers (checkpointable).

    ``alpha = 1, beta = 1`` is the plain STFT. Waves are ``(L,)`` or ``(B, L)`` (tensor or
    array, float32/float64); spectrograms are complex ``(F, T)`` or ``(B, F, T)`` with
    ``F = n_fft // 2 + 1`` and ``T = 1 + L // hop``.
    """

    n_fft: int = 510
    hop: int = 128
    alpha: float = 0.5
    beta: float = 0.15
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self):
        if int(self.n_fft) != self.n_fft or self.n_fft < 2:
            raise ValueError(f"n_fft must be an integer >= 2, got {self.n_fft!r}")
        if int(self.hop) != self.hop or not 1 <= self.hop <= self.n_fft // 2:
            raise ValueError(f"hop must be an integer in 1..n_fft/2 ({self.n_fft // 2}), got {self.hop!r}")
        if not self.alpha > 0:
            raise ValueError(f"alpha (amplitude exponent) must be > 0, got {self.alpha!r}")
        if not self.beta > 0:
            raise ValueError(f"beta (amplitude factor) must be > 0, got {self.beta!r}")

    @property
    def freq_bins(self) -> int:
        return self.n_fft // 2 + 1

    def frames(self, length: int) -> int:
        """Number of STFT frames of a wave of ``length`` samples (centred frames)."""
        return 1 + int(length) // self.hop

    def config(self) -> dict:
        return asdict(self)

    def window(self, dtype=torch.float32, device=None) -> torch.Tensor:
        return torch.hann_window(self.n_fft, periodic=True, dtype=dtype, device=device)

    # --- plain STFT ---------------------------------------------------------------------------
    def stft(self, wave) -> torch.Tensor:
        """Uncompressed complex STFT ``(..., F, T)`` of ``(..., L)`` waves (at most one batch dim)."""
        w = _as_tensor(wave)
        if w.dim() not in (1, 2):
            raise ValueError(f"expected a wave (L,) or a batch (B, L), got shape {tuple(w.shape)}")
        if w.shape[-1] <= self.n_fft // 2:
            raise ValueError(f"a wave needs more than n_fft/2 = {self.n_fft // 2} samples, got {w.shape[-1]}")
        return torch.stft(w, self.n_fft, hop_length=self.hop, window=self.window(w.dtype, w.device),
                          center=True, pad_mode="reflect", normalized=False, onesided=True, return_complex=True)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Inverse of :meth:`stft`; ``length`` is the original number of samples."""
        if not torch.is_complex(spec):
            raise TypeError(f"expected a complex spectrogram, got {spec.dtype}")
        if spec.dim() not in (2, 3) or spec.shape[-2] != self.freq_bins:
            raise ValueError(f"expected a spectrogram (F, T) or (B, F, T) with F = {self.freq_bins}, "
                             f"got shape {tuple(spec.shape)}")
        real = spec.real.dtype
        return torch.istft(spec, self.n_fft, hop_length=self.hop, window=self.window(real, spec.device),
                           center=True, normalized=False, onesided=True, length=int(length))

    # --- amplitude compression ------------------------------------------------------------------
    def compress(self, z: torch.Tensor) -> torch.Tensor:
        """``beta * |z| ** alpha`` with the phase of ``z``."""
        if self.alpha == 1 and self.beta == 1:
            return z
        return torch.polar(self.beta * z.abs() ** self.alpha, z.angle())

    def expand(self, s: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`compress`: ``(|s| / beta) ** (1 / alpha)`` with the phase of ``s``."""
        if self.alpha == 1 and self.beta == 1:
            return s
        return torch.polar((s.abs() / self.beta) ** (1.0 / self.alpha), s.angle())

    # --- the domain's two maps -------------------------------------------------------------------
    def encode(self, wave) -> torch.Tensor:
        """Wave ``(L,)`` / ``(B, L)`` -> compressed complex spectrogram ``(F, T)`` / ``(B, F, T)``."""
        return self.compress(self.stft(wave))

    def decode(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Compressed complex spectrogram -> wave of ``length`` samples; exact inverse of :meth:`encode`."""
        return self.istft(self.expand(spec), length)


def to_channels(spec: torch.Tensor) -> torch.Tensor:
    """Complex ``(B, F, T)`` -> real ``(B, 2, F, T)`` (channel 0 real part, channel 1 imaginary part)."""
    if not torch.is_complex(spec):
        raise TypeError(f"expected a complex spectrogram, got {spec.dtype}")
    if spec.dim() != 3:
        raise ValueError(f"expected a batch of spectrograms (B, F, T), got shape {tuple(spec.shape)}")
    return torch.stack([spec.real, spec.imag], dim=1)


def from_channels(x: torch.Tensor) -> torch.Tensor:
    """Real ``(B, 2, F, T)`` -> complex ``(B, F, T)``; inverse of :func:`to_channels`."""
    if torch.is_complex(x) or x.dim() != 4 or x.shape[1] != 2:
        raise ValueError(f"expected a real tensor (B, 2, F, T), got {x.dtype} of shape {tuple(x.shape)}")
    return torch.complex(x[:, 0], x[:, 1])
