"""Lie-group families end to end: ``stochgen.fit("base", poses, process=SE3Diffusion | SE3Interpolation)``.

Data with a known law, tiny pose networks (the default :class:`stochgen.nets.pose.PoseMLP`),
samples from the trained :class:`stochgen.Model` compared with the law:

* two poses with weights (0.3, 0.7): the tight one (IGSO3(0.05) rotation noise) and a spread
  one (rotation IGSO3(R_B, 0.35)); the sampled mode weights against (0.3, 0.7) and the mean
  squared rotation angle of the spread mode against the IGSO(3) law, both within a few standard
  errors of the sample;
* products of frames (B, 2, 4, 4) with frame 2 = frame 1 composed with a fixed offset: the
  sampled relation holds;
* the ``se3-flow`` sampler against the exact velocity of a one-pose data set (first order for
  Euler, second for Heun / midpoint), the score-scale table against the quadrature, save / load,
  orthonormal samples, bad input.
"""
import math

import pytest
import torch

import stochgen
from stochgen import processes
from stochgen.nets.pose import PoseMLP
from stochgen.objectives.lie_group import rot_score_scale_fn
from stochgen.spaces import igso3, se3, so3

F64 = torch.float64
WEIGHTS = (0.3, 0.7)
SPREAD = 0.35      # IGSO(3) concentration of mode B's rotations
TIGHT = 0.05       # rotation noise of mode A (and the translation noise of both)
N_SAMPLES = 2000
# The mean squared angle of the spread mode: 4 standard errors of the sample (~9% of it) plus the bias of a
# 300-step, 96-wide network, measured at -5%..+1% (diffusion) and +6%..+10% (interpolant) of the law.
MODEL_BIAS = 0.12


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _modes():
    """Two poses 1.73 rad apart in rotation and 3.3 in translation (assignment is unambiguous), rotation angles
    0.37 and 1.47 (the geodesics to the identity stay clear of the cut locus at angle pi)."""
    RA = so3.exp(torch.tensor([0.3, -0.2, 0.1], dtype=F64))
    RB = so3.exp(torch.tensor([-0.6, 1.2, 0.6], dtype=F64))
    return se3.from_rt(torch.stack([RA, RB]), torch.tensor([[1.5, 0.0, 0.5], [-1.5, 0.0, -0.5]], dtype=F64))


def _mixture(n, seed):
    g = _gen(seed)
    modes = _modes()
    lab = (torch.rand(n, generator=g, dtype=F64) < WEIGHTS[1]).long()
    sig = torch.where(lab == 1, torch.tensor(SPREAD, dtype=F64), torch.tensor(TIGHT, dtype=F64))
    v = igso3.sample_rotvec(sig, generator=g, dtype=F64)
    R = modes[lab, :3, :3] @ so3.exp(v)
    p = modes[lab, :3, 3] + TIGHT * torch.randn(n, 3, generator=g, dtype=F64)
    return se3.from_rt(R, p).float()


def _assign(x):
    """(nearest mode (n,), rotation angle to it (n,), translation distance to it (n,))."""
    modes = _modes()
    R, p = se3.to_rt(x.to(F64))
    ang = torch.stack([so3.angle(modes[k, :3, :3].T @ R) for k in range(2)], -1)
    dist = torch.stack([(p - modes[k, :3, 3]).norm(dim=-1) for k in range(2)], -1)
    k = (ang + dist).argmin(-1)
    return k, ang.gather(1, k[:, None])[:, 0], dist.gather(1, k[:, None])[:, 0]


def _igso3_moment(sigma):
    """E[angle^2], E[angle^4] under IGSO3(sigma), by quadrature of the angle density."""
    w = torch.linspace(0, math.pi, 4001, dtype=F64)
    d = igso3.angle_density(w, sigma)
    z = torch.trapezoid(d, w)
    return float(torch.trapezoid(d * w**2, w) / z), float(torch.trapezoid(d * w**4, w) / z)


def _orthonormality_error(x):
    R = se3.to_rt(x.to(F64))[0]
    return float((R.transpose(-1, -2) @ R - torch.eye(3, dtype=F64)).abs().max()), \
        float((torch.linalg.det(R) - 1).abs().max())


def _fit(data, process, steps=300, **kw):
    return stochgen.fit(stochgen.domain("base", hidden=96, depth=2), data, process=process, steps=steps,
                        batch_size=256, lr=3e-3, warmup=20, ema=0.98, progress=False, **kw)


@pytest.fixture(scope="module")
def diffusion_model():
    proc = processes.SE3Diffusion(rot_sigma_min=0.05)
    return _fit(_mixture(4000, 0), proc)


@pytest.fixture(scope="module")
def flow_model():
    return _fit(_mixture(4000, 0), processes.SE3Interpolation())


def _check_mixture(x, spread_law):
    """Mode weights and the spread of mode B against their laws, bounds from the sampling error."""
    n = x.shape[0]
    k, ang, dist = _assign(x)
    w_b = float((k == 1).double().mean())
    se_w = math.sqrt(WEIGHTS[1] * WEIGHTS[0] / n)
    tv = abs(w_b - WEIGHTS[1])
    m2, m4 = _igso3_moment(spread_law)
    a2 = ang[k == 1] ** 2
    se_m2 = math.sqrt((m4 - m2 * m2) / a2.numel())
    print(f"weight B {w_b:.4f} (TV {tv:.4f}, SE {se_w:.4f}); mean angle^2 of B {float(a2.mean()):.4f} vs "
          f"{m2:.4f} (SE {se_m2:.4f}, law IGSO3({spread_law:.4f})); mode A rms angle "
          f"{float(ang[k == 0].pow(2).mean().sqrt()):.4f}, rms trans err A {float(dist[k == 0].pow(2).mean().sqrt()):.4f}"
          f" B {float(dist[k == 1].pow(2).mean().sqrt()):.4f}")
    return tv, se_w, float(a2.mean()), m2, se_m2, ang, dist, k


# ----------------------------------------------------------------------------------------------
def test_se3_diffusion_learns_mode_weights_and_igso3_spread(diffusion_model):
    m = diffusion_model
    assert m.sampler == "se3-euler" and m.prediction == "tangent_score"
    x, info = m.sample(N_SAMPLES, generator=_gen(1), return_info=True)
    assert x.shape == (N_SAMPLES, 4, 4) and info["nfe"] == m.steps
    ortho, det = _orthonormality_error(x)
    assert ortho < 1e-5 and det < 1e-5
    # the model's law at the data end is the data convolved with IGSO3(rot_sigma_min) on rotations
    law = math.sqrt(SPREAD**2 + m.process.rot_sigma_min**2)
    tv, se_w, m2_hat, m2, se_m2, ang, dist, k = _check_mixture(x, law)
    assert tv < 4 * se_w
    assert abs(m2_hat - m2) < 4 * se_m2 + MODEL_BIAS * m2


def test_se3_interpolation_learns_mode_weights_and_igso3_spread(flow_model):
    m = flow_model
    assert m.sampler == "se3-flow" and m.prediction == "velocity"
    x, info = m.sample(N_SAMPLES, generator=_gen(1), return_info=True)
    assert x.shape == (N_SAMPLES, 4, 4) and info["nfe"] == m.steps
    ortho, det = _orthonormality_error(x)
    assert ortho < 1e-5 and det < 1e-5
    tv, se_w, m2_hat, m2, se_m2, ang, dist, k = _check_mixture(x, SPREAD)
    assert tv < 4 * se_w
    assert abs(m2_hat - m2) < 4 * se_m2 + MODEL_BIAS * m2


def test_save_load_round_trip(flow_model, tmp_path):
    path = flow_model.save(tmp_path / "pose.ckpt")
    back = stochgen.load(path)
    assert back.net.config() == flow_model.net.config() and back.sampler == "se3-flow"
    a = flow_model.sample(64, generator=_gen(3), steps=10)
    b = back.sample(64, generator=_gen(3), steps=10)
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------------
OFFSET = se3.from_rt(so3.exp(torch.tensor([0.0, 0.0, 1.0], dtype=F64)), torch.tensor([1.0, 0.0, 0.0], dtype=F64))


def _frames(n, seed):
    """(n, 2, 4, 4): frame 1 spread around a pose, frame 2 = frame 1 composed with OFFSET."""
    g = _gen(seed)
    c = _modes()[0]
    v = igso3.sample_rotvec(torch.full((n,), 0.25, dtype=F64), generator=g, dtype=F64)
    f1 = se3.from_rt(c[:3, :3] @ so3.exp(v), c[:3, 3] + 0.2 * torch.randn(n, 3, generator=g, dtype=F64))
    return torch.stack([f1, f1 @ OFFSET], 1).float()


def _relation_error(x):
    """rms rotation angle and rms translation of OFFSET^-1 F1^-1 F2 (identity when the relation holds)."""
    x = x.to(F64)
    rel = se3.inverse(OFFSET) @ se3.inverse(x[:, 0]) @ x[:, 1]
    R, p = se3.to_rt(rel)
    return float(so3.angle(R).pow(2).mean().sqrt()), float(p.norm(dim=-1).pow(2).mean().sqrt())


def test_product_of_frames_keeps_the_relation_between_frames():
    proc = processes.SE3Interpolation()
    m = _fit(_frames(4000, 0), proc, steps=400)
    assert m.net.config()["frames"] == [2] and m.state_shape == (2, 4, 4)
    x = m.sample(N_SAMPLES, generator=_gen(2))
    assert x.shape == (N_SAMPLES, 2, 4, 4)
    ortho, det = _orthonormality_error(x)
    assert ortho < 1e-5 and det < 1e-5
    rot, trans = _relation_error(x)
    # frames sampled without their relation (each from its own marginal) are off by
    base_rot, base_trans = _relation_error(torch.stack([x[:, 0], x.roll(1, 0)[:, 1]], 1))
    print(f"relation: rms angle {rot:.4f}, rms translation {trans:.4f}; shuffled {base_rot:.4f}, {base_trans:.4f}")
    # a 400-step tiny network restores ~2/3 of the relation: measured ratios 0.32 (angle), 0.30 (translation)
    assert rot < 0.45 * base_rot and trans < 0.45 * base_trans


# ----------------------------------------------------------------------------------------------
class OnePoseVelocity:
    """Exact velocity of SE3Interpolation when the data are the one pose T0: the path through x at t is
    x = Exp((1 - t) zeta) Exp(s(t) xi) with xi = Log(Exp(-(1 - t) zeta) x) / s(t)."""

    def __init__(self, proc, T0):
        self.proc, self.zeta = proc, se3.log(T0)

    def __call__(self, x, t):
        tb = t.to(F64)[:, None]
        s, ds = self.proc.noise_scale(tb), self.proc.noise_scale_rate(tb)
        noise = se3.exp(-(1 - tb) * self.zeta) @ x
        xi = se3.log(noise) / s
        ad = se3.vee(se3.inverse(noise) @ se3.hat(self.zeta).expand(x.shape) @ noise)  # Ad_{noise^-1} zeta
        return ds * xi - ad


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2), ("midpoint", 2)])
def test_se3_flow_converges_to_the_exact_path_at_its_order(method, order):
    proc = processes.SE3Interpolation(sigma_max=0.5)
    T0 = se3.from_rt(so3.exp(torch.tensor([0.6, -0.4, 0.5], dtype=F64)), torch.tensor([1.0, -0.5, 0.3], dtype=F64))
    x1 = proc.prior_sample((64,), generator=_gen(0), dtype=F64)
    t_end = 0.2
    xi = se3.log(x1) / proc.noise_scale(torch.tensor(1.0, dtype=F64))
    want = se3.exp((1 - t_end) * se3.log(T0)) @ se3.exp(proc.noise_scale(torch.tensor(t_end, dtype=F64)) * xi)
    errs = []
    for steps in (8, 16, 32):
        times = torch.linspace(1.0, t_end, steps + 1, dtype=F64)
        x, info = stochgen.sample(proc, OnePoseVelocity(proc, T0), x_T=x1, sampler="se3-flow", times=times,
                                  method=method, return_info=True)
        assert info["nfe"] == steps * (1 if method == "euler" else 2)
        errs.append(float(se3.log(se3.inverse(want) @ x).norm(dim=-1).max()))
    slopes = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
    print(method, errs, slopes)
    assert all(abs(s - order) < 0.3 for s in slopes)


def test_score_scale_table_matches_the_quadrature():
    for proc in (processes.SE3Diffusion(), processes.SE3Diffusion(rot_sigma_min=0.05, rot_schedule="geometric")):
        t = torch.linspace(0, 1, 41, dtype=F64)
        rel = rot_score_scale_fn(proc)(t) / proc.rot_score_scale(t) - 1
        assert float(rel.abs().max()) < 2e-3


def test_bad_input_names_the_problem():
    proc = processes.SE3Interpolation()
    x = proc.prior_sample((4,), dtype=F64)
    vel = OnePoseVelocity(proc, se3.exp(torch.zeros(6, dtype=F64)))
    with pytest.raises(ValueError, match="method"):
        stochgen.sample(proc, vel, x_T=x, sampler="se3-flow", steps=4, method="rk4")
    with pytest.raises(ValueError, match="se3-flow"):
        stochgen.sample(processes.SE3Diffusion(), vel, x_T=x, sampler="se3-flow", steps=4)
    with pytest.raises(ValueError, match="shape"):
        stochgen.sample(proc, lambda x, t: torch.zeros(x.shape[0], 3, dtype=x.dtype), x_T=x, sampler="se3-flow",
                        steps=4)
    net = PoseMLP(frames=2, hidden=16, depth=1)
    with pytest.raises(ValueError, match=r"\(B, 2, 4, 4\)"):
        net(torch.eye(4).expand(3, 4, 4), torch.rand(3))
    with pytest.raises(ValueError, match="frames"):
        PoseMLP(frames=[0])
    with pytest.raises(ValueError, match="trans_scale"):
        PoseMLP(trans_scale=-1.0)
    with pytest.raises(ValueError, match="score_process"):
        PoseMLP(score_process=proc.spec())
    with pytest.raises(ValueError, match="tangent_score"):
        stochgen.fit("base", se3.random((8,)), process=processes.SE3Diffusion(), prediction="velocity", steps=1,
                     progress=False)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4, 4\)"):
        stochgen.fit("base", torch.randn(8, 3), process=processes.SE3Diffusion(), steps=1, progress=False)


def test_untrained_pose_net_outputs_scaled_zero_and_per_frame_shapes():
    proc = processes.SE3Diffusion()
    net = PoseMLP(frames=[2, 3], hidden=16, depth=1, score_process=proc.spec(), zero_init=False)
    x = se3.random((5, 2, 3))
    out = net(x, torch.rand(5))
    assert out.shape == (5, 2, 3, 6)
    # the scaling: raw output divided by sigma(t) (translation), times rot_score_scale(t) (rotation)
    raw = PoseMLP(frames=[2, 3], hidden=16, depth=1, zero_init=False)
    raw.load_state_dict(net.state_dict())
    t = torch.full((5,), 0.3)
    o, r = net(x, t), raw(x, t)
    tt = torch.tensor(0.3, dtype=F64)
    assert torch.allclose(o[..., :3], r[..., :3] / float(proc.sigma(tt)), rtol=1e-5)
    assert torch.allclose(o[..., 3:], r[..., 3:] * float(proc.rot_score_scale(tt)), rtol=2e-3)
