"""The pose shape library: the held-out deny-list, normalisation, surface sampling, the pair recipe."""
import os

import numpy as np
import pytest

pytest.importorskip("trimesh")
import torch  # noqa: E402

from domains.pose import shapes as S  # noqa: E402
from stochgen.spaces import so3  # noqa: E402

DENIED = ["bunny", "Bunny", "BUNNY00.off", "bunny00", "data/meshes/bunny00.off", "bunny.obj", "armadillo",
          "Armadillo.off", "ChineseDragon-10kv", "chinesedragon", "elephant", "elephant-with-holes",
          "refined_elephant", "cow", "Cow.obj", "camel", "airplane", "AirPlane.ply", "ant", "ant.ply"]
HELD_WORDS = ("bunny", "armadillo", "chinesedragon", "dragon", "elephant", "cow", "camel", "airplane", "ant")
HAVE_CGAL = os.path.isfile(S.CGAL_TARBALL)


@pytest.mark.parametrize("name", DENIED)
def test_load_shape_refuses_held_out(name):
    with pytest.raises(ValueError, match="held out"):
        S.load_shape(name)
    assert S.is_held_out(name)


def test_held_out_constant_names_the_evaluation_meshes():
    for word in ("bunny", "armadillo", "chinesedragon", "elephant", "cow", "camel", "airplane", "ant"):
        assert word in S.HELD_OUT


@pytest.mark.parametrize("include_files", [True, False])
def test_list_shapes_has_no_held_out_and_no_bench_shapes(include_files):
    names = S.list_shapes(include_files=include_files)
    assert len(names) >= len(S.PROCEDURAL_FAMILIES) * S.PROCEDURAL_PER_FAMILY
    assert len(set(names)) == len(names)
    for name in names:
        letters = "".join(c for c in name.lower() if c.isalpha())
        assert not any(w in letters for w in HELD_WORDS), name
        assert not S.is_held_out(name)
    lowered = {n.lower() for n in names}
    assert not lowered & {b.lower() for b in S.BENCH_SHAPES}


def test_file_table_has_no_held_out_member():
    for name, (_, member) in S._FILE_SHAPES.items():
        assert not S.is_held_out(name) and not S.is_held_out(member), (name, member)


@pytest.mark.skipif(not HAVE_CGAL, reason="libcgal-demo not installed")
def test_cgal_extraction_never_reads_held_out_members(tmp_path):
    dest = tmp_path / "bunny00.off"
    with pytest.raises(FileNotFoundError):
        S._extract_cgal({"data/meshes/bunny00.off": str(dest), "data/meshes/armadillo.off": str(tmp_path / "a")})
    assert list(tmp_path.iterdir()) == []


def test_missing_package_is_skipped_with_a_warning(monkeypatch):
    monkeypatch.setattr(S, "CGAL_TARBALL", "/nonexistent/data.tar.gz")
    with pytest.warns(UserWarning, match="libcgal-demo"):
        names = S.list_shapes()
    assert "fandisk" not in names and "box-0" in names
    with pytest.raises(FileNotFoundError, match="libcgal-demo"):
        S._file_path("fandisk")


def _check_normalised(mesh):
    lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    assert abs(np.linalg.norm(hi - lo) - 1.0) < 1e-9
    assert np.abs(0.5 * (lo + hi)).max() < 1e-9
    assert np.isfinite(mesh.vertices).all() and mesh.area > 0


@pytest.mark.parametrize("family", S.PROCEDURAL_FAMILIES)
def test_procedural_shapes_are_normalised_and_seeded(family):
    for k in (0, 1, 1000):
        a = S.load_shape(f"{family}-{k}")
        _check_normalised(a)
        b = S.load_shape(f"{family}-{k}")
        assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
        a.vertices[:] = 0.0  # a copy: the cache is untouched
        _check_normalised(S.load_shape(f"{family}-{k}"))


def test_procedural_shapes_differ_by_seed():
    a, b = S.load_shape("union-0"), S.load_shape("union-1")
    assert a.vertices.shape != b.vertices.shape or not np.allclose(a.vertices, b.vertices)


@pytest.mark.skipif(not HAVE_CGAL, reason="libcgal-demo not installed")
@pytest.mark.parametrize("name", ["fandisk", "lion", "bull"])
def test_file_shapes_are_normalised(name):
    _check_normalised(S.load_shape(name))


def test_unknown_shape_raises():
    for name in ("nosuchshape", "box", "box-x", "sphere-1"):
        with pytest.raises(ValueError, match="unknown shape"):
            S.load_shape(name)


def test_sample_surface_lies_on_box_faces_and_is_area_uniform():
    import trimesh

    ext = np.array([1.0, 2.0, 3.0])
    box = trimesh.creation.box(extents=ext)
    p = S.sample_surface(box, 20000, np.random.default_rng(0))
    assert p.shape == (20000, 3) and p.dtype == np.float64
    half = ext / 2
    assert (np.abs(p) <= half + 1e-12).all()
    on_face = np.abs(np.abs(p) - half) < 1e-12  # (n, 3): on the face normal to axis i
    assert on_face.any(axis=1).all()
    # areas: faces normal to x 2*6, y 2*3, z 2*2 of 22
    frac = on_face.mean(axis=0)
    assert np.allclose(frac, np.array([12, 6, 4]) / 22, atol=0.015)
    assert np.array_equal(p, S.sample_surface(box, 20000, np.random.default_rng(0)))


def test_sample_surface_on_a_procedural_mesh_lies_on_its_triangles():
    mesh = S.load_shape("extrude-3")
    rng = np.random.default_rng(1)
    p = S.sample_surface(mesh, 500, rng)
    # each point is in the plane of some triangle and inside it (barycentric coordinates >= 0)
    tri = np.asarray(mesh.triangles)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    ok = np.zeros(len(p), dtype=bool)
    for f in range(len(tri)):
        d = np.abs((p - a[f]) @ n[f])
        v0, v1, v2 = b[f] - a[f], c[f] - a[f], p - a[f]
        d00, d01, d11 = v0 @ v0, v0 @ v1, v1 @ v1
        d20, d21 = v2 @ v0, v2 @ v1
        den = d00 * d11 - d01 * d01
        v = (d11 * d20 - d01 * d21) / den
        w = (d00 * d21 - d01 * d20) / den
        ok |= (d < 1e-12) & (v >= -1e-9) & (w >= -1e-9) & (v + w <= 1 + 1e-9)
    assert ok.all()


def _rt(T):
    return T[:3, :3], T[:3, 3]


@pytest.mark.parametrize("angle", [0.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 150.0, 179.9, 180.0])
def test_make_pair_pose_maps_source_onto_target_exactly(angle):
    mesh = S.load_shape("blob-2")
    src, tgt, T = S.make_pair(mesh, angle, np.random.default_rng(3), n=300, keep=1.0, noise=0.0,
                              max_trans=0.1, independent=False)
    R, t = _rt(T)
    assert src.shape == tgt.shape == (300, 3) and T.shape == (4, 4)
    assert np.allclose(T[3], [0, 0, 0, 1], atol=0)
    assert np.abs(R.T @ R - np.eye(3)).max() < 1e-12 and abs(np.linalg.det(R) - 1) < 1e-12
    assert np.abs(tgt - (src @ R.T + t)).max() < 1e-9
    got = float(torch.rad2deg(so3.angle(torch.from_numpy(R))))
    assert abs(got - angle) < 1e-6
    assert np.linalg.norm(t) <= 0.1 + 1e-15


def test_make_pair_uniform_rotation_and_ball_translation():
    mesh = S.load_shape("box-1")
    rng = np.random.default_rng(5)
    angles, trans = [], []
    for _ in range(400):
        _, _, T = S.make_pair(mesh, None, rng, n=8, keep=1.0, noise=0.0, max_trans=0.2)
        angles.append(float(so3.angle(torch.from_numpy(T[:3, :3]))))
        trans.append(T[:3, 3])
    angles, trans = np.array(angles), np.array(trans)
    # Haar measure: the angle has density (1 - cos th) / pi, mean pi/2 + 2/pi
    assert abs(angles.mean() - (np.pi / 2 + 2 / np.pi)) < 0.08
    r = np.linalg.norm(trans, axis=1)
    assert r.max() <= 0.2 and abs(np.mean(r <= 0.1) - 1 / 8) < 0.05  # uniform in the ball
    assert (np.abs(trans) > 0.2 / np.sqrt(3)).any()  # not confined to a smaller cube


def _separable(kept, dropped) -> bool:
    """Whether a plane strictly separates two point sets (a linear-programming feasibility test)."""
    from scipy.optimize import linprog

    # w . p - b >= 1 for kept, <= -1 for dropped
    A = np.concatenate([np.hstack([-kept, np.ones((len(kept), 1))]), np.hstack([dropped, -np.ones((len(dropped), 1))])])
    res = linprog(np.zeros(4), A_ub=A, b_ub=-np.ones(len(A)), bounds=[(None, None)] * 4, method="highs")
    return res.status == 0


@pytest.mark.parametrize("n,keep", [(1000, 0.7), (101, 0.7), (257, 0.6), (64, 0.9)])
def test_crop_keeps_the_points_furthest_along_one_direction(n, keep):
    mesh = S.load_shape("union-2")
    src, tgt, T = S.make_pair(mesh, 90.0, np.random.default_rng(n), n=n, keep=keep, noise=0.0, independent=False)
    assert len(tgt) in (int(np.floor(keep * n)), int(np.ceil(keep * n)))
    R, t = _rt(T)
    moved = src @ R.T + t
    # which moved points were kept (exact matches)
    d = np.linalg.norm(moved[:, None, :] - tgt[None, :, :], axis=-1)
    mask = d.min(axis=1) < 1e-9
    assert mask.sum() == len(tgt)
    assert _separable(moved[mask], moved[~mask])


def test_separability_check_can_fail():
    rng = np.random.default_rng(0)
    inner = 0.1 * rng.standard_normal((50, 3))
    shell = rng.standard_normal((50, 3))
    shell /= np.linalg.norm(shell, axis=1, keepdims=True)
    assert not _separable(inner, shell) and _separable(inner, shell + 5.0)


def test_crop_furthest_directly():
    rng = np.random.default_rng(0)
    p = rng.standard_normal((200, 3))
    d = np.array([0.0, 0.6, 0.8])
    idx = S.crop_furthest(p, 0.25, d)
    assert len(idx) == 50 and (np.diff(idx) > 0).all()
    drop = np.setdiff1d(np.arange(200), idx)
    assert (p[idx] @ d).min() >= (p[drop] @ d).max()


def test_make_pair_noise_and_independent_target():
    mesh = S.load_shape("bumpy-0")
    src, tgt, T = S.make_pair(mesh, 45.0, np.random.default_rng(0), n=512, keep=1.0, noise=0.0)
    R, t = _rt(T)
    back = (tgt - t) @ R  # on the mesh's surface, but not the source points
    assert not np.allclose(np.sort(back[:, 0]), np.sort(src[:, 0]))
    _, tgt0, _ = S.make_pair(mesh, 45.0, np.random.default_rng(0), n=512, keep=1.0, noise=0.0)
    _, tgt1, _ = S.make_pair(mesh, 45.0, np.random.default_rng(0), n=512, keep=1.0, noise=0.01)
    res = tgt1 - tgt0
    assert abs(res.std() - 0.01) < 0.001 and abs(res.mean()) < 0.001


def test_make_pair_is_seeded():
    mesh = S.load_shape("extrude-1")
    a = S.make_pair(mesh, 120.0, np.random.default_rng(42))
    b = S.make_pair(mesh, 120.0, np.random.default_rng(42))
    c = S.make_pair(mesh, 120.0, np.random.default_rng(43))
    assert a[0].shape == (1024, 3) and a[1].shape == (717, 3)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[2], c[2])


def test_random_training_pair_is_seeded_and_in_range():
    shapes = ["box-0", "union-1", "extrude-2", "blob-3"]
    for seed in range(6):
        s1, t1, T1 = S.random_training_pair(np.random.default_rng(seed), shapes, n=200)
        s2, t2, T2 = S.random_training_pair(np.random.default_rng(seed), shapes, n=200)
        assert np.array_equal(s1, s2) and np.array_equal(t1, t2) and np.array_equal(T1, T2)
        assert s1.shape == (200, 3) and 0.6 * 200 - 1 <= len(t1) <= 0.9 * 200 + 1
        assert np.abs(T1[:3, :3].T @ T1[:3, :3] - np.eye(3)).max() < 1e-12
    with pytest.raises(ValueError, match="held out"):
        S.random_training_pair(np.random.default_rng(0), ["bunny"])
    # meshes work as well as names
    s, t, T = S.random_training_pair(0, [S.load_shape("cone-1")], n=50)
    assert s.shape == (50, 3)
