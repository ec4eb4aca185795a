"""A property-based pass over every command-line verb and every domain loader.

Verbs are discovered from the parser itself (``build_parser()``), so a verb a domain adds
later (``enhance``, ``register``, ...) is fuzzed without new test code: its positionals draw
from a pool of real and broken files, its options from typed pools of hostile values. For
the built-in verbs a small valid command line is the starting point and one or two of its
arguments are replaced by hostile ones, so the hostile value is what the verb has to catch.

Every case must end with exit status 0, or with status 2 and exactly one line naming the
problem on stderr; never an uncaught exception, never a temporary file left behind, never a
new file after a failed run, never a checkpoint changed by a failed run.
``STOCHGEN_FUZZ_EXAMPLES`` (default 40) sets the examples per verb.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stochgen
from stochgen.cli import build_parser, main

EXAMPLES = int(os.environ.get("STOCHGEN_FUZZ_EXAMPLES", "40"))
CASE_SECONDS = 60
STATS = {"cases": 0, "ok": 0, "refused": 0}


# --- a world of real and broken files -------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    files = {}
    dom = stochgen.domain("images")
    train, _ = dom.split("digits", held_out=0.5, seed=0)
    model = stochgen.fit(dom, train.subset(range(64)), steps=2, batch_size=8, progress=False)
    files["ckpt"] = model.save(root / "images.ckpt")
    base = stochgen.fit("base", torch.randn(32, 3), steps=2, batch_size=8, progress=False)
    files["base_ckpt"] = base.save(root / "base.ckpt")
    raw = open(files["ckpt"], "rb").read()
    (root / "truncated.ckpt").write_bytes(raw[: len(raw) // 3])
    files["truncated"] = str(root / "truncated.ckpt")
    (root / "notes.txt").write_text("not a checkpoint\n")
    files["text"] = str(root / "notes.txt")
    torch.save({"x": torch.zeros(2)}, root / "foreign.pt")
    files["foreign_pt"] = str(root / "foreign.pt")
    np.save(root / "wrong_shape.npy", np.zeros((3, 5, 7, 2, 2)))
    files["wrong_npy"] = str(root / "wrong_shape.npy")
    np.save(root / "nan.npy", np.full((4, 3), np.nan))
    files["nan_npy"] = str(root / "nan.npy")
    np.save(root / "empty.npy", np.zeros((0, 3)))
    files["empty_npy"] = str(root / "empty.npy")
    (root / "empty_dir").mkdir()
    files["empty_dir"] = str(root / "empty_dir")
    (root / "dir.ckpt").mkdir()
    files["dir_ckpt"] = str(root / "dir.ckpt")
    (root / "fake.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    files["fake_wav"] = str(root / "fake.wav")
    (root / "zero.wav").write_bytes(b"")
    files["zero_file"] = str(root / "zero.wav")
    # real audio (stdlib wave): a valid mono 16-bit clip, a stereo one, an 8-bit one, a folder of clips
    import wave

    def wav(path, channels=1, width=2, rate=16000, seconds=0.5):
        n = int(rate * seconds)
        sig = (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / rate) * (2 ** (8 * width - 1) - 1))
        sig = np.repeat(sig[:, None], channels, 1)
        data = (sig + 128).astype(np.uint8) if width == 1 else sig.astype(np.int16)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(width)
            w.setframerate(rate)
            w.writeframes(data.tobytes())
        return str(path)

    files["wav"] = wav(root / "clip.wav")
    files["wav_stereo"] = wav(root / "stereo.wav", channels=2)
    files["wav_8bit"] = wav(root / "eight.wav", width=1)
    (root / "wavs").mkdir()
    for i in range(2):
        wav(root / "wavs" / f"u{i}.wav", rate=22050)
    files["wav_dir"] = str(root / "wavs")
    files["missing"] = str(root / "no" / "such" / "file.ckpt")
    files["missing_dir"] = str(root / "no_such_dir")
    files["png_dir"] = str(root / "pngs")
    os.makedirs(files["png_dir"])
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((5, 5), 40 * i, np.uint8)).save(os.path.join(files["png_dir"], f"{i}.png"))
    Image.fromarray(np.zeros((6, 4), np.uint8)).save(os.path.join(files["png_dir"], "odd.png"))
    return {"root": root, **{k: os.fspath(v) for k, v in files.items()}}


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# --- what each argument may receive ---------------------------------------------------------------

COUNTS = ["0", "-3", "abc", "1.5", "nan", "", "1e3x", "-0"]
HUGE = ["1000000000000", "99999999999999999999"]
FLOATS = ["nan", "inf", "-inf", "-1", "abc", "", "1e400", "2"]
STRINGS = ["", " ", "nonsense", "-", "{", "{\"type\": 3}", "x" * 300, "..", "\x7f"]
DEVICES = ["nonsense", "cuda:99", "meta", "cpu:1", ""]


def _paths(world):
    keys = ["ckpt", "base_ckpt", "truncated", "text", "foreign_pt", "wrong_npy", "nan_npy", "empty_npy",
            "empty_dir", "dir_ckpt", "fake_wav", "zero_file", "missing", "missing_dir", "png_dir", "wav",
            "wav_stereo", "wav_8bit", "wav_dir"]
    return [world[k] for k in keys] + ["digits", "mnist-does-not-exist"]


# where an absurdly large count must be refused up front (elsewhere it can be valid, if long, work)
HUGE_REFUSED = {"sample": {"n"}, "train": {"batch_size"}, "demo": {"batch_size"}}


def _hostile(action, world, verb="") -> list[str]:
    dest = action.dest
    if dest == "device":
        return DEVICES
    if action.type is int or getattr(action.type, "__name__", "") == "seed_int":
        return COUNTS + (HUGE if dest in HUGE_REFUSED.get(verb, ()) else [])
    if action.type is float or getattr(action.type, "__name__", "") == "finite_float":
        return FLOATS
    if dest in OUTPUT_DESTS:
        return [world["missing_dir"] + "/x/../../" + "\x00bad", "/proc/forbidden/x.ckpt", world["dir_ckpt"],
                world["empty_dir"], "/", world["text"] + "/inside.pt"]
    return STRINGS + _paths(world)


# small valid command lines of the built-in verbs (tiny work); other verbs start from nothing
def _bases(world, out):
    return {
        "train": ["train", "images", world["png_dir"] + "_ok", "--steps", "1", "--batch-size", "2",
                  "--out", os.path.join(out, "t.ckpt"), "--no-progress"],
        "sample": ["sample", world["ckpt"], "-n", "2", "--steps", "1", "-o", os.path.join(out, "s.pt"),
                   "--no-progress"],
        "likelihood": ["likelihood", world["ckpt"], "digits", "-n", "1", "--rtol", "0.3", "--atol", "0.3",
                       "--no-progress"],
        "info": ["info", world["ckpt"]],
        "metrics": ["metrics", world["ckpt"], "digits", "-n", "2"],
        "demo": ["demo", "--quick", "--steps", "1", "--batch-size", "2", "--out", os.path.join(out, "demo"),
                 "--no-progress"],
    }


def _verbs():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _mutate(base: list[str], parser: argparse.ArgumentParser, world, data) -> list[str]:
    """Replace one or two arguments of ``base`` (or add an option) with hostile values."""
    argv = list(base)
    actions = [a for a in parser._actions if a.dest != "help"]
    positionals = [a for a in actions if not a.option_strings]
    options = [a for a in actions if a.option_strings and not isinstance(a, argparse._StoreTrueAction)]
    for _ in range(data.draw(st.integers(1, 2), label="mutations")):
        act = data.draw(st.sampled_from(positionals + options), label="argument")
        value = data.draw(st.sampled_from(_hostile(act, world, argv[0])), label=f"value of {act.dest}")
        if not act.option_strings:  # the k-th positional of the verb
            k = positionals.index(act)
            pos = [i for i, a in enumerate(argv[1:], 1) if not a.startswith("-") and
                   (i == 1 or not argv[i - 1].startswith("-") or argv[i - 1] in _flags(parser))]
            if k < len(pos):
                argv[pos[k]] = value
            continue
        flag = act.option_strings[-1]
        present = [i for i, a in enumerate(argv) if a in act.option_strings]
        if present and present[0] + 1 < len(argv):
            argv[present[0] + 1] = value
        else:
            argv += [flag, value]
    return argv


def _flags(parser):
    return {s for a in parser._actions if isinstance(a, (argparse._StoreTrueAction, argparse._HelpAction))
            for s in a.option_strings}


OUTPUT_DESTS = ("out", "log", "csv", "plot", "output", "o")


def _generic(verb: str, parser, world, data, out: str) -> list[str]:
    """A command line for a verb with no valid base: positionals from the file pool, some options hostile."""
    argv = [verb]
    for act in parser._actions:
        if act.dest == "help":
            continue
        if not act.option_strings:
            argv.append(data.draw(st.sampled_from(_paths(world) + STRINGS[:3]), label=act.dest))
        elif act.required or data.draw(st.booleans(), label=f"give {act.dest}"):
            if isinstance(act, argparse._StoreTrueAction):
                argv.append(act.option_strings[-1])
            elif act.choices:
                pool = [str(c) for c in act.choices] + STRINGS[:3]
                argv += [act.option_strings[-1], data.draw(st.sampled_from(pool), label=act.dest)]
            else:
                typed = act.type in (int, float) or getattr(act.type, "__name__", "") in ("finite_float", "seed_int")
                pool = _hostile(act, world, verb) + (["1", "2", "3"] if typed else _paths(world))
                if act.dest in OUTPUT_DESTS:  # fresh, writable outputs too, so valid runs happen
                    pool += [os.path.join(out, n) for n in ("o.wav", "odir", "o.csv", "o.png", "o.pt")]
                argv += [act.option_strings[-1], data.draw(st.sampled_from(pool), label=act.dest)]
    return argv


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _run_case(argv, world, out, capsys):
    watched = [world["ckpt"], world["base_ckpt"]]
    before = {p: _digest(p) for p in watched}
    listing = set(os.listdir(out))
    capsys.readouterr()
    if os.environ.get("STOCHGEN_FUZZ_TRACE"):
        with open(os.environ["STOCHGEN_FUZZ_TRACE"], "a") as fh:
            fh.write(repr(argv) + "\n")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    cwd = os.getcwd()
    os.chdir(out)  # relative output names land in the case's folder, never in the checkout
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                rc = main(argv)
            except SystemExit as exc:  # argparse: usage errors (2) and --help / --version (0)
                rc = exc.code if isinstance(exc.code, int) else 2
    except _Timeout:
        pytest.fail(f"{argv} ran longer than {CASE_SECONDS} s (hostile input must be refused before work)")
    except Exception as exc:  # noqa: BLE001 - the property under test
        pytest.fail(f"{argv} raised {type(exc).__name__}: {exc}")
    finally:
        os.chdir(cwd)
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    cap = capsys.readouterr()
    STATS["cases"] += 1
    if os.environ.get("STOCHGEN_FUZZ_TRACE"):
        with open(os.environ["STOCHGEN_FUZZ_TRACE"], "a") as fh:
            fh.write(f"  -> {rc} {cap.err.strip()[-300:]}\n")
    assert rc in (0, 2), f"{argv} exited with {rc}"
    assert "Traceback" not in cap.err, f"{argv} printed a traceback:\n{cap.err}"
    new = set(os.listdir(out)) - listing
    hidden = [f for f in new if f.startswith(".")]
    assert not hidden, f"{argv} left temporary files {hidden}"
    if rc == 2:
        STATS["refused"] += 1
        lines = [ln for ln in cap.err.splitlines() if ln.strip() and "%|" not in ln]
        assert len(lines) == 1 and "error" in lines[0] and lines[0].startswith("stochgen"), \
            f"{argv} must print one error line, got:\n{cap.err}"
        assert not new, f"{argv} failed but left {sorted(new)}"
        for p in watched:
            assert _digest(p) == before[p], f"{argv} failed and changed {p}"
    else:
        STATS["ok"] += 1
    for f in new:  # successful outputs do not pile up between cases
        path = os.path.join(out, f)
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)


VERBS = sorted(_verbs())


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_refuses_hostile_input_in_one_line(verb, world, tmp_path_factory, capsys):
    out = str(tmp_path_factory.mktemp(f"out_{verb}"))
    if not os.path.isdir(world["png_dir"] + "_ok"):
        shutil.copytree(world["png_dir"], world["png_dir"] + "_ok", ignore=shutil.ignore_patterns("odd.png"))
    parser = _verbs()[verb]
    base = _bases(world, out).get(verb)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def case(data):
        argv = _mutate(base, parser, world, data) if base else _generic(verb, parser, world, data, out)
        _run_case(argv, world, out, capsys)

    case()


def test_the_harness_saw_every_verb():
    # the harness is only as good as its discovery: the built-in verbs are all there
    assert {"train", "sample", "likelihood", "metrics", "info", "demo"} <= set(VERBS)
    if STATS["cases"]:
        print(f"\nfuzz: {STATS['cases']} cases over {len(VERBS)} verbs, {STATS['refused']} refused with one "
              f"line, {STATS['ok']} ran; none failed")


# --- domain loaders -------------------------------------------------------------------------------

def _domains():
    """Every registered domain and every built-in ``domains/<name>`` package (optional packages present)."""
    import domains
    from stochgen.cli import _resolve_domain
    from stochgen.domain import names as domain_names

    names = set(domain_names())
    folder = os.path.dirname(domains.__file__)
    names |= {e for e in os.listdir(folder) if e.isidentifier() and os.path.isfile(os.path.join(folder, e, "__init__.py"))}
    out = {}
    for n in sorted(names):
        try:
            out[n] = _resolve_domain(n)
        except Exception:  # noqa: BLE001 - a domain whose optional packages are absent is skipped here
            continue
    return out


HOSTILE_DATA = st.one_of(
    st.sampled_from([None, 3, 2.5, "", "nonsense", [], {}, (1,), [[1, 2], [3]], {"x": None}, {"labels": [1]},
                     float("nan"), b"bytes", object()]),
    st.builds(lambda shape, fill: np.full(shape, fill),
              st.lists(st.integers(0, 4), min_size=0, max_size=5).map(tuple),
              st.sampled_from([0.0, np.nan, np.inf, -1e30, 7])),
    st.builds(lambda n: torch.zeros(n, dtype=torch.bool), st.integers(0, 3)),
    st.builds(lambda shape: {"x": np.zeros(shape), "labels": np.arange(3)},
              st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)),
)


@pytest.mark.parametrize("name", sorted(_domains()))
def test_every_domain_loader_refuses_hostile_data_clearly(name, world):
    dom_cls = type(_domains()[name])
    paths = st.sampled_from(_paths(world))

    @settings(max_examples=EXAMPLES * 2, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(HOSTILE_DATA, paths))
    def case(data):
        dom = dom_cls()
        try:
            dom.load(data)
        except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
            msg = str(exc)
            assert msg.strip() and "\n" not in msg.strip(), f"{name}.load({data!r}): unclear message {msg!r}"
        STATS["cases"] += 1

    case()
