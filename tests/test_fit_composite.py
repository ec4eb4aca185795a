"""Composite states: processes.Composite, the 'composite' objective, sampler and default network.

The law used throughout: a token c in {0, 1, 2} with weights W = (0.2, 0.3, 0.5) and, given c,
a 2-D point x ~ N(MU[c], S^2 I). Its exact joint denoiser is closed form (below), so the sampler
is checked against the law with the exact model; a tiny network trained by stochgen.fit is
checked against the same law. Bounds: a few standard errors of the sample statistics plus, where
stated, a measured allowance for the sampler's step bias or the trained network's error.
"""
import math

import pytest
import torch

import stochgen
from stochgen import processes
from stochgen.objectives import build

W = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
MU = torch.tensor([[-1.5, 0.0], [0.0, 1.5], [1.5, -0.5]], dtype=torch.float64)
S = 0.3


def draw(n, seed):
    g = torch.Generator().manual_seed(seed)
    c = torch.multinomial(W, n, replacement=True, generator=g)
    return c[:, None], (MU[c] + S * torch.randn(n, 2, generator=g, dtype=torch.float64)).float()


def composite(chain="absorbing", **kw):
    c = processes.AbsorbingCTMC(num_states=3) if chain == "absorbing" else processes.UniformCTMC(3)
    return processes.Composite({"c": c, "x": processes.VP()}, **kw)


def exact_model(proc):
    """The exact joint denoiser: {"c": log p(c0 | c_t, x_t) (N, 1, 3), "x": E[eps | c_t, x_t] (N, 2)}."""
    chain, vp = proc.parts["c"], proc.parts["x"]
    assert proc.predictions == {"c": "logits", "x": "eps"}

    def model(x, t):
        c, xt, t = x["c"][:, 0], x["x"].double(), t.double()
        a, sg = vp.alpha(t)[:, None], vp.sigma(t)[:, None]
        A = chain.transition(torch.zeros((), dtype=torch.float64), t[0], dtype=torch.float64)
        assert bool((t == t[0]).all())  # one time for every sample and part
        q = A[:3, c].T  # q(c_t | c0) over the data values c0
        v = a**2 * S**2 + sg**2
        d2 = ((xt[:, None, :] - a[:, None, :] * MU) ** 2).sum(-1)
        post = torch.softmax(torch.log(W) + torch.log(q.clamp_min(1e-300)) - 0.5 * d2 / v, -1)
        mean = MU + (a * S**2 / v)[:, :, None] * (xt[:, None, :] - a[:, None, :] * MU)
        x0 = (post[:, :, None] * mean).sum(1)
        return {"c": torch.log(post.clamp_min(1e-300))[:, None, :], "x": ((xt - a * x0) / sg).to(x["x"].dtype)}

    return model


def check_law(c, x, std_allow, mean_allow=0.0, tv_allow=0.0, z=4.0):
    """TV of the token weights and the conditional means / stds of x given the token, against the law."""
    n = c.shape[0]
    share = torch.bincount(c, minlength=3).double() / n
    tv = 0.5 * float((share - W).abs().sum())
    # E|share_k - W_k| ~ sqrt(2/pi) sqrt(W_k (1 - W_k) / n); the TV bound is z standard errors of their sum / 2
    tv_se = 0.5 * sum(math.sqrt(float(w * (1 - w)) / n) for w in W)
    assert tv < tv_allow + z * tv_se, (share, tv, tv_se)
    report = {"tv": tv, "tv_bound": tv_allow + z * tv_se}
    for k in range(3):
        xk = x[c == k].double()
        m = xk.shape[0]
        mean_err = (xk.mean(0) - MU[k]).abs().max().item()
        std_err = (xk.std(0) - S).abs().max().item()
        assert mean_err < mean_allow + z * S / math.sqrt(m), (k, m, xk.mean(0), mean_err)
        assert std_err < std_allow + z * S / math.sqrt(2 * m), (k, m, xk.std(0), std_err)
        report[k] = (mean_err, std_err)
    return report


# --- the process ----------------------------------------------------------------------------


def test_marginal_is_each_parts_marginal_at_one_time():
    proc = composite()
    c, x = draw(6, 0)
    t = torch.full((6,), 0.4)
    m = proc.marginal({"c": c, "x": x}, t, generator=torch.Generator().manual_seed(3))
    assert set(m.x_t) == {"c", "x"} and set(m.extra["parts"]) == {"c", "x"}
    assert m.x_t["c"].dtype == torch.long and m.x_t["c"].shape == (6, 1)
    vp = proc.parts["x"]
    a, s = vp.alpha(torch.tensor(0.4)), vp.sigma(torch.tensor(0.4))
    torch.testing.assert_close(m.x_t["x"], a * x + s * m.noise["x"])
    # an absorbing chain's token is either kept or masked
    assert bool(((m.x_t["c"] == c) | (m.x_t["c"] == 3)).all())


def test_time_range_agrees_or_is_refused():
    proc = composite()
    assert (proc.t_lo, proc.t_min, proc.t_max) == (0.0, 1e-3, 1.0)
    mixed = processes.Composite({"a": processes.VP(t_min=1e-4), "b": processes.UniformCTMC(3, t_min=2e-3)})
    assert mixed.t_min == 2e-3  # no part is asked for a time it does not serve
    with pytest.raises(ValueError, match="time ranges must agree"):
        processes.Composite({"c": processes.UniformCTMC(3), "x": processes.EDM()})
    with pytest.raises(ValueError, match="process's time range"):
        proc.marginal({"c": torch.zeros(2, 1, dtype=torch.long), "x": torch.zeros(2, 2)}, 1.5)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least one part"):
        processes.Composite({})
    with pytest.raises(ValueError, match="weights names part"):
        composite(weights={"y": 1.0})
    with pytest.raises(ValueError, match="weight of part 'x'"):
        composite(weights={"x": -1.0})
    with pytest.raises(ValueError, match="part 'x'.*prediction 'logits'"):
        composite(predictions={"x": "logits"})
    proc = composite()
    with pytest.raises(ValueError, match="exactly the parts"):
        proc.coerce_states({"c": torch.zeros(3, 1)})
    with pytest.raises(ValueError, match="same number of samples"):
        proc.coerce_states({"c": torch.zeros(3, 1), "x": torch.zeros(4, 2)})
    with pytest.raises(ValueError, match="part 'c'.*integer"):
        proc.coerce_states({"c": torch.full((3, 1), 0.5), "x": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match="per-sample shape of part"):
        proc.prior_sample((4,))


def test_coerce_prior_and_spec_round_trip():
    proc = composite(weights={"c": 2.0}, predictions={"x": "x0"}, event_shapes={"c": (1,), "x": (2,)})
    got = proc.coerce_states({"c": torch.tensor([[0.0], [2.0]]), "x": torch.zeros(2, 2, dtype=torch.float64)})
    assert got["c"].dtype == torch.long and got["x"].dtype == torch.float64
    p = proc.prior_sample((5,), generator=torch.Generator().manual_seed(0))
    assert p["c"].shape == (5, 1) and bool((p["c"] == 3).all()) and p["x"].shape == (5, 2)
    p = proc.prior_sample({"c": (5, 1), "x": (5, 2)})
    assert p["x"].shape == (5, 2)
    again = processes.from_spec(proc.spec())
    assert again.spec() == proc.spec() and again.weights == {"c": 2.0, "x": 1.0}
    assert again.predictions == {"c": "logits", "x": "x0"} and type(again.parts["c"]).__name__ == "AbsorbingCTMC"


# --- the objective --------------------------------------------------------------------------


def test_loss_is_the_weighted_sum_of_part_losses_at_one_time():
    proc = composite(weights={"c": 0.5, "x": 2.0}, predictions={"x": "eps"})
    obj = build(proc, "parts")
    c, x = draw(64, 1)
    batch = obj.draw({"c": c, "x": x}, torch.Generator().manual_seed(0))
    t = batch["t"]
    assert batch["parts"]["c"]["t"] is t and batch["parts"]["x"]["t"] is t
    assert float(t.min()) >= proc.t_min and float(t.max()) <= proc.t_max
    calls = []

    def den(xd, tt, **cond):
        calls.append(tt)
        return {"c": torch.zeros(64, 1, 3), "x": torch.zeros(64, 2)}

    den.process, den.prediction, den.precondition = proc, "parts", None
    total = obj.loss(den, batch, reduce=False)
    assert len(calls) == 1 and calls[0] is t
    # by hand: eps-matching loss of a zero prediction is mean(noise^2); uniform logits cost log 3 per
    # masked token, times the MDLM weight 1 / t (log-linear schedule, up to eps = 1e-3)
    eps_loss = (batch["parts"]["x"]["noise"] ** 2).mean(1)
    masked = (batch["parts"]["c"]["x_t"][:, 0] == 3).float()
    w = proc.parts["c"].schedule.beta(t.double()) / torch.expm1(proc.parts["c"].schedule.integral(t.double()))
    torch.testing.assert_close(total, (0.5 * w * math.log(3) * masked + 2.0 * eps_loss).float(), rtol=1e-5,
                               atol=1e-6)


# --- the sampler with the exact model ---------------------------------------------------------


@pytest.mark.parametrize("chain", ["absorbing", "uniform"])
def test_sampler_with_the_exact_model_draws_the_law(chain):
    proc = composite(chain, predictions={"x": "eps"})
    out, info = stochgen.sample(proc, exact_model(proc), {"c": (2000, 1), "x": (2000, 2)}, sampler="composite",
                                steps=200, generator=torch.Generator().manual_seed(0), dtype=torch.float64,
                                return_info=True)
    assert info["nfe"] == 200 and out["c"].dtype == torch.long and out["x"].dtype == torch.float64
    assert bool(((out["c"] >= 0) & (out["c"] < 3)).all())
    # DDPM steps on a uniform grid shrink the spread: measured 0.288 instead of 0.3 at 200 steps
    # (n = 4000); allowance 0.02
    check_law(out["c"][:, 0], out["x"], std_allow=0.02)


def test_sampler_refuses_a_part_it_cannot_step():
    proc = processes.Composite({"c": processes.UniformCTMC(3), "g": processes.GBM()})
    with pytest.raises(ValueError, match="no step for part 'g'"):
        stochgen.sample(proc, lambda x, t: {}, {"c": (2, 1), "g": (2, 2)}, sampler="composite", steps=3)
    with pytest.raises(ValueError, match="needs a composite state"):
        stochgen.sample(processes.VP(), lambda x, t: x, (2, 2), sampler="composite", steps=3)


# --- stochgen.fit end to end ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    c, x = draw(4000, 0)
    proc = composite()
    model = stochgen.fit(stochgen.Domain(hidden=64, depth=2), {"x": {"c": c, "x": x}}, process=proc, steps=600,
                         batch_size=256, lr=3e-3, warmup=20, ema=0.99, progress=False)
    return model


def test_fit_samples_the_law(trained):
    model = trained
    assert model.sampler == "composite" and type(model.net).__name__ == "CompositeNet"
    out = model.sample(3000, steps=100, generator=torch.Generator().manual_seed(1))
    assert set(out) == {"c", "x"} and out["c"].shape == (3000, 1) and out["x"].shape == (3000, 2)
    # allowance for the trained network's own error: 0.03 on means and stds (measured over seed shifts
    # 0-5: mean errors <= 0.037, std errors <= 0.038, TV <= 0.025, all within the bounds)
    check_law(out["c"][:, 0], out["x"], std_allow=0.03, mean_allow=0.03)


def test_save_load_round_trip(trained, tmp_path):
    model = trained
    path = tmp_path / "composite.ckpt"
    model.save(path)
    again = stochgen.load(path)
    assert again.process.spec() == model.process.spec() and again.state_shape == {"c": (1,), "x": (2,)}
    a = model.sample(64, steps=10, generator=torch.Generator().manual_seed(5))
    b = again.sample(64, steps=10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a["c"], b["c"]) and torch.equal(a["x"], b["x"])
