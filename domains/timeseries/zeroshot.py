"""The shipped zero-shot forecaster: one conditional diffusion model across many series.

A small forecasting "foundation" model: the timeseries domain with a context of
:data:`CONTEXT` (96) values and a horizon of :data:`HORIZON` (24), trained on windows of the
allowed offline series (``domains.timeseries.datasets``, the history before each one's
benchmark windows) and on synthetic series (:func:`synthetic_series`: random seasonal shapes of
periods 4 to 52, trends, level shifts, random walks and AR noise, additive or multiplicative).
Windows may start before their series (``min_context=8``), and the condition rows that tell a
window's level relative to the training data are off (``level_channels=False``), so the model
forecasts a series it never saw from its last values alone. Use it as
``stochgen.domain("timeseries", horizon=h).forecast(history, model="zeroshot")`` (``h`` up to 24
in one pass; longer horizons roll forward), or ``stochgen forecast zeroshot series.csv --horizon h``.

Training: ``examples/timeseries/train_zeroshot.py``. No weights ship yet (the one model measured,
trained without half of the series, lost to SeasonalNaive on them: README); a shipped file will
carry its command, settings and log beside it in ``domains/timeseries/weights/``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["CONTEXT", "HORIZON", "NAME", "default_weights", "synthetic_series", "load"]

CONTEXT, HORIZON = 96, 24
NAME = "zeroshot"  # model="zeroshot" (and the CLI's CKPT argument) name the shipped model
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
PERIODS = (4, 5, 7, 12, 24, 48, 52)


def default_weights() -> Path:
    """Path of the shipped zero-shot model (``domains/timeseries/weights/zeroshot.safetensors``)."""
    return WEIGHTS_DIR / "zeroshot.safetensors"


def load():
    """The shipped zero-shot model (a :class:`stochgen.Model`), read from :func:`default_weights`."""
    import stochgen

    from . import domain as _register  # noqa: F401  (registers "timeseries" for the model file's spec)

    path = default_weights()
    if not path.is_file():
        raise FileNotFoundError(f"the shipped zero-shot model {path} is missing; reinstall stochgen or train one "
                                "with examples/timeseries/train_zeroshot.py")
    return stochgen.load(str(path))


def synthetic_series(n: int, seed: int = 0, length: tuple[int, int] = (120, 400)) -> list[np.ndarray]:
    """``n`` synthetic series for pre-training, each a random mix of the shapes real series have.

    Components (each drawn at random per series): 0-2 seasonal patterns of a period in
    :data:`PERIODS` (1-4 harmonics with random phases, the amplitude optionally growing with the
    level), a linear or damped trend, a few level shifts, a random walk, AR(1) noise with
    coefficient 0..0.95 and occasional spikes; a third of the series are multiplicative (the
    exponential of such a sum). Values are positive-offset and of random scale (1e-2 .. 1e4)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(n)):
        T = int(rng.integers(length[0], length[1] + 1))
        t = np.arange(T, dtype=float)
        x = np.zeros(T)
        for _k in range(int(rng.choice([0, 1, 1, 1, 2]))):
            p = float(rng.choice(PERIODS))
            for j in range(1, int(rng.integers(1, 5)) + 1):
                x += rng.normal(0, 1.0 / j) * np.sin(2 * np.pi * j * t / p + rng.uniform(0, 2 * np.pi))
        trend = rng.choice(["none", "linear", "damped"], p=[0.4, 0.4, 0.2])
        if trend == "linear":
            x += rng.normal(0, 3.0) * t / T
        elif trend == "damped":
            x += rng.normal(0, 3.0) * (1 - np.exp(-t / rng.uniform(0.1 * T, T)))
        for _k in range(int(rng.poisson(0.5))):
            x[int(rng.integers(1, T)):] += rng.normal(0, 1.0)
        if rng.random() < 0.4:
            x += np.cumsum(rng.normal(0, rng.uniform(0.02, 0.3), T))
        phi, s = rng.uniform(0, 0.95), rng.uniform(0.02, 0.6)
        e = np.zeros(T)
        z = rng.normal(0, s, T)
        for i in range(1, T):
            e[i] = phi * e[i - 1] + z[i]
        x += e
        if rng.random() < 0.1:
            k = rng.integers(0, T, int(rng.integers(1, 4)))
            x[k] += rng.normal(0, 3 * s + 0.5, k.size)
        if rng.random() < 1 / 3:
            x = np.exp(0.3 * (x - x.mean()) / max(x.std(), 1e-6))
        else:
            x = x - x.min() + rng.uniform(0.5, 5.0) * max(x.std(), 1e-3)
        out.append(x * 10 ** rng.uniform(-2, 4))
    return out
