"""Probability-flow log-likelihood and bits/dim against closed-form densities.

Gaussian and Gaussian-mixture data have exact marginals p_t under every linear
Gaussian process, so the ODE part of the estimate (everything except the prior
term) can be checked to solver precision, and the whole estimate against the
exact data density.
"""
import math

import pytest
import torch

from stochgen import oracles
from stochgen import processes as P
from stochgen.likelihood import bits_per_dim, log_likelihood

torch.set_default_dtype(torch.float64)
DEFAULT_DTYPE = torch.float64

GAUSS = oracles.Gaussian([0.3, -0.5, 0.4, 0.1], [0.5, 0.8, 0.3, 1.2])
MIX = oracles.GaussianMixture.random(3, 2, seed=1, spread=1.0)


def _marginal_lp(data, proc, x, t):
    t = torch.tensor(float(t))
    return data.marginal_log_prob(x, proc.alpha(t), proc.sigma(t))


@pytest.mark.parametrize("proc,kind", [(P.VP(), "eps"), (P.EDM(), "x0"), (P.VE(sigma_max=50.0), "v")],
                         ids=["vp-eps", "edm-x0", "ve-v"])
def test_exact_trace_matches_gaussian_density(proc, kind):
    # fixed points from the centre to 3 std out: the estimate's bias (prior mismatch, t_eps
    # truncation) grows with the distance from the mean, so random points would make it a
    # property of the stream
    z = torch.tensor([[0.0, 0, 0, 0], [1, -1, 1, -1], [-2, 2, -2, 2], [2.5, 2.5, -2.5, -2.5], [-3, 0, 3, 0],
                      [0, -3, 0, 3]])
    x = GAUSS.means[0] + GAUSS.stds[0] * z
    d = x.shape[1]
    lp, info = log_likelihood(proc, GAUSS.model(proc, kind), x, prediction=kind, return_info=True)
    assert lp.shape == (6,)
    # ODE part alone: swap the process's prior for the exact marginal at t_max -> solver precision
    ode_part = lp - info["prior_log_prob"] + _marginal_lp(GAUSS, proc, info["x_T"], proc.t_max)
    exact_t_eps = _marginal_lp(GAUSS, proc, x, proc.t_min)
    # at the default rtol = atol = 1e-5: measured <= 5e-5 nats/dim (VP, EDM), 1.1e-4 (VE to sigma 50),
    # here and over 200 random data points
    assert (ode_part - exact_t_eps).abs().max() / d < 2e-4
    # the whole estimate against the data density (prior mismatch + t_eps truncation): largest at
    # z = +-2 in every coordinate, measured 0.0042 (VP), 0.0068 (EDM), 0.0112 (VE) nats/dim (over 200
    # random data points 0.0042, 0.0065, 0.0109). VE's is the prior N(0, sigma_max^2) ignoring the
    # data mean: the flow keeps a point's z-score, so x_T ~ m + z sigma_max and the mismatch grows
    # like z m / sigma_max (0.0106 of the 0.0112 at z = 2); within 0.01 up to ~1.7 std (1.8: 0.0100)
    bound = 0.015 if isinstance(proc, P.VE) else 0.01
    assert (lp - GAUSS.log_prob(x)).abs().max() / d < bound
    # x_T is the exact probability-flow image of x
    assert torch.allclose(info["x_T"], GAUSS.flow(proc, x, proc.t_min, proc.t_max), rtol=1e-4, atol=1e-4)
    assert info["nfe"] == info["ode_evals"] > 0


def test_gaussian_mixture_exact_trace():
    proc = P.VP()
    x = MIX.sample(6, generator=torch.Generator().manual_seed(0))
    d = x.shape[1]
    lp, info = log_likelihood(proc, MIX.model(proc, "eps"), x, prediction="eps", return_info=True)
    ode_part = lp - info["prior_log_prob"] + _marginal_lp(MIX, proc, info["x_T"], proc.t_max)
    assert (ode_part - _marginal_lp(MIX, proc, x, proc.t_min)).abs().max() / d < 1e-4
    assert (lp - MIX.log_prob(x)).abs().max() / d < 0.01  # measured 0.0017


@pytest.mark.parametrize("dist,probes", [("rademacher", 1), ("gaussian", 2)])
def test_hutchinson_is_unbiased(dist, probes):
    """Many independent probe draws at one point (one batch): mean within 3 standard errors of the exact trace."""
    proc = P.VP()
    n = 256
    x1 = MIX.sample(1, generator=torch.Generator().manual_seed(3))
    x = x1.expand(n, 2).clone()
    model = MIX.model(proc, "eps")
    kw = dict(prediction="eps", rtol=1e-7, atol=1e-7)
    exact = log_likelihood(proc, model, x1, **kw)
    est = log_likelihood(proc, model, x, divergence="hutchinson", probes=probes, probe_dist=dist,
                         generator=torch.Generator().manual_seed(5), **kw)
    se = est.std() / math.sqrt(n)
    assert se > 1e-4  # the estimator is random (the mixture's Jacobian is not diagonal)
    assert abs(float(est.mean() - exact)) < 3 * se


def test_bits_per_dim_matches_closed_form():
    proc = P.VP()
    data = oracles.Gaussian([0.1, -0.2, 0.05], [0.3, 0.25, 0.35])
    num_bins, lo, hi = 256, -1.0, 1.0
    x = data.sample(8, generator=torch.Generator().manual_seed(0))
    k = torch.clamp(torch.round((x - lo) / (hi - lo) * (num_bins - 1)), 0, num_bins - 1)
    xq = lo + k * (hi - lo) / (num_bins - 1)  # 8-bit data scaled to [-1, 1]
    bpd, info = bits_per_dim(proc, data.model(proc, "eps"), xq, prediction="eps", num_bins=num_bins,
                             data_range=(lo, hi), generator=torch.Generator().manual_seed(1), return_info=True)
    delta = (hi - lo) / num_bins
    assert info["bin_width"] == delta and math.isclose(-math.log2(delta), 7.0)
    # dequantization: same uniform draw, each point inside its own bin
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(info["x_dequantized"], lo + (k + u) * delta)
    assert torch.equal(torch.floor((info["x_dequantized"] - lo) / delta), k)
    # closed form from the exact density of the dequantized data
    d = x.shape[1]
    exact = -_marginal_lp(data, proc, info["x_dequantized"], proc.t_min) / (d * math.log(2)) + 7.0
    # with the exact prior term swapped in: solver precision; as returned: the VP prior's
    # residual-signal mismatch (alpha(1) = 0.0066) shows at ~1e-3 bits/dim
    swap = (info["prior_log_prob"] - _marginal_lp(data, proc, info["x_T"], proc.t_max)) / (d * math.log(2))
    assert (bpd + swap - exact).abs().max() < 1e-4
    assert (bpd - exact).abs().max() < 5e-3
    # and close to the exact discrete bits of each bin (Gaussian CDF), the bound it estimates
    t = torch.tensor(proc.t_min)
    m, s = proc.alpha(t) * data.means[0], torch.sqrt(proc.alpha(t) ** 2 * data.stds[0] ** 2 + proc.sigma(t) ** 2)
    nd = torch.distributions.Normal(m, s)
    p_bin = nd.cdf(lo + (k + 1) * delta) - nd.cdf(lo + k * delta)
    discrete = -torch.log2(p_bin).sum(1) / d
    assert abs(float(bpd.mean() - discrete.mean())) < 0.02


def test_bits_per_dim_without_dequantization_is_a_unit_change():
    proc = P.VP()
    x = GAUSS.sample(3, generator=torch.Generator().manual_seed(2)) * 0.1
    model = GAUSS.model(proc, "eps")
    bpd, info = bits_per_dim(proc, model, x, dequantize=None, num_bins=256, data_range=(0.0, 1.0), return_info=True)
    assert torch.equal(info["x_dequantized"], x)
    assert torch.allclose(bpd, -info["log_prob"] / (4 * math.log(2)) + 8.0, atol=1e-12)
    assert torch.allclose(info["log_prob"], GAUSS.log_prob(x), atol=0.04)  # within 0.01 nats/dim


def test_errors():
    proc = P.VP()
    model = GAUSS.model(proc, "eps")
    x = GAUSS.sample(2, generator=torch.Generator().manual_seed(0))
    bad = x.clone()
    bad[0, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        log_likelihood(proc, model, bad)
    with pytest.raises(ValueError, match="unknown divergence"):
        log_likelihood(proc, model, x, divergence="skilling")
    with pytest.raises(ValueError, match="probe_dist"):
        log_likelihood(proc, model, x, divergence="hutchinson", probe_dist="uniform")
    with pytest.raises(ValueError, match="probes"):
        log_likelihood(proc, model, x, divergence="hutchinson", probes=0)
    with pytest.raises(ValueError, match="prediction kind"):
        log_likelihood(proc, model, x, prediction="noise")
    with pytest.raises(ValueError, match="shape"):
        log_likelihood(proc, model, x[0])  # no batch dimension
    with pytest.raises(ValueError, match="t_eps"):
        log_likelihood(proc, model, x, t_eps=1.0)
    with pytest.raises(ValueError, match="sigma"):
        log_likelihood(proc, model, x, t_eps=0.0)
    with pytest.raises(ValueError, match="model returned shape"):
        log_likelihood(proc, lambda x, t: x[:, :2], x)
    with pytest.raises(ValueError, match="grid"):
        bits_per_dim(proc, model, torch.full((2, 4), 0.123))
    with pytest.raises(ValueError, match="data_range"):
        bits_per_dim(proc, model, torch.full((2, 4), 1.5))
    with pytest.raises(ValueError, match="dequantize"):
        bits_per_dim(proc, model, x, dequantize="variational")


F64 = torch.float64

def test_gbm_likelihood_has_the_noise_divergence_term():
    """GBM's noise g = s x depends on the state: the flow velocity needs -1/2 d/dx g^2. The ODE part
    (exact log p_T at the ODE's end point + the divergence integral) against the exact log-normal
    log p_{t_eps}: 5e-6 nats (4.7 nats without the term; up to 17 at other settings)."""
    import math

    proc = P.GBM(mu=0.1, sigma=1.0)
    m0, v0 = 0.3, 0.25
    b, s2 = proc.log_drift(), proc.vol**2

    def log_prob(x, t):
        m, v = m0 + b * t, v0 + s2 * t
        lx = torch.log(x)
        return (-0.5 * (lx - m) ** 2 / v - 0.5 * math.log(2 * math.pi * v) - lx).sum(1)

    def score(x, t):
        tt = t.reshape(-1, 1)
        m, v = m0 + b * tt, v0 + s2 * tt
        return (-(torch.log(x) - m) / v - 1.0) / x

    g = torch.Generator().manual_seed(0)
    x = torch.exp(m0 + math.sqrt(v0) * torch.randn(8, 2, generator=g, dtype=F64))
    lp, info = log_likelihood(proc, score, x, prediction="score", return_info=True)
    ode_part = log_prob(info["x_T"], proc.t_max) + info["delta_log_prob"]
    assert float((ode_part - log_prob(x, proc.t_min)).abs().max()) < 1e-4


@pytest.mark.parametrize("path", ["linear", "trig"])
@pytest.mark.parametrize("kind", ["x0", "eps", "velocity"])
def test_interpolant_likelihood(path, kind):
    """To alpha(1) = 0 (x0 / velocity: the velocity form stays finite there; eps: it ends 1e-3 inside):
    the whole estimate (its prior N(0, 1) is exact at t = 1) against the exact log p_{t_min}."""
    proc = P.Interpolant(path)
    target = oracles.Gaussian(torch.tensor([0.5, -0.3], dtype=F64), torch.tensor([0.6, 0.9], dtype=F64))
    x = target.sample(6, generator=torch.Generator().manual_seed(1))
    lp = log_likelihood(proc, target.model(proc, kind), x, prediction=kind)
    t = torch.tensor(proc.t_min, dtype=F64)
    exact = target.marginal_log_prob(x, proc.alpha(t), proc.sigma(t))
    assert torch.isfinite(lp).all()
    assert float((lp - exact).abs().max()) < 2e-3
