"""domains.pose.geometry: exact errors, the pose convention, normals, fit scores and ICP."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from domains.pose import geometry as G
from stochgen.spaces import se3, so3

F64 = torch.float64


def _rot_z(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=F64)


def _rot(axis, deg):
    axis = torch.as_tensor(axis, dtype=F64)
    return so3.exp(axis / axis.norm() * math.radians(deg))


def _pose(R, t):
    return se3.from_rt(R, torch.as_tensor(t, dtype=F64))


def _bumpy_box(n, seed):
    """Uniform samples on a 1.0 x 0.6 x 0.3 box (area-weighted faces) with a bump on +z: no symmetry."""
    rng = np.random.default_rng(seed)
    half = np.array([1.0, 0.6, 0.3]) / 2
    area = 4 * np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]])
    face = rng.choice(6, size=n, p=np.repeat(area, 2) / (2 * area.sum()))
    axis, sign = face // 2, np.where(face % 2 == 0, 1.0, -1.0)
    p = rng.uniform(-1, 1, size=(n, 3)) * half
    p[np.arange(n), axis] = sign * half[axis]
    top = (axis == 2) & (sign > 0)
    p[top, 2] += 0.15 * np.exp(-((p[top, 0] - 0.2) ** 2 + (p[top, 1] - 0.1) ** 2) / 0.02)
    return torch.from_numpy(p)


T_TRUE = _pose(_rot([0.3, -0.5, 0.8], 55.0), [0.1, -0.2, 0.3])
OFF = _pose(_rot([1.0, 2.0, -1.0], 10.0), [0.05, 0.0, 0.0])  # 10 degrees and 0.05 off


def _crop(points, fraction, direction=(1.0, 0.3, 0.2)):
    """The ``fraction`` of ``points`` with the smallest projection on ``direction`` (a planar cut)."""
    keep = (points @ torch.tensor(direction, dtype=points.dtype)).argsort()[: round(fraction * len(points))]
    return points[keep]


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
def test_errors_exact_on_constructed_rotations():
    I = torch.eye(4, dtype=F64)
    rot, trans = G.errors(_pose(_rot_z(30.0), [0.0, 0.0, 0.0]), I)
    assert isinstance(rot, float) and abs(rot - 30.0) < 1e-9 and trans == 0.0
    rot, _ = G.errors(_pose(_rot([1.0, -2.0, 0.5], 180.0), [0, 0, 0]), I)
    assert abs(rot - 180.0) < 1e-6
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=F64))  # exactly 180 about x
    assert abs(G.errors(flip, I)[0] - 180.0) < 1e-6
    rot, _ = G.errors(_pose(_rot([0.2, 0.1, 1.0], 1e-4), [0, 0, 0]), I)
    assert abs(rot - 1e-4) < 1e-10
    _, trans = G.errors(_pose(_rot_z(5.0), [3.0, 4.0, 0.0]), _pose(_rot_z(5.0), [0.0, 0.0, 12.0]))
    assert abs(trans - 13.0) < 1e-12


def test_errors_is_relative_angle_and_batched():
    A = _pose(_rot_z(40.0), [1.0, 0.0, 0.0])
    B = _pose(_rot_z(-25.0), [1.0, 2.0, 0.0])
    rot, trans = G.errors(A, B)
    assert abs(rot - 65.0) < 1e-9 and abs(trans - 2.0) < 1e-12
    batch = torch.stack([A, B, A @ B])
    rots, transes = G.errors(batch.numpy(), B.numpy())  # numpy in, broadcast against one pose
    assert isinstance(rots, np.ndarray) and rots.shape == (3,) and transes.shape == (3,)
    np.testing.assert_allclose(rots, [65.0, 0.0, 40.0], atol=1e-9)
    np.testing.assert_allclose(transes, [2.0, 0.0, np.linalg.norm((A @ B)[:3, 3] - B[:3, 3])], atol=1e-12)
    r32, _ = G.errors(A.float(), B.float())
    assert abs(r32 - 65.0) < 1e-4
    with pytest.raises(ValueError, match=r"T_est must be 4x4 poses"):
        G.errors(torch.eye(3), B)


# ----------------------------------------------------------------------------------------------
# the pose convention
# ----------------------------------------------------------------------------------------------
def test_pose_maps_source_onto_target_and_group_ops_are_matrix_products():
    src = _bumpy_box(50, 0)
    R, t = se3.to_rt(T_TRUE)
    target = src @ R.T + t
    torch.testing.assert_close(se3.apply(T_TRUE, src), target, rtol=0, atol=1e-15)
    # refine recovers T itself (not its inverse) from data built with target = source @ R.T + t
    got = G.refine(src, target, OFF @ T_TRUE, iters=50)
    assert G.errors(got, T_TRUE)[0] < 1e-6
    A, B = OFF, T_TRUE
    torch.testing.assert_close(se3.compose(A, B), A @ B, rtol=0, atol=1e-15)
    torch.testing.assert_close(se3.apply(se3.compose(A, B), src), se3.apply(A, se3.apply(B, src)), rtol=0, atol=1e-14)
    torch.testing.assert_close(se3.inverse(B), torch.linalg.inv(B), rtol=0, atol=1e-14)
    torch.testing.assert_close(se3.apply(se3.inverse(B), target), src, rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------------------------
# normals
# ----------------------------------------------------------------------------------------------
def test_normals_on_a_sphere_are_radial_and_outward():
    g = torch.Generator().manual_seed(0)
    p = torch.randn(800, 3, generator=g, dtype=F64)
    p = 0.7 * p / p.norm(dim=1, keepdim=True) + torch.tensor([2.0, -1.0, 0.5], dtype=F64)
    n = G.estimate_normals(p, k=16)
    assert n.shape == (800, 3) and n.dtype == F64
    torch.testing.assert_close(n.norm(dim=1), torch.ones(800, dtype=F64))
    radial = p - torch.tensor([2.0, -1.0, 0.5], dtype=F64)
    cos = (n * radial).sum(1) / radial.norm(dim=1)
    assert float(cos.min()) > 0.99  # radial and consistently outward (away from the centroid)


def test_normals_on_box_faces_follow_the_face():
    p = _bumpy_box(3000, 1)
    n = G.estimate_normals(p, k=10)
    # points on the -y face, well away from the edges: normal = (0, -1, 0)
    inner = (p[:, 1] == -0.3) & (p[:, 0].abs() < 0.4) & (p[:, 2].abs() < 0.08)
    assert int(inner.sum()) > 20
    assert float(-n[inner, 1].min()) > 0.999


# ----------------------------------------------------------------------------------------------
# fit scores
# ----------------------------------------------------------------------------------------------
def _nearest_brute(x, y):
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist").min(dim=-1).values


def test_fit_score_matches_brute_force_in_both_directions():
    src = _bumpy_box(300, 2)
    tgt = _crop(se3.apply(T_TRUE, _bumpy_box(300, 3)), 0.7)
    poses = torch.stack([T_TRUE, OFF @ T_TRUE])
    s = G.fit_score(src, tgt, poses, inlier=0.05)
    moved = se3.apply(poses, src)
    d_src = torch.stack([_nearest_brute(m, tgt) for m in moved])
    d_tgt = torch.stack([_nearest_brute(tgt, m) for m in moved])
    torch.testing.assert_close(s["source_to_target"], d_src.mean(-1), rtol=0, atol=1e-12)
    torch.testing.assert_close(s["target_to_source"], d_tgt.mean(-1), rtol=0, atol=1e-12)
    torch.testing.assert_close(s["chamfer"], 0.5 * (d_src.mean(-1) + d_tgt.mean(-1)), rtol=0, atol=1e-12)
    torch.testing.assert_close(s["source_inlier"], (d_src <= 0.05).to(F64).mean(-1))
    torch.testing.assert_close(s["target_inlier"], (d_tgt <= 0.05).to(F64).mean(-1))
    rmse = torch.stack([d[d <= 0.05].pow(2).mean().sqrt() for d in d_tgt])
    torch.testing.assert_close(s["target_rmse"], rmse, rtol=0, atol=1e-12)
    single = G.fit_score(src, tgt, T_TRUE, inlier=0.05)
    assert single["target_inlier"].shape == () and float(single["target_inlier"]) == float(s["target_inlier"][0])
    # the target-only form (hypothesis ranking) gives the same target values and nothing else
    t_only = G.fit_score(src, tgt, poses, inlier=0.05, directions="target")
    assert set(t_only) == {"target_to_source", "target_inlier", "target_rmse"}
    for k, v in t_only.items():
        torch.testing.assert_close(v, s[k], rtol=0, atol=0)
    with pytest.raises(ValueError, match="directions"):
        G.fit_score(src, tgt, poses, directions="source")


def test_target_inlier_ranks_poses_under_partial_overlap():
    src = _bumpy_box(1000, 4)
    tgt = _crop(se3.apply(T_TRUE, src), 0.6)  # exact points, 40% of the source cut away
    s = G.fit_score(src, tgt, torch.stack([T_TRUE, OFF @ T_TRUE]), inlier=0.01)
    assert float(s["target_inlier"][0]) == 1.0 and float(s["target_to_source"][0]) < 1e-12
    assert float(s["target_inlier"][1]) < 0.5
    # the one-way source score misjudges the true pose: the cut-away 40% is far from the target
    assert 0.55 < float(s["source_inlier"][0]) < 0.65
    assert G.SELECT_SCORE == "target_inlier"


# ----------------------------------------------------------------------------------------------
# refine (ICP)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", G.METHODS)
def test_refine_recovers_an_exact_copy(method):
    src = _bumpy_box(1000, 5)
    tgt = se3.apply(T_TRUE, src)
    T0 = OFF @ T_TRUE
    assert G.errors(T0, T_TRUE)[0] > 9.99
    T = G.refine(src, tgt, T0, iters=30, method=method)
    rot, trans = G.errors(T, T_TRUE)
    assert T.shape == (4, 4) and T.dtype == F64
    assert rot < 1e-3 and trans < 1e-5, (rot, trans)
    se3.check_pose(T)


def test_refine_converges_on_a_cropped_independent_resample():
    src = _bumpy_box(1024, 6)
    tgt = _crop(se3.apply(T_TRUE, _bumpy_box(1024, 7)), 0.7)  # different samples, 70% of the surface
    T0 = OFF @ T_TRUE
    T = G.refine(src, tgt, T0, iters=30, method="point_to_plane")
    rot, trans = G.errors(T, T_TRUE)
    assert rot < 1.0 and trans < 0.01, (rot, trans)
    before, after = G.fit_score(src, tgt, torch.stack([T0, T]))["target_to_source"]
    assert float(after) < 0.6 * float(before)


def test_refine_far_from_the_origin():
    """Rotation increments pivot about the target centroid, so a cloud 100 units away still converges."""
    T_far = _pose(_rot([0.3, -0.5, 0.8], 55.0), [100.0, 50.0, -30.0])
    src = _bumpy_box(1024, 6)
    tgt = _crop(se3.apply(T_far, _bumpy_box(1024, 7)), 0.7)
    T0 = T_far @ OFF  # 10 degrees and 0.05 off about the object's own origin
    rot, trans = G.errors(G.refine(src, tgt, T0, iters=30), T_far)
    assert rot < 1.0 and trans < 0.01, (rot, trans)


@pytest.mark.parametrize("method", G.METHODS)
def test_batched_refine_equals_each_start_alone(method):
    src = _bumpy_box(400, 8)
    tgt = _crop(se3.apply(T_TRUE, _bumpy_box(400, 9)), 0.7)
    g = torch.Generator().manual_seed(1)
    starts = se3.exp(0.15 * torch.randn(4, 6, generator=g, dtype=F64)) @ T_TRUE
    normals = G.estimate_normals(src)
    batch = G.refine(src, tgt, starts, iters=15, method=method, source_normals=normals)
    assert batch.shape == (4, 4, 4)
    alone = torch.stack([G.refine(src, tgt, s, iters=15, method=method, source_normals=normals) for s in starts])
    torch.testing.assert_close(batch, alone, rtol=0, atol=1e-12)
    assert (batch - starts).abs().amax() > 1e-3  # they did move


def test_refine_accepts_numpy_and_float32():
    src = _bumpy_box(600, 10)
    tgt = se3.apply(T_TRUE, src)
    T0 = OFF @ T_TRUE
    T = G.refine(src.numpy(), tgt.numpy(), T0.numpy())
    assert isinstance(T, torch.Tensor) and T.dtype == F64 and G.errors(T, T_TRUE)[0] < 1e-3
    T32 = G.refine(src.float(), tgt.float(), T0.float())
    assert T32.dtype == torch.float32
    rot, trans = G.errors(T32, T_TRUE)
    assert rot < 0.01 and trans < 1e-4, (rot, trans)


def test_refine_stops_without_matches_and_with_zero_iterations():
    src = _bumpy_box(200, 11)
    tgt = se3.apply(T_TRUE, src) + torch.tensor([5.0, 0.0, 0.0], dtype=F64)  # every match is > 4 away
    T0 = OFF @ T_TRUE
    assert torch.equal(G.refine(src, tgt, T0, max_dist=1.0), T0)
    assert torch.equal(G.refine(src, tgt, T0, iters=0), T0)
    assert not torch.equal(G.refine(src, tgt, T0, iters=1), T0)


def test_refine_rejects_bad_arguments():
    src = _bumpy_box(50, 12)
    with pytest.raises(ValueError, match="method must be one of point_to_plane, point_to_point"):
        G.refine(src, src, torch.eye(4, dtype=F64), method="plane")
    with pytest.raises(ValueError, match=r"trim .* must be in \(0, 1\]"):
        G.refine(src, src, torch.eye(4, dtype=F64), trim=0.0)
    with pytest.raises(ValueError, match=r"T0 must be a 4x4 pose or a batch \(K, 4, 4\)"):
        G.refine(src, src, torch.eye(3, dtype=F64))
    with pytest.raises(ValueError, match=r"target must be points of shape \(N, 3\)"):
        G.refine(src, src[:, :2], torch.eye(4, dtype=F64))
    with pytest.raises(ValueError, match="source_normals must have the shape of source"):
        G.refine(src, src, torch.eye(4, dtype=F64), source_normals=src[:10])


def test_torch_nearest_neighbours_equal_the_kd_trees():
    """The three neighbour back-ends (pykdtree when installed, scipy's cKDTree, chunked cdist) agree."""
    from scipy.spatial import cKDTree

    ref = _bumpy_box(500, 13)
    x = torch.randn(3, 70, 3, generator=torch.Generator().manual_seed(2), dtype=F64) * 0.4
    tree = G._Nearest(ref)
    scipy_tree = G._Nearest(ref)
    scipy_tree.fast, scipy_tree.tree = None, cKDTree(ref.numpy())
    brute = G._Nearest(ref)
    brute.tree = brute.fast = None  # the path used off the CPU
    for k in (1, 5):
        (d1, i1), (d2, i2), (d3, i3) = tree.query(x, k), brute.query(x, k), scipy_tree.query(x, k)
        assert d1.shape == x.shape[:-1] + ((k,) if k > 1 else ())
        assert torch.equal(i1, i2) and torch.equal(i3, i2)
        torch.testing.assert_close(d1, d2, rtol=0, atol=1e-14)
        torch.testing.assert_close(d3, d2, rtol=0, atol=1e-14)
    torch.testing.assert_close(tree.query(x)[0], _nearest_brute(x, ref), rtol=0, atol=1e-14)
