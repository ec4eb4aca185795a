"""Classical baselines that speech figures are shown beside (the ``bench`` extra)."""
from __future__ import annotations

import numpy as np

from .audio import SAMPLE_RATE


def spectral_gating(wave: np.ndarray, sr: int = SAMPLE_RATE, stationary: bool = False) -> np.ndarray:
    """``noisereduce.reduce_noise`` (spectral gating; non-stationary by default) at the input's length."""
    try:
        import noisereduce
    except ImportError as exc:
        raise ImportError("the classical baseline needs noisereduce: pip install -e '.[bench]' "
                          "(or pip install noisereduce)") from exc
    wave = np.asarray(wave, dtype=np.float32)
    est = noisereduce.reduce_noise(y=wave, sr=int(sr), stationary=bool(stationary), n_jobs=1).astype(np.float32)
    return est[:wave.size] if est.size >= wave.size else np.pad(est, (0, wave.size - est.size))
