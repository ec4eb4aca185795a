"""Every family through the simplest path: ``stochgen.fit("base", data, process=P)``.

For each built-in family: fit trains it with no domain code, ``resume=`` continues bit-identically,
the model saves and loads (same samples), ``Model.sample`` returns states in the form of the data,
``stochgen info`` names the family, ``stochgen sample`` writes the states, and the likelihood is
either finite (where the family defines it) or a clear error. Quality of each family's training is
tested against known laws in tests/test_fit_*.py; this file checks the plumbing, tiny and fast.
"""
from __future__ import annotations

import math

import pytest
import torch

import stochgen
from stochgen import cli
from stochgen import processes as P
from stochgen.families import family_of
from stochgen.spaces import se3


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _floats(n=64):
    return {"x": torch.randn(n, 2, generator=_g())}


def _pairs(n=64):
    x = torch.randn(n, 2, generator=_g())
    return {"x": x, "y": x + 0.3 * torch.randn(n, 2, generator=_g(1))}


def _positive(n=64):
    return {"x": torch.exp(0.3 * torch.randn(n, 2, generator=_g()))}


def _poses(n=64, k=None):
    shape = (n,) if k is None else (n, k)
    return {"x": se3.random(shape, generator=_g(), dtype=torch.float32)}


def _tokens(n=64, K=4):
    return {"x": torch.randint(0, K, (n, 6), generator=_g())}


def _parts(n=64):
    return {"x": {"c": torch.randint(0, 3, (n, 1), generator=_g()), "v": torch.randn(n, 2, generator=_g(1))}}


CASES = {
    "edm": (lambda: P.EDM(), _floats),
    "vp": (lambda: P.VP(), _floats),
    "ouve": (lambda: P.OUVE(), _pairs),
    "interpolant": (lambda: P.Interpolant(), _floats),
    "gbm": (lambda: P.GBM(sigma=1.0), _positive),
    "se3": (lambda: P.SE3Diffusion(), _poses),
    "se3-frames": (lambda: P.SE3Diffusion(), lambda: _poses(k=3)),
    "se3-interp": (lambda: P.SE3Interpolation(), _poses),
    "absorbing": (lambda: P.AbsorbingCTMC(num_states=4), _tokens),
    "uniform": (lambda: P.UniformCTMC(num_states=4), _tokens),
    "composite": (lambda: P.Composite({"c": P.AbsorbingCTMC(num_states=3), "v": P.VP()}), _parts),
}
FIT = dict(batch_size=16, lr=1e-3, warmup=2, ema=0.9, progress=False, log_every=1)


def _check_form(s, data_x, proc):
    """Samples in the form of the data: shape, dtype, and the space's constraints."""
    if isinstance(data_x, dict):  # composite: every part in the form of its data
        assert isinstance(s, dict) and set(s) == set(data_x)
        for k in s:
            _check_form(s[k], data_x[k], proc.parts[k])
        return
    assert s.shape[1:] == data_x.shape[1:]
    assert (s.dtype == torch.long) == (not data_x.is_floating_point())
    proc.space.check(s, "samples")  # tokens in range (no mask), positive floats, proper poses


@pytest.mark.parametrize("name", list(CASES))
def test_fit_resume_save_load_and_sample_every_family(name, tmp_path):
    make, data_fn = CASES[name]
    proc, data = make(), data_fn()
    ref = stochgen.fit("base", data, process=proc, steps=6, **FIT)
    stochgen.fit("base", data, process=make(), steps=3, ckpt_path=tmp_path / "a.ckpt", **FIT)
    res = stochgen.fit("base", data, process=make(), steps=6, resume=tmp_path / "a.ckpt", **FIT)
    assert res.history["loss"] == ref.history["loss"]
    for (k, a), b in zip(ref.net.state_dict().items(), res.net.state_dict().values()):
        assert torch.equal(a, b), (name, k)
    cond = {"y": data["y"][:8]} if "y" in data else None
    a = ref.sample(8, steps=4, cond=cond, generator=_g(3))
    _check_form(a, data["x"], proc)
    ref.save(tmp_path / "m.ckpt")
    m2 = stochgen.load(tmp_path / "m.ckpt")
    assert type(m2.process) is type(proc) and m2.prediction == ref.prediction
    b = m2.sample(8, steps=4, cond=cond, generator=_g(3))
    if isinstance(a, dict):
        assert all(torch.equal(a[k], b[k]) for k in a), name
    else:
        assert torch.equal(a, b), name


@pytest.mark.parametrize("name", list(CASES))
def test_cli_info_sample_and_likelihood_every_family(name, tmp_path, capsys):
    make, data_fn = CASES[name]
    proc, data = make(), data_fn()
    m = stochgen.fit("base", data, process=proc, steps=2, **FIT)
    path = str(m.save(tmp_path / "m.ckpt"))
    assert cli.main(["info", path]) == 0
    assert f"family:     {family_of(proc).name}" in capsys.readouterr().out
    args = ["sample", path, "-n", "5", "--steps", "3", "-o", str(tmp_path / "s.pt")]
    if "y" in data:
        torch.save(data["y"][:5], tmp_path / "y.pt")
        args += ["--cond", f"y={tmp_path / 'y.pt'}"]
    assert cli.main(args) == 0, capsys.readouterr().err
    _check_form(torch.load(tmp_path / "s.pt"), data["x"], proc)
    x = {k: v[:4] for k, v in data["x"].items()} if isinstance(data["x"], dict) else data["x"][:4]
    cond = {"y": data["y"][:4]} if "y" in data else None
    if family_of(proc).likelihood:
        ll = m.log_likelihood(x.double() if x.is_floating_point() else x, cond=cond, rtol=1e-3, atol=1e-3)
        assert ll.shape == (4,) and bool(torch.isfinite(ll).all()), ll
    else:
        with pytest.raises(ValueError, match="likelihood is not defined"):
            m.log_likelihood(x, cond=cond)


def test_objective_options_reach_the_objective_and_the_spec(tmp_path):
    data = _tokens()
    kw = dict(process=P.UniformCTMC(num_states=4), steps=3, **FIT)
    ce = stochgen.fit("base", data, **kw)
    se = stochgen.fit("base", data, objective_options={"loss": "score_entropy"}, ckpt_path=tmp_path / "se.ckpt", **kw)
    assert se.extra_spec["objective_options"] == {"loss": "score_entropy"}
    assert se.history["loss"] != ce.history["loss"]  # another loss on the same draws
    assert stochgen.load(tmp_path / "se.ckpt").extra_spec["objective_options"] == {"loss": "score_entropy"}
    with pytest.raises(ValueError, match="a resumed run keeps its objective"):
        stochgen.fit("base", data, resume=tmp_path / "se.ckpt", objective_options={"loss": "cross_entropy"},
                     **dict(kw, steps=4))
    with pytest.raises((ValueError, TypeError), match="nope"):
        stochgen.fit("base", data, objective_options={"nope": 1}, **kw)


@pytest.mark.parametrize("name", list(CASES))
def test_named_conditions_reach_every_family_network(name):
    make, data_fn = CASES[name]
    proc, data = make(), data_fn()
    n = len(data["y"]) if "y" in data else next(iter(data["x"].values())).shape[0] if isinstance(data["x"], dict) \
        else data["x"].shape[0]
    data = dict(data, c=torch.randn(n, 3, generator=_g(5)))
    m = stochgen.fit("base", data, process=proc, steps=4, **dict(FIT, lr=1e-2))
    assert "c" in m.net.cond_keys and m.conditions["c"]["shape"] == [3]
    cond = {"y": data["y"][:4]} if "y" in data else {}
    with pytest.raises(ValueError, match=r"trained with the condition\(s\) \['c'\]"):
        m.sample(4, steps=2, cond=cond)
    x = data["x"]
    x4 = {k: v[:4] for k, v in x.items()} if isinstance(x, dict) else x[:4]
    marg = proc.marginal(x4, torch.full((4,), 0.5 * (proc.t_min + proc.t_max)), generator=_g(6), **cond)
    outs = [m.denoise(marg.x_t, torch.full((4,), 0.5 * (proc.t_min + proc.t_max)),
                      **dict(cond, c=torch.full((4, 3), v))) for v in (-2.0, 2.0)]
    diff = sum(float((a - b).abs().max()) for a, b in zip(*(o.values() if isinstance(o, dict) else [o] for o in outs)))
    assert diff > 0, name  # the network reads the condition
    s = m.sample(4, steps=2, cond=dict(cond, c=torch.zeros(3)))
    _check_form(s, x, proc)


@pytest.mark.parametrize("make", [P.VP, P.Interpolant], ids=["vp", "interpolant"])
def test_default_prediction_gives_a_sane_likelihood_after_short_training(make):
    """The base domain's default prediction is well posed for the likelihood: after 300 steps the mean
    log-likelihood of Gaussian data is within 0.1 nats of the exact one (measured: VP (v) 0.007,
    interpolant (velocity) 0.020). An unpreconditioned x0 network, the old default, measured -43.1
    against -2.13 nats (VP) and -10.8 against -2.14 (OU-VE)."""
    sd = torch.tensor([1.0, 0.5])
    x = torch.randn(2000, 2, generator=_g(0)) * sd
    m = stochgen.fit(stochgen.Domain(hidden=64, depth=2), x, process=make(), steps=300, batch_size=256, lr=3e-3,
                     ema=0.98, progress=False)
    assert m.prediction == ("v" if make is P.VP else "velocity") and m.precondition is None
    z = torch.randn(200, 2, generator=_g(1)) * sd
    exact = (-0.5 * (z / sd) ** 2).sum(1) - math.log(2 * math.pi) - math.log(0.5)
    ll = m.log_likelihood(z, rtol=1e-4, atol=1e-4)
    # the sample mean of the difference: its spread over the 200 points is < 0.05, so the bound is the model's
    assert abs(float(ll.mean() - exact.mean())) < 0.1, (float(ll.mean()), float(exact.mean()))
