"""Sampling-time conditioning against closed forms.

Data are Gaussian with a full covariance, so the exact denoiser
E[x0 | x_t] = mu + a C (a^2 C + s^2 I)^-1 (x_t - a mu), the exact conditional
x_unknown | x_known and the exact linear-Gaussian posterior are all closed form.
"""
import math

import pytest
import torch

from stochgen import oracles
from stochgen import processes as P
from stochgen.guidance import (ancestral_step, cfg, forward_kernel, inpaint, mse_energy, quantile_energy,
                               reconstruction_guidance, self_guidance)
from stochgen.parameterization import Prediction, convert
from stochgen.samplers import grids

torch.set_default_dtype(torch.float64)
DEFAULT_DTYPE = torch.float64

MU = torch.tensor([0.5, -0.3, 0.2, 0.0])
_R = torch.tensor([[1.0, 0.9, 0.72, 0.5], [0.9, 1.0, 0.81, 0.4], [0.72, 0.81, 1.0, 0.3], [0.5, 0.4, 0.3, 1.0]])
_S = torch.tensor([0.8, 1.0, 0.6, 1.2])
COV = _R * _S[:, None] * _S[None]  # strongly correlated: corr(x2, x1) = 0.81
LAM, VEC = torch.linalg.eigh(COV)


def gaussian_model(process, kind="x0", mu=MU, lam=LAM, vec=VEC):
    """Exact prediction of kind ``kind`` for data N(mu, V diag(lam) V^T), any linear Gaussian process."""

    def f(x, t, **cond):
        tb = torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1)
        if tb.shape[0] > 1 and bool((tb == tb[0]).all()):
            tb = tb[:1]  # one time for the whole batch (cheaper)
        a, s = process.alpha(tb), process.sigma(tb)
        w = a * lam / (a**2 * lam + s**2)  # eigenvalues of a C (a^2 C + s^2 I)^-1
        x0 = mu + ((x - a * mu) @ vec * w) @ vec.T
        return convert(x0, "x0", kind, process, x, t)

    return f


def conditional(known_idx, unknown_idx, xk, mu=MU, cov=COV):
    Ckk = cov[known_idx][:, known_idx]
    Cuk = cov[unknown_idx][:, known_idx]
    m = mu[unknown_idx] + Cuk @ torch.linalg.solve(Ckk, xk - mu[known_idx])
    c = cov[unknown_idx][:, unknown_idx] - Cuk @ torch.linalg.solve(Ckk, Cuk.T)
    return m, c


# ------------------------------------------------------------------------------------------
# inpainting
# ------------------------------------------------------------------------------------------
K_IDX, U_IDX = [0, 1], [2, 3]
XK = torch.tensor([1.5, 1.2])


def _known_mask():
    known = torch.full((1, 4), float("nan"))  # unknown entries may be missing values
    known[0, K_IDX] = XK
    mask = torch.zeros(1, 4)
    mask[0, K_IDX] = 1.0
    return known, mask


def test_inpainting_repaint_matches_exact_conditional():
    """VP, 100 log-SNR steps, N = 2000. Measured (N = 20000): replacement only is off by
    (-0.150, -0.246) in the conditional mean (0.43 and 0.24 conditional sds); RePaint with
    10 resamples by (-0.015, +0.003), its variances low by 7%."""
    proc = P.VP()
    known, mask = _known_mask()
    model = gaussian_model(proc, "eps")
    m, c = conditional(K_IDX, U_IDX, XK)
    n = 2000
    se = torch.sqrt(c.diag() / n)
    kw = dict(prediction="eps", steps=100, grid="log_snr", n=n, return_info=True)

    x, info = inpaint(proc, model, known, mask, resample=10, generator=torch.Generator().manual_seed(1), **kw)
    assert info["nfe"] == 100 + 99 * 9  # every step but the last redone 9 times
    assert torch.equal(x[:, K_IDX], XK.expand(n, 2))  # known values exactly preserved
    xu = x[:, U_IDX]
    err = xu.mean(0) - m
    assert bool((err.abs() < 4 * se + 0.03).all()), err
    var_ratio = xu.var(0) / c.diag()
    assert bool(((var_ratio - 1).abs() < 0.15).all()), var_ratio
    assert abs(float(torch.corrcoef(xu.T)[0, 1] - c[0, 1] / c.diag().prod().sqrt())) < 0.1

    # replacement alone is biased for strongly correlated coordinates (that is why RePaint resamples)
    x1 = inpaint(proc, model, known, mask, resample=1, generator=torch.Generator().manual_seed(1), **kw)[0]
    err1 = x1[:, U_IDX].mean(0) - m
    assert float(err1[0]) < -(4 * se[0] + 0.08)
    assert torch.equal(x1[:, K_IDX], XK.expand(n, 2))


@pytest.mark.parametrize("proc,kind", [(P.EDM(), "x0"), (P.VE(sigma_max=20.0), "v")], ids=["edm", "ve"])
def test_inpainting_other_processes_with_a_registered_sampler(proc, kind):
    """Any linear Gaussian process, any registered sampler (here EDM's Heun, one interval at a time).
    Measured (N = 20000): mean off by (-0.026, -0.010) with 10 resamples (replacement alone:
    (-0.096, -0.099)), variances within 2%."""
    cov = torch.diag(torch.tensor([0.5, 0.4, 0.3])) + 0.2
    lam, vec = torch.linalg.eigh(cov)
    mu = torch.tensor([0.3, -0.2, 0.1])
    model = gaussian_model(proc, kind, mu=mu, lam=lam, vec=vec)
    known = torch.tensor([[0.8, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0, 0.0]])
    m, c = conditional([0], [1, 2], known[0, :1], mu=mu, cov=cov)
    n = 2000
    x, info = inpaint(proc, model, known, mask, prediction=kind, sampler="heun", steps=25, grid="log_snr",
                      resample=10, n=n, generator=torch.Generator().manual_seed(0), return_info=True)
    # Heun: 2 calls per step, 1 on a final denoising step to sigma = 0 (VE keeps sigma_min at t = 0: 2)
    final = 1 if float(proc.sigma(torch.tensor(proc.t_lo))) == 0 else 2
    assert info["nfe"] == 2 * 24 * 10 + final
    assert torch.equal(x[:, 0], torch.full((n,), 0.8))
    se = torch.sqrt(c.diag() / n)
    assert bool(((x[:, 1:].mean(0) - m).abs() < 4 * se + 0.03).all())
    assert bool(((x[:, 1:].var(0) / c.diag() - 1).abs() < 0.1).all())


def test_inpainting_jump_schedule_and_validation():
    proc = P.VP()
    known, mask = _known_mask()
    model = gaussian_model(proc, "x0")
    x, info = inpaint(proc, model, known, mask, prediction="x0", steps=6, resample=3, jump=2, n=4,
                      generator=torch.Generator().manual_seed(0), return_info=True)
    # jumps back from steps 2 and 4 (not from the data end), 2 times each, 2 steps redone per jump
    assert info["nfe"] == 6 + 2 * 2 * 2
    assert torch.isfinite(x).all() and torch.equal(x[:, K_IDX], XK.expand(4, 2))
    with pytest.raises(ValueError, match="mask"):
        inpaint(proc, model, known, torch.full((1, 4), 0.5), prediction="x0", steps=3)
    bad = known.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        inpaint(proc, model, bad, mask, prediction="x0", steps=3)
    with pytest.raises(ValueError, match="resample"):
        inpaint(proc, model, known, mask, prediction="x0", steps=3, resample=0)
    with pytest.raises(ValueError, match="unknown sampler"):
        inpaint(proc, model, known, mask, prediction="x0", steps=3, sampler="no-such-sampler")


def test_forward_kernel_composes_marginals():
    """x_s ~ q(x_s | x0), then q(x_t | x_s) gives the marginal at t (mean alpha_t x0, std sigma_t)."""
    proc = P.VP()
    n = 20000
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((n, 1), 0.7)
    s, t = 0.2, 0.6
    x_s = proc.marginal(x0, s, generator=g).x_t
    x_t = forward_kernel(proc, x_s, s, t, generator=g)
    tt = torch.tensor(t)
    assert abs(float(x_t.mean() - proc.alpha(tt) * 0.7)) < 4 * float(proc.sigma(tt)) / math.sqrt(n)
    assert abs(float(x_t.std() / proc.sigma(tt)) - 1) < 4 / math.sqrt(2 * n)


def test_ancestral_step_with_exact_model_keeps_marginals():
    """One eta=1 step from the exact p_t keeps mean exact; DDIM (eta=0) too."""
    proc = P.VP()
    data = oracles.Gaussian([0.4], [0.5])
    n = 200000
    g = torch.Generator().manual_seed(0)
    t, s = torch.tensor(0.5), torch.tensor(0.4)
    x_t = proc.marginal(data.sample(n, generator=g), t, generator=g).x_t
    for eta in (1.0, 0.0):
        x_s = ancestral_step(proc, Prediction(data.model(proc, "eps"), "eps", proc), x_t, t, s, eta=eta, generator=g)
        std = math.sqrt(float(proc.alpha(s)) ** 2 * 0.25 + float(proc.sigma(s)) ** 2)
        assert abs(float(x_s.double().mean()) - float(proc.alpha(s)) * 0.4) < 5 * std / math.sqrt(n)
        # the step's own std is 1.2% (eta = 1) / 0.5% (eta = 0) low at this step size (n = 2e6);
        # allow 1.5% plus 5 sampling standard errors of a sample std (1 / sqrt(2n) each)
        assert abs(float(x_s.double().std()) / std - 1) < 0.015 + 5 / math.sqrt(2 * n), eta


# ------------------------------------------------------------------------------------------
# classifier-free guidance
# ------------------------------------------------------------------------------------------
def test_cfg_scale_one_zero_and_closed_form_mix():
    proc = P.VP()
    cond_data = oracles.Gaussian([1.0, -0.5], [0.4, 0.6])
    uncond_data = oracles.Gaussian([0.0, 0.0], [1.0, 1.0])
    mc, mu_ = cond_data.model(proc, "eps"), uncond_data.model(proc, "eps")

    def net(x, t, label=None):  # one network, unconditional when the label is missing / null
        return mu_(x, t) if label is None or label == "null" else mc(x, t)

    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    t = torch.full((5,), 0.3)
    c_out, u_out = net(x, t, label="a"), net(x, t)
    for unc in ("label", {"label": "null"}, lambda x, t, **c: mu_(x, t)):
        assert torch.equal(cfg(net, 1.0, uncond=unc)(x, t, label="a"), c_out)
        assert torch.equal(cfg(net, 0.0, uncond=unc)(x, t, label="a"), u_out)
    tt = torch.tensor(0.3)
    a, s = proc.alpha(tt), proc.sigma(tt)

    def gscore(m, sd):
        return -(x - a * m) / (a**2 * sd**2 + s**2)

    for w in (0.5, 3.0):
        out = cfg(net, w, uncond="label")(x, t, label="a")
        score = convert(out, "eps", "score", proc, x, t)
        exact = (1 - w) * gscore(uncond_data.means[0], uncond_data.stds[0]) + w * gscore(cond_data.means[0], cond_data.stds[0])
        assert torch.allclose(score, exact, atol=1e-10)
    # a per-sample scale and a callable scale
    w = torch.tensor([0.0, 1.0, 2.0, 0.5, 1.5])
    out = cfg(net, w, uncond="label")(x, t, label="a")
    assert torch.allclose(out, u_out + w[:, None] * (c_out - u_out))
    assert torch.allclose(cfg(net, lambda t: 2.0, uncond="label")(x, t, label="a"), 2 * c_out - u_out)
    with pytest.raises(ValueError, match="uncond"):
        cfg(net, 2.0)


# ------------------------------------------------------------------------------------------
# reconstruction guidance (DPS) and self-guidance
# ------------------------------------------------------------------------------------------
A = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
Y = torch.tensor([1.2, -0.8])


def test_dps_gradient_is_closed_form():
    """guided score - score = -scale * 2 J^T A^T (A x0_hat - y), J = a C (a^2 C + s^2)^-1, in every kind."""
    proc = P.VP()
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    t = torch.full((3,), 0.4)
    tt = torch.tensor(0.4)
    a, s = proc.alpha(tt), proc.sigma(tt)
    J = a * COV @ torch.linalg.inv(a**2 * COV + s**2 * torch.eye(4))
    x0 = gaussian_model(proc, "x0")(x, t)
    expect = -2.5 * 2 * ((x0 @ A.T - Y) @ A) @ J  # J symmetric
    for kind in ("eps", "x0", "v", "score"):
        base = gaussian_model(proc, kind)
        guided = reconstruction_guidance(proc, base, kind, A, Y, 2.5)
        diff = convert(guided(x, t), kind, "score", proc, x, t) - convert(base(x, t), kind, "score", proc, x, t)
        assert torch.allclose(diff, expect, atol=1e-9), kind
    # a callable measurement gives the same as the matrix
    g1 = reconstruction_guidance(proc, gaussian_model(proc, "eps"), "eps", lambda z: z @ A.T, Y, 2.5)
    g2 = reconstruction_guidance(proc, gaussian_model(proc, "eps"), "eps", A, Y, 2.5)
    assert torch.allclose(g1(x, t), g2(x, t))


def test_dps_moves_samples_to_the_posterior():
    """y = A x0 + N(0, 0.5^2), scale = 1/(2 * 0.5^2). DPS is approximate (it ignores Cov[x0 | x_t]);
    measured: sample mean 0.33 from the exact posterior mean, vs 0.88 for the prior mean
    (an exact posterior model in the same sampler: 0.015)."""
    proc = P.VP()
    sy = 0.5
    Ci = torch.linalg.inv(COV)
    Sp = torch.linalg.inv(Ci + A.T @ A / sy**2)
    mp = Sp @ (Ci @ MU + A.T @ Y / sy**2)
    guided = reconstruction_guidance(proc, gaussian_model(proc, "eps"), "eps", A, Y, 1 / (2 * sy**2))
    pred = Prediction(guided, "eps", proc)
    n, steps = 1000, 60
    g = torch.Generator().manual_seed(0)
    times = grids.make_grid(proc, steps, "log_snr")
    x = proc.prior_sample((n, 4), generator=g)
    with torch.no_grad():  # the wrapper switches autograd on itself
        for i in range(steps):
            x = ancestral_step(proc, pred, x, times[i], times[i + 1], generator=g)
    err = float((x.mean(0) - mp).norm())
    prior_err = float((MU - mp).norm())
    assert err < 0.45 * prior_err  # 0.88 -> measured 0.33
    # the fit to the measurements is much better than the prior's
    assert float((x.mean(0) @ A.T - Y).norm()) < 0.4 * float((MU @ A.T - Y).norm())  # measured 0.28


def _guidance_term(proc, kind, energy, x, t, scale):
    base = gaussian_model(proc, kind)
    guided = self_guidance(proc, base, kind, energy, scale)
    return convert(guided(x, t), kind, "score", proc, x, t) - convert(base(x, t), kind, "score", proc, x, t)


@pytest.mark.parametrize("kind", ["eps", "x0"])
def test_self_guidance_mse_gradient_matches_finite_differences(kind):
    proc = P.EDM()
    obs = torch.tensor([[0.3, float("nan"), -0.4, 1.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    energy = mse_energy(obs, mask)
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0)) * 2
    t = torch.full((2,), 1.7)
    term = _guidance_term(proc, kind, energy, x, t, 0.8)
    x0_fn = gaussian_model(proc, "x0")
    h = 1e-5
    fd = torch.zeros_like(x)
    for j in range(4):
        e = torch.zeros(4)
        e[j] = h
        fd[:, j] = (energy(x0_fn(x + e, t)) - energy(x0_fn(x - e, t))) / (2 * h)
    assert torch.allclose(term, -0.8 * fd, atol=1e-7)
    # the energy itself: sum over observed entries of squared errors (missing entries ignored)
    x0 = torch.tensor([[0.0, 5.0, 0.0, 0.0]])
    assert torch.allclose(energy(x0), torch.tensor([0.09 + 0.16 + 1.0]))


def test_quantile_energy_is_the_pinball_loss():
    obs = torch.tensor([[1.0, 2.0, -1.0, 0.5]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    x0 = torch.tensor([[0.0, 3.0, -1.0, 9.0], [2.0, 2.0, 0.0, 0.0]])
    for q in (0.1, 0.5, 0.9):
        e = quantile_energy(obs, mask, q=q)(x0)
        expect = []
        for row in x0:
            tot = 0.0
            for yv, xv, mv in zip(obs[0].tolist(), row.tolist(), mask[0].tolist()):
                u = yv - xv
                tot += mv * (q * u if u >= 0 else (q - 1) * u)
            expect.append(tot)
        assert torch.allclose(e, torch.tensor(expect)), q
    # q = 0.5 is half the absolute error; the guided score pushes x0_hat up when below a high quantile
    assert torch.allclose(quantile_energy(obs, mask, 0.5)(x0), 0.5 * ((obs - x0).abs() * mask).sum(1))
    with pytest.raises(ValueError, match="q"):
        quantile_energy(obs, mask, q=1.0)


def test_quantile_guidance_direction():
    """With q = 0.9 and x0_hat below the observation, the guidance raises the score along J^T 1 (q > 0)."""
    proc = P.VP()
    obs = torch.full((1, 4), 5.0)
    x = torch.zeros(1, 4)
    t = torch.full((1,), 0.3)
    term = _guidance_term(proc, "eps", quantile_energy(obs, q=0.9), x, t, 1.0)
    tt = torch.tensor(0.3)
    a, s = proc.alpha(tt), proc.sigma(tt)
    J = a * COV @ torch.linalg.inv(a**2 * COV + s**2 * torch.eye(4))
    assert torch.allclose(term, 0.9 * torch.ones(1, 4) @ J, atol=1e-10)
