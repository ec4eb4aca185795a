"""The stochgen command line, end to end on tiny settings (in-process through main([...]))."""
import os
import subprocess
import sys

import pytest
import torch

import stochgen
from domains.images import ImagesDomain
from stochgen.cli import build_parser, main

try:
    stochgen.register_domain("images", ImagesDomain)
except ValueError:  # pragma: no cover
    pass


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "m.ckpt"
    rc = main(["train", "images", "digits", "--steps", "20", "--batch-size", "16", "--out", str(path),
               "--no-progress", "--seed", "0"])
    assert rc == 0 and path.is_file()
    return path


def test_help_for_every_verb(capsys):
    for verb in ("train", "sample", "likelihood", "info", "demo"):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([verb, "--help"])
        assert e.value.code == 0
        assert f"stochgen {verb}" in capsys.readouterr().out


def test_console_help_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "stochgen.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for verb in ("train", "sample", "likelihood", "info", "demo"):
        assert verb in out.stdout


def test_info_prints_the_domain(ckpt, capsys):
    assert main(["info", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "domain:     images" in out and "EDM" in out and "UNet" in out and "heun" in out


def test_sample_pt_and_png(ckpt, tmp_path, capsys):
    out = tmp_path / "x.pt"
    assert main(["sample", str(ckpt), "-n", "5", "-o", str(out), "--steps", "4", "--label", "3",
                 "--guidance", "2"]) == 0
    x = torch.load(out)
    assert x.shape == (5, 1, 8, 8) and torch.isfinite(x).all()
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    png = tmp_path / "g.png"
    assert main(["sample", str(ckpt), "-n", "4", "-o", str(png), "--steps", "3"]) == 0
    from PIL import Image

    assert Image.open(png).size == (1 + 2 * 33, 1 + 2 * 33)


def test_sample_in_range(ckpt, tmp_path):
    out = tmp_path / "y.pt"
    assert main(["sample", str(ckpt), "-n", "3", "-o", str(out), "--steps", "4"]) == 0
    x = torch.load(out)
    assert x.shape == (3, 1, 8, 8)
    assert float(x.min()) >= -1 and float(x.max()) <= 1


def test_likelihood_prints_bits_per_dim(ckpt, capsys):
    # the model saw every digit: scoring them needs --include-training, and the output says so
    assert main(["likelihood", str(ckpt), "digits", "-n", "4", "--no-progress"]) == 2
    assert "all 1797 samples of digits were used to train this model" in capsys.readouterr().err
    assert main(["likelihood", str(ckpt), "digits", "-n", "4", "--include-training", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "bits/dim" in out and "17 levels" in out and "training samples included" in out
    bpd = float(out.split("bits/dim:")[1].split()[0])
    assert 0 < bpd < 20


def test_likelihood_scores_only_the_held_out_rows(tmp_path, capsys):
    dom = stochgen.domain("images")
    train, test = dom.split("digits", held_out=0.2, seed=0)
    model = stochgen.fit(dom, train, steps=3, batch_size=8, progress=False)
    path = model.save(tmp_path / "m.ckpt")
    # the recorded rows are exactly the training rows: every test row is new, every training row known
    loaded = stochgen.load(path)
    assert loaded.train_rows is not None and loaded.train_rows.numel() == len(train)
    full = dom.load("digits")
    held, skipped = loaded.held_out(full)
    assert skipped == len(train) and len(held) == len(test)
    assert set(held.row_hashes().tolist()) == set(test.row_hashes().tolist())
    assert main(["likelihood", str(path), "digits", "-n", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"{len(train)} of the 1797 samples of DATA were training data and are skipped" in out
    assert f"scoring the first 3 of {len(test)} samples" in out


def test_clear_errors(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.ckpt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "missing.ckpt"), "-o", str(tmp_path / "x.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["train", "no-such-domain", "digits", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown domain" in err and "images" in err
    assert main(["train", "images", "not-a-dataset", "--steps", "1"]) == 2
    assert "unknown image source" in capsys.readouterr().err
    # a text file given as image data, a folder named like a checkpoint: say what the path is
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    assert main(["train", "images", str(txt), "--steps", "1", "--out", str(tmp_path / "m.ckpt")]) == 2
    assert f"{txt} is a file, not image data" in capsys.readouterr().err
    folder = tmp_path / "dir.ckpt"
    folder.mkdir()
    for argv in (["info", str(folder)], ["sample", str(folder), "-o", str(tmp_path / "x.pt")],
                 ["likelihood", str(folder), "digits"]):
        assert main(argv) == 2
        assert f"{folder} is a folder, not a checkpoint file" in capsys.readouterr().err


def test_demo_quick_writes_three_files(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--steps", "6", "--out", str(out), "--no-progress"]) == 0
    for name in ("model.ckpt", "samples.png", "inpainting.png"):
        assert (out / name).is_file() and os.path.getsize(out / name) > 0
    text = capsys.readouterr().out
    assert "held-out bits/dim" in text and "per-class share" in text and "class-conditional samples" in text
    from PIL import Image

    assert Image.open(out / "samples.png").size == (1 + 4 * 33, 1 + 10 * 33)  # one row per digit
    assert stochgen.load(out / "model.ckpt").num_classes == 10


def test_sample_writes_the_format_its_suffix_names(ckpt, tmp_path, capsys):
    import numpy as np
    import safetensors.torch
    from PIL import Image

    base = ["sample", str(ckpt), "-n", "6", "--steps", "3", "--seed", "1", "--no-progress"]
    assert main(base + ["-o", str(tmp_path / "a.pt")]) == 0
    ref = torch.load(tmp_path / "a.pt")
    assert main(base + ["-o", str(tmp_path / "a.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "a.npy"), ref.numpy())  # same seed, same samples
    assert main(base + ["-o", str(tmp_path / "a.safetensors")]) == 0
    assert torch.equal(safetensors.torch.load_file(str(tmp_path / "a.safetensors"))["x"], ref)
    assert main(base + ["-o", str(tmp_path / "a.jpg"), "--nrow", "3"]) == 0
    im = Image.open(tmp_path / "a.jpg")
    assert im.format == "JPEG" and im.size == (1 + 3 * 33, 1 + 2 * 33)  # 3 per row, 2 rows
    assert main(base + ["-o", str(tmp_path / "a.png"), "--nrow", "6"]) == 0
    assert Image.open(tmp_path / "a.png").format == "PNG" and Image.open(tmp_path / "a.png").size == (1 + 6 * 33, 34)
    # one file per sample
    assert main(base + ["-o", str(tmp_path / "each" / "d.png"), "--per-sample"]) == 0
    files = sorted(os.listdir(tmp_path / "each"))
    assert files == [f"d_{i:04d}.png" for i in range(6)]
    assert main(base + ["-o", str(tmp_path / "each" / "d.pt"), "--per-sample"]) == 0
    for i in (0, 5):
        assert torch.equal(torch.load(tmp_path / "each" / f"d_{i:04d}.pt"), ref[i:i + 1])
    capsys.readouterr()
    # no suffix or an unknown one: refused before any sampling, nothing written
    for bad in ("z", "z.jpeg2", "z.txt"):
        assert main(base + ["-o", str(tmp_path / bad)]) == 2
        assert "cannot tell what to write" in capsys.readouterr().err
        assert not (tmp_path / bad).exists()
    assert main(base + ["-o", str(tmp_path / "b.pt"), "--nrow", "2"]) == 2
    assert "--nrow" in capsys.readouterr().err
    leftovers = [f for f in os.listdir(tmp_path) if f.startswith(".")]
    assert leftovers == []  # no temporary files left behind


def test_images_refused_for_a_domain_that_draws_none(tmp_path, capsys):
    model = stochgen.fit("base", torch.randn(64, 2), steps=2, batch_size=16, progress=False)
    path = model.save(tmp_path / "b.ckpt")
    assert main(["sample", str(path), "-n", "2", "-o", str(tmp_path / "b.png"), "--no-progress"]) == 2
    assert "draws no images" in capsys.readouterr().err and not (tmp_path / "b.png").exists()


def test_checkpoint_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = stochgen.checkpoint.save(tmp_path / "m.ckpt", {"g": {"w": torch.zeros(2)}}, {})
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_version_and_defaults_in_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"stochgen {stochgen.__version__} (torch ")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    # batch size, lr and EMA fall back to the domain's fit_defaults, then to the library's values
    assert "fit_defaults, else 128)" in text and "fit_defaults, else 0.999)" in text
    assert "(default: model.ckpt)" in text and "(default: 0.1)" in text


def test_likelihood_says_when_the_checkpoint_cannot_tell_training_rows(tmp_path, capsys):
    dom = stochgen.domain("images")
    model = stochgen.fit(dom, dom.split("digits", held_out=0.5, seed=0)[0], steps=2, batch_size=8, progress=False)
    model.train_rows = None  # as a model built outside fit (or by an older stochgen) has it
    path = model.save(tmp_path / "old.ckpt")
    assert stochgen.load(path).train_rows is None
    assert main(["likelihood", str(path), "digits", "-n", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "records no training rows, so DATA may include training samples" in out
    assert "scoring the first 2 of 1797 samples" in out
