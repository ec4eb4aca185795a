"""Reading point clouds and rigid transforms from the files registration users already have.

* :func:`read_points`: ``.ply`` / ``.off`` / ``.obj`` / ``.stl`` meshes or point clouds, ``.xyz`` /
  ``.txt`` / ``.pts`` whitespace text and ``.npy`` arrays -> ``(N, 3)`` float64 points. A file
  with faces is sampled uniformly by surface area to ``n`` points with a seeded RNG
  (``trimesh.sample.sample_surface``), so the same file and seed always give the same cloud; a
  file without faces (point-cloud ``.ply``, vertex-only ``.obj``, text, ``.npy``) is returned as
  its points, unchanged and in file order.
* :func:`check_points`: the validation every cloud passes, for arrays handed to the API (numpy,
  lists, torch tensors): shape ``(N, 3)``, finite, ``N >= 3``, not all points identical.
* :func:`read_transform` / :func:`write_transform`: a 4x4 pose ``T = [[R, t], [0, 1]]`` (it maps the
  source cloud onto the target, ``target ~= source @ R.T + t``) as 4 lines of 4 numbers; writes are
  atomic and at full precision, reads check that ``T`` is a rigid motion.

Every problem is an exception naming the file (or the array) and what is wrong with it: a missing
file is a ``FileNotFoundError``; an unsupported suffix, an unreadable or corrupt file, an empty
cloud, fewer than 3 points, NaN / inf coordinates, points that are not 3-D, a degenerate cloud or a
non-rigid transform are a ``ValueError``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from stochgen.checkpoint import write_atomic
from stochgen.spaces import se3

__all__ = ["read_points", "check_points", "read_transform", "write_transform", "check_transform",
           "POINT_SUFFIXES", "MESH_SUFFIXES", "TEXT_SUFFIXES"]

MESH_SUFFIXES = (".ply", ".off", ".obj", ".stl")  # read with trimesh; faces -> sampled, no faces -> points
TEXT_SUFFIXES = (".xyz", ".txt", ".pts")          # whitespace columns x y z [nx ny nz ...], '#' comments
POINT_SUFFIXES = MESH_SUFFIXES + TEXT_SUFFIXES + (".npy",)
RIGID_ATOL = 1e-4  # tolerance on |R^T R - I|, |det R - 1| and the last row of a transform read from a file
_POSE_EXTRA = 'pip install -e ".[pose]"'


def _trimesh():
    try:
        import trimesh
    except ImportError as exc:
        raise ImportError(f"reading mesh files needs trimesh: {_POSE_EXTRA} (or pip install trimesh)") from exc
    return trimesh


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------
def check_points(points, name: str = "source") -> np.ndarray:
    """``points`` as a float64 ``(N, 3)`` array, or a ``ValueError`` naming ``name`` and the problem.

    Accepts numpy arrays, nested lists and torch tensors (detached, moved to the CPU). Rejects
    anything that is not a 2-D array with 3 columns, fewer than 3 points, NaN / inf coordinates
    and clouds whose points are all identical (no extent, so no pose can be recovered).
    """
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of 3-D points (N, 3), got {type(points).__name__}: {exc}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be an array of 3-D points (N, 3), got an array of shape {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (no points)")
    if arr.shape[1] != 3:
        raise ValueError(f"{name} has {arr.shape[1]} column{'s' if arr.shape[1] != 1 else ''}; "
                         "registration needs 3-D points (N, 3)")
    if arr.shape[0] < 3:
        raise ValueError(f"{name} has only {arr.shape[0]} point{'s' if arr.shape[0] != 1 else ''}; "
                         "registration needs at least 3")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} point(s) with NaN or inf coordinates "
                         f"(the first is point {int(np.flatnonzero(bad)[0])})")
    if float(np.ptp(arr, axis=0).max()) == 0.0:
        raise ValueError(f"{name} is degenerate: all {arr.shape[0]} points are identical")
    return arr


def check_transform(T, name: str = "T", atol: float = RIGID_ATOL) -> np.ndarray:
    """``T`` as a float64 ``(4, 4)`` rigid motion, or a ``ValueError`` naming ``name`` and the problem.

    Checks the shape, finiteness, the last row ``[0, 0, 0, 1]`` and that ``R = T[:3, :3]`` is a
    rotation (``max |R^T R - I| <= atol`` and ``|det R - 1| <= atol``) with the core's
    :func:`stochgen.spaces.se3.check_pose`.
    """
    if isinstance(T, torch.Tensor):
        T = T.detach().cpu().numpy()
    try:
        arr = np.asarray(T, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 4x4 matrix, got {type(T).__name__}: {exc}") from None
    if arr.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 matrix [[R, t], [0, 0, 0, 1]], got shape {tuple(arr.shape)}")
    try:
        se3.check_pose(torch.from_numpy(arr), "T", atol=atol)
    except ValueError as exc:
        raise ValueError(f"{name} is not a rigid transform: {exc}") from None
    return arr


# ----------------------------------------------------------------------------------------------
# point clouds
# ----------------------------------------------------------------------------------------------
def _cannot(path, reason) -> ValueError:
    return ValueError(f"cannot read {path} as a point cloud: {reason}")


def _existing_file(path, what: str) -> Path:
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{what} path {path} is not a file")
    return path


def _read_text(path: Path) -> np.ndarray:
    """Whitespace (or comma) separated columns; blank lines and lines starting with ``#`` skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _cannot(path, "it is not a text file (binary or non-UTF-8 bytes)") from None
    rows, ncol = [], None
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.replace(",", " ").split()
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise _cannot(path, f"line {lineno} is not numbers: {line[:60]!r}") from None
        if ncol is None:
            ncol = len(values)
        elif len(values) != ncol:
            raise _cannot(path, f"line {lineno} has {len(values)} columns, earlier lines have {ncol}")
        rows.append(values)
    if not rows:
        return np.zeros((0, 3))
    arr = np.asarray(rows, dtype=np.float64)
    if ncol < 3:
        return arr  # check_points reports the column count
    return arr[:, :3]  # x y z; normals / colours / intensities after them are dropped


def _read_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise _cannot(path, "not a .npy file (it does not start with the \\x93NUMPY header)")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 -- numpy raises many kinds for a corrupt file
        raise _cannot(path, f"not a valid .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise _cannot(path, f"the .npy file holds {getattr(arr, 'dtype', type(arr).__name__)}, not real numbers")
    return arr


def _read_mesh(path: Path, n: int, seed: int) -> np.ndarray:
    trimesh = _trimesh()
    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:  # noqa: BLE001 -- trimesh's loaders raise many kinds for corrupt bytes
        raise _cannot(path, f"{type(exc).__name__}: {exc}") from None
    geoms = loaded.dump() if isinstance(loaded, trimesh.Scene) else [loaded]
    meshes = [g for g in geoms if isinstance(g, trimesh.Trimesh) and len(g.faces) > 0]
    if meshes:
        mesh = meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
        if not np.isfinite(mesh.vertices).all():
            raise ValueError(f"{path} has {int((~np.isfinite(mesh.vertices).all(axis=1)).sum())} vertices "
                             "with NaN or inf coordinates")
        if not float(mesh.area) > 0.0:
            raise ValueError(f"{path} is degenerate: its {len(mesh.faces)} faces have zero total area")
        points, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
        return np.asarray(points, dtype=np.float64)
    verts = [np.asarray(g.vertices, dtype=np.float64) for g in geoms if len(getattr(g, "vertices", ()))]
    if not verts:
        raise _cannot(path, "no vertices or faces found (empty or unrecognised content)")
    return np.concatenate(verts, axis=0)


def read_points(path, n: int = 2048, seed: int = 0) -> np.ndarray:
    """Points ``(N, 3)`` float64 from a point-cloud or mesh file.

    ``.ply`` / ``.off`` / ``.obj`` / ``.stl``: a mesh (a file with faces) is sampled uniformly by
    area to ``n`` points, seeded by ``seed`` (same file and seed -> same points); a file without
    faces gives its vertices. ``.xyz`` / ``.txt`` / ``.pts``: whitespace columns ``x y z`` or
    ``x y z nx ny nz`` (or more; only the first 3 are kept), blank and ``#`` lines skipped.
    ``.npy``: an ``(N, 3)`` array. Point clouds are returned as stored (``n`` is not applied).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for an
    unsupported suffix, an unreadable file, or a cloud that fails :func:`check_points`.
    """
    path = _existing_file(path, "point cloud")
    suffix = path.suffix.lower()
    if suffix not in POINT_SUFFIXES:
        raise ValueError(f"{path}: unsupported point cloud format {suffix or '(no suffix)'!r}; "
                         f"supported: {', '.join(POINT_SUFFIXES)}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 3:
        raise ValueError(f"n (points sampled from a mesh) must be an integer >= 3, got {n!r}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes)")
    if suffix == ".npy":
        arr = _read_npy(path)
    elif suffix in TEXT_SUFFIXES:
        arr = _read_text(path)
    else:
        arr = _read_mesh(path, int(n), seed)
    return check_points(arr, name=str(path))


# ----------------------------------------------------------------------------------------------
# transforms
# ----------------------------------------------------------------------------------------------
def read_transform(path) -> np.ndarray:
    """The 4x4 rigid transform stored in a text file (4 lines of 4 numbers), float64.

    Raises ``FileNotFoundError`` when missing and ``ValueError`` naming the file when it is not
    4x4 numbers, not finite, its last row is not ``0 0 0 1`` or its rotation block is not
    orthonormal with ``det = +1`` (within ``1e-4``; see :func:`check_transform`).
    """
    path = _existing_file(path, "transform")
    try:
        T = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except Exception as exc:  # noqa: BLE001 -- loadtxt raises ValueError or UnicodeDecodeError
        raise ValueError(f"cannot read {path} as a 4x4 transform: {exc}") from None
    if T.shape != (4, 4):
        raise ValueError(f"{path} must hold a 4x4 transform (4 lines of 4 numbers), got shape {tuple(T.shape)}")
    return check_transform(T, name=str(path))


def write_transform(path, T) -> str:
    """Write the rigid 4x4 ``T`` (numpy / torch / lists) as text at full precision (``%.17g``), atomically.

    ``T`` is validated first (:func:`check_transform`), so a non-rigid matrix is never written. The
    text goes to a temporary file in the same folder which is then renamed over ``path``
    (:func:`stochgen.checkpoint.write_atomic`). Returns ``path`` as a string.
    """
    arr = check_transform(T, name="T")
    return write_atomic(path, lambda tmp: np.savetxt(tmp, arr, fmt="%.17g"))
