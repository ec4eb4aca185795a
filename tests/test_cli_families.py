"""The command line for any family: choosing the process, network and prediction, conditions,
the domain's metrics, and checkpoints of third-party plug-ins loaded in a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import stochgen
from stochgen.cli import main


def _chain(n, seed=0):
    """Tokens of a 4-state chain that always steps up by one: x[i+1] = x[i] + 1 (mod 4)."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, 4, (n, 1), generator=g)
    return (start + torch.arange(6)) % 4


def test_train_chooses_process_and_prediction_and_sample_writes_tokens(tmp_path, capsys):
    torch.save(_chain(512), tmp_path / "tokens.pt")
    ck = str(tmp_path / "tok.ckpt")
    rc = main(["train", "base", str(tmp_path / "tokens.pt"), "--process", "AbsorbingCTMC", "--process-set",
               "num_states=4", "--steps", "300", "--batch-size", "128", "--lr", "3e-3", "--ema", "0.98",
               "--out", ck, "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert "AbsorbingCTMC, prediction logits" in capsys.readouterr().out
    assert main(["info", ck]) == 0
    out = capsys.readouterr().out
    assert "family:     jump" in out and "AbsorbingCTMC" in out
    assert main(["sample", ck, "-n", "400", "-o", str(tmp_path / "s.npy"), "--steps", "20"]) == 0
    import numpy as np

    s = torch.from_numpy(np.load(tmp_path / "s.npy"))
    assert s.dtype == torch.long and s.shape == (400, 6) and int(s.min()) >= 0 and int(s.max()) <= 3
    # the deterministic chain was learned: most consecutive pairs step up by one (chance: 1/4)
    ok = float(((s[:, 1:] - s[:, :-1]) % 4 == 1).float().mean())
    assert ok > 0.8, ok
    # the likelihood is not defined for a jump process: one clear line, exit 2
    assert main(["likelihood", ck, str(tmp_path / "tokens.pt")]) == 2
    assert "likelihood is not defined" in capsys.readouterr().err


def test_train_bad_process_arguments_are_one_line_errors(tmp_path, capsys):
    torch.save(torch.randn(32, 2), tmp_path / "x.pt")
    base = ["train", "base", str(tmp_path / "x.pt"), "--steps", "2", "--no-progress", "--out", str(tmp_path / "m")]
    assert main(base + ["--process", "Nope"]) == 2
    assert "unknown process type 'Nope'" in capsys.readouterr().err
    assert main(base + ["--process", "VP", "--process-set", "bogus=1"]) == 2
    assert "bad config for process type 'VP'" in capsys.readouterr().err
    assert main(base + ["--process", "{not json"]) == 2
    assert "--process is not valid JSON" in capsys.readouterr().err
    assert main(base + ["--process-set", "a=1"]) == 2
    assert "--process-set needs --process" in capsys.readouterr().err
    assert main(base + ["--process", "VP", "--prediction", "logits"]) == 2
    assert "prediction 'logits' does not apply: VP is a linear Gaussian" in capsys.readouterr().err
    assert main(base + ["--process", "OUVE"]) == 2
    assert "OUVE needs the condition(s) ['y'] in the data" in capsys.readouterr().err


def test_conditions_through_the_cli(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=g)
    torch.save({"x": x, "y": x + 0.3 * torch.randn(400, 2, generator=g)}, tmp_path / "pairs.pt")
    ck = str(tmp_path / "ou.ckpt")
    spec = json.dumps({"type": "OUVE", "config": {"theta": 4.0, "sigma_max": 1.0}})
    assert main(["train", "base", str(tmp_path / "pairs.pt"), "--process", spec, "--steps", "5", "--out", ck,
                 "--no-progress"]) == 0
    capsys.readouterr()
    torch.save(torch.full((6, 2), 1.5), tmp_path / "y.pt")
    assert main(["sample", ck, "-n", "6", "--cond", f"y={tmp_path / 'y.pt'}", "-o", str(tmp_path / "s.pt"),
                 "--steps", "4"]) == 0
    assert torch.load(tmp_path / "s.pt").shape == (6, 2)
    assert main(["sample", ck, "-n", "6", "-o", str(tmp_path / "s.pt")]) == 2
    assert "trained with the condition(s) ['y']" in capsys.readouterr().err
    assert main(["sample", ck, "-n", "6", "--cond", f"z={tmp_path / 'y.pt'}", "-o", str(tmp_path / "s.pt")]) == 2
    assert "takes no condition(s) ['z']" in capsys.readouterr().err
    assert main(["sample", ck, "-n", "6", "--cond", "y=/nonexistent.pt", "-o", str(tmp_path / "s.pt")]) == 2
    assert "file not found" in capsys.readouterr().err
    # the likelihood reads the data's conditions; new pairs are held out, the training pairs need a flag
    x2 = torch.randn(20, 2, generator=g)
    torch.save({"x": x2, "y": x2 + 0.3 * torch.randn(20, 2, generator=g)}, tmp_path / "new.pt")
    assert main(["likelihood", ck, str(tmp_path / "new.pt"), "-n", "8", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "nats/sample" in out and "none of the 20 samples of DATA was training data" in out
    assert main(["likelihood", ck, str(tmp_path / "pairs.pt"), "-n", "8", "--no-progress"]) == 2
    assert "all 400 samples" in capsys.readouterr().err
    assert main(["likelihood", ck, str(tmp_path / "pairs.pt"), "-n", "8", "--include-training",
                 "--no-progress"]) == 0
    assert "nats/sample" in capsys.readouterr().out


class _Counting(stochgen.Domain):
    name = "test-counting"

    def metrics(self, model, data):
        x = data.x
        return {"n": float(len(data)), "mean0": float(x[:, 0].mean())}


def test_domain_metrics_are_called_by_fit_and_the_cli(tmp_path, capsys):
    stochgen.register_domain("test-counting", _Counting)
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0)) + 3.0
    m = stochgen.fit(_Counting(), x, steps=6, batch_size=16, val_split=0.2, metrics_every=3, progress=False,
                     log=tmp_path / "log.jsonl")
    steps = [s for s, _ in m.history["metrics"]]
    assert steps == [3, 6] and m.history["metrics"][-1][1]["n"] == 20.0
    rows = [json.loads(r) for r in open(tmp_path / "log.jsonl")]
    assert [r["step"] for r in rows if "metric_n" in r] == [3, 6]
    with pytest.raises(ValueError, match="metrics_every needs val_split"):
        stochgen.fit(_Counting(), x, steps=2, metrics_every=1, progress=False)
    torch.save(x, tmp_path / "x.pt")
    ck = str(m.save(tmp_path / "m.ckpt"))
    assert main(["metrics", ck, str(tmp_path / "x.pt"), "--include-training"]) == 0
    out = capsys.readouterr().out
    assert "n: 100.0000" in out and abs(float(out.split("mean0:")[1]) - float(x[:, 0].mean())) < 1e-3
    # by default only the 20 rows fit held out for validation are evaluated
    from stochgen.fit import validation_split

    val = validation_split(_Counting().load(x), 0.2, 0)[0]
    assert main(["metrics", ck, str(tmp_path / "x.pt")]) == 0
    out = capsys.readouterr().out
    assert "n: 20.0000" in out and abs(float(out.split("mean0:")[1]) - float(val.x[:, 0].mean())) < 1e-3
    assert "80 of the 100 samples of DATA were training data" in out
    assert main(["train", "test-counting", str(tmp_path / "x.pt"), "--steps", "2", "--val-split", "0.1",
                 "--out", str(tmp_path / "c.ckpt"), "--no-progress"]) == 0
    assert "held-out metrics: n 10.0000" in capsys.readouterr().out


PLUGIN = '''
import torch
import stochgen
from stochgen import nets, processes


class SlowOUVE(processes.OUVE):
    """A third-party subclass of a built-in process (its family is inherited)."""


class TinyNet(nets.MLP):
    """A third-party network (a subclass of a built-in one)."""


class PluginDomain(stochgen.Domain):
    name = "plugin-domain"

    def default_process(self):
        return SlowOUVE(theta=3.0)

    def default_network(self, example, num_classes=None):
        return TinyNet(dim=example.shape[1], hidden=16, depth=1, cond_inputs={"y": example.shape[1]})
'''


def test_third_party_checkpoint_loads_in_a_fresh_process(tmp_path):
    (tmp_path / "myplugin.py").write_text(PLUGIN)
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    train = textwrap.dedent(f"""
        import torch, stochgen, myplugin
        x = torch.randn(64, 2)
        m = stochgen.fit(myplugin.PluginDomain(), {{"x": x, "y": x}}, steps=3, batch_size=16, progress=False)
        m.save({str(tmp_path / 'p.ckpt')!r})
        torch.save(m.sample(4, cond={{"y": torch.zeros(2)}}, generator=torch.Generator().manual_seed(0)),
                   {str(tmp_path / 'a.pt')!r})
    """)
    r = subprocess.run([sys.executable, "-c", train], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    use = textwrap.dedent(f"""
        import sys, torch, stochgen
        m = stochgen.load({str(tmp_path / 'p.ckpt')!r})            # never imported myplugin by hand
        s = m.sample(4, cond={{"y": torch.zeros(2)}}, generator=torch.Generator().manual_seed(0))
        assert torch.equal(s, torch.load({str(tmp_path / 'a.pt')!r}))
        print(type(m.domain).__name__, type(m.process).__name__, type(m.net).__name__)
    """)
    r = subprocess.run([sys.executable, "-c", use], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["PluginDomain", "SlowOUVE", "TinyNet"]
    # the same through the command line
    r = subprocess.run([sys.executable, "-m", "stochgen.cli", "info", str(tmp_path / "p.ckpt")], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0 and "SlowOUVE" in r.stdout and "family:     mean-reverting" in r.stdout, r.stderr
    # without the plug-in installed: one clear line naming the module
    r = subprocess.run([sys.executable, "-c", use], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ))
    assert r.returncode != 0 and "module 'myplugin', which cannot be imported here" in r.stderr, r.stderr[-2000:]


def test_processes_register_round_trips_a_subclass():
    class MyVP(stochgen.processes.VP):
        pass

    stochgen.processes.register(MyVP)
    stochgen.processes.register(MyVP)  # again: a no-op
    p = stochgen.processes.from_spec(MyVP(schedule="cosine").spec())
    assert type(p) is MyVP and p.config() == MyVP(schedule="cosine").config()
    assert "MyVP" in stochgen.processes.names()

    class Bare(stochgen.processes.Process):
        pass

    with pytest.raises(ValueError, match="Bare declares no process family"):
        stochgen.processes.register(Bare)
    with pytest.raises(TypeError, match="only Process subclasses"):
        stochgen.processes.register(dict)

    class MyVP2(stochgen.processes.VP):
        pass

    MyVP2.__name__ = "MyVP"
    with pytest.raises(ValueError, match="already registered"):
        stochgen.processes.register(MyVP2)


def test_bad_outputs_and_counts_are_refused_before_any_work(tmp_path, capsys):
    """An output that cannot be written is refused before training starts (the run is not lost);
    counts and steps below 1 are one-line errors, not tracebacks or silent defaults."""
    torch.save(torch.randn(32, 2), tmp_path / "x.pt")
    data = str(tmp_path / "x.pt")
    bad_out = "/nonexistent/dir/x.ckpt" if not os.access("/", os.W_OK) else str(tmp_path / "x.pt" / "m.ckpt")
    t0 = __import__("time").time()
    assert main(["train", "base", data, "--steps", "100000", "--out", bad_out, "--no-progress"]) == 2
    assert "not a writable folder" in capsys.readouterr().err
    assert __import__("time").time() - t0 < 20  # refused at once, not after 100000 steps
    assert main(["train", "base", data, "--steps", "0", "--out", str(tmp_path / "m.ckpt")]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    assert main(["train", "base", data, "--steps", "2", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "is a folder" in capsys.readouterr().err
    ck = str(stochgen.fit("base", torch.load(tmp_path / "x.pt"), steps=2, progress=False).save(tmp_path / "m.ckpt"))
    for n in ("0", "-3"):
        assert main(["sample", ck, "-n", n, "-o", str(tmp_path / "s.pt")]) == 2
        assert "-n must be >= 1" in capsys.readouterr().err
    assert main(["sample", ck, "--steps", "0", "-o", str(tmp_path / "s.pt")]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    assert main(["likelihood", ck, data, "-n", "0"]) == 2
    assert "-n must be >= 1" in capsys.readouterr().err
    assert main(["demo", "--steps", "0", "--out", str(tmp_path / "d")]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    m = stochgen.load(ck)
    with pytest.raises(ValueError, match="steps must be a positive whole number"):
        m.sample(4, steps=0)
    with pytest.raises(ValueError, match="n must be a positive whole number"):
        m.sample(0)
    with pytest.raises(ValueError, match="steps must be a whole number, got 2.5"):
        stochgen.fit("base", torch.randn(8, 2), steps=2.5, progress=False)
