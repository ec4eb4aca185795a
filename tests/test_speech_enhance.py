"""``stochgen enhance``: a file and a folder keep names, rates and lengths (16-bit PCM), --plot, and hostile
input (stereo, 8-bit, empty, non-wav, missing clean partner, unwritable output) refused in one line
before any output appears; the shipped model improves SI-SDR on a generated clip."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")
pytest.importorskip("librosa")

from stochgen.cli import main  # noqa: E402
from stochgen.model import Model  # noqa: E402

from domains.speech.domain import SpeechDomain, default_weights  # noqa: E402
from domains.speech.nets import SpeechUNet  # noqa: E402


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    d = SpeechDomain(net_channels=[8, 16], segment=32)
    torch.manual_seed(0)
    m = Model(d, d.default_process(), SpeechUNet(channels=(8, 16), residual=True), prediction="x0",
              state_shape=(2, 256, 32), sampler="mr-exact", steps=2)
    return m.save(tmp_path_factory.mktemp("m") / "tiny.ckpt")


def _wave(n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (0.3 * np.sin(2 * np.pi * 200 * t / 16000) + 0.02 * rng.standard_normal(n)).astype(np.float32)


def _run(argv, capsys):
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr()


def test_file_and_folder_keep_names_rates_lengths(tiny_ckpt, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", _wave(12345), 22050, subtype="PCM_16")
    sf.write(src / "b__white_snr05.wav", _wave(9000, 1), 16000, subtype="FLOAT")
    out = tmp_path / "one.wav"
    rc, cap = _run(["enhance", str(src / "a.wav"), "-o", str(out), "--model", tiny_ckpt, "--no-progress",
                    "--plot", str(tmp_path / "fig.png")], capsys)
    assert rc == 0, cap.err
    info = sf.info(out)
    assert (info.samplerate, info.frames, info.subtype, info.channels) == (22050, 12345, "PCM_16", 1)
    assert os.path.getsize(tmp_path / "fig.png") > 1000
    dst = tmp_path / "outdir"
    rc, cap = _run(["enhance", str(src), "-o", str(dst), "--model", tiny_ckpt, "--steps", "1", "--sampler",
                    "mr-exact", "--seed", "3", "--no-progress"], capsys)
    assert rc == 0, cap.err
    assert sorted(os.listdir(dst)) == ["a.wav", "b__white_snr05.wav"]
    for name, sr, n in (("a.wav", 22050, 12345), ("b__white_snr05.wav", 16000, 9000)):
        i = sf.info(dst / name)
        assert (i.samplerate, i.frames, i.subtype) == (sr, n, "PCM_16")
    # an existing folder as OUTPUT of a file takes the input's name
    rc, cap = _run(["enhance", str(src / "a.wav"), "-o", str(dst), "--model", tiny_ckpt, "--no-progress"], capsys)
    assert rc == 0 and sf.info(dst / "a.wav").frames == 12345


def _bad_files(root):
    root.mkdir()
    sf.write(root / "stereo.wav", np.zeros((800, 2), np.float32), 16000)
    sf.write(root / "eight.wav", (np.zeros(800) + 0.1).astype(np.float32), 16000, subtype="PCM_U8")
    sf.write(root / "empty.wav", np.zeros(0, np.float32), 16000)
    (root / "text.wav").write_text("hello, not audio\n")
    sf.write(root / "sound.flac", np.zeros(800, np.float32) + 0.1, 16000, format="FLAC")
    return {"stereo.wav": "2 channels; only mono", "eight.wav": "8-bit PCM is not supported",
            "empty.wav": "is empty", "text.wav": "not a readable wav file", "sound.flac": "not a wav file"}


def test_bad_input_is_one_line_and_leaves_nothing(tiny_ckpt, tmp_path, capsys):
    bad = _bad_files(tmp_path / "bad")
    out = tmp_path / "out"
    out.mkdir()
    for name, msg in bad.items():
        rc, cap = _run(["enhance", str(tmp_path / "bad" / name), "-o", str(out / "x.wav"), "--model", tiny_ckpt],
                       capsys)
        lines = [ln for ln in cap.err.splitlines() if ln.strip()]
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("stochgen: error:") and msg in lines[0], \
            (name, cap.err)
    # a folder with one bad file among good ones: refused before any output appears
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    sf.write(mixed / "good.wav", _wave(4000), 16000)
    sf.write(mixed / "stereo.wav", np.zeros((800, 2), np.float32), 16000)
    rc, cap = _run(["enhance", str(mixed), "-o", str(out / "res"), "--model", tiny_ckpt], capsys)
    assert rc == 2 and "stereo.wav" in cap.err and "only mono" in cap.err
    # missing clean partner for the plot, unwritable / odd outputs, a non-speech model
    good = tmp_path / "good"
    good.mkdir()
    sf.write(good / "u1__pink.wav", _wave(4000), 16000)
    (tmp_path / "refs").mkdir()
    cases = [
        (["enhance", str(good), "-o", str(out / "r"), "--plot", str(out / "f.png"), "--clean", str(tmp_path / "refs")],
         "no clean partner (u1__pink.wav or u1.wav)"),
        (["enhance", str(good / "u1__pink.wav"), "-o", str(tmp_path / "nowhere" / "x.wav")], "does not exist"),
        (["enhance", str(good / "u1__pink.wav"), "-o", str(out / "x.mp3")], "must end in .wav"),
        (["enhance", str(good), "-o", str(good / "u1__pink.wav")], "is a file"),
        (["enhance", str(good / "u1__pink.wav"), "-o", str(out / "x.wav"), "--plot", str(out / "f.txt")], "--plot"),
        (["enhance", str(good / "u1__pink.wav"), "-o", str(out / "x.wav"), "--steps", "0"], "--steps"),
        (["enhance", str(good / "u1__pink.wav"), "-o", str(out / "x.wav"), "--sampler", "tau-leaping"],
         "does not apply"),
        (["enhance", str(good / "u1__pink.wav"), "-o", str(out / "x.wav"), "--device", "cuda:7"], "--device"),
        (["enhance", str(tmp_path / "missing.wav"), "-o", str(out / "x.wav")], "no such file"),
    ]
    for argv, msg in cases:
        if "--model" not in argv:
            argv = argv + ["--model", tiny_ckpt]
        rc, cap = _run(argv, capsys)
        lines = [ln for ln in cap.err.splitlines() if ln.strip()]
        assert rc == 2 and len(lines) == 1 and msg in lines[0], (argv, cap.err)
    foreign = tmp_path / "foreign.ckpt"
    import stochgen

    stochgen.fit("base", torch.randn(16, 2), steps=1, batch_size=4, progress=False).save(foreign)
    rc, cap = _run(["enhance", str(good / "u1__pink.wav"), "-o", str(out / "x.wav"), "--model", str(foreign)], capsys)
    assert rc == 2 and "not a speech model" in cap.err
    assert os.listdir(out) == []  # nothing written by any refused run


@pytest.mark.skipif(not default_weights("enhance").is_file(), reason="no shipped enhance model yet")
def test_shipped_model_improves_si_sdr_on_a_generated_clip():
    from domains.speech import corpus
    from domains.speech.metrics import si_sdr

    import shutil

    if shutil.which("espeak-ng") is None or shutil.which("flite") is None:
        pytest.skip("espeak-ng / flite are not installed (the corpus generator needs them)")
    clean, noisy, meta = corpus.make_clip("enhance", "valid", 3, seed=11)
    clean, noisy = clean.astype(np.float32), noisy.astype(np.float32)
    out = SpeechDomain().enhance(noisy, 16000)
    assert out.shape == noisy.shape
    before, after = si_sdr(clean, noisy), si_sdr(clean, out)
    assert after > before + 3.0, (meta, before, after)
