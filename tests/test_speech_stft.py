"""Speech STFT: exact round trip on real synthetic speech, the STFT itself against librosa, compression in closed form."""
import shutil

import numpy as np
import pytest
import torch

from domains.speech.stft import SpecCodec, from_channels, to_channels

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian espeak-ng")


@pytest.fixture(scope="module")
def speech():
    pytest.importorskip("librosa")
    pytest.importorskip("soundfile")
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs Debian espeak-ng")
    from domains.speech.corpus import synthesize

    return synthesize("The kettle whistled just as the phone began to ring.", "espeak-ng:en-us+m1")


def test_shape_256_bins_and_centred_frames():
    codec = SpecCodec()
    for length in (1000, 16000, 16001, 16127, 16128):
        spec = codec.encode(torch.randn(length))
        assert spec.shape == (256, 1 + length // 128) == (codec.freq_bins, codec.frames(length))
        assert spec.dtype == torch.complex64
    assert codec.encode(torch.randn(3, 4000, dtype=torch.float64)).shape == (3, 256, 32)
    assert codec.encode(torch.randn(3, 4000, dtype=torch.float64)).dtype == torch.complex128


@needs_espeak
def test_round_trip_on_speech_is_exact(speech):
    codec = SpecCodec()
    n = len(speech)
    assert n > 30000 and np.max(np.abs(speech)) > 0.1  # about 2.7 s of real speech
    for dtype, tol in ((np.float32, 1e-6), (np.float64, 1e-13)):
        w = speech.astype(dtype)
        back = codec.decode(codec.encode(w), n).numpy()
        assert back.shape == w.shape and back.dtype == w.dtype
        assert np.max(np.abs(back - w)) < tol
    # a batch, odd lengths, and other compression settings invert as well
    batch = torch.from_numpy(np.stack([speech[:20001], speech[5000:25001]]))
    for codec in (SpecCodec(), SpecCodec(alpha=1.0, beta=1.0), SpecCodec(alpha=0.3, beta=0.5)):
        back = codec.decode(codec.encode(batch), 20001)
        assert torch.max(torch.abs(back - batch)) < 2e-6


@needs_espeak
def test_stft_matches_librosa_and_compression_closed_form(speech):
    librosa = pytest.importorskip("librosa")
    w = speech[:12000].astype(np.float64)
    ref = librosa.stft(w, n_fft=510, hop_length=128, window="hann", center=True, pad_mode="reflect")
    plain = SpecCodec(alpha=1.0, beta=1.0).encode(w).numpy()
    assert ref.shape == plain.shape == (256, 1 + 12000 // 128)
    assert np.max(np.abs(plain - ref)) < 1e-10 * np.max(np.abs(ref))
    s = SpecCodec().encode(w).numpy()
    np.testing.assert_allclose(np.abs(s), 0.15 * np.abs(ref) ** 0.5, rtol=1e-9, atol=1e-12)
    big = np.abs(ref) > 1e-6 * np.abs(ref).max()
    np.testing.assert_allclose(np.angle(s[big] * np.conj(ref[big])), 0.0, atol=1e-9)  # phase kept


def test_periodic_hann_window():
    w = SpecCodec().window(torch.float64).numpy()
    n = np.arange(510)
    np.testing.assert_allclose(w, 0.5 - 0.5 * np.cos(2 * np.pi * n / 510), atol=1e-15)


def test_channels_round_trip():
    g = torch.Generator().manual_seed(0)
    z = torch.complex(torch.randn(2, 256, 9, generator=g), torch.randn(2, 256, 9, generator=g))
    x = to_channels(z)
    assert x.shape == (2, 2, 256, 9) and not torch.is_complex(x)
    assert torch.equal(x[:, 0], z.real) and torch.equal(x[:, 1], z.imag)
    assert torch.equal(from_channels(x), z)
    with pytest.raises(ValueError):
        from_channels(x[:, :1])
    with pytest.raises(TypeError):
        to_channels(z.real)


def test_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="alpha"):
        SpecCodec(alpha=0.0)
    with pytest.raises(ValueError, match="beta"):
        SpecCodec(beta=-1.0)
    with pytest.raises(ValueError, match="hop"):
        SpecCodec(hop=300)
    with pytest.raises(ValueError, match="samples"):
        SpecCodec().encode(torch.randn(100))
    with pytest.raises(TypeError):
        SpecCodec().encode(torch.arange(1000))
    assert SpecCodec().config() == {"n_fft": 510, "hop": 128, "alpha": 0.5, "beta": 0.15, "sample_rate": 16000}
