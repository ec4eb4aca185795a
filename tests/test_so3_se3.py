"""SO(3) / SE(3) maps against closed forms: round trips, scipy, matrix exponentials, Jacobians, bad input."""
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial.transform import Rotation

from stochgen.spaces import SE3, SO3, se3, so3

F64 = torch.float64
NEAR_ZERO = [0.0, 1e-12, 1e-9, 1e-6, 1e-3]
GENERIC = [0.049, 0.051, 0.1, 1.0, 2.0, 3.0]  # 0.049 / 0.051: either side of the Taylor switch of the coefficients
NEAR_PI = [math.pi - 1e-3, math.pi - 1e-6, math.pi - 1e-7, math.pi - 1e-9]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _axes(n, seed=0):
    a = torch.randn(n, 3, generator=_gen(seed), dtype=F64)
    return a / a.norm(dim=-1, keepdim=True)


def _rotvecs(angle, n=200, seed=0):
    return angle * _axes(n, seed)


def _eye(n):
    return torch.eye(n, dtype=F64)


# ----------------------------------------------------------------------------------------------
# SO(3)
# ----------------------------------------------------------------------------------------------
def test_hat_vee_cross_product():
    a, b = torch.randn(2, 50, 3, generator=_gen(1), dtype=F64)
    assert torch.allclose(so3.hat(a) @ b[..., None], torch.cross(a, b, dim=-1)[..., None], atol=1e-14)
    assert torch.equal(so3.vee(so3.hat(a)), a)
    xi = torch.randn(50, 6, generator=_gen(2), dtype=F64)
    assert torch.equal(se3.vee(se3.hat(xi)), xi)


@pytest.mark.parametrize("angle", NEAR_ZERO + GENERIC + NEAR_PI)
def test_so3_log_exp_roundtrip(angle):
    phi = _rotvecs(angle)
    R = so3.exp(phi)
    assert (so3.log(R) - phi).abs().max() < 1e-9
    assert (so3.exp(so3.log(R)) - R).abs().max() < 1e-12
    assert (R.transpose(-1, -2) @ R - _eye(3)).abs().max() < 1e-14
    assert (so3.angle(R) - angle).abs().max() < 1e-12


@pytest.mark.parametrize("angle", NEAR_ZERO + GENERIC + NEAR_PI + [math.pi])
def test_so3_matches_scipy_and_matrix_exp(angle):
    phi = _rotvecs(angle, n=100, seed=3)
    R = so3.exp(phi)
    ref = torch.as_tensor(Rotation.from_rotvec(phi.numpy()).as_matrix())
    assert (R - ref).abs().max() < 1e-14
    assert (R - torch.linalg.matrix_exp(so3.hat(phi))).abs().max() < 1e-13
    if angle < math.pi - 1e-8:  # scipy's as_rotvec loses ~1e-8 right at pi
        assert (so3.log(ref) - torch.as_tensor(Rotation.from_matrix(ref.numpy()).as_rotvec())).abs().max() < 1e-9


def test_so3_log_at_exactly_pi():
    axes = _axes(100, seed=4)
    R = 2.0 * axes[:, :, None] * axes[:, None, :] - _eye(3)  # rotation by exactly pi about each axis
    phi = so3.log(R)
    assert (phi.norm(dim=-1) - math.pi).abs().max() < 1e-14
    # the axis is only determined up to sign
    assert ((phi / math.pi).abs() - axes.abs()).abs().max() < 1e-12
    assert (so3.exp(phi) - R).abs().max() < 1e-14


def test_so3_exp_log_random_rotations():
    R = so3.random((20, 30), _gen(5), F64)
    assert R.shape == (20, 30, 3, 3)
    assert (so3.exp(so3.log(R)) - R).abs().max() < 1e-13
    ref = torch.as_tensor(Rotation.from_matrix(R.reshape(-1, 3, 3).numpy()).as_rotvec())
    assert (so3.log(R).reshape(-1, 3) - ref).abs().max() < 1e-9


def test_uniform_rotations_have_haar_angle_law():
    # under the Haar measure the angle has density (1 - cos w) / pi, CDF (w - sin w) / pi
    w = so3.angle(so3.random(20000, _gen(6), F64)).numpy()
    assert stats.kstest(w, lambda x: (x - np.sin(x)) / np.pi).pvalue > 1e-4
    # and the axis is uniform: mean of the rotation vector direction ~ 0
    phi = so3.log(so3.random(20000, _gen(7), F64))
    axis_mean = (phi / phi.norm(dim=-1, keepdim=True)).mean(0)
    assert axis_mean.abs().max() < 5.0 / math.sqrt(3 * 20000)


@pytest.mark.parametrize("angle", [0.0, 1e-7, 1e-3, 0.3, 1.5, 2.5, math.pi - 1e-3])
def test_left_jacobian_matches_finite_differences(angle):
    phi = _rotvecs(angle, n=8, seed=8) if angle > 0 else torch.zeros(8, 3, dtype=F64)
    h = 1e-6
    cols = []
    for i in range(3):
        e = torch.zeros(3, dtype=F64)
        e[i] = h
        plus = so3.log(so3.exp(phi + e) @ so3.exp(phi).transpose(-1, -2))
        minus = so3.log(so3.exp(phi - e) @ so3.exp(phi).transpose(-1, -2))
        cols.append((plus - minus) / (2 * h))
    J_fd = torch.stack(cols, dim=-1)
    assert (so3.left_jacobian(phi) - J_fd).abs().max() < 1e-8
    # right Jacobian: Exp(phi + d) ~= Exp(phi) Exp(J_r d)
    cols = []
    for i in range(3):
        e = torch.zeros(3, dtype=F64)
        e[i] = h
        plus = so3.log(so3.exp(phi).transpose(-1, -2) @ so3.exp(phi + e))
        minus = so3.log(so3.exp(phi).transpose(-1, -2) @ so3.exp(phi - e))
        cols.append((plus - minus) / (2 * h))
    assert (so3.right_jacobian(phi) - torch.stack(cols, dim=-1)).abs().max() < 1e-8


@pytest.mark.parametrize("angle", NEAR_ZERO + GENERIC + [math.pi, 4.0, 5.5])
def test_left_jacobian_inverse(angle):
    phi = _rotvecs(angle, n=50, seed=9)
    eye = _eye(3).expand(50, 3, 3)
    assert (so3.left_jacobian(phi) @ so3.left_jacobian_inverse(phi) - eye).abs().max() < 1e-12
    assert (so3.right_jacobian(phi) @ so3.right_jacobian_inverse(phi) - eye).abs().max() < 1e-12
    # closed form: J_l(phi) = int_0^1 Exp(s phi) ds (Gauss-Legendre, 20 nodes)
    x, w = np.polynomial.legendre.leggauss(20)
    J = sum(wi / 2 * so3.exp((xi + 1) / 2 * phi) for xi, wi in zip(x, w))
    assert (so3.left_jacobian(phi) - J).abs().max() < 1e-12


def test_so3_group_ops_and_apply():
    R1, R2 = so3.random((2, 40), _gen(10), F64)
    p = torch.randn(40, 7, 3, generator=_gen(11), dtype=F64)
    assert torch.allclose(so3.compose(R1, R2), R1 @ R2)
    assert (so3.compose(so3.inverse(R1), R1) - _eye(3)).abs().max() < 1e-14
    ref = torch.einsum("bij,bnj->bni", R1, p)
    assert (so3.apply(R1, p) - ref).abs().max() < 1e-14
    # distance = |Log(R1^T R2)| and is symmetric
    d = so3.distance(R1, R2)
    assert (d - so3.log(R1.transpose(-1, -2) @ R2).norm(dim=-1)).abs().max() < 1e-12
    assert (d - so3.distance(R2, R1)).abs().max() < 1e-12


def test_so3_space():
    S = SO3()
    assert S.dim == 3
    R, Q = so3.random((2, 5, 4), _gen(12), F64)
    v = S.log(R, Q)
    assert (S.exp(R, v) - Q).abs().max() < 1e-12
    # right perturbation: exp(R, v) = R Exp(v), and equals the space-frame move Exp(R v) R
    w = 0.3 * torch.randn(5, 4, 3, generator=_gen(13), dtype=F64)
    assert (S.exp(R, w) - R @ so3.exp(w)).abs().max() < 1e-14
    assert (S.exp(R, w) - so3.exp((R @ w[..., None])[..., 0]) @ R).abs().max() < 1e-13
    n = S.noise((5, 4), _gen(14), F64)
    assert n.shape == (5, 4, 3) and abs(float(n.std()) - 1.0) < 0.3
    assert torch.equal(S.check(R), R)
    # projection: identity on rotations, nearest rotation otherwise
    assert (S.project(R) - R).abs().max() < 1e-12
    M = R + 1e-3 * torch.randn(R.shape, generator=_gen(15), dtype=F64)
    P = S.project(M)
    S.check(P)
    assert (P - R).abs().max() < 1e-2
    # SVD-based reference: U V^T with det fixed
    U, _, Vh = torch.linalg.svd(M)
    assert (P - U @ Vh).abs().max() < 1e-12
    # a reflection is mapped to a proper rotation; the result is closer than any other rotation tried
    F = -R
    P = S.project(F)
    S.check(P)
    others = so3.random((200,) + R.shape[:-2], _gen(18), F64)
    assert bool(((F - P).norm(dim=(-1, -2)) <= (F - others).norm(dim=(-1, -2)).amin(0) + 1e-12).all())


def test_float32_and_batch_shapes():
    phi = (2.0 * torch.randn(3, 4, 5, 3, generator=_gen(16))).clamp(-1.7, 1.7)
    R = so3.exp(phi)
    assert R.dtype == torch.float32 and R.shape == (3, 4, 5, 3, 3)
    assert (so3.log(R) - phi).abs().max() < 1e-5
    T = se3.exp(torch.cat([torch.randn(3, 4, 5, 3, generator=_gen(17)), phi], -1))
    assert T.dtype == torch.float32 and T.shape == (3, 4, 5, 4, 4)
    SE3().check(T)


# ----------------------------------------------------------------------------------------------
# SE(3)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("angle", NEAR_ZERO + GENERIC + NEAR_PI)
def test_se3_log_exp_roundtrip(angle):
    phi = _rotvecs(angle, n=100, seed=20)
    rho = 3.0 * torch.randn(100, 3, generator=_gen(21), dtype=F64)
    xi = torch.cat([rho, phi], dim=-1)
    T = se3.exp(xi)
    assert (se3.log(T) - xi).abs().max() < 1e-8
    assert (se3.exp(se3.log(T)) - T).abs().max() < 1e-12
    # closed form: the matrix exponential of the 4x4 twist matrix
    assert (T - torch.linalg.matrix_exp(se3.hat(xi))).abs().max() < 1e-12


def test_se3_log_at_exactly_pi():
    axes = _axes(50, seed=22)
    R = 2.0 * axes[:, :, None] * axes[:, None, :] - _eye(3)
    t = torch.randn(50, 3, generator=_gen(23), dtype=F64)
    T = se3.from_rt(R, t)
    assert (se3.exp(se3.log(T)) - T).abs().max() < 1e-13


def test_se3_group_ops_and_apply():
    T1, T2 = se3.random((2, 30), _gen(24), F64)
    p = torch.randn(30, 9, 3, generator=_gen(25), dtype=F64)
    R1, t1 = se3.to_rt(T1)
    R2, t2 = se3.to_rt(T2)
    # composition = 4x4 product = (R1 R2, R1 t2 + t1)
    C = se3.compose(T1, T2)
    assert (C - T1 @ T2).abs().max() < 1e-14
    assert (C - se3.from_rt(R1 @ R2, (R1 @ t2[..., None])[..., 0] + t1)).abs().max() < 1e-14
    # inverse round trip, both sides, and against torch.linalg.inv
    assert (se3.compose(se3.inverse(T1), T1) - _eye(4)).abs().max() < 1e-14
    assert (se3.compose(T1, se3.inverse(T1)) - _eye(4)).abs().max() < 1e-14
    assert (se3.inverse(T1) - torch.linalg.inv(T1)).abs().max() < 1e-12
    # apply = R p + t, and apply(T1 T2) = apply(T1) o apply(T2)
    ref = torch.einsum("bij,bnj->bni", R1, p) + t1[:, None, :]
    assert (se3.apply(T1, p) - ref).abs().max() < 1e-14
    assert (se3.apply(C, p) - se3.apply(T1, se3.apply(T2, p))).abs().max() < 1e-13
    # homogeneous coordinates
    ph = torch.cat([p, torch.ones_like(p[..., :1])], -1)
    assert (se3.apply(T1, p) - (ph @ T1.transpose(-1, -2))[..., :3]).abs().max() < 1e-13


@pytest.mark.parametrize("tangent", ["group", "product"])
def test_se3_space(tangent):
    S = SE3(tangent=tangent)
    assert S.dim == 6
    T, U = se3.random((2, 6, 5), _gen(26), F64)
    v = S.log(T, U)
    assert v.shape == (6, 5, 6)
    assert (S.exp(T, v) - U).abs().max() < 1e-11
    xi = 0.5 * torch.randn(6, 5, 6, generator=_gen(27), dtype=F64)
    R, t = se3.to_rt(T)
    if tangent == "group":
        assert (S.exp(T, xi) - T @ se3.exp(xi)).abs().max() < 1e-13
    else:
        ref = se3.from_rt(R @ so3.exp(xi[..., 3:]), t + xi[..., :3])
        assert (S.exp(T, xi) - ref).abs().max() < 1e-13
    assert S.noise((6, 5), _gen(28), F64).shape == (6, 5, 6)
    M = T.clone()
    M[..., :3, :3] += 1e-3
    M[..., 3, :] = torch.tensor([1e-3, 0.0, 0.0, 1.0], dtype=F64)
    P = S.project(M)
    S.check(P)
    assert (P[..., :3, 3] - t).abs().max() == 0
    assert (P[..., :3, :3] - R).abs().max() < 1e-2


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
def test_so3_check_errors():
    S = SO3()
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3, 3\)"):
        S.check(torch.zeros(5, 3, 4))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3, 3\)"):
        S.check(torch.zeros(3))
    R = so3.random(4, _gen(30), F64)
    R[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        S.check(R)
    with pytest.raises(ValueError, match="not orthonormal"):
        S.check(2.0 * so3.random(4, _gen(31), F64))
    with pytest.raises(ValueError, match=r"det = \+1"):
        S.check(-so3.random(4, _gen(32), F64))
    with pytest.raises(ValueError, match="floating-point"):
        S.check(torch.zeros(2, 3, 3, dtype=torch.long))
    # tolerance: float32 round-off passes, a 1e-3 perturbation does not
    R32 = so3.random(100, _gen(33))
    S.check(R32)
    with pytest.raises(ValueError, match="orthonormal"):
        SO3(atol=1e-6).check(R32 + 1e-3)


def test_se3_check_errors():
    S = SE3()
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4, 4\)"):
        S.check(so3.random(4, _gen(34), F64))  # (..., 3, 3) rotations are not poses
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4, 4\)"):
        S.check(torch.zeros(4))
    T = se3.random(5, _gen(35), F64)
    bad = T.clone()
    bad[2, 1, 3] = float("inf")
    with pytest.raises(ValueError, match="infinite"):
        S.check(bad)
    bad = T.clone()
    bad[0, 3, 0] = 0.5
    with pytest.raises(ValueError, match=r"last row \[0, 0, 0, 1\]"):
        S.check(bad)
    bad = T.clone()
    bad[..., :3, :3] *= 1.1
    with pytest.raises(ValueError, match="rotation block.*not orthonormal"):
        S.check(bad)
    with pytest.raises(ValueError, match="tangent"):
        SE3(tangent="left")
