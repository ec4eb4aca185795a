"""stochgen.fit / Model / load on a 2-D Gaussian mixture: learning, reproducibility, save/load, resume."""
import json
import os
import shutil

import pytest
import torch

import stochgen

CENTERS = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0]])
WEIGHTS = torch.tensor([0.5, 0.3, 0.2])
STD = 0.1


def mixture(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(WEIGHTS, n, replacement=True, generator=g)
    return CENTERS[k] + STD * torch.randn(n, 2, generator=g), k


def dom():
    return stochgen.Domain(sigma_data=1.0, hidden=64, depth=2)


FIT = dict(batch_size=256, lr=2e-3, warmup=20, ema=0.99, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit")
    x, _ = mixture(2000)
    model = stochgen.fit(dom(), x, steps=400, ckpt_path=str(folder / "run.ckpt"), **FIT)
    return model, folder


def test_loss_decreases(trained):
    loss = trained[0].history["loss"]
    assert len(loss) == 400
    first, last = sum(loss[:20]) / 20, sum(loss[-20:]) / 20
    assert last < 0.7 * first, (first, last)


def test_samples_match_the_mixture(trained):
    model, _ = trained
    s = model.sample(2000, generator=torch.Generator().manual_seed(1))   # default: heun, 18 steps
    assert s.shape == (2000, 2) and torch.isfinite(s).all()
    d = torch.cdist(s, CENTERS)
    share = torch.bincount(d.argmin(1), minlength=3).float() / len(s)
    tv = 0.5 * float((share - WEIGHTS).abs().sum())
    assert tv < 0.08, share
    # mean distance to the nearest centre is STD * sqrt(pi / 2) = 0.125 for the true mixture
    assert float(d.min(1).values.mean()) < 0.2


def test_metrics_log_one_line_per_logged_step(trained):
    _, folder = trained
    path = folder / "run.metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(10, 401, 10))
    assert all(r["loss"] > 0 and r["samples_per_s"] > 0 for r in rows)
    hist = trained[0].history["loss"]
    assert rows[-1]["loss"] == pytest.approx(sum(hist[-10:]) / 10, rel=1e-9)


def test_save_load_gives_identical_samples(trained, tmp_path):
    model, folder = trained
    model.save(tmp_path / "m.ckpt")
    for path in (tmp_path / "m.ckpt", folder / "run.ckpt"):  # a model file and a training checkpoint
        m2 = stochgen.load(path)
        assert m2.spec["process"] == model.process.spec() and m2.spec["net"] == model.net.spec()
        assert m2.prediction == "x0" and m2.precondition == "edm" and m2.ema_decay == 0.99
        for sampler in ("heun", "dpm++2m"):
            a = model.sample(64, sampler=sampler, steps=8, generator=torch.Generator().manual_seed(5))
            b = m2.sample(64, sampler=sampler, steps=8, generator=torch.Generator().manual_seed(5))
            assert torch.equal(a, b)
    spec = stochgen.checkpoint.info(tmp_path / "m.ckpt")["spec"]
    assert spec["domain"] == {"name": "base", "settings": {"sigma_data": 1.0, "hidden": 64, "depth": 2},
                              "module": "stochgen.domain", "class": "Domain"}
    assert spec["stochgen_version"] == stochgen.__version__ and spec["sampler"] == "heun" and spec["steps"] == 18


def test_for_sampling_keeps_only_the_ema_network_and_samples_the_same(trained, tmp_path):
    model, _ = trained
    assert model.ema is not None and not torch.equal(next(model.ema.parameters()), next(model.net.parameters()))
    light = model.for_sampling(steps=5)
    assert light.ema is None and light.steps == 5 and light.net is model.ema
    light.save(tmp_path / "light.ckpt")
    model.save(tmp_path / "full.ckpt")
    assert os.path.getsize(tmp_path / "light.ckpt") < 0.6 * os.path.getsize(tmp_path / "full.ckpt")
    m2 = stochgen.load(tmp_path / "light.ckpt")
    assert m2.steps == 5 and m2.ema is None
    a = model.sample(64, steps=8, generator=torch.Generator().manual_seed(5))  # the EMA weights
    b = m2.sample(64, steps=8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_log_likelihood_prefers_data_over_outliers(trained):
    model, _ = trained
    x = torch.cat([CENTERS, torch.tensor([[0.0, 3.0]])])
    ll = model.log_likelihood(x, rtol=1e-3, atol=1e-3)
    assert ll.shape == (4,) and float(ll[:3].min()) > float(ll[3]) + 5


def test_same_seed_same_trace_other_seed_differs():
    x, _ = mixture(500)
    kw = dict(FIT, batch_size=64)
    a = stochgen.fit(dom(), x, steps=30, seed=3, **kw)
    b = stochgen.fit(dom(), x, steps=30, seed=3, **kw)
    c = stochgen.fit(dom(), x, steps=30, seed=4, **kw)
    assert a.history["loss"] == b.history["loss"]
    for p, q in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(p, q)
    assert a.history["loss"] != c.history["loss"]


class _Interrupt(Exception):
    pass


class _Crashing(stochgen.Domain):
    """Raises on the n-th training batch: simulates a run killed mid-way."""

    def __init__(self, crash_at=None, **settings):
        super().__init__(**settings)
        self.crash_at, self.calls = crash_at, 0

    def cond_from_batch(self, batch):
        self.calls += 1
        if self.crash_at is not None and self.calls == self.crash_at:
            raise _Interrupt
        return super().cond_from_batch(batch)


def test_resume_continues_bit_identically(tmp_path):
    x, k = mixture(600)
    kw = dict(FIT, batch_size=64, val_split=0.2, val_every=20, cond_drop=0.2, log_every=5)
    data = (x, k)  # with labels: label dropout draws are part of the RNG stream too
    full = stochgen.fit(dom(), data, steps=60, ckpt_path=str(tmp_path / "full.ckpt"), **kw)

    ck = tmp_path / "part.ckpt"
    with pytest.raises(_Interrupt):  # killed during step 48; last checkpoint at step 40
        stochgen.fit(_Crashing(crash_at=48, sigma_data=1.0, hidden=64, depth=2), data, steps=60,
                     ckpt_every=20, ckpt_path=str(ck), **kw)
    assert stochgen.checkpoint.info(ck)["spec"]["train"]["step"] == 40
    resumed = stochgen.fit(dom(), data, steps=60, ckpt_path=str(ck), resume=str(ck), **kw)

    assert resumed.history["loss"] == full.history["loss"]
    assert resumed.history["val"] == full.history["val"] and len(full.history["val"]) == 3
    for p, q in zip(resumed.net.parameters(), full.net.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(resumed.ema.parameters(), full.ema.parameters()):
        assert torch.equal(p, q)
    # the log was cut back to the checkpoint and continued: every step once
    rows = [json.loads(line) for line in (tmp_path / "part.metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(5, 61, 5))
    assert [r["step"] for r in rows if "val_loss" in r] == [20, 40, 60]


def test_corrupt_or_foreign_checkpoint_errors_clearly(trained, tmp_path):
    _, folder = trained
    bad = tmp_path / "bad.ckpt"
    data = (folder / "run.ckpt").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        stochgen.load(bad)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        stochgen.fit(dom(), mixture(100)[0], steps=5, resume=str(bad), progress=False)
    with pytest.raises(FileNotFoundError):
        stochgen.load(tmp_path / "missing.ckpt")
    stochgen.checkpoint.save(tmp_path / "other.ckpt", {"net": {}}, {"something": "else"})
    with pytest.raises(ValueError, match="not a stochgen model"):
        stochgen.load(tmp_path / "other.ckpt")
    # a checkpoint whose domain is not installed names it and lists the known ones
    states, spec = stochgen.checkpoint.load(folder / "run.ckpt")
    spec["domain"]["name"] = "not-installed"
    spec["domain"].update(module="not_installed_pkg.domains", cls="X")
    spec["domain"]["class"] = spec["domain"].pop("cls")
    stochgen.checkpoint.save(tmp_path / "nodomain.ckpt", states, spec)
    with pytest.raises(ValueError, match="module 'not_installed_pkg.domains', which cannot be imported"):
        stochgen.load(tmp_path / "nodomain.ckpt")
    del spec["domain"]["module"], spec["domain"]["class"]  # an old checkpoint that recorded only the name
    stochgen.checkpoint.save(tmp_path / "nodomain.ckpt", states, spec)
    with pytest.raises(ValueError, match="unknown domain 'not-installed'; known domains: .*base"):
        stochgen.load(tmp_path / "nodomain.ckpt")
    # resuming a plain model file (no optimizer state) is refused
    stochgen.load(folder / "run.ckpt").save(tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match="without training state"):
        stochgen.fit(dom(), mixture(100)[0], steps=5, resume=str(tmp_path / "plain.ckpt"), progress=False)


def test_class_conditional_with_guidance():
    x, k = mixture(1500, seed=2)
    m = stochgen.fit(dom(), (x, k), steps=300, cond_drop=0.2, **FIT)
    assert m.num_classes == 3 and m.spec["num_classes"] == 3
    g = torch.Generator().manual_seed(0)
    for label in (1, 2):
        s = m.sample(300, steps=12, cond={"label": label}, guidance_scale=2.0, generator=g)
        hit = (torch.cdist(s, CENTERS).argmin(1) == label).float().mean()
        assert hit > 0.9, (label, hit)
    # unconditional branch (null label) still follows the mixture weights roughly
    s = m.sample(600, steps=12, cond={"label": -1}, generator=g)
    share = torch.bincount(torch.cdist(s, CENTERS).argmin(1), minlength=3).float() / 600
    assert 0.5 * float((share - WEIGHTS).abs().sum()) < 0.15
    with pytest.raises(ValueError, match="needs cond"):
        m.sample(4, guidance_scale=2.0)


def test_vp_eps_and_bfloat16_train():
    x, _ = mixture(800)
    kw = dict(FIT, batch_size=128)
    m = stochgen.fit(dom(), x, steps=250, process=stochgen.processes.VP(), prediction="eps", **kw)
    assert m.precondition is None and m.prediction == "eps"
    s = m.sample(500, sampler="dpm++2m", steps=20, generator=torch.Generator().manual_seed(0))
    assert float(torch.cdist(s, CENTERS).min(1).values.median()) < 0.3
    f32 = stochgen.fit(dom(), x, steps=20, **kw).history["loss"]
    bf16 = stochgen.fit(dom(), x, steps=20, precision="bfloat16", **kw).history["loss"]
    assert f32 != bf16  # autocast really changed the arithmetic ...
    assert all(abs(a - b) < 0.05 * a for a, b in zip(f32, bf16))  # ... but not the optimisation


def test_argument_errors():
    x = mixture(50)[0]
    with pytest.raises(ValueError, match="steps= or epochs="):
        stochgen.fit(dom(), x)
    with pytest.raises(ValueError, match="ckpt_every needs ckpt_path"):
        stochgen.fit(dom(), x, steps=2, ckpt_every=1)
    with pytest.raises(ValueError, match="precision"):
        stochgen.fit(dom(), x, steps=2, precision="fp8")
    with pytest.raises(ValueError, match="integer state indices"):  # float data for a jump process
        stochgen.fit(dom(), x, steps=2, process=stochgen.processes.UniformCTMC(num_states=3), progress=False)
    m = stochgen.fit(dom(), x, epochs=2, batch_size=16, progress=False)
    assert len(m.history["loss"]) == 7  # ceil(2 * 50 / 16)


def test_lr_schedule_follows_its_closed_form_and_survives_resume(tmp_path):
    """Cosine decay: lr(s) = lr_min + (lr - lr_min) (1 + cos(pi (s - w) / (S - 1 - w))) / 2 after a linear
    warm-up of w steps; the logged lr of every step matches it, ends at lr_min, and a resumed run
    (stopped at step 12 of 30) continues on the same curve."""
    import math

    x, _ = mixture(256)
    lr, lr_min, w, S = 4e-3, 1e-4, 5, 30

    def closed(s):
        if s < w:
            return lr * (s + 1) / w
        return lr_min + (lr - lr_min) * 0.5 * (1 + math.cos(math.pi * (s - w) / (S - 1 - w)))

    kw = dict(batch_size=64, lr=lr, warmup=w, ema=None, progress=False, log_every=1, lr_schedule="cosine",
              lr_min=lr_min)
    stochgen.fit(dom(), x, steps=S, log=str(tmp_path / "full.jsonl"), **kw)
    full = [json.loads(line)["lr"] for line in (tmp_path / "full.jsonl").read_text().splitlines()]
    assert len(full) == S
    assert max(abs(a - closed(s)) for s, a in enumerate(full)) < 1e-12
    assert full[-1] == pytest.approx(lr_min, abs=1e-15) and full[w] == pytest.approx(lr)
    assert all(a >= b for a, b in zip(full[w:], full[w + 1:]))
    # linear: halfway between lr and lr_min half-way through the decay
    stochgen.fit(dom(), x, steps=S, log=str(tmp_path / "lin.jsonl"), **dict(kw, lr_schedule="linear"))
    lin = [json.loads(line)["lr"] for line in (tmp_path / "lin.jsonl").read_text().splitlines()]
    assert lin[-1] == pytest.approx(lr_min) and lin[w + (S - 1 - w) // 2] == pytest.approx((lr + lr_min) / 2, rel=0.05)
    # resume: stop at 12, continue to S
    ck = str(tmp_path / "r.ckpt")
    stochgen.fit(dom(), x, steps=12, ckpt_path=ck, log=str(tmp_path / "a.jsonl"), **kw)
    stochgen.fit(dom(), x, steps=S, ckpt_path=ck, resume=ck, log=str(tmp_path / "b.jsonl"), **kw)
    rest = [json.loads(line)["lr"] for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert max(abs(a - closed(s)) for s, a in zip(range(12, S), rest[-(S - 12):])) < 1e-12
    with pytest.raises(ValueError, match="lr_schedule"):
        stochgen.fit(dom(), x, steps=2, lr_schedule="exp", **{k: v for k, v in kw.items() if k != "lr_schedule"})
    with pytest.raises(ValueError, match="lr_min"):
        stochgen.fit(dom(), x, steps=2, **dict(kw, lr_min=1.0))


def test_resolve_model_passes_loads_once_and_names_what_is_missing(trained, tmp_path):
    model, folder = trained
    assert stochgen.resolve_model(model) is model
    path = str(folder / "run.ckpt")
    a = stochgen.resolve_model(path)
    assert stochgen.resolve_model(path) is a  # remembered by path and mtime
    x = torch.zeros(3, 2)
    assert torch.equal(a.denoise(x, torch.full((3,), 0.5)), stochgen.load(path).denoise(x, torch.full((3,), 0.5)))
    assert stochgen.resolve_model(None, default=path) is a
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope.ckpt"):
        stochgen.resolve_model(str(tmp_path / "nope.ckpt"))
    with pytest.raises(FileNotFoundError, match="no shipped model at .*w.safetensors; train one"):
        stochgen.resolve_model(None, default=tmp_path / "w.safetensors", missing_hint="train one")
    with pytest.raises(TypeError, match="stochgen.Model or a checkpoint path"):
        stochgen.resolve_model(42)
