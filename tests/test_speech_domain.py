"""The speech domain: paired folders -> spectrogram crops, settings round trip, a tiny conditional fit that
learns, the predictive baseline, and the chunked enhance() path (lengths, rates, overlap-add exactness)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")
pytest.importorskip("librosa")

import stochgen  # noqa: E402
from domains.speech import domain as D  # noqa: E402
from domains.speech.domain import Predictive, SpeechDomain  # noqa: E402

SR = 16000
TINY = dict(net_channels=[8, 16], segment=32)


def _speechlike(n, rng):
    t = np.arange(n) / SR
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return (0.3 * env * sum(np.sin(k * phase) / k for k in range(1, 6))).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("spc")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for sub in ("clean", "noisy"):
            (root / split / sub).mkdir(parents=True)
        for i in range(n):
            clean = _speechlike(int(SR * rng.uniform(0.2, 0.8)), rng)
            noisy = clean + 0.05 * rng.standard_normal(clean.size).astype(np.float32)
            sf.write(root / split / "clean" / f"u{i}.wav", clean, SR, subtype="PCM_16")
            sf.write(root / split / "noisy" / f"u{i}__white.wav", noisy, SR, subtype="PCM_16")
    return root


def test_load_shapes_crops_and_round_trip(corpus):
    d = SpeechDomain(**TINY)
    data = d.load(corpus)  # a corpus root: its train split
    assert data.x.shape[1:] == (2, 256, 32) and data.cond["y"].shape == data.x.shape
    assert data.info["clips"] == 6 and len(data) >= 6
    # crops are peak-normalised by the noisy wave: the noisy decodes to a peak <= 1, the clean is not louder
    y = d.decode(data.cond["y"])
    assert float(y.abs().max()) <= 1.0 + 1e-4
    # the same seed gives the same crops; a split folder loads the same way
    again = SpeechDomain(**TINY).load(corpus / "train")
    assert torch.equal(again.x, data.x) and torch.equal(again.cond["y"], data.cond["y"])
    other = SpeechDomain(**TINY, crop_seed=1).load(corpus)
    assert not torch.equal(other.x, data.x)
    # encode / decode through the domain is exact
    w = _speechlike(5000, np.random.default_rng(1))
    back = d.decode(d.encode(w), len(w))[0].numpy()
    assert np.abs(back - w).max() < 1e-5
    # settings are JSON and rebuild the domain
    d2 = stochgen.domain("speech", **d.settings)
    assert isinstance(d2, SpeechDomain) and d2.settings == d.settings


def test_bad_settings_and_data_name_the_problem(corpus, tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        SpeechDomain(task="denoise")
    with pytest.raises(ValueError, match="unknown process"):
        SpeechDomain(process="vp")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        SpeechDomain().load(tmp_path / "nothing")
    (tmp_path / "train" / "clean").mkdir(parents=True)
    (tmp_path / "train" / "noisy").mkdir()
    sf.write(tmp_path / "train" / "noisy" / "lonely__white.wav", np.zeros(4000, np.float32) + 0.1, SR)
    with pytest.raises(ValueError, match=r"lonely__white.wav: no clean partner \(lonely__white.wav or lonely.wav\)"):
        SpeechDomain().load(tmp_path)


def test_tiny_conditional_fit_lowers_the_loss_and_saves(corpus, tmp_path):
    d = SpeechDomain(**TINY)
    data = d.load(corpus)
    m = stochgen.fit(d, data, steps=30, batch_size=4, lr=3e-3, warmup=5, progress=False, seed=0)
    assert type(m.process).__name__ == "OUVE" and m.prediction == "x0" and m.sampler == "mr-exact"
    loss = m.history["loss"]
    assert np.mean(loss[-8:]) < 0.8 * np.mean(loss[:8]), (loss[:8], loss[-8:])
    m2 = stochgen.load(m.save(tmp_path / "s.ckpt"))
    assert isinstance(m2.domain, SpeechDomain) and m2.domain.settings == d.settings
    y = data.cond["y"][:2]
    a = d.enhance_states(m, y, generator=torch.Generator().manual_seed(0))
    b = d.enhance_states(m2, y, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=1e-6)
    # every selectable sampler runs and reports its evaluations
    for sampler, steps, nfe in (("mr-exact", 4, 4), ("mr-pc", 3, 6), ("ode", 3, None)):
        out, info = d.enhance_states(m, y, sampler=sampler, steps=steps, return_info=True,
                                     generator=torch.Generator().manual_seed(0))
        assert out.shape == y.shape and torch.isfinite(out).all()
        if nfe is not None:
            assert info["nfe"] == nfe, (sampler, info["nfe"])


def test_predictive_baseline_is_plain_regression(corpus):
    d = SpeechDomain(**TINY, process="predictive")
    proc = d.default_process()
    assert isinstance(proc, Predictive)
    x, y = torch.randn(3, 2, 8, 4), torch.randn(3, 2, 8, 4)
    mg = proc.marginal(x, torch.full((3,), 0.9995), y=y)
    assert torch.equal(mg.x_t, y)  # the network sees the noisy input only
    data = d.load(corpus)
    m = stochgen.fit(d, data, steps=30, batch_size=4, lr=3e-3, warmup=5, progress=False)
    assert m.history["loss"][-1] < m.history["loss"][0]
    out, info = d.enhance_states(m, data.cond["y"][:2], return_info=True)
    assert info["nfe"] == 1 and out.shape == data.x[:2].shape
    # the regression target is reached better than by the noisy input on the training crops
    err_model = float(((out - data.x[:2]) ** 2).mean())
    err_noisy = float(((data.cond["y"][:2] - data.x[:2]) ** 2).mean())
    assert err_model < err_noisy


def _identity_model():
    """An untrained residual x0 model returns y exactly: enhance() must then give back its input."""
    from stochgen.model import Model

    from domains.speech.nets import SpeechUNet

    d = SpeechDomain(**TINY)
    torch.manual_seed(0)
    return Model(d, d.default_process(), SpeechUNet(channels=(8, 16), residual=True), prediction="x0",
                 state_shape=(2, 256, 32), sampler="mr-exact", steps=3)


def test_enhance_keeps_length_and_rate_and_overlap_add_is_exact():
    m = _identity_model()
    d = SpeechDomain()
    rng = np.random.default_rng(3)
    for n, sr in ((3001, 16000), (22050 * 2 + 7, 22050), (200, 8000)):
        w = 0.5 * _speechlike(n, rng)
        out = d.enhance(w, sr, model=m)
        assert out.shape == w.shape and out.dtype == np.float32
        if sr == 16000:
            assert np.abs(out - w).max() < 1e-4
    with pytest.raises(ValueError, match="mono wave"):
        d.enhance(np.zeros((2, 100), np.float32), 16000, model=m)
    with pytest.raises(ValueError, match="empty"):
        d.enhance(np.zeros(0, np.float32), 16000, model=m)
    with pytest.raises(ValueError, match="sample rate"):
        d.enhance(np.zeros(100, np.float32), 0, model=m)
    with pytest.raises(ValueError, match="task"):
        d.enhance(np.zeros(100, np.float32), 16000, model=m, task="denoise")


def test_long_file_goes_through_bounded_chunks(monkeypatch):
    m = _identity_model()
    d = SpeechDomain()
    n = 60 * SR + 123
    w = 0.3 * _speechlike(n, np.random.default_rng(4))
    seen = []
    real = SpeechDomain._chunks

    def spy(self, model, waves, generator, opts):
        seen.append(sum(x.size for x in waves))
        return real(self, model, waves, generator, opts)

    monkeypatch.setattr(SpeechDomain, "_chunks", spy)
    out = d.enhance(w, SR, model=m, steps=1)
    L = (D.CHUNK_FRAMES - 1) * d.codec.hop
    plan = d.chunk_plan(n)
    assert len(seen) == len(plan) == int(np.ceil((n - L) / ((D.CHUNK_FRAMES - D.OVERLAP_FRAMES) * d.codec.hop))) + 1
    assert max(seen) == L  # never more than one chunk of audio in the network at a time
    assert plan[0] == 0 and plan[-1] == n - L
    assert out.shape == w.shape and np.abs(out - w).max() < 1e-4  # cross-faded seams are seamless


def test_evaluations_counts_the_samplers_network_calls():
    """enhance's evaluations per chunk: the shipped model's stored default (mr-exact, 2 steps) and 1 step."""
    from domains.speech.domain import default_weights

    if not default_weights("enhance").is_file():
        pytest.skip("no shipped enhance model")
    dom = SpeechDomain()
    model = stochgen.load(default_weights("enhance"))
    wave = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32) * 0.3
    warm = model.domain.settings.get("warm_start") is not None
    # the stored default: the predictive estimate (1 evaluation), then mr-exact's 2 steps from t = 0.1
    assert dom.evaluations(model, wave) == int(model.steps) + warm == 3
    assert dom.evaluations(model, wave, warm_start=None) == int(model.steps) == 2
    assert dom.evaluations(model, wave, steps=1) == 1


def test_model_default_warm_start_and_how_to_turn_it_off(tmp_path, monkeypatch):
    """A model whose settings name a warm start uses it when the caller gives no sampler, steps or
    warm_start; its predictive model is found relative to the weights folder. With identity networks
    (untrained residual models return y) the answer is the input whichever path runs."""
    from stochgen.model import Model

    from domains.speech.nets import SpeechUNet

    m = _identity_model()
    dp = SpeechDomain(**TINY, process="predictive")
    torch.manual_seed(1)
    pred = Model(dp, dp.default_process(), SpeechUNet(channels=(8, 16), residual=True), prediction="x0",
                 state_shape=(2, 256, 32), steps=1)
    pred.save(str(tmp_path / "pred.safetensors"))
    monkeypatch.setattr(D, "WEIGHTS_DIR", tmp_path)
    m.domain.settings.update(warm_start=0.3, predictive="pred.safetensors")
    dom = SpeechDomain()
    w = 0.4 * _speechlike(4000, np.random.default_rng(5))
    assert dom.evaluations(m, w) == int(m.steps) + 1 == 4
    assert dom.evaluations(m, w, warm_start=None) == int(m.steps)
    assert dom.evaluations(m, w, steps=2) == 2
    assert dom.evaluations(m, w, sampler="mr-exact") == int(m.steps)
    out = dom.enhance(w, SR, model=m)
    assert out.shape == w.shape and np.abs(out - w).max() < 1e-4
    m.domain.settings["predictive"] = "missing.safetensors"
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        dom.enhance(w, SR, model=m)
    assert np.abs(dom.enhance(w, SR, model=m, warm_start=None) - w).max() < 1e-4
