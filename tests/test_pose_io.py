"""domains.pose.io: every supported format round-trips, every bad input is a named error."""
from __future__ import annotations

import numpy as np
import pytest
import torch

trimesh = pytest.importorskip("trimesh")

from domains.pose import io
from stochgen.spaces import se3, so3


def _cloud(n=50, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3))


def _on_unit_cube(points):
    """Each point has exactly one coordinate at +-0.5 (to 1e-9) and the others inside."""
    on_face = np.abs(np.abs(points) - 0.5) < 1e-9
    inside = np.abs(points) <= 0.5 + 1e-9
    return bool(on_face.any(axis=1).all() and inside.all())


# ----------------------------------------------------------------------------------------------
# round trips
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".ply", ".off", ".obj", ".stl"])
def test_mesh_is_sampled_on_its_surface(tmp_path, suffix):
    path = tmp_path / f"cube{suffix}"
    trimesh.creation.box(extents=(1.0, 1.0, 1.0)).export(path)
    pts = io.read_points(path, n=300, seed=3)
    assert pts.shape == (300, 3) and pts.dtype == np.float64
    assert _on_unit_cube(pts)
    # uniform by area: each of the 6 equal faces gets about 1/6 of the points (binomial sd ~6.5)
    counts = [int((np.abs(pts[:, a] - sign * 0.5) < 1e-9).sum()) for a in range(3) for sign in (-1, 1)]
    assert all(abs(c - 50) < 26 for c in counts), counts


def test_mesh_sampling_follows_area(tmp_path):
    path = tmp_path / "slab.stl"
    trimesh.creation.box(extents=(4.0, 1.0, 1.0)).export(path)  # the 4 long faces hold 16/18 of the area
    pts = io.read_points(path, n=900, seed=0)
    on_ends = int((np.abs(np.abs(pts[:, 0]) - 2.0) < 1e-9).sum())
    assert abs(on_ends - 100) < 35, on_ends


def test_mesh_sampling_is_seeded(tmp_path):
    path = tmp_path / "cube.ply"
    trimesh.creation.box().export(path)
    a = io.read_points(path, n=100, seed=7)
    b = io.read_points(path, n=100, seed=7)
    c = io.read_points(path, n=100, seed=8)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_point_cloud_ply_is_returned_exactly(tmp_path):
    pts = _cloud(40, 1)
    path = tmp_path / "cloud.ply"
    trimesh.PointCloud(pts).export(path)
    got = io.read_points(path, n=5)  # n only applies to meshes
    np.testing.assert_array_equal(got, pts.astype(np.float32))  # trimesh writes float32 vertices


def test_double_precision_ply_is_returned_exactly(tmp_path):
    pts = _cloud(20, 8)
    path = tmp_path / "double.ply"
    header = ("ply\nformat binary_little_endian 1.0\nelement vertex 20\n"
              "property double x\nproperty double y\nproperty double z\nend_header\n")
    path.write_bytes(header.encode() + pts.astype("<f8").tobytes())
    np.testing.assert_array_equal(io.read_points(path), pts)


def test_vertex_only_obj_is_a_point_cloud(tmp_path):
    pts = _cloud(6, 2)
    path = tmp_path / "verts.obj"
    path.write_text("".join(f"v {float(x)!r} {float(y)!r} {float(z)!r}\n" for x, y, z in pts))
    np.testing.assert_array_equal(io.read_points(path), pts)


def test_xyz_with_normals_and_comments(tmp_path):
    pts = _cloud(30, 3)
    normals = _cloud(30, 4)
    path = tmp_path / "scan.xyz"
    body = "\n".join(" ".join(repr(float(v)) for v in row) for row in np.hstack([pts, normals]))
    path.write_text("# x y z nx ny nz\n\n" + body + "\n")
    np.testing.assert_array_equal(io.read_points(path), pts)


@pytest.mark.parametrize("suffix", [".txt", ".pts"])
def test_whitespace_text_three_columns(tmp_path, suffix):
    pts = _cloud(12, 5)
    path = tmp_path / f"p{suffix}"
    np.savetxt(path, pts, fmt="%.17g")
    np.testing.assert_array_equal(io.read_points(path), pts)


def test_npy_round_trip(tmp_path):
    pts = _cloud(25, 6).astype(np.float32)
    path = tmp_path / "p.npy"
    np.save(path, pts)
    got = io.read_points(path)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, pts.astype(np.float64))


def test_suffix_is_case_insensitive(tmp_path):
    pts = _cloud(10, 7)
    path = tmp_path / "P.NPY"
    np.save(path.with_suffix(".npy"), pts)
    (tmp_path / "P.npy").rename(path)
    np.testing.assert_array_equal(io.read_points(path), pts)


# ----------------------------------------------------------------------------------------------
# bad files
# ----------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ply"):
        io.read_points(tmp_path / "nope.ply")


def test_unsupported_suffix_lists_the_supported(tmp_path):
    path = tmp_path / "cloud.pcd"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"cloud\.pcd.*unsupported.*'\.pcd'.*\.ply.*\.npy"):
        io.read_points(path)


@pytest.mark.parametrize("suffix", [".ply", ".stl", ".obj", ".off", ".npy", ".xyz"])
def test_corrupt_bytes(tmp_path, suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(b"\x00\x01\xffgarbage\x9c" * 20)
    with pytest.raises(ValueError, match=rf"cannot read .*bad\{suffix} as a point cloud"):
        io.read_points(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.xyz"
    path.write_text("")
    with pytest.raises(ValueError, match=r"empty\.xyz is empty"):
        io.read_points(path)


def test_comments_only_is_empty(tmp_path):
    path = tmp_path / "c.xyz"
    path.write_text("# nothing here\n\n")
    with pytest.raises(ValueError, match=r"c\.xyz is empty"):
        io.read_points(path)


def test_two_points(tmp_path):
    path = tmp_path / "two.npy"
    np.save(path, _cloud(2))
    with pytest.raises(ValueError, match=r"two\.npy has only 2 points; registration needs at least 3"):
        io.read_points(path)


def test_nan_coordinates(tmp_path):
    pts = _cloud(10)
    pts[4, 1] = np.nan
    path = tmp_path / "nan.xyz"
    np.savetxt(path, pts)
    with pytest.raises(ValueError, match=r"nan\.xyz has 1 point\(s\) with NaN or inf.*point 4"):
        io.read_points(path)


def test_inf_in_mesh_vertices(tmp_path):
    path = tmp_path / "inf.off"
    path.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\ninf 1 0\n3 0 1 2\n")
    with pytest.raises(ValueError, match=r"inf\.off has 1 vertices with NaN or inf"):
        io.read_points(path)


@pytest.mark.parametrize("suffix", [".npy", ".xyz"])
def test_two_d_points(tmp_path, suffix):
    path = tmp_path / f"flat{suffix}"
    pts = _cloud(10)[:, :2]
    np.save(path, pts) if suffix == ".npy" else np.savetxt(path, pts)
    with pytest.raises(ValueError, match=r"has 2 columns; registration needs 3-D points \(N, 3\)"):
        io.read_points(path)


def test_ragged_text(tmp_path):
    path = tmp_path / "ragged.xyz"
    path.write_text("0 0 0\n1 1 1\n2 2\n")
    with pytest.raises(ValueError, match=r"cannot read .*ragged\.xyz.*line 3 has 2 columns"):
        io.read_points(path)


def test_degenerate_cloud(tmp_path):
    path = tmp_path / "same.npy"
    np.save(path, np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"same\.npy is degenerate: all 5 points are identical"):
        io.read_points(path)


def test_zero_area_mesh(tmp_path):
    path = tmp_path / "flat.off"
    path.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n")
    with pytest.raises(ValueError, match=r"flat\.off is degenerate: .*zero total area"):
        io.read_points(path)


# ----------------------------------------------------------------------------------------------
# check_points on arrays
# ----------------------------------------------------------------------------------------------
def test_check_points_accepts_lists_and_tensors():
    pts = _cloud(8)
    np.testing.assert_array_equal(io.check_points(pts.tolist()), pts)
    got = io.check_points(torch.tensor(pts, dtype=torch.float32))
    assert got.dtype == np.float64 and got.shape == (8, 3)
    np.testing.assert_allclose(got, pts, atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((0, 3)), "target is empty"),
    (np.zeros(3), r"shape \(3,\)"),
    (np.zeros((4, 3, 1)), r"shape \(4, 3, 1\)"),
    (np.arange(8.0).reshape(4, 2), "target has 2 columns"),
    (np.arange(6.0).reshape(2, 3), "target has only 2 points"),
    (np.array([[0.0, 0, 0], [1, 1, np.inf], [2, 0, 1]]), "NaN or inf"),
    (np.full((4, 3), 2.5), "target is degenerate"),
    ([["a", "b", "c"]] * 3, "target must be an array of 3-D points"),
])
def test_check_points_rejects(bad, message):
    with pytest.raises(ValueError, match=message):
        io.check_points(bad, name="target")


# ----------------------------------------------------------------------------------------------
# transforms
# ----------------------------------------------------------------------------------------------
def _pose(seed=0):
    return se3.random(generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()


def test_transform_round_trip_is_exact(tmp_path):
    T = _pose(1)
    path = tmp_path / "T.txt"
    assert io.write_transform(path, T) == str(path)
    np.testing.assert_array_equal(io.read_transform(path), T)
    assert [p.name for p in tmp_path.iterdir()] == ["T.txt"]  # no temporary left behind
    np.testing.assert_array_equal(io.read_transform(io.write_transform(tmp_path / "U.txt", torch.from_numpy(T))), T)


def test_write_transform_replaces_and_refuses_non_rigid(tmp_path):
    path = tmp_path / "T.txt"
    io.write_transform(path, _pose(2))
    before = path.read_text()
    S = np.diag([2.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="not orthonormal"):
        io.write_transform(path, S)
    assert path.read_text() == before  # the earlier file is untouched


@pytest.mark.parametrize("matrix, message", [
    (np.diag([1.0, 1.0, 1.1, 1.0]), "not orthonormal"),
    (np.diag([1.0, 1.0, -1.0, 1.0]), "det = -1"),
    (np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0.5, 1]]), r"last row \[0, 0, 0, 1\]"),
    (np.eye(4) * np.array([1, 1, 1, np.nan]), "NaN"),
])
def test_read_transform_rejects(tmp_path, matrix, message):
    path = tmp_path / "bad.txt"
    np.savetxt(path, matrix)
    with pytest.raises(ValueError, match=rf"bad\.txt(.|\n)*{message}|{message}(.|\n)*bad\.txt"):
        io.read_transform(path)


def test_read_transform_wrong_shape_and_text(tmp_path):
    path = tmp_path / "T3.txt"
    np.savetxt(path, np.eye(3))
    with pytest.raises(ValueError, match=r"T3\.txt must hold a 4x4 transform.*\(3, 3\)"):
        io.read_transform(path)
    junk = tmp_path / "junk.txt"
    junk.write_text("hello world\n")
    with pytest.raises(ValueError, match=r"cannot read .*junk\.txt as a 4x4 transform"):
        io.read_transform(junk)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        io.read_transform(tmp_path / "missing.txt")


def test_read_transform_tolerates_rounding(tmp_path):
    R = so3.exp(torch.tensor([0.3, 0.2, -0.1], dtype=torch.float64)).numpy()
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, [1.0, 2.0, 3.0]
    path = tmp_path / "six_digits.txt"
    np.savetxt(path, T, fmt="%.6f")  # 1e-6 rounding is well inside the 1e-4 tolerance
    np.testing.assert_allclose(io.read_transform(path), T, atol=1e-6)
