"""Interpolants / flow matching: the "flow-matching" objective, the si-euler sampler, fit -> sample -> load.

Laws with known answers: a 2-D Gaussian mixture (``MIX``: weights 0.3 / 0.7, means (-2, 0) and
(2, 1), diagonal stds (0.5, 0.3) and (0.4, 0.6)) whose modes are 8 std apart along x (the
sign of the first coordinate tells the mode; a sample lands on the wrong side with
probability < 1e-6). Its exact denoiser (``stochgen.oracles``) gives the exact velocity and
score of every interpolant, so the sampler is checked alone with tight bounds, and a tiny
network trained by ``stochgen.fit`` is checked with bounds widened by the training slack
measured here (seed shifts 0-5).
"""
import math

import pytest
import torch

import stochgen
from stochgen import objectives, processes
from stochgen.oracles import GaussianMixture
from stochgen.parameterization import convert

DEFAULT_DTYPE = torch.float64

W = torch.tensor([0.3, 0.7], dtype=torch.float64)
MEANS = torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
STDS = torch.tensor([[0.5, 0.3], [0.4, 0.6]], dtype=torch.float64)
MIX = GaussianMixture(W, MEANS, STDS)


def mode_stats(x):
    """Share of mode 1, per-mode means, stds and x-y correlation (mode = sign of the first coordinate)."""
    k = (x[:, 0] > 0).long()
    out = {"w1": float(k.double().mean()), "n": [int((k == j).sum()) for j in (0, 1)]}
    for j in (0, 1):
        xj = x[k == j].double()
        out[f"mean{j}"] = xj.mean(0)
        out[f"std{j}"] = xj.std(0)
        out[f"corr{j}"] = float(torch.corrcoef(xj.T)[0, 1])
    return out


def assert_law(x, n_data=None, w_slack=0.0, mean_slack=0.0, std_slack=0.0, corr_slack=0.0, z=4.0):
    """Mode weight (two modes: TV = |w1_hat - w1|), per-mode means, stds (relative) and correlations.

    Bounds: z standard errors of the sampling error of n samples (and of the n_data training
    samples, whose empirical law a trained model follows), plus the given slack.
    """
    st = mode_stats(x)
    n = x.shape[0]
    var_w = W[1] * W[0] / n + (W[1] * W[0] / n_data if n_data else 0.0)
    tv = abs(st["w1"] - float(W[1]))
    assert tv <= z * math.sqrt(var_w) + w_slack, (st["w1"], z * math.sqrt(var_w) + w_slack)
    for j in (0, 1):
        nj = st["n"][j]
        nd = float(W[j]) * n_data if n_data else math.inf
        se_mean = STDS[j] * math.sqrt(1 / nj + 1 / nd)
        err = (st[f"mean{j}"] - MEANS[j]).abs()
        assert bool((err <= z * se_mean + mean_slack).all()), (j, st[f"mean{j}"], z * se_mean + mean_slack)
        rel = (st[f"std{j}"] / STDS[j] - 1).abs()
        se_rel = math.sqrt(1 / (2 * nj) + 1 / (2 * nd))
        assert bool((rel <= z * se_rel + std_slack).all()), (j, st[f"std{j}"], z * se_rel + std_slack)
        se_corr = math.sqrt(1 / nj + 1 / nd)
        assert abs(st[f"corr{j}"]) <= z * se_corr + corr_slack, (j, st[f"corr{j}"])
    return st


# --- the objective -------------------------------------------------------------------------

def test_velocity_target_is_the_path_velocity_or_its_conditional_mean():
    g = torch.Generator().manual_seed(0)
    x0 = MIX.sample(4000, generator=g)
    # without latent noise the target is marginal(...).velocity itself
    proc = processes.Interpolant(path="trig")
    ob = objectives.build(proc, "velocity")
    t = proc.t_min + (proc.t_max - proc.t_min) * torch.rand(4000, generator=g)
    gen_state = g.get_state()
    m = proc.marginal(x0, t, generator=g)
    g.set_state(gen_state)
    batch = {"x0": x0, "t": t, "noise": proc.marginal(x0, t, generator=g).noise}
    target, w = ob.target_and_weight(batch)
    assert torch.allclose(target, m.velocity, atol=1e-12) and bool((w == 1).all())
    # with latent noise (sqrt shape: gamma' unbounded at the ends) the residual of the path's
    # velocity about the target has mean 0 and is uncorrelated with x_t given x_0, at fixed (x_0, t)
    proc = processes.Interpolant(gamma_scale=1.0, gamma_shape="sqrt")
    ob = objectives.build(proc, "velocity")
    n = 20000
    x0 = MIX.means[1].expand(n, 2)
    for tv in (0.05, 0.5, 0.999):
        t = torch.full((n,), tv)
        m = proc.marginal(x0, t, generator=g)
        target, _ = ob.target_and_weight({"x0": x0, "t": t, "noise": m.noise})
        r = m.velocity - target
        se = r.std(0) / math.sqrt(n)
        assert bool((r.mean(0).abs() <= 5 * se).all()), (tv, r.mean(0), se)
        c = ((r - r.mean(0)) * (m.x_t - m.x_t.mean(0))).mean(0) / (r.std(0) * m.x_t.std(0))
        assert bool((c.abs() <= 5 / math.sqrt(n)).all()), (tv, c)
        assert bool(torch.isfinite(target).all()) and float(target.abs().max()) < 20


@pytest.mark.parametrize("kind", ["velocity", "x0", "eps", "score", "v"])
def test_exact_prediction_minimises_the_loss(kind):
    """E[w (f + d - T)^2] - E[w (f - T)^2] = d^2 E[w] when f is the conditional mean of the target T."""
    proc = processes.Interpolant(gamma_scale=0.5)
    ob = objectives.build(proc, kind)
    g = torch.Generator().manual_seed(1)
    n = 20000
    x0 = MIX.sample(n, generator=g)
    batch = ob.draw(x0, g)
    exact = MIX.model(proc, kind)
    den = lambda x, t, **c: exact(x, t)  # noqa: E731
    d = 0.1
    shifted = lambda x, t, **c: exact(x, t) + d  # noqa: E731
    l0 = ob.loss(den, batch, reduce=False).double()
    l1 = ob.loss(shifted, batch, reduce=False).double()
    _, w = ob.target_and_weight(batch)
    diff = l1 - l0
    want = d * d * float(w.mean())
    se = float(diff.std()) / math.sqrt(n)
    assert abs(float(diff.mean()) - want) <= 5 * se + 1e-3 * want, (kind, float(diff.mean()), want, se)


def test_objective_refuses_other_kinds_and_preconditioning():
    proc = processes.Interpolant()
    with pytest.raises(ValueError, match="preconditioning"):
        objectives.build(proc, "x0", "edm")
    with pytest.raises(ValueError, match="prediction"):
        objectives.build(proc, "logits")


# --- the si-euler sampler with the exact velocity --------------------------------------------

def test_score_of_a_velocity_at_the_prior_end_is_minus_x():
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
    for proc in (processes.Interpolant(), processes.Interpolant(path="trig", gamma_scale=1.0)):
        u = MIX.model(proc, "velocity")(x, torch.ones(64))
        s = convert(u, "velocity", "score", proc, x, torch.ones(64))
        assert torch.allclose(s, -x, atol=1e-12)


@pytest.mark.parametrize("proc, opts", [
    (processes.Interpolant(), {}),
    (processes.Interpolant(), {"deterministic": True}),
    (processes.Interpolant(path="trig"), {"noise": 3.0}),
    (processes.Interpolant(gamma_scale=1.0), {}),
])
def test_si_euler_exact_velocity_reproduces_the_mixture(proc, opts):
    """n = 20000, 100 uniform steps. Bounds: 4 SE of the sampling error plus slack for the Euler
    bias. Measured over seed shifts 0-5 (errors incl. sampling): TV <= 0.007, means <= 0.030,
    stds <= 3.0 %."""
    g = torch.Generator().manual_seed(3)
    x, info = stochgen.sample(proc, MIX.model(proc, "velocity"), shape=(20000, 2), sampler="si-euler", steps=100,
                              generator=g, return_info=True, **opts)
    assert info["nfe"] == 100 and bool(torch.isfinite(x).all())
    assert_law(x, w_slack=0.005, mean_slack=0.02, std_slack=0.025, corr_slack=0.01)


def test_si_euler_noise_zero_is_deterministic_euler_and_eps_models_start_inside():
    proc = processes.Interpolant()
    x_T = torch.randn(500, 2, generator=torch.Generator().manual_seed(4))
    model = MIX.model(proc, "velocity")
    a = stochgen.sample(proc, model, x_T=x_T, sampler="si-euler", steps=20, noise=0.0)
    b = stochgen.sample(proc, model, x_T=x_T, sampler="si-euler", steps=20, deterministic=True,
                        generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    # an eps model cannot be converted at alpha = 0: the grid starts just inside t = 1, no NaN
    e = stochgen.sample(proc, MIX.model(proc, "eps"), x_T=x_T, sampler="si-euler", steps=20, prediction="eps",
                        noise=0.0)
    assert bool(torch.isfinite(e).all())
    assert float((e - a).abs().max()) < 0.05  # the same flow, started 1e-3 of a step later


def test_si_euler_bad_input():
    proc = processes.Interpolant()
    model = MIX.model(proc, "velocity")
    for bad in (-1.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="noise"):
            stochgen.sample(proc, model, shape=(4, 2), sampler="si-euler", steps=5, noise=bad)
    with pytest.raises(ValueError, match="si-euler"):
        stochgen.sample(processes.VP(), MIX.model(processes.VP(), "eps"), shape=(4, 2), sampler="si-euler",
                        steps=5, prediction="eps")


# --- fit -> sample -> save / load ----------------------------------------------------------

N_DATA = 4000


@pytest.fixture(scope="module")
def trained():
    torch.set_default_dtype(torch.float32)
    try:
        x = MIX.sample(N_DATA, generator=torch.Generator().manual_seed(0)).float()
        dom = stochgen.domain("base", hidden=64, depth=2)
        model = stochgen.fit(dom, x, process=processes.Interpolant(), steps=400, batch_size=512, lr=3e-3,
                             ema=0.98, progress=False)
    finally:
        torch.set_default_dtype(torch.float64)
    return model


def test_fit_trains_a_velocity_model(trained):
    assert trained.prediction == "velocity"
    assert objectives.build(trained.process, "velocity").name == "flow-matching"
    assert trained.history["loss"][-1] < trained.history["loss"][0]


@pytest.mark.parametrize("sampler, opts", [("si-euler", {"steps": 50}),
                                           ("ode", {"steps": 20, "method": "rk4"}),
                                           (None, {}),  # the model's defaults (heun, 18 steps)
                                           ("dpm++2m", {"steps": 20})])
def test_trained_model_samples_the_mixture(trained, sampler, opts):
    """n = 2000 samples; bounds 4 SE of sampling and data error plus a training slack (weight 0.03,
    mode means 0.08, stds 12 %, correlation 0.08). Measured errors over seed shifts 0-5 (400
    steps): TV <= 0.026, means <= 0.085, stds <= 9.1 %, |corr| <= 0.087 (si-euler and ode)."""
    x = trained.sample(2000, sampler=sampler, generator=torch.Generator().manual_seed(5), **opts)
    assert x.shape == (2000, 2)
    assert_law(x, n_data=N_DATA, w_slack=0.03, mean_slack=0.08, std_slack=0.12, corr_slack=0.08)


def test_save_load_round_trip(trained, tmp_path):
    path = trained.save(tmp_path / "fm.ckpt")
    back = stochgen.load(path)
    assert back.prediction == "velocity" and back.process.spec() == trained.process.spec()
    a = trained.sample(300, sampler="si-euler", steps=20, generator=torch.Generator().manual_seed(6))
    b = back.sample(300, sampler="si-euler", steps=20, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
