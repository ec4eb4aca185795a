"""The speech-metrics verb through add_verbs on a plain argparse parser: rows and means, --csv, one-line errors,
and a light module import."""
import argparse
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from domains.speech.cli import add_verbs


def _parser():
    p = argparse.ArgumentParser(prog="stochgen")
    add_verbs(p.add_subparsers(dest="verb"))
    return p


def test_module_import_is_light():
    code = ("import sys, domains.speech.cli as c; "
            "print(sorted(m for m in ('numpy', 'torch', 'pesq', 'pystoi', 'librosa', 'soundfile') if m in sys.modules))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True).stdout
    assert out.strip() == "[]"


def test_parser_shape():
    p = _parser()
    args = p.parse_args(["speech-metrics", "C", "E", "--csv", "m.csv"])
    assert (args.verb, args.clean_dir, args.est_dir, args.csv, args.quiet) == ("speech-metrics", "C", "E", "m.csv", False)
    assert callable(args.func)
    assert p.parse_args(["speech-metrics", "C", "E"]).csv is None
    with pytest.raises(SystemExit):
        p.parse_args(["speech-metrics", "C"])  # EST_DIR is required


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    pytest.importorskip("librosa")
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs Debian espeak-ng")
    from domains.speech.audio import write_wav
    from domains.speech.corpus import mix_at_snr, synthesize

    root = tmp_path_factory.mktemp("cli")
    w = synthesize("Two students argued quietly at the back of the library.", "espeak-ng:en-gb+f2") * 0.5
    write_wav(root / "clean" / "u1.wav", w)
    rng = np.random.default_rng(0)
    for snr in (0, 10):
        write_wav(root / "est" / f"u1__white_snr{snr:02d}.wav", mix_at_snr(w, rng.standard_normal(w.shape), snr)[0])
    return root


def test_run_prints_rows_and_means_and_writes_csv(folders, capsys, tmp_path):
    args = _parser().parse_args(["speech-metrics", str(folders / "clean"), str(folders / "est"),
                                 "--csv", str(tmp_path / "m.csv")])
    assert args.func(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["file", "SI-SDR/dB", "PESQ-wb", "ESTOI"]
    rows = [line.split() for line in out[1:3]]
    assert [r[0] for r in rows] == ["u1__white_snr00.wav", "u1__white_snr10.wav"]
    si = [float(r[1]) for r in rows]
    assert si[0] == pytest.approx(0.0, abs=0.1) and si[1] == pytest.approx(10.0, abs=0.1)
    assert out[3].startswith("mean over 2 files: SI-SDR ")
    assert float(out[3].split()[5]) == pytest.approx(np.mean(si), abs=0.011)
    assert out[4] == f"wrote {tmp_path / 'm.csv'}"
    text = (tmp_path / "m.csv").read_text().splitlines()
    assert text[0] == "file,clean,si_sdr,pesq,estoi" and text[-1].startswith("mean,n=2,")
    args = _parser().parse_args(["speech-metrics", str(folders / "clean"), str(folders / "est"), "--quiet"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("mean over 2 files")


def test_user_errors_are_one_line(folders, tmp_path):
    p = _parser()
    args = p.parse_args(["speech-metrics", str(tmp_path / "none"), str(folders / "est")])
    with pytest.raises(FileNotFoundError, match="none: no such folder"):
        args.func(args)
    args = p.parse_args(["speech-metrics", str(folders / "clean"), str(folders / "est"),
                         "--csv", str(tmp_path / "no" / "dir" / "m.csv")])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        args.func(args)
    shutil.copytree(folders / "est", tmp_path / "est")
    shutil.copy(folders / "clean" / "u1.wav", tmp_path / "est" / "u2__pink_snr05.wav")
    args = p.parse_args(["speech-metrics", str(folders / "clean"), str(tmp_path / "est")])
    with pytest.raises(ValueError, match=r"u2__pink_snr05\.wav: no clean partner") as info:
        args.func(args)
    assert "\n" not in str(info.value)
