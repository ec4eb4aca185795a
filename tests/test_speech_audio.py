"""Speech wav I/O and the paired-folder layout: round trips, resampling, and one clear error per bad input."""
import numpy as np
import pytest

sf = pytest.importorskip("soundfile")
pytest.importorskip("librosa")

from domains.speech.audio import clean_name, load_pairs, pair_files, read_wav, split_pairs, write_wav  # noqa: E402


def _sine(sr, seconds=1.0, f=440.0, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return amp * np.sin(2 * np.pi * f * t)


def test_write_read_round_trip_16bit(tmp_path):
    rng = np.random.default_rng(0)
    w = np.clip(rng.standard_normal(8000) * 0.2, -0.99, 0.99)
    p = write_wav(tmp_path / "sub" / "a.wav", w, 16000)
    info = sf.info(p)
    assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
    back = read_wav(p)
    assert back.dtype == np.float32 and back.shape == w.shape
    assert np.max(np.abs(back - w)) <= 1 / 32768 + 1e-7  # 16-bit quantisation only
    # out-of-range values are clipped, not wrapped
    write_wav(tmp_path / "c.wav", np.array([2.0, -3.0, 0.5] * 100), 8000)
    c = read_wav(tmp_path / "c.wav", sr=None)
    assert c[0] == pytest.approx(32767 / 32768) and c[1] == -1.0


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_any_rate_resampled_to_16k(tmp_path, rate):
    sf.write(tmp_path / "x.wav", _sine(rate, 1.0, 440.0), rate, subtype="PCM_16")
    w, file_rate = read_wav(tmp_path / "x.wav", return_sr=True)
    assert file_rate == rate
    assert abs(len(w) - 16000) <= 1
    spec = np.abs(np.fft.rfft(w * np.hanning(len(w))))
    assert abs(np.argmax(spec) * 16000 / len(w) - 440.0) < 2.0  # same tone after resampling
    assert np.sqrt(np.mean(w[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_float_wav_and_native_rate(tmp_path):
    sf.write(tmp_path / "f.wav", _sine(16000, 0.5).astype(np.float32), 16000, subtype="FLOAT")
    w = read_wav(tmp_path / "f.wav")
    np.testing.assert_allclose(w, _sine(16000, 0.5), atol=1e-7)


def test_bad_inputs_are_clear_errors_naming_the_file(tmp_path):
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.zeros((1600, 2)), 16000, subtype="PCM_16")
    with pytest.raises(ValueError, match=r"stereo\.wav: has 2 channels; only mono"):
        read_wav(stereo)
    u8 = tmp_path / "u8.wav"
    sf.write(u8, _sine(16000, 0.1), 16000, subtype="PCM_U8")
    with pytest.raises(ValueError, match=r"u8\.wav: 8-bit PCM is not supported"):
        read_wav(u8)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), 16000, subtype="PCM_16")
    with pytest.raises(ValueError, match=r"empty\.wav: is empty"):
        read_wav(empty)
    text = tmp_path / "notes.wav"
    text.write_text("these are not samples\n")
    with pytest.raises(ValueError, match=r"notes\.wav: not a readable wav file"):
        read_wav(text)
    flac = tmp_path / "song.flac"
    sf.write(flac, _sine(16000, 0.1), 16000, format="FLAC")
    with pytest.raises(ValueError, match=r"song\.flac: not a wav file .*FLAC"):
        read_wav(flac)
    nan = tmp_path / "nan.wav"
    x = _sine(16000, 0.1).astype(np.float32)
    x[100] = np.nan
    sf.write(nan, x, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"nan\.wav: holds NaN samples \(1 of 1600, first at sample 100\)"):
        read_wav(nan)
    with pytest.raises(FileNotFoundError, match=r"missing\.wav"):
        read_wav(tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="NaN"):
        write_wav(tmp_path / "out.wav", x)
    with pytest.raises(ValueError, match="mono"):
        write_wav(tmp_path / "out.wav", np.zeros((10, 2)))


def test_clean_name_rule():
    assert clean_name("utt__white_snr05.wav") == "utt.wav"
    assert clean_name("p232_001__babble__x.wav") == "p232_001.wav"
    assert clean_name("p232_001.wav") == "p232_001.wav"
    assert clean_name("/some/dir/a_b.wav") == "a_b.wav"


def _layout(root, split, clean, noisy, n=1600):
    for sub, names in (("clean", clean), ("noisy", noisy)):
        for k, name in enumerate(names):
            write_wav(root / split / sub / name, _sine(16000, n / 16000, 200.0 + 50 * k, 0.1))


def test_pairing_by_equal_name_and_by_prefix(tmp_path):
    _layout(tmp_path, "train", ["a.wav", "b.wav", "c__x.wav"], ["a.wav", "b__white_snr05.wav", "b__pink_snr00.wav",
                                                              "c__x.wav"])
    pairs = split_pairs(tmp_path, "train")
    assert [(n.name, c.name) for n, c in pairs] == [("a.wav", "a.wav"), ("b__pink_snr00.wav", "b.wav"),
                                                    ("b__white_snr05.wav", "b.wav"), ("c__x.wav", "c__x.wav")]
    loaded = load_pairs(tmp_path, "train")
    assert [name for name, _, _ in loaded] == [n.name for n, _ in pairs]
    assert all(x.shape == y.shape == (1600,) for _, x, y in loaded)


def test_missing_partner_and_layout_errors(tmp_path):
    _layout(tmp_path, "valid", ["a.wav"], ["a__white_snr05.wav", "zz__pink_snr00.wav"])
    with pytest.raises(ValueError, match=r"zz__pink_snr00\.wav: no clean partner \(zz__pink_snr00\.wav or zz\.wav\)"):
        split_pairs(tmp_path, "valid")
    with pytest.raises(FileNotFoundError, match=r"test[/\\]clean: no such folder"):
        split_pairs(tmp_path, "test")
    with pytest.raises(ValueError, match="split must be one of"):
        split_pairs(tmp_path, "training")
    (tmp_path / "e" / "clean").mkdir(parents=True)
    (tmp_path / "e" / "noisy").mkdir()
    with pytest.raises(ValueError, match="holds no .wav files"):
        pair_files(tmp_path / "e" / "clean", tmp_path / "e" / "noisy")
    write_wav(tmp_path / "test" / "clean" / "a.wav", np.zeros(1600) + 0.1)
    write_wav(tmp_path / "test" / "noisy" / "a.wav", np.zeros(1500) + 0.1)
    with pytest.raises(ValueError, match=r"a\.wav: 1500 samples but its clean partner .*a\.wav has 1600"):
        load_pairs(tmp_path, "test")
