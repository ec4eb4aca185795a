"""SE(3) processes against closed forms: VP translation moments (torchsde), IGSO(3) rotation marginals,
geodesic Euler--Maruyama Brownian motion, autograd scores, exact interpolant velocities, bad input."""
import math

import numpy as np
import pytest
import torch
import torchsde
from scipy import integrate, stats

from stochgen.processes import SE3Diffusion, SE3Interpolation, from_spec
from stochgen.spaces import IGSO3, igso3, se3, so3

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _igso3_cdf(sigma: float):
    hi = min(math.pi, 25 * sigma)
    grid = np.linspace(0.0, hi, 40001)
    dens = igso3.angle_density(torch.as_tensor(grid), sigma).numpy()
    cdf = integrate.cumulative_simpson(dens, x=grid, initial=0.0)
    return lambda x: np.interp(x, grid, cdf, right=1.0)


def _one_pose(seed=1):
    return se3.from_rt(so3.random((), _gen(seed), F64), torch.tensor([1.0, -2.0, 0.5], dtype=F64))


# ----------------------------------------------------------------------------------------------
# SE3Diffusion: schedules and SDE coefficients
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["logarithmic", "geometric"])
def test_schedules_and_sde_coefficients(schedule):
    proc = SE3Diffusion(trans_scale=2.0, rot_schedule=schedule)
    t = torch.linspace(0.01, 0.99, 50, dtype=F64)
    h = 1e-6
    # rotation: sigma(0) = min, sigma(1) = max, g_rot^2 = d sigma^2 / dt
    ends = proc.rot_sigma(torch.tensor([0.0, 1.0], dtype=F64))
    assert torch.allclose(ends, torch.tensor([0.1, 1.5], dtype=F64), atol=1e-14)
    fd = (proc.rot_sigma(t + h) ** 2 - proc.rot_sigma(t - h) ** 2) / (2 * h)
    assert (proc.rot_g2(t) - fd).abs().max() < 1e-7
    # translation: d log alpha / dt = -beta / 2 and sigma^2 = c^2 (1 - alpha^2)
    fd = (proc.log_alpha(t + h) - proc.log_alpha(t - h)) / (2 * h)
    assert (fd + 0.5 * proc.beta(t)).abs().max() < 1e-7
    assert (proc.sigma(t) ** 2 - 4.0 * (1 - proc.alpha(t) ** 2)).abs().max() < 1e-13
    # sde(): drift (-beta/2 p, 0), diffusion (c sqrt(beta), sqrt(d sigma_rot^2/dt)) per pose
    x = se3.random((50, 3), _gen(2), F64)
    drift, diff = proc.sde(x, t)
    _, p = se3.to_rt(x)
    beta = proc.beta(t)[:, None, None]
    assert drift.shape == diff.shape == (50, 3, 6)
    assert (drift[..., :3] + 0.5 * beta * p).abs().max() < 1e-13 and drift[..., 3:].abs().max() == 0
    assert (diff[..., :3] ** 2 - 4.0 * beta).abs().max() < 1e-12
    assert (diff[..., 3:] ** 2 - proc.rot_g2(t)[:, None, None]).abs().max() < 1e-12


def test_translation_marginal_matches_torchsde_simulation():
    proc = SE3Diffusion(trans_scale=1.5)
    p0 = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    n, t1 = 4000, 0.5
    eye = torch.eye(3, dtype=F64)

    class TranslationSDE(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def _coeffs(self, t, y):
            return proc.sde(se3.from_rt(eye, y), t)

        def f(self, t, y):
            return self._coeffs(t, y)[0][..., :3]

        def g(self, t, y):
            return self._coeffs(t, y)[1][..., :3]

    torch.manual_seed(0)
    y0 = p0.expand(n, 3).clone()
    ys = torchsde.sdeint(TranslationSDE(), y0, torch.tensor([0.0, t1], dtype=F64), method="euler", dt=4e-3)
    y = ys[-1]
    a, s = float(proc.alpha(torch.tensor(t1, dtype=F64))), float(proc.sigma(torch.tensor(t1, dtype=F64)))
    assert ((y.mean(0) - a * p0).abs() < 5 * s / math.sqrt(n)).all()
    assert ((y.var(0) / s**2 - 1).abs() < 5 * math.sqrt(2 / n)).all()
    # the process's own marginal draws have the same closed-form moments
    m = proc.marginal(se3.from_rt(eye, p0).expand(n, 4, 4), t1, _gen(3))
    _, pt = se3.to_rt(m.x_t)
    assert ((pt.mean(0) - a * p0).abs() < 5 * s / math.sqrt(n)).all()
    assert ((pt.var(0) / s**2 - 1).abs() < 5 * math.sqrt(2 / n)).all()
    assert torch.allclose(pt, a * p0 + s * m.extra["trans_noise"], atol=1e-13)


def test_rotation_marginal_is_igso3():
    proc = SE3Diffusion()
    x0 = _one_pose().expand(10000, 4, 4)
    t = 0.4
    m = proc.marginal(x0, t, _gen(4))
    R0, _ = se3.to_rt(x0)
    Rt, _ = se3.to_rt(m.x_t)
    rel = so3.log(R0.transpose(-1, -2) @ Rt)
    sigma = float(proc.rot_sigma(torch.tensor(t, dtype=F64)))
    assert torch.allclose(m.extra["rot_sigma"], torch.tensor(sigma, dtype=F64))
    assert (rel - m.extra["rotvec"]).abs().max() < 1e-9
    assert stats.kstest(rel.norm(dim=-1).numpy(), _igso3_cdf(sigma)).pvalue > 1e-4
    axis = rel / rel.norm(dim=-1, keepdim=True)
    assert axis.mean(0).abs().max() < 5 / math.sqrt(3 * 10000)
    # rot_score_scale(t)^2 = E|rotation score|^2 (Monte Carlo over the draws)
    sq = m.extra["rot_score"].norm(dim=-1) ** 2
    scale = float(proc.rot_score_scale(torch.tensor(t, dtype=F64)))
    assert abs(float(sq.mean()) - scale**2) < 5 * float(sq.std()) / math.sqrt(10000)


def test_rotation_marginal_per_sample_times():
    proc = SE3Diffusion(rot_schedule="geometric")
    n = 6000
    t = torch.rand(n, generator=_gen(5), dtype=F64)
    x0 = se3.random(n, _gen(6), F64)
    m = proc.marginal(x0, t, _gen(7))
    w = so3.distance(se3.to_rt(x0)[0], se3.to_rt(m.x_t)[0])
    u = igso3.angle_cdf(w, proc.rot_sigma(t)).numpy()
    assert stats.kstest(u, "uniform").pvalue > 1e-4


def test_geodesic_euler_maruyama_reproduces_marginal():
    """Simulate the forward SDE on poses with x <- space.exp(x, f dt + g sqrt(dt) z) from t0 to t1."""
    proc = SE3Diffusion()
    n, t0, t1, steps = 4000, 0.2, 0.7, 100
    x0 = _one_pose(8).expand(n, 4, 4)
    g = _gen(9)
    x = proc.marginal(x0, t0, g).x_t
    dt = (t1 - t0) / steps
    for k in range(steps):
        tm = torch.tensor(t0 + (k + 0.5) * dt, dtype=F64)
        drift, diff = proc.sde(x, tm)
        z = torch.randn(n, 6, generator=g, dtype=F64)
        x = proc.space.exp(x, drift * dt + diff * math.sqrt(dt) * z)
    R0, p0 = se3.to_rt(x0)
    R, p = se3.to_rt(x)
    sigma = float(proc.rot_sigma(torch.tensor(t1, dtype=F64)))
    w = so3.distance(R0, R).numpy()
    assert stats.kstest(w, _igso3_cdf(sigma)).pvalue > 1e-4
    a, s = float(proc.alpha(torch.tensor(t1, dtype=F64))), float(proc.sigma(torch.tensor(t1, dtype=F64)))
    assert ((p.mean(0) - a * p0[0]).abs() < 5 * s / math.sqrt(n)).all()
    assert ((p.var(0) / s**2 - 1).abs() < 5 * math.sqrt(2 / n) + 0.02).all()


def test_conditional_score_matches_autograd():
    proc = SE3Diffusion(trans_scale=0.7)
    B, N = 6, 5
    x0 = se3.random((B, N), _gen(10), F64)
    t = torch.tensor([0.01, 0.1, 0.3, 0.5, 0.8, 1.0], dtype=F64)
    m = proc.marginal(x0, t, _gen(11))
    assert m.score.shape == (B, N, 6) and m.noise.shape == (B, N, 6)
    R0, p0 = se3.to_rt(x0)
    Rt, pt = se3.to_rt(m.x_t)
    a = proc.alpha(t)[:, None, None]
    s = proc.sigma(t)[:, None, None]
    # translation: grad_p log N(p; a p0, s^2 I)
    p = pt.clone().requires_grad_(True)
    (g_t,) = torch.autograd.grad((-0.5 * ((p - a * p0) ** 2 / s**2)).sum(), p)
    assert (m.score[..., :3] - g_t).abs().max() < 1e-10 * (1 + g_t.abs().max())
    # rotation: body-frame gradient of log IGSO3(R0, sigma(t)) at R_t
    v = torch.zeros(B, N, 3, dtype=F64, requires_grad=True)
    dist = IGSO3(proc.rot_sigma(t)[:, None].expand(B, N), R0)
    (g_r,) = torch.autograd.grad(dist.log_prob(Rt @ so3.exp(v)).sum(), v)
    assert ((m.score[..., 3:] - g_r).abs() / (1 + g_r.abs())).max() < 1e-8
    # moving along the score increases the conditional log-density (product tangent convention)
    step = proc.space.exp(m.x_t, 1e-4 * m.score / m.score.norm(dim=-1, keepdim=True))
    before = dist.log_prob(Rt) - 0.5 * ((pt - a * p0) ** 2 / s**2).sum(-1)
    R2, p2 = se3.to_rt(step)
    after = dist.log_prob(R2) - 0.5 * ((p2 - a * p0) ** 2 / s**2).sum(-1)
    assert bool((after > before).all())
    # conditional_score at the drawn x_t is the marginal's score; at any other x_t the autograd gradient
    assert (proc.conditional_score(x0, m.x_t, t) - m.score).abs().max() < 1e-8 * (1 + m.score.abs().max())
    other = proc.space.exp(m.x_t, 0.3 * torch.randn(B, N, 6, generator=_gen(12), dtype=F64))
    Ro, po = se3.to_rt(other)
    (g_o,) = torch.autograd.grad(dist.log_prob(Ro @ so3.exp(v)).sum(), v)
    got = proc.conditional_score(x0, other, t)
    assert ((got[..., 3:] - g_o).abs() / (1 + g_o.abs())).max() < 1e-8
    assert (got[..., :3] + (po - a * p0) / s**2).abs().max() < 1e-9 * (1 + got[..., :3].abs().max())
    # differentiable in the denoised pose (a network may predict poses and train through this)
    x0g = x0.clone().requires_grad_(True)
    proc.conditional_score(x0g, other, t).square().sum().backward()
    assert x0g.grad is not None and torch.isfinite(x0g.grad).all() and x0g.grad.abs().sum() > 0


def test_prior():
    proc = SE3Diffusion(trans_scale=3.0)
    x = proc.prior_sample((20000,), _gen(12), dtype=F64)
    assert x.shape == (20000, 4, 4)
    assert proc.prior_sample((2, 5, 4, 4), _gen(13)).shape == (2, 5, 4, 4)
    proc.space.check(x)
    R, p = se3.to_rt(x)
    assert stats.kstest(so3.angle(R).numpy(), lambda w: (w - np.sin(w)) / np.pi).pvalue > 1e-4
    assert ((p.std(0) / 3.0 - 1).abs() < 5 * math.sqrt(0.5 / 20000)).all()
    lp = proc.prior_log_prob(x[:10].reshape(2, 5, 4, 4))
    ref = stats.multivariate_normal(np.zeros(3), 9.0 * np.eye(3)).logpdf(p[:10].numpy()) - math.log(8 * math.pi**2)
    assert np.allclose(lp.numpy(), ref.reshape(2, 5).sum(-1), atol=1e-12)


def test_spec_round_trip():
    proc = SE3Diffusion(beta_min=0.2, beta_max=10.0, trans_scale=0.1, rot_sigma_min=0.05, rot_sigma_max=2.0,
                        rot_schedule="geometric", t_min=1e-2)
    again = from_spec(proc.spec())
    assert isinstance(again, SE3Diffusion) and again.config() == proc.config()
    t = torch.linspace(0, 1, 11, dtype=F64)
    assert torch.equal(again.rot_sigma(t), proc.rot_sigma(t)) and torch.equal(again.sigma(t), proc.sigma(t))
    assert (proc.t_min, proc.t_max) == (1e-2, 1.0)
    interp = SE3Interpolation(sigma_max=0.5, schedule="sqrt")
    assert from_spec(interp.spec()).config() == interp.config()


def test_bad_input():
    proc = SE3Diffusion()
    x0 = se3.random(4, _gen(14), F64)
    with pytest.raises(ValueError, match="leading batch dimension"):
        proc.marginal(x0[0], 0.5)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4, 4\)"):
        proc.marginal(x0[:, :3, :3], 0.5)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4, 4\)"):
        proc.marginal(torch.zeros(4, 4, 3), 0.5)
    bad = x0.clone()
    bad[1, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        proc.marginal(bad, 0.5)
    bad = x0.clone()
    bad[:, :3, :3] = torch.eye(3, dtype=F64) * 2
    with pytest.raises(ValueError, match="not orthonormal"):
        proc.marginal(bad, 0.5)
    with pytest.raises(ValueError, match="time range"):
        proc.marginal(x0, 1.5)
    with pytest.raises(ValueError, match="time range"):
        proc.sde(x0, -0.1)
    with pytest.raises(ValueError, match="one entry per sample"):
        proc.marginal(x0, torch.rand(3))
    with pytest.raises(ValueError, match="beta_max"):
        SE3Diffusion(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match="rot_schedule"):
        SE3Diffusion(rot_schedule="cosine")
    with pytest.raises(ValueError, match="rot_sigma_min must be positive"):
        SE3Diffusion(rot_sigma_min=0.0)
    with pytest.raises(ValueError, match="time range"):
        SE3Interpolation(schedule="sqrt").marginal(x0, 0.0)


# ----------------------------------------------------------------------------------------------
# SE3Interpolation
# ----------------------------------------------------------------------------------------------
def test_interpolation_end_points():
    proc = SE3Interpolation(sigma_max=0.8)
    x0 = se3.random((7, 3), _gen(15), F64)
    m0 = proc.marginal(x0, 0.0, _gen(16))
    assert (m0.x_t - x0).abs().max() < 1e-12
    m1 = proc.marginal(x0, 1.0, _gen(17))
    assert (m1.x_t - se3.exp(0.8 * m1.noise)).abs().max() < 1e-12  # the data are forgotten at t = 1
    assert torch.allclose(m1.extra["clean_velocity"], -se3.log(x0), atol=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "sqrt"])
def test_interpolation_velocity_is_the_path_derivative(schedule):
    proc = SE3Interpolation(sigma_max=0.7, schedule=schedule)
    B = 32
    x0 = se3.random(B, _gen(18), F64)
    t = torch.rand(B, generator=_gen(19), dtype=F64) * 0.8 + 0.1
    m = proc.marginal(x0, t, _gen(20))
    zeta, xi = se3.log(x0), m.noise

    def path(tt):
        s = proc.noise_scale(tt)[:, None]
        return se3.exp((1 - tt)[:, None] * zeta) @ se3.exp(s * xi)

    assert (path(t) - m.x_t).abs().max() < 1e-12
    h = 1e-5
    inv = se3.inverse(m.x_t)
    fd = (se3.log(inv @ path(t + h)) - se3.log(inv @ path(t - h))) / (2 * h)
    assert (fd - m.velocity).abs().max() < 1e-7
    # with no noise the velocity is the clean geodesic direction -Log(x0)
    assert torch.allclose(m.extra["clean_velocity"], -zeta)


def test_interpolation_law_and_prior():
    proc = SE3Interpolation(sigma_max=0.3)
    n, t = 20000, 0.6
    x0 = _one_pose(21).expand(n, 4, 4)
    m = proc.marginal(x0, t, _gen(22))
    # Exp((1 - t) Log x0)^{-1} x_t = Exp(s(t) xi) with xi ~ N(0, I6)
    g = se3.exp((1 - t) * se3.log(x0))
    e = se3.log(se3.inverse(g) @ m.x_t) / (0.3 * t)
    assert (e - m.noise).abs().max() < 1e-10
    assert (e.mean(0).abs() < 5 / math.sqrt(n)).all()
    assert ((torch.cov(e.T) - torch.eye(6, dtype=F64)).abs() < 5 * math.sqrt(2 / n)).all()
    # prior: Exp(s(1) xi); prior_log_prob is the Gaussian density of the Lie-algebra coordinate
    x = proc.prior_sample((4, 3), _gen(23), dtype=F64)
    assert x.shape == (4, 3, 4, 4)
    ref = stats.multivariate_normal(np.zeros(6), 0.09 * np.eye(6)).logpdf(se3.log(x).reshape(-1, 6).numpy())
    assert np.allclose(proc.prior_log_prob(x).numpy(), ref.reshape(4, 3).sum(-1), atol=1e-10)
