"""Every built-in process x every registered sampler: it samples the right law, or a ValueError names both.

A sampler that applies (``stochgen.families.samplers_for``) is run with an exact model at small sizes and
checked against the exact target: Gaussian data (``oracles.Gaussian``) for the linear families, log-normal
data for GBM, one pose for SE(3) diffusion, independent categorical positions for the CTMCs. One that does
not apply must raise a ``ValueError`` naming the sampler and the process's family -- never an
AttributeError, RuntimeError or an autograd message. A prediction kind the family cannot give is a
``ValueError`` naming the kinds that apply. Samplers added later without an exact check here (a family's
own sampler with its own tests) must at least run and return finite states.

Tolerances: n = 1000 samples, so the mean's standard error is 0.03 sd and the std's 2.2%; the bounds add
each sampler's discretisation bias at the step count used (measured here; the largest are
reverse-diffusion and mr-pc on IR-SDE's cosine schedule, ~0.3 sd at 40 steps).
"""
from __future__ import annotations

import math
import re

import pytest
import torch

import stochgen
from stochgen import families, oracles
from stochgen import processes as P
from stochgen.parameterization import ALL_KINDS
from stochgen.samplers import names
from stochgen.spaces import igso3, se3, so3

F64 = torch.float64
N = 1000
MU = torch.tensor([1.0, -0.5], dtype=F64)
SD = torch.tensor([0.5, 0.8], dtype=F64)

PROCESSES = {
    "VP": P.VP, "SubVP": P.SubVP, "VE": P.VE, "EDM": P.EDM, "OUVE": P.OUVE, "IRSDE": P.IRSDE, "GBM": P.GBM,
    "Interpolant-linear": lambda: P.Interpolant("linear"), "Interpolant-trig": lambda: P.Interpolant("trig"),
    "SE3Diffusion": P.SE3Diffusion, "SE3Interpolation": P.SE3Interpolation,
    "UniformCTMC": lambda: P.UniformCTMC(4), "AbsorbingCTMC": lambda: P.AbsorbingCTMC(4),
}
LINEAR_KINDS = ("x0", "eps", "score", "v", "velocity")
# steps and bound on (|mean err| + |std err|) / sd, per sampler, where the default bound does not do
STEPS = {"mr-exact": 60, "reverse-diffusion": 60, "pc": 40, "mr-pc": 60}
BOUND = {"reverse-diffusion": 0.6, "mr-pc": 0.6, "mr-exact": 0.45, "pc": 0.45, "euler-maruyama": 0.45}
DEFAULT_BOUND = 0.3


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _family_title(proc):
    return families.family_of(proc).title


# --- exact models per family -----------------------------------------------------------------------

def _check_linear(proc, name, i):
    fam = families.family_of(proc)
    kinds = [k for k in LINEAR_KINDS if k in fam.predictions]
    kind = kinds[i % len(kinds)]  # every kind comes round over the samplers (test_samplers_* cover them all)
    target = oracles.Gaussian(MU, SD)
    cond, x_T = {}, None
    if "y" in proc.cond_keys:  # from the exact marginal at t_max: the prior N(y, sigma^2) drops alpha (x0 - y)
        y = torch.full((N, 2), 0.3, dtype=F64)
        T = torch.tensor(proc.t_max, dtype=F64)
        a, s = proc.alpha(T), proc.sigma(T)
        cond = {"y": y}
        x_T = a * MU + (1 - a) * y + torch.sqrt(a**2 * SD**2 + s**2) * torch.randn(N, 2, generator=_gen(5), dtype=F64)
    x = stochgen.sample(proc, target.model(proc, kind), shape=None if x_T is not None else (N, 2), x_T=x_T,
                        sampler=name, steps=STEPS.get(name, 30), prediction=kind, generator=_gen(), dtype=F64,
                        cond=cond)
    assert torch.isfinite(x).all()
    err = float(((x.mean(0) - MU).abs() / SD).max() + ((x.std(0) - SD).abs() / SD).max())
    assert err < BOUND.get(name, DEFAULT_BOUND), (name, kind, err)


def _check_gbm(proc, name, i):
    m0, v0 = 0.3, 0.25
    b, s2 = proc.log_drift(), proc.vol**2

    def score(x, t, **cond):
        tt = t.reshape(-1, 1)
        m, v = m0 + b * tt, v0 + s2 * tt
        return (-(torch.log(x) - m) / v - 1.0) / x

    mT, vT = m0 + b * proc.t_max, v0 + s2 * proc.t_max
    x_T = torch.exp(mT + math.sqrt(vT) * torch.randn(N, 2, generator=_gen(1), dtype=F64))
    # 200 steps: data-space additive steps (euler-maruyama, reverse-diffusion, sde) can leave the positive
    # orthant on coarse grids (one value of 2000 at 60 steps); gbm-euler steps in log space
    x = stochgen.sample(proc, score, x_T=x_T, sampler=name, steps=200, prediction="score", generator=_gen())
    assert torch.isfinite(x).all() and bool((x > 0).all())
    lx = torch.log(x)
    err = float((lx.mean(0) - m0).abs().max() / math.sqrt(v0) + (lx.std(0) / math.sqrt(v0) - 1).abs().max())
    assert err < DEFAULT_BOUND, (name, err)


def _check_se3(proc, name, i):
    R0 = so3.random((), _gen(2), F64)
    p0 = torch.tensor([1.0, -2.0, 0.5], dtype=F64)

    def score(x, t, **cond):  # exact tangent score of one data pose: N(alpha p0, sigma^2) x IGSO3(R0, rot_sigma)
        R, p = se3.to_rt(x)
        t = t.to(F64)
        a, sd, rs = (f(t) for f in (proc.alpha, proc.sigma, proc.rot_sigma))
        rel = so3.log(R0.transpose(-1, -2) @ R)
        return torch.cat([-(p - a[:, None] * p0) / sd[:, None] ** 2, igso3.score_rotvec(rel, rs)], dim=-1)

    x = stochgen.sample(proc, score, shape=(200,), sampler=name, steps=100, generator=_gen(), dtype=F64)
    R, p = se3.to_rt(x)
    assert float((p - p0).abs().max()) < 0.05
    angle = so3._norm(so3.log(R0.transpose(-1, -2) @ R))
    assert float(angle.mean()) < 4 * float(proc.rot_sigma(torch.tensor(0.0, dtype=F64)))


PI = torch.tensor([[0.5, 0.2, 0.2, 0.1], [0.1, 0.1, 0.2, 0.6]], dtype=F64)  # two independent positions


def _check_ctmc(proc, name, i):
    S = PI.shape[1]

    def probs(x, t, **cond):  # p(x0 | x_t) by Bayes from the exact transition P(0, t), one position at a time
        P0t = proc.transition(torch.zeros((), dtype=F64), t[0].to(F64), dtype=F64)
        w = PI[None, :, :] * P0t[:S, :].T[x]  # (n, L, S): PI[l, j] q(x_t | x0 = j)
        out = torch.zeros(x.shape + (proc.num_categories,), dtype=F64)
        out[..., :S] = w / w.sum(-1, keepdim=True)
        return out

    x = stochgen.sample(proc, probs, shape=(4000, 2), sampler=name, steps=30, generator=_gen())
    assert x.dtype == torch.long
    emp = torch.stack([torch.bincount(x[:, l], minlength=S)[:S].to(F64) / x.shape[0] for l in range(2)])
    assert float(0.5 * (emp - PI).abs().sum(1).max()) < 0.06


def _check_runs(proc, name, i):
    """A sampler with no exact check here (its own tests have one): it runs and returns finite states."""
    fam = families.family_of(proc)
    if fam.has("lie-flow"):
        def model(x, t, **cond):
            return torch.zeros(x.shape[:-2] + (proc.space.dim,), dtype=x.dtype)

        x = stochgen.sample(proc, model, shape=(16,), sampler=name, steps=5, generator=_gen(), dtype=F64)
        assert torch.isfinite(x).all()
        return
    pytest.skip(f"no check in this file for sampler {name!r} on {type(proc).__name__}")


def _checker(proc, name):
    fam = families.family_of(proc)
    if fam.has("jump"):
        return _check_ctmc
    if fam.has("lie-sde"):
        return _check_se3
    if fam.has("log-space"):
        return _check_gbm
    if fam.has("linear") and name != "si-euler":
        return _check_linear
    if fam.has("interpolant") and name == "si-euler":
        return _check_linear
    return _check_runs


# --- the matrix ------------------------------------------------------------------------------------

@pytest.mark.parametrize("pid", list(PROCESSES))
def test_every_sampler(pid):
    proc = PROCESSES[pid]()
    applies = set(families.samplers_for(proc))
    for i, name in enumerate(names()):
        if name in applies:
            try:
                _checker(proc, name)(proc, name, i)
            except ValueError as exc:  # a sampler may still refuse (pc on GBM's state-dependent noise)
                assert re.search(rf"sampler '{re.escape(name)}'", str(exc)), (pid, name, str(exc))
            continue
        x_T = torch.zeros(4, 2, dtype=F64) + 1.0
        with pytest.raises(ValueError) as info:
            stochgen.sample(proc, lambda x, t, **c: x, x_T=x_T, sampler=name, steps=3)
        msg = str(info.value)
        assert f"sampler '{name}'" in msg and type(proc).__name__ in msg and _family_title(proc) in msg, (pid, msg)


@pytest.mark.parametrize("pid", list(PROCESSES))
def test_prediction_kinds_the_family_cannot_give(pid):
    proc = PROCESSES[pid]()
    fam = families.family_of(proc)
    name = families.samplers_for(proc)[0]
    for kind in ALL_KINDS:
        if kind in fam.predictions:
            continue
        with pytest.raises(ValueError, match=rf"prediction {kind!r} does not apply: {type(proc).__name__} is"):
            stochgen.sample(proc, lambda x, t, **c: x, shape=(4, 2), sampler=name, steps=3, prediction=kind)
