"""The prediction-kind conversions (score / eps / x0 / v) against exact algebra and exact oracles."""
import itertools

import pytest
import torch

from stochgen import oracles
from stochgen import processes as P
from stochgen.parameterization import KINDS, Prediction, check_kind, convert

F64 = torch.float64
N, D = 6, 3


def cases():
    g = torch.Generator().manual_seed(11)
    y = torch.randn(N, D, generator=g, dtype=F64)  # a different conditioning signal per sample
    return [
        ("vp", P.VP(), (0.01, 0.99), {}),
        ("vp-cosine", P.VP(schedule="cosine"), (0.01, 0.99), {}),
        ("ve", P.VE(), (0.0, 1.0), {}),
        ("edm", P.EDM(), (0.002, 80.0), {}),
        ("interpolant", P.Interpolant(), (0.01, 0.99), {}),
        ("interpolant-trig-gamma", P.Interpolant(path="trig", gamma_scale=0.7), (0.01, 0.99), {}),
        ("ouve", P.OUVE(), (0.03, 1.0), {"y": y}),
    ]


CASES = cases()
IDS = [c[0] for c in CASES]


def _state(proc, trange, seed):
    g = torch.Generator().manual_seed(seed)
    lo, hi = trange
    t = lo + (hi - lo) * torch.rand(N, generator=g, dtype=F64)  # one time per sample
    x = 2.0 * torch.randn(N, D, generator=g, dtype=F64)
    out = torch.randn(N, D, generator=g, dtype=F64)
    return x, t, out


@pytest.mark.parametrize("name,proc,trange,cond", CASES, ids=IDS)
def test_conversions_round_trip(name, proc, trange, cond):
    """kind -> other -> kind is the identity to 1e-12 for every ordered pair, and chains agree."""
    x, t, out = _state(proc, trange, seed=1)
    for k1, k2 in itertools.permutations(KINDS, 2):
        there = convert(out, k1, k2, proc, x, t, **cond)
        back = convert(there, k2, k1, proc, x, t, **cond)
        scale = out.abs().max() + there.abs().max()
        assert torch.allclose(back, out, rtol=0, atol=1e-12 * float(scale)), (name, k1, k2)
    # a chain through all kinds equals the direct conversion
    for k1 in KINDS:
        direct = {k2: convert(out, k1, k2, proc, x, t, **cond) for k2 in KINDS}
        cur, kind = out, k1
        for nxt in KINDS:
            cur, kind = convert(cur, kind, nxt, proc, x, t, **cond), nxt
            assert torch.allclose(cur, direct[nxt], rtol=1e-12, atol=1e-12 * float(direct[nxt].abs().max())), (k1, nxt)


@pytest.mark.parametrize("name,proc,trange,cond", CASES, ids=IDS)
def test_conversions_satisfy_the_definitions(name, proc, trange, cond):
    """From (x0, eps) the four kinds are what the module says: x = alpha x0 + offset + sigma eps,
    score = -eps/sigma, v = alpha eps - sigma x0."""
    x, t, _ = _state(proc, trange, seed=2)
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(N, D, generator=g, dtype=F64)
    eps = torch.randn(N, D, generator=g, dtype=F64)
    tb = t[:, None]
    a, s = proc.alpha(tb), proc.sigma(tb)
    x = a * x0 + proc.offset(tb, **cond) + s * eps
    truth = {"x0": x0, "eps": eps, "score": -eps / s, "v": a * eps - s * x0}
    for k1, k2 in itertools.product(KINDS, KINDS):
        got = convert(truth[k1], k1, k2, proc, x, t, **cond)
        assert torch.allclose(got, truth[k2], rtol=1e-10, atol=1e-10 * float(truth[k2].abs().max())), (k1, k2)


@pytest.mark.parametrize("name,proc,trange,cond", CASES, ids=IDS)
def test_oracle_predictions_of_each_kind_agree(name, proc, trange, cond):
    """The exact mixture model of every kind gives the same denoiser, and its score equals the
    autograd gradient of the closed-form marginal log-density (Tweedie's formula)."""
    mix = oracles.GaussianMixture.random(K=3, d=D, seed=5)
    x, t, _ = _state(proc, trange, seed=4)
    x0_exact = mix.x0_mean(proc, x, t, **cond)
    for kind in KINDS:
        pred = Prediction(mix.model(proc, kind), kind, proc, cond)
        assert torch.allclose(pred.x0(x, t), x0_exact, rtol=1e-10, atol=1e-10), kind
    tb = t[:, None]
    a, s = proc.alpha(tb), proc.sigma(tb)
    off = torch.zeros_like(x) + proc.offset(tb, **cond)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.marginal_log_prob(xg, a, s, off).sum(), xg)
    score = Prediction(mix.model(proc, "eps"), "eps", proc, cond).score(x, t)
    assert torch.allclose(score, grad, rtol=1e-8, atol=1e-8 * float(grad.abs().max()))


def test_unknown_kind_lists_valid_kinds():
    proc = P.EDM()
    x = torch.zeros(2, 3, dtype=F64)
    for call in (lambda: check_kind("noise"),
                 lambda: Prediction(lambda x, t: x, "noise", proc),
                 lambda: convert(x, "x0", "noise", proc, x, 1.0),
                 lambda: convert(x, "flow", "x0", proc, x, 1.0)):
        with pytest.raises(ValueError) as err:
            call()
        assert all(k in str(err.value) for k in KINDS), str(err.value)


def test_prediction_counts_nfe_and_passes_batched_time():
    proc = P.VP()
    seen = []

    def model(x, t):
        seen.append((tuple(t.shape), t.dtype))
        return 0.5 * x

    pred = Prediction(model, "eps", proc)
    x = torch.randn(5, 2, 4, dtype=F64)
    assert pred.nfe == 0
    pred.x0(x, 0.3)
    pred.score(x, torch.tensor(0.3))
    x0, eps = pred.both(x, torch.full((5,), 0.3, dtype=F64))
    assert pred.nfe == 3  # both() is one call
    assert seen == [((5,), F64)] * 3  # a scalar time reaches the model as one time per sample
    assert torch.allclose(eps, 0.5 * x)
    a, s = proc.alpha(torch.tensor(0.3, dtype=F64)), proc.sigma(torch.tensor(0.3, dtype=F64))
    assert torch.allclose(a * x0 + s * eps, x, atol=1e-14)


def test_prediction_rejects_wrong_output_shape():
    pred = Prediction(lambda x, t: x[:, :-1], "x0", P.EDM())
    with pytest.raises(ValueError, match="shape"):
        pred.x0(torch.zeros(4, 3, dtype=F64), 1.0)
    pred = Prediction(lambda x, t: x.sum(-1), "eps", P.EDM())
    with pytest.raises(ValueError, match="shape"):
        pred(torch.zeros(4, 3, dtype=F64), 1.0)
