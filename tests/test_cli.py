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
    assert main(["likelihood", str(ckpt), "digits", "-n", "4"]) == 0
    out = capsys.readouterr().out
    assert "bits/dim" in out and "17 levels" in out
    bpd = float(out.split("bits/dim:")[1].split()[0])
    assert 0 < bpd < 20


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
