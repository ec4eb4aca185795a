"""Speech metrics match their definitions: SI-SDR in closed form and its cap, PESQ-wb 4.64 for identical
signals, ESTOI 1, folder evaluation pairing by name, the CSV, and the ImportError naming the extra."""
import csv
import shutil
import sys

import numpy as np
import pytest

from domains.speech.metrics import SI_SDR_CAP_DB, estoi, evaluate_dirs, pesq_wb, si_sdr, write_csv


@pytest.fixture(scope="module")
def speech():
    pytest.importorskip("librosa")
    pytest.importorskip("soundfile")
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs Debian espeak-ng")
    from domains.speech.corpus import synthesize

    w = synthesize("The lighthouse keeper climbed the spiral stairs each night.", "espeak-ng:en-us+f1")
    return np.concatenate([np.zeros(1600), w, np.zeros(1600)]) * 0.5


def _orthogonal(ref, rng):
    n = rng.standard_normal(ref.shape)
    return n - (n @ ref) / (ref @ ref) * ref


def test_si_sdr_closed_form():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(16000)
    n = _orthogonal(ref, rng)
    for a, scale in ((1.0, 0.1), (0.3, 0.5), (-2.0, 1.0), (5.0, 3.0)):
        est = a * ref + scale * n
        want = 10 * np.log10(a ** 2 * (ref @ ref) / (scale ** 2 * (n @ n)))
        assert si_sdr(ref, est) == pytest.approx(want, abs=1e-9)
    # known noise energy: |ref|^2 = 16000 * 1, noise scaled to energy 160 -> exactly 20 dB
    ref = np.ones(16000) * np.sign(rng.standard_normal(16000))
    n = _orthogonal(ref, rng)
    n *= np.sqrt(160.0 / (n @ n))
    assert si_sdr(ref, ref + n) == pytest.approx(20.0, abs=1e-9)
    assert si_sdr(ref, 0.25 * ref + 0.25 * n) == pytest.approx(20.0, abs=1e-9)  # scale-invariant
    assert si_sdr(ref, 0.25 * ref + 0.5 * n) == pytest.approx(20.0 - 20 * np.log10(2), abs=1e-9)


def test_si_sdr_of_a_scaled_copy_is_the_cap():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal(8000)
    for a in (1.0, 0.5, 3.0, -1.0):
        assert si_sdr(ref, a * ref) == SI_SDR_CAP_DB == 100.0
    assert si_sdr(ref.astype(np.float32), (0.7 * ref).astype(np.float32)) == SI_SDR_CAP_DB
    assert si_sdr(ref, np.zeros_like(ref)) == -SI_SDR_CAP_DB
    n = _orthogonal(ref, rng)
    n *= np.sqrt((ref @ ref) / (n @ n))  # same energy as ref
    assert si_sdr(ref, ref + 1e-4 * n) == pytest.approx(80.0, abs=1e-6)  # below the cap: exact
    assert si_sdr(ref, ref + 1e-6 * n) == SI_SDR_CAP_DB  # 120 dB, capped
    # zero_mean removes an offset that would otherwise count as distortion
    offset = ref + 5.0
    assert si_sdr(ref, offset) < 10.0
    assert si_sdr(ref, offset, zero_mean=True) == SI_SDR_CAP_DB


def test_si_sdr_bad_inputs():
    with pytest.raises(ValueError, match="samples"):
        si_sdr(np.ones(10), np.ones(11))
    with pytest.raises(ValueError, match="silent"):
        si_sdr(np.zeros(10), np.ones(10))
    with pytest.raises(ValueError, match="mono"):
        si_sdr(np.ones((2, 10)), np.ones((2, 10)))
    with pytest.raises(ValueError, match="NaN"):
        si_sdr(np.ones(10), np.full(10, np.nan))


def test_pesq_and_estoi_identical_and_degraded(speech):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    assert pesq_wb(speech, speech) == pytest.approx(4.644, abs=0.005)
    assert estoi(speech, speech) == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(2)
    noise = rng.standard_normal(speech.shape)
    noisy = speech + noise * np.sqrt(np.sum(speech ** 2) / np.sum(noise ** 2))  # 0 dB white noise
    p, e = pesq_wb(speech, noisy), estoi(speech, noisy)
    assert 1.0 <= p < 1.5 and 0.2 < e < 0.8
    lighter = speech + 0.1 * (noisy - speech)  # 20 dB
    assert pesq_wb(speech, lighter) > p + 0.3 and estoi(speech, lighter) > e + 0.1
    with pytest.raises(ValueError, match="16000"):
        pesq_wb(speech, speech, sr=8000)


def test_missing_packages_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pesq", None)
    monkeypatch.setitem(sys.modules, "pystoi", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[speech\]"'):
        pesq_wb(np.ones(16000), np.ones(16000))
    with pytest.raises(ImportError, match=r'pip install -e "\.\[speech\]"'):
        estoi(np.ones(16000), np.ones(16000))


def _folders(tmp_path, speech):
    from domains.speech.audio import write_wav

    rng = np.random.default_rng(3)
    clean, est = tmp_path / "clean", tmp_path / "est"
    refs = {"a.wav": speech, "b.wav": speech[::-1].copy()}
    for name, w in refs.items():
        write_wav(clean / name, w)
    outs = {}
    for name, ref_name, snr in (("a__white_snr05.wav", "a.wav", 5.0), ("a__pink_snr10.wav", "a.wav", 10.0),
                                ("b.wav", "b.wav", 15.0)):
        n = _orthogonal(refs[ref_name], rng)
        n *= np.sqrt(np.sum(refs[ref_name] ** 2) / np.sum(n ** 2) / 10 ** (snr / 10))
        outs[name] = (ref_name, snr)
        write_wav(est / name, refs[ref_name] + n)
    return clean, est, outs


def test_evaluate_dirs_pairs_by_name_and_averages(tmp_path, speech):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    clean, est, outs = _folders(tmp_path, speech)
    rows, means = evaluate_dirs(clean, est)
    assert [r["file"] for r in rows] == sorted(outs)
    for r in rows:
        ref_name, snr = outs[r["file"]]
        assert r["clean"] == ref_name
        assert r["si_sdr"] == pytest.approx(snr, abs=0.05)  # 16-bit files: up to quantisation
        assert 1.0 <= r["pesq"] <= 4.65 and 0.0 <= r["estoi"] <= 1.0
    for m in ("si_sdr", "pesq", "estoi"):
        assert means[m] == pytest.approx(np.mean([r[m] for r in rows]), abs=1e-12)
    assert means["n"] == 3
    path = write_csv(rows, means, tmp_path / "out" / "m.csv")
    with open(path) as f:
        table = list(csv.reader(f))
    assert table[0] == ["file", "clean", "si_sdr", "pesq", "estoi"]
    assert [t[0] for t in table[1:]] == sorted(outs) + ["mean"]
    assert float(table[-1][2]) == pytest.approx(means["si_sdr"], abs=1e-5) and table[-1][1] == "n=3"


def test_evaluate_dirs_errors_name_the_file(tmp_path, speech):
    from domains.speech.audio import write_wav

    clean, est, _ = _folders(tmp_path, speech)
    write_wav(est / "zz__babble_snr00.wav", speech)
    with pytest.raises(ValueError, match=r"zz__babble_snr00\.wav: no clean partner \(zz__babble_snr00\.wav or zz\.wav\)"):
        evaluate_dirs(clean, est)
    (est / "zz__babble_snr00.wav").unlink()
    write_wav(est / "b.wav", speech[:-160])
    with pytest.raises(ValueError, match=r"b\.wav: .* samples but its clean partner .*b\.wav has"):
        evaluate_dirs(clean, est)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        evaluate_dirs(clean, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .wav files"):
        evaluate_dirs(clean, tmp_path / "empty")


def test_score_method_means_time_and_length_check(speech):
    """score_method averages the per-file metrics of what the method returns, times only the method,
    and refuses an estimate whose length differs from its input (naming the file)."""
    from domains.speech.metrics import evaluate_pair, score_method

    rng = np.random.default_rng(1)
    clean = speech.astype(np.float32)
    pairs = [(f"f{i}", (clean + s * rng.standard_normal(clean.size)).astype(np.float32), clean)
             for i, s in enumerate((0.01, 0.05))]
    rows, summary = score_method(pairs, lambda w: w)
    want = [evaluate_pair(c, n) for _, n, c in pairs]
    for m in ("si_sdr", "pesq", "estoi"):
        assert summary[m] == pytest.approx(np.mean([w[m] for w in want]), abs=1e-9)
        assert [r[m] for r in rows] == pytest.approx([w[m] for w in want], abs=1e-9)
    assert summary["files"] == 2 and summary["audio_seconds"] == pytest.approx(2 * clean.size / 16000)
    assert summary["rtf"] == pytest.approx(summary["seconds"] / summary["audio_seconds"])
    # the clean signal itself scores the SI-SDR cap
    assert score_method(pairs[:1], lambda w: clean)[1]["si_sdr"] == pytest.approx(SI_SDR_CAP_DB)
    with pytest.raises(ValueError, match="f0: the method returned shape"):
        score_method(pairs, lambda w: w[:-1])
