"""stochgen demo shows the shipped speech model on the embedded clip."""
import os

import pytest

pytest.importorskip("soundfile")
pytest.importorskip("librosa")

from domains.speech.domain import default_weights  # noqa: E402
from stochgen.cli import main  # noqa: E402


@pytest.mark.skipif(not default_weights("enhance").is_file(), reason="no shipped enhance model")
def test_demo_enhances_the_embedded_clip(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--steps", "2", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    for name in ("clean.wav", "noisy.wav", "enhanced.wav", "spectrograms.png"):
        assert os.path.getsize(out / "speech" / name) > 0
    line = next(ln for ln in text.splitlines() if "SI-SDR" in ln)
    before, after = (float(v.split()[0]) for v in line.split("SI-SDR")[1].split("->"))
    assert abs(before - 5.0) < 0.05  # the noise is mixed at exactly 5 dB SNR
    assert after > before + 3.0      # the shipped model removes a good part of it
    import soundfile as sf

    clean, sr = sf.read(out / "speech" / "clean.wav")
    est, sr2 = sf.read(out / "speech" / "enhanced.wav")
    assert sr == sr2 == 16000 and len(est) == len(clean)
