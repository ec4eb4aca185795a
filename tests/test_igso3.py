"""IGSO(3) against closed forms: the l-series, its Poisson dual, Maxwell limit, quadrature, KS tests, autograd."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from stochgen.spaces import IGSO3, igso3, so3

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _series_reference(w: np.ndarray, sigma: float, L: int = 3000) -> np.ndarray:
    """Independent numpy evaluation of f = sum_l (2l+1) exp(-l(l+1) sigma^2/2) sin((l+1/2) w) / sin(w/2)."""
    l = np.arange(L + 1)[:, None]
    terms = (2 * l + 1) * np.exp(-l * (l + 1) * sigma**2 / 2) * np.sin((l + 0.5) * w[None]) / np.sin(w[None] / 2)
    return terms.sum(0)


def _reference_cdf(sigma: float):
    """CDF of the angle by Simpson integration of the implemented density on a fine grid."""
    hi = min(math.pi, 25 * sigma)
    grid = np.linspace(0.0, hi, 40001)
    dens = igso3.angle_density(torch.as_tensor(grid), sigma).numpy()
    cdf = integrate.cumulative_simpson(dens, x=grid, initial=0.0)
    return lambda x: np.interp(x, grid, cdf, right=1.0)


# ----------------------------------------------------------------------------------------------
# density
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.3, 0.7, 1.0, 1.9, 2.0, 3.5])
def test_log_f_matches_series_reference(sigma):
    w = np.linspace(1e-3, math.pi, 400)
    ref = _series_reference(w, sigma)
    keep = ref > 1e-6 * ref.max()  # the plain series cancels catastrophically in the far tail
    got = igso3.log_f(torch.as_tensor(w), sigma).numpy()
    assert np.abs(got[keep] - np.log(ref[keep])).max() < 1e-10


@pytest.mark.parametrize("sigma", [0.5, 0.8, 1.2, 1.6, 2.0, 2.5])
def test_series_and_small_sigma_form_agree_in_overlap(sigma):
    w = torch.linspace(0.0, math.pi, 801, dtype=F64)
    dual = igso3.log_f(w, sigma, method="dual")
    series = igso3.log_f(w, sigma, method="series")
    keep = series > -8.0
    assert keep.sum() > 400
    assert (dual - series)[keep].abs().max() < 1e-9
    d_dual = igso3.dlog_f(w, sigma, method="dual")
    d_series = igso3.dlog_f(w, sigma, method="series")
    assert (d_dual - d_series)[keep].abs().max() < 1e-8


@pytest.mark.parametrize("sigma", [1e-3, 0.01, 0.05])
def test_small_sigma_closed_forms(sigma):
    const = 0.5 * math.log(2 * math.pi) - 3 * math.log(sigma) + sigma**2 / 8
    # away from pi only the k = 0 Gaussian term survives
    w = torch.linspace(1e-4, 2.0, 500, dtype=F64)
    k0 = const + torch.log(w) - w**2 / (2 * sigma**2) - torch.log(torch.sin(w / 2))
    assert ((igso3.log_f(w, sigma) - k0).abs() / (1.0 + k0.abs())).max() < 1e-13
    # omega = 0: limit 2 * sqrt(2 pi) sigma^-3 e^{sigma^2/8}
    assert abs(float(igso3.log_f(torch.zeros((), dtype=F64), sigma)) - (const + math.log(2))) < 1e-12
    # omega = pi: the k = 0 and k = 1 images are equal, log f = const + log(2 pi) - pi^2 / (2 sigma^2)
    at_pi = float(igso3.log_f(torch.tensor(math.pi, dtype=F64), sigma))
    assert math.isfinite(at_pi)
    assert abs(at_pi - (const + math.log(2 * math.pi) - math.pi**2 / (2 * sigma**2))) < 1e-9 * abs(at_pi)
    # the angle is Maxwell distributed with scale sigma to O(sigma^2)
    x = torch.linspace(0.05, 5.0, 100, dtype=F64) * sigma
    ratio = igso3.angle_density(x, sigma) / torch.as_tensor(stats.maxwell.pdf((x / sigma).numpy()) / sigma)
    assert (ratio - 1).abs().max() < 2 * sigma**2


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.3, 1.0, 2.0, 5.0])
def test_density_integrates_to_one(sigma):
    def dens(x):
        return float(igso3.angle_density(torch.tensor(x, dtype=F64), sigma))

    pts = [min(math.pi, k * sigma) for k in (1, 2, 4, 8, 16)]
    total, _ = integrate.quad(dens, 0.0, math.pi, points=pts, limit=200, epsabs=1e-13)
    assert abs(total - 1.0) < 1e-9
    # Gauss-Legendre CDF against Simpson's rule on a fine grid
    grid = np.linspace(0.0, min(math.pi, 25 * sigma), 20001)
    cdf = integrate.cumulative_simpson(igso3.angle_density(torch.as_tensor(grid), sigma).numpy(), x=grid, initial=0.0)
    idx = np.arange(0, 20001, 500)
    assert np.abs(igso3.angle_cdf(torch.as_tensor(grid[idx]), sigma).numpy() - cdf[idx]).max() < 1e-9


@pytest.mark.parametrize("sigma", [0.05, 0.3, 1.0, 2.5])
def test_dlog_f_matches_autograd(sigma):
    w = torch.cat([torch.tensor([1e-6, 1e-3, 0.05]), torch.linspace(0.1, math.pi - 1e-3, 60)]).to(F64)
    w = w[igso3.log_f(w, sigma) > -500]  # where the density is representable at all
    w.requires_grad_(True)
    (g,) = torch.autograd.grad(igso3.log_f(w, sigma).sum(), w)
    d = igso3.dlog_f(w.detach(), sigma)
    assert ((g - d).abs() / (1.0 + d.abs())).max() < 1e-9
    # f is even and 2 pi periodic: the derivative vanishes at 0 and pi
    ends = igso3.dlog_f(torch.tensor([0.0, math.pi], dtype=F64), sigma)
    assert ends.abs().max() < 1e-9 * max(1.0, 1.0 / sigma**2)


def test_score_norm_matches_quadrature():
    for sigma in (0.01, 0.2, 1.0, 2.5):
        def integrand(x):
            x = torch.tensor(x, dtype=F64)
            return float(igso3.angle_density(x, sigma) * igso3.dlog_f(x, sigma) ** 2)

        pts = [min(math.pi, k * sigma) for k in (1, 2, 4, 8)]
        ref, _ = integrate.quad(integrand, 0, math.pi, points=pts, limit=200)
        assert abs(float(igso3.score_norm(torch.tensor(sigma, dtype=F64))) ** 2 - ref) < 1e-8 * max(1.0, ref)
    # Maxwell limit: E[(w / sigma^2)^2] = 3 / sigma^2
    assert abs(float(igso3.score_norm(torch.tensor(1e-3, dtype=F64))) - math.sqrt(3) / 1e-3) < 1e-2


# ----------------------------------------------------------------------------------------------
# rotations: log_prob and score
# ----------------------------------------------------------------------------------------------
def test_log_prob_is_a_density_wrt_haar():
    # E_{R ~ Haar}[f(R)] = 1
    R = so3.random(200000, _gen(1), F64)
    f = IGSO3(1.0).prob(R)
    assert abs(float(f.mean()) - 1.0) < 4 * float(f.std()) / math.sqrt(f.numel())
    mean = so3.random((), _gen(2), F64)
    d = IGSO3(torch.tensor(0.4, dtype=F64), mean)
    assert torch.allclose(d.log_prob(mean @ R[:100]), igso3.log_f(so3.angle(R[:100]), 0.4), atol=1e-12)


def test_score_matches_autograd_of_log_prob():
    sig = torch.tensor([0.05, 0.3, 1.0, 2.5], dtype=F64)
    mean = so3.random(4, _gen(3), F64)
    d = IGSO3(sig, mean)
    R = d.sample((16,), _gen(4))  # (16, 4, 3, 3)
    v = torch.zeros(16, 4, 3, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(d.log_prob(R @ so3.exp(v)).sum(), v)
    s = d.score(R)
    assert s.shape == (16, 4, 3)
    assert ((g - s).abs() / (1.0 + s.abs())).max() < 1e-8
    # the score points back to the mean: along -Log(mean^T R)
    rel = so3.log(mean.transpose(-1, -2) @ R)
    cos = (s * rel).sum(-1) / (s.norm(dim=-1) * rel.norm(dim=-1))
    assert (cos + 1).abs().max() < 1e-10


def test_score_at_identity_and_pi():
    sigma = 0.7
    a = torch.tensor([0.0, 0.6, 0.8], dtype=F64)
    # at the mean the score is 0; near it, linear with slope d^2 log f / d w^2 (0)
    assert igso3.score_rotvec(torch.zeros(3, dtype=F64), sigma).abs().max() == 0
    s1 = igso3.score_rotvec(1e-7 * a, sigma)
    s2 = igso3.score_rotvec(2e-7 * a, sigma)
    assert torch.isfinite(s1).all() and ((s2 - 2 * s1).abs().max() < 1e-12)
    # at pi the axis is ill-defined but the score vanishes (f'(pi) = 0) and is continuous
    for v in (math.pi * a, -math.pi * a):
        assert igso3.score_rotvec(v, sigma).abs().max() < 1e-13
    assert igso3.score_rotvec((math.pi - 1e-9) * a, sigma).abs().max() < 1e-9 * 100
    R = 2.0 * a[:, None] * a[None, :] - torch.eye(3, dtype=F64)  # rotation by exactly pi
    assert IGSO3(sigma).score(R).abs().max() < 1e-13


# ----------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.05, 0.3, 1.0, 2.0])
def test_sampled_angles_ks(sigma):
    w = igso3.sample_angle(torch.tensor(sigma, dtype=F64), (20000,), _gen(5)).numpy()
    res = stats.kstest(w, _reference_cdf(sigma))
    assert res.pvalue > 1e-4, res
    assert res.statistic < 0.012


def test_per_sample_sigmas_probability_integral_transform():
    # every sample has its own sigma (log-uniform over [1e-3, 5]): CDF(w_i; sigma_i) must be uniform
    g = _gen(6)
    sig = torch.exp(torch.empty(5000, dtype=F64).uniform_(math.log(1e-3), math.log(5.0), generator=g))
    w = igso3.sample_angle(sig, generator=g)
    u = igso3.angle_cdf(w, sig).numpy()
    assert stats.kstest(u, "uniform").pvalue > 1e-4


def test_tiny_sigma_sampling_is_maxwell():
    sigma = 1e-5  # below the table: Maxwell scaling
    w = igso3.sample_angle(torch.tensor(sigma, dtype=F64), (20000,), _gen(7)).numpy()
    assert stats.kstest(w / sigma, stats.maxwell.cdf).pvalue > 1e-4


def test_distribution_sample_with_mean():
    mean = so3.random((), _gen(8), F64)
    d = IGSO3(0.5, mean)
    R = d.sample((20000,), _gen(9))
    assert R.shape == (20000, 3, 3) and R.dtype == F64
    so3.SO3().check(R)
    rel = so3.log(mean.transpose(-1, -2) @ R)
    assert stats.kstest(rel.norm(dim=-1).numpy(), _reference_cdf(0.5)).pvalue > 1e-4
    axis = rel / rel.norm(dim=-1, keepdim=True)
    assert axis.mean(0).abs().max() < 5.0 / math.sqrt(3 * 20000)
    assert d.sample_rotvec((7,), _gen(10)).shape == (7, 3)
    # batched laws
    d = IGSO3(torch.tensor([0.1, 1.0]), so3.random(2, _gen(11)))
    assert d.sample((5,), _gen(12)).shape == (5, 2, 3, 3)
    assert d.sample((5,), _gen(12)).dtype == torch.float32


def test_sampling_is_reproducible():
    a = igso3.sample_rotvec(torch.full((100,), 0.4), generator=_gen(13))
    b = igso3.sample_rotvec(torch.full((100,), 0.4), generator=_gen(13))
    assert torch.equal(a, b) and a.shape == (100, 3)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
def test_bad_sigma():
    with pytest.raises(ValueError, match="sigma must be > 0"):
        IGSO3(0.0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        igso3.log_f(torch.tensor([0.1, 0.2]), torch.tensor([0.3, -1.0]))
    with pytest.raises(ValueError, match="sigma contains 1 NaN"):
        igso3.sample_angle(torch.tensor([0.3, float("nan")]))
    with pytest.raises(ValueError, match="omega contains 1 NaN"):
        igso3.log_f(torch.tensor([float("nan")]), 0.3)
    with pytest.raises(ValueError, match="not orthonormal"):
        IGSO3(0.3, mean=2 * torch.eye(3))
    with pytest.raises(ValueError, match="method must be"):
        igso3.log_f(torch.tensor([0.1]), 0.3, method="fast")
