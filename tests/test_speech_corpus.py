"""Speech corpus generator: held-out voices refused, noise spectra and SNR in closed form, direct-path
reference aligned with the reverberant input, determinism by seed, the written layout and its conditions."""
import csv
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("soundfile")
pytest.importorskip("librosa")
pytest.importorskip("pyroomacoustics")
if shutil.which("espeak-ng") is None or shutil.which("flite") is None:
    pytest.skip("needs the Debian packages espeak-ng and flite", allow_module_level=True)

from domains.speech import corpus as C  # noqa: E402
from domains.speech.audio import read_wav, split_pairs  # noqa: E402
from domains.speech.sentences import SENTENCES, sentence_split  # noqa: E402


# --- the data rule ------------------------------------------------------------------------------

@pytest.mark.parametrize("voice", ["flite:slt", "flite:cmu_us_slt.flitevox", "espeak-ng:en-gb-scotland",
                                   "espeak-ng:en-gb-scotland+m3", "espeak:EN-GB-Scotland"])
def test_held_out_voices_refused_everywhere(voice):
    for role in ("clean", "train_babble", "test_babble"):
        with pytest.raises(C.HeldOutVoiceError, match="held out for an independent evaluation"):
            C.check_voice(voice, role)
    with pytest.raises(C.HeldOutVoiceError, match="DATA.md"):
        C.synthesize("Please close the gate.", voice)


@pytest.mark.parametrize("voice", ["flite:awb", "flite:rms", "espeak-ng:en-us+f3", "espeak-ng:en-gb-x-rp",
                                   "espeak-ng:en-gb-x-rp+m2"])
def test_test_babble_voices_refused_as_training_babble_only(voice):
    with pytest.raises(C.HeldOutVoiceError, match="refused as training babble"):
        C.check_voice(voice, "train_babble")
    assert C.check_voice(voice, "clean") == C.parse_voice(voice)  # fine as clean speech
    assert C.check_voice(voice, "test_babble") == C.parse_voice(voice)


def test_make_corpus_refuses_rule_breaking_voice_lists(tmp_path):
    with pytest.raises(C.HeldOutVoiceError, match="training babble"):
        C.make_corpus(tmp_path, "enhance", 1, 0, 0, train_babble=["espeak-ng:en-us+m3", "flite:awb"])
    with pytest.raises(C.HeldOutVoiceError, match="held out"):
        C.make_corpus(tmp_path, "enhance", 1, 0, 0, test_voices=["flite:slt"])
    with pytest.raises(ValueError, match="must not speak in training: espeak-ng:en-us\\+m1"):
        C.make_corpus(tmp_path, "enhance", 1, 0, 0, test_voices=["espeak-ng:en-us+m1"])
    with pytest.raises(ValueError, match="espeak-ng has no voice 'en-zz'"):
        C.synthesize("Hello there.", "espeak-ng:en-zz+m1")  # the engine would silently fall back
    with pytest.raises(ValueError, match="flite has no voice 'nobody'"):
        C.synthesize("Hello there.", "flite:nobody")
    assert not list(tmp_path.rglob("*.wav"))


def test_default_voice_lists_follow_the_rule():
    train = {str(v) for v in C.TRAIN_VOICES}
    test = {str(v) for v in C.TEST_VOICES}
    assert not train & test
    for v in C.TRAIN_VOICES + C.TEST_VOICES + C.TEST_BABBLE_VOICES:
        C.check_voice(v, "clean")
    for v in C.TRAIN_BABBLE_VOICES:
        C.check_voice(v, "train_babble")
    assert {str(v) for v in C.TEST_BABBLE_VOICES} == {"flite:awb", "flite:rms", "espeak-ng:en-us+f3",
                                                      "espeak-ng:en-gb-x-rp"}


def test_sentences_are_many_distinct_and_split():
    assert len(SENTENCES) >= 300 and len(set(SENTENCES)) == len(SENTENCES)
    train, test = sentence_split()
    assert not set(train) & set(test) and len(train) + len(test) == len(SENTENCES)
    assert all(s[0].isupper() and s[-1] in ".?" for s in SENTENCES)


# --- signals in closed form ---------------------------------------------------------------------

@pytest.mark.parametrize("kind,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_colored_noise_power_law(kind, slope):
    rng = np.random.default_rng(0)
    x = C.colored_noise(2 ** 17, kind, rng)
    assert abs(np.mean(x)) < 1e-12 and np.sqrt(np.mean(x ** 2)) == pytest.approx(1.0, abs=1e-12)
    # Welch-style average periodogram, log-log slope over 100 Hz .. 6 kHz
    frames = x[: 2 ** 17].reshape(-1, 1024) * np.hanning(1024)
    p = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)
    f = np.fft.rfftfreq(1024, 1 / 16000)
    band = (f >= 100) & (f <= 6000)
    fit = np.polyfit(np.log10(f[band]), np.log10(p[band]), 1)[0]
    assert fit == pytest.approx(slope, abs=0.08)
    with pytest.raises(ValueError, match="noise kind"):
        C.colored_noise(100, "blue", rng)


def test_mix_at_snr_is_exact():
    rng = np.random.default_rng(1)
    clean = rng.standard_normal(30000) * 0.05
    for snr in (-5.0, 0.0, 3.7, 15.0):
        noisy, noise = C.mix_at_snr(clean, rng.standard_normal(30000) * 3.0, snr)
        assert C.measure_snr(clean, noisy) == pytest.approx(snr, abs=1e-9)
        np.testing.assert_allclose(noisy - clean, noise, atol=1e-15)


def test_direct_path_reference_is_aligned_with_the_reverberant_input():
    pra = pytest.importorskip("pyroomacoustics")
    speech = C.synthesize("A thin layer of ice covered the puddles this morning.", "espeak-ng:en-gb+m3")
    rir, direct, info = C.shoebox_rirs(np.random.default_rng(4), 0.3)  # seed 4: first reflection 25 samples after the direct path
    # the direct response is the full one's first arrival: peak at distance / c (+ pra's 40-sample filter centre)
    peak = int(np.argmax(np.abs(direct)))
    assert abs(peak - (info["distance_m"] / pra.constants.get("c") * 16000 + 40)) < 1.0
    first_reflection = min(
        np.linalg.norm(np.where(np.arange(3) == ax, 2 * wall - np.array(info["source_m"]), info["source_m"])
                       - np.array(info["mic_m"]))
        for ax in range(3) for wall in (0.0, info["room_m"][ax]))
    early = int(first_reflection / 343.0 * 16000) + 40 - 41  # before the first reflection's filter starts
    assert early > peak + 5
    assert np.max(np.abs(rir[:early] - direct[:early])) < 0.02 * np.max(np.abs(direct))
    wet, ref = C.reverberate(speech, rir, direct)
    assert wet.shape == ref.shape == speech.shape
    # no delay left between dry speech and reference, nor between reference and reverberant input
    from scipy.signal import correlate

    lag = int(np.argmax(np.abs(correlate(ref, speech, "full", method="fft")))) - (len(speech) - 1)
    assert lag == 0
    _assert_aligned(ref, wet)
    with pytest.raises(AssertionError):  # the check notices a 3 ms misalignment
        _assert_aligned(ref, np.concatenate([np.zeros(48), wet[:-48]]))
    from domains.speech.metrics import si_sdr

    assert si_sdr(speech, ref) > 10.0  # the reference is the dry speech up to a sub-sample delay
    assert si_sdr(ref, wet) < 5.0  # the input is reverberant
    assert 0.2 < info["rt60_measured_s"] < 0.6


def test_room_geometry_in_range():
    for seed in range(6):
        _, _, info = C.shoebox_rirs(np.random.default_rng(seed), 0.25)
        room, src, mic = (np.array(info[k]) for k in ("room_m", "source_m", "mic_m"))
        assert C.SOURCE_MIC_M[0] <= info["distance_m"] <= C.SOURCE_MIC_M[1]
        assert info["distance_m"] == pytest.approx(np.linalg.norm(src - mic), abs=2e-3)  # positions rounded to mm
        for p in (src, mic):
            assert np.all(p[:2] >= 0.5 - 1e-3) and np.all(p[:2] <= room[:2] - 0.5 + 1e-3)


# --- clips and the written corpus ---------------------------------------------------------------

def test_clip_is_deterministic_by_seed_and_in_range():
    a = C.make_clip("enhance", "train", 3, seed=7)
    b = C.make_clip("enhance", "train", 3, seed=7)
    c = C.make_clip("enhance", "train", 3, seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])
    clean, noisy, meta = a
    assert 2.0 <= len(clean) / 16000 <= 4.0
    assert -5.0 <= meta["snr_db"] <= 15.0 and meta["noise"] in C.NOISE_KINDS
    assert C.measure_snr(clean, noisy) == pytest.approx(meta["snr_db"], abs=1e-9)
    assert meta["voice"] in {str(v) for v in C.TRAIN_VOICES}
    # the same utterance in the other task (speech depends on seed, split, index only)
    clean_r, _, meta_r = C.make_clip("dereverb", "train", 2, seed=0)
    assert meta_r["text"] == C.make_clip("enhance", "train", 2, seed=0)[2]["text"]
    assert 0.2 <= meta_r["rt60_s"] <= 1.2 and meta_r["noisy"].endswith(f"__rt60_{round(meta_r['rt60_s'] * 1000):04d}ms.wav")


def test_babble_comes_from_other_allowed_voices():
    for index in range(40):
        _, _, meta = C.make_clip("enhance", "train", index, seed=0)
        if meta["noise"] == "babble":
            break
    else:
        pytest.fail("no babble clip in 40 training clips")
    talkers = meta["babble_voices"].split(";")
    assert 3 <= len(talkers) <= 6 and meta["voice"] not in talkers
    assert set(talkers) <= {str(v) for v in C.TRAIN_BABBLE_VOICES}
    _, _, meta = C.make_clip("enhance", "test", 9, seed=0)  # test pairs run (white, pink, brown, babble) x (0, 5, 10)
    assert (meta["noise"], meta["snr_db"]) == ("babble", 0.0)
    assert set(meta["babble_voices"].split(";")) <= {str(v) for v in C.TEST_BABBLE_VOICES}


def _response(clean, wet, n=2048, back=200):
    """Least-squares (regularised) impulse response from ``clean`` to ``wet``, lags -back .. n-1."""
    size = len(clean) + n
    c, w = np.fft.rfft(clean, size), np.fft.rfft(wet, size)
    h = np.fft.irfft(w * np.conj(c) / (np.abs(c) ** 2 + 1e-3 * np.mean(np.abs(c) ** 2)), size)
    return np.concatenate([h[-back:], h[:n]])


def _assert_aligned(clean, wet, back=200):
    """``wet`` is ``clean`` (the direct path) plus later reflections: a unit tap at lag 0, nothing before it."""
    h = _response(clean, wet, back=back)
    assert h[back] > 0.8 and np.max(np.abs(h[:back])) < 0.15 * h[back]


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_written_corpus_layout_snr_and_determinism(tmp_path):
    summary = C.make_corpus(tmp_path / "a", "enhance", n_train=2, n_valid=1, n_test=4, seed=3)
    C.make_corpus(tmp_path / "b", "enhance", n_train=2, n_valid=1, n_test=4, seed=3, workers=2)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.wav"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.wav"))
    assert files_a == files_b and len(files_a) == 14
    for rel in files_a:  # byte-identical, with 2 workers too
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert json.loads((tmp_path / "a" / "corpus.json").read_text())["voices"] == summary["voices"]
    assert not set(summary["voices"]["test"]) & set(summary["voices"]["train"])
    for split, n in (("train", 2), ("valid", 1), ("test", 4)):
        pairs = split_pairs(tmp_path / "a", split)
        rows = {r["noisy"]: r for r in _rows(tmp_path / "a" / split / "meta.csv")}
        assert len(pairs) == len(rows) == n
        for noisy_path, clean_path in pairs:
            row = rows[noisy_path.name]
            assert clean_path.name == row["clean"] == noisy_path.name.split("__")[0] + ".wav"
            clean, noisy = read_wav(clean_path), read_wav(noisy_path)
            # measured on the 16-bit files: within 0.01 dB of the target
            assert C.measure_snr(clean, noisy) == pytest.approx(float(row["snr_db"]), abs=0.01)
            assert np.max(np.abs(noisy)) <= C.PEAK_LIMIT + 1e-4
            assert row["text"] and row["voice"] in summary["voices"][split]
    test_rows = _rows(tmp_path / "a" / "test" / "meta.csv")
    assert [(r["noise"], float(r["snr_db"])) for r in test_rows] == [("white", 0.0), ("white", 5.0),
                                                                      ("white", 10.0), ("pink", 0.0)]
    assert [r["noisy"] for r in test_rows] == ["u00000__white_snr00.wav", "u00001__white_snr05.wav",
                                               "u00002__white_snr10.wav", "u00003__pink_snr00.wav"]
    with pytest.raises(ValueError, match="already holds .* wav files"):
        C.make_corpus(tmp_path / "a", "enhance", 1, 0, 0)


def test_dereverb_corpus_from_the_command_line(tmp_path, capsys):
    root = tmp_path / "rev"
    assert C.main([str(root), "--task", "dereverb", "--n-train", "0", "--n-valid", "0", "--n-test", "1",
                   "--seed", "9", "--no-progress"]) == 0  # seed 9: a short RT60 (0.41 s), a quick test
    assert "wrote 1 dereverb clips" in capsys.readouterr().out
    (row,) = _rows(root / "test" / "meta.csv")
    assert 0.4 <= float(row["rt60_s"]) <= 1.0 and row["noise"] == "none"
    clean, rev = read_wav(root / "test" / "clean" / row["clean"]), read_wav(root / "test" / "noisy" / row["noisy"])
    assert clean.shape == rev.shape
    _assert_aligned(clean, rev)  # the reverberant input carries no extra delay over its reference
    assert float(row["drr_db"]) < 0  # and is mostly reverberation
    assert json.loads((root / "corpus.json").read_text())["conditions"]["test"] == {"rt60_s": [0.4, 1.0]}
    assert C.main([str(root), "--task", "dereverb", "--n-test", "1", "--n-train", "0", "--no-progress"]) == 2
    assert "already holds" in capsys.readouterr().err
