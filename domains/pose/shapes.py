"""The pose domain's shape library and its pair recipe: meshes to register, all offline.

Shapes
------
* **File meshes** from Debian packages, read where Debian puts them:
  ``libcgal-demo`` (``/usr/share/doc/libcgal-dev/data.tar.gz``, members ``data/meshes/*``; the
  members used are extracted once to a cache folder, see :func:`cache_dir`) and ``opencv-doc``
  (``examples/surface_matching/data/parasaurolophus_6700.ply``). A file shape whose package is
  absent is skipped by :func:`list_shapes` with a warning; :func:`load_shape` raises
  ``FileNotFoundError`` with the install hint.
* **Procedural shapes**, seeded by the number in their name (``"union-3"``), always available:
  trimesh primitives with random proportions (box, cylinder, cone, capsule, torus), deformed
  ellipsoids (``blob``), bumpy spheres (``bumpy``), unions of boxes and ellipsoids (``union``,
  faces inside another part removed) and tapered extrusions of random star-shaped polygons
  (``extrude``). The last four have no rotational symmetry, so a registration model has to
  learn to tell orientations apart.

Every shape comes back normalised: bounding-box centre at the origin, bounding-box diagonal 1.

Held out
--------
:data:`HELD_OUT` names meshes kept for an independent evaluation (bunny, armadillo,
ChineseDragon, elephant, cow, camel, airplane, ant). They are never read: :func:`load_shape`
refuses any name that contains one of them (case-insensitive, ignoring non-letters), and the
CGAL tarball members are checked against the same rule before one is extracted.
:data:`BENCH_SHAPES` are this project's own benchmark meshes (``benchmarks/bench_pose.py``);
they load, but :func:`list_shapes` (the training library) leaves them out.

Pairs
-----
:func:`make_pair` is the one recipe of benchmark and training pairs (pose ``T`` maps the
source onto the target: ``target ~= source @ R.T + t``); :func:`random_training_pair` draws
its settings for training.
"""
from __future__ import annotations

import functools
import math
import os
import re
import tarfile
import tempfile
import warnings

import numpy as np

__all__ = [
    "HELD_OUT", "BENCH_SHAPES", "PROCEDURAL_FAMILIES", "PROCEDURAL_PER_FAMILY", "CGAL_TARBALL",
    "OPENCV_DATA", "is_held_out", "list_shapes", "load_shape", "normalise", "sample_surface",
    "rotation_about_axis", "random_rotation", "random_translation", "crop_furthest", "make_pair",
    "random_training_pair", "cache_dir",
]

# ------------------------------------------------------------------------------------------------
# names: held out, bench, training
# ------------------------------------------------------------------------------------------------
#: Meshes kept for an independent evaluation: never read, never trained, tuned or reported on.
HELD_OUT = ("bunny", "armadillo", "chinesedragon", "elephant", "cow", "camel", "airplane", "ant")
# Refused as well, as a precaution: any other "dragon" file, and CGAL's plane.off / boeing.off,
# which may be copies or relatives of the held-out airplane.
_ALSO_REFUSED = ("dragon", "plane", "boeing")

#: Our own benchmark meshes (allowed, not held out): loadable, never in the training library.
BENCH_SHAPES = ("parasaurolophus", "homer", "hand")

CGAL_TARBALL = "/usr/share/doc/libcgal-dev/data.tar.gz"
OPENCV_DATA = "/usr/share/doc/opencv-doc/examples/surface_matching/data"

# name -> (package, member or path). CGAL duplicates (lion-head, fandisk_large, anchor,
# blobby-shuffled, *_small), flat patches, spheres/cubes and meshes with non-finite
# vertices (b9.ply) are left out. The OpenCV scene scans rs1/rs22 are not used: they contain the
# parasaurolophus, which is a bench shape.
_FILE_SHAPES = {
    **{name: ("libcgal-demo", f"data/meshes/{name}.off") for name in (
        "fandisk", "lion", "bear", "bear_bis", "man", "bull", "anchor_dense", "blob-closed", "blobby",
        "bones", "cactus", "couplingdown", "dino", "diplodocus", "eight", "elk", "femur", "hand",
        "handle", "head", "helmet", "holes", "homer", "horizons", "joint", "knot1", "knot2",
        "mannequin-devil", "mask_cone", "mushroom", "nefertiti", "oblong", "part", "pig", "pinion",
        "retinal", "rotor", "spool", "three_peaks", "triceratops", "turbine", "ALSTOM_TEST4",
    )},
    "parasaurolophus": ("opencv-doc", f"{OPENCV_DATA}/parasaurolophus_6700.ply"),
}

#: Procedural families; ``"<family>-<k>"`` for any whole number k is a shape (seeded by family and k).
PROCEDURAL_FAMILIES = ("box", "cylinder", "cone", "capsule", "torus", "blob", "bumpy", "union", "extrude")
#: How many of each family :func:`list_shapes` lists (k = 0 .. PROCEDURAL_PER_FAMILY - 1).
PROCEDURAL_PER_FAMILY = 12


def _letters(name: str) -> str:
    return re.sub(r"[^a-z]", "", str(name).lower())


def is_held_out(name: str) -> bool:
    """Whether ``name`` (a shape name or a file name) matches the held-out deny-list.

    Case-insensitive, ignoring everything but letters, by substring: ``"Bunny00.off"``,
    ``"bunny_small"`` and ``"Chinese-Dragon-10kv"`` are all refused.
    """
    base = _letters(os.path.basename(str(name)))
    return any(word in base for word in HELD_OUT + _ALSO_REFUSED)


def _refuse_held_out(name: str) -> None:
    if is_held_out(name):
        raise ValueError(
            f"shape {name!r} is held out for an independent evaluation and is never loaded "
            f"(deny-list: {', '.join(HELD_OUT)}; see domains.pose.shapes.HELD_OUT)")


assert not any(is_held_out(n) or is_held_out(m) for n, (_, m) in _FILE_SHAPES.items()), "deny-list"
assert set(BENCH_SHAPES) <= set(_FILE_SHAPES)


def _package_present(package: str) -> bool:
    return os.path.isfile(CGAL_TARBALL) if package == "libcgal-demo" else os.path.isdir(OPENCV_DATA)


def list_shapes(include_files: bool = True) -> list[str]:
    """Names of the training library: procedural shapes and, with ``include_files``, the file
    meshes whose Debian package is installed (a warning names each missing package).

    Never contains a :data:`HELD_OUT` name nor a :data:`BENCH_SHAPES` name.
    """
    names = [f"{fam}-{k}" for fam in PROCEDURAL_FAMILIES for k in range(PROCEDURAL_PER_FAMILY)]
    if include_files:
        missing = set()
        for name, (package, _) in _FILE_SHAPES.items():
            if name in BENCH_SHAPES:
                continue
            if _package_present(package):
                names.append(name)
            else:
                missing.add(package)
        for package in sorted(missing):
            warnings.warn(f"pose shapes: Debian package {package} is not installed; its meshes are skipped "
                          f"(apt-get install -y {package})", stacklevel=2)
    return [n for n in names if not is_held_out(n)]


# ------------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------------
def cache_dir() -> str:
    """Folder for extracted CGAL members: ``~/.cache/stochgen/pose-shapes`` (or under the temp dir
    when the home folder is not writable)."""
    for root in (os.path.join(os.path.expanduser("~"), ".cache"), tempfile.gettempdir()):
        path = os.path.join(root, "stochgen", "pose-shapes")
        try:
            os.makedirs(path, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
        except OSError:
            continue
    raise OSError("no writable cache folder for the pose shapes")


def _extract_cgal(members: dict[str, str]) -> None:
    """Extract the wanted tarball members (``member -> destination``) in one pass over the archive.

    Only members that are wanted and pass the deny-list are read."""
    todo = {m: d for m, d in members.items() if not os.path.isfile(d)}
    if not todo:
        return
    with tarfile.open(CGAL_TARBALL, "r:gz") as tf:
        for info in tf:
            if info.name not in todo or not info.isfile() or is_held_out(info.name):
                continue
            data = tf.extractfile(info).read()
            dest = todo.pop(info.name)
            tmp = f"{dest}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)
            if not todo:
                break
    if todo:
        raise FileNotFoundError(f"members not found in {CGAL_TARBALL}: {sorted(todo)}")


def _file_path(name: str) -> str:
    package, member = _FILE_SHAPES[name]
    if not _package_present(package):
        raise FileNotFoundError(f"shape {name!r} needs the Debian package {package} (apt-get install -y {package})")
    if package != "libcgal-demo":
        return member
    folder = os.path.join(cache_dir(), "cgal")
    os.makedirs(folder, exist_ok=True)
    # extract every CGAL shape at once (one decompression of the 18 MB archive)
    wanted = {m: os.path.join(folder, os.path.basename(m))
              for p, m in _FILE_SHAPES.values() if p == "libcgal-demo"}
    _extract_cgal(wanted)
    return wanted[member]


def normalise(mesh):
    """A cleaned copy of ``mesh`` (finite vertices, non-degenerate faces, no unreferenced
    vertices), centred at its bounding-box centre and scaled to bounding-box diagonal 1."""
    mesh = mesh.copy()
    finite = np.isfinite(mesh.vertices).all(axis=1)
    if not finite.all():
        mesh.update_faces(finite[mesh.faces].all(axis=1))
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    diag = float(np.linalg.norm(hi - lo))
    if not diag > 0:
        raise ValueError("mesh has no extent")
    mesh.vertices = (mesh.vertices - 0.5 * (lo + hi)) / diag
    return mesh


@functools.lru_cache(maxsize=None)
def _load_cached(name: str):
    import trimesh

    if name in _FILE_SHAPES:
        mesh = trimesh.load(_file_path(name), force="mesh", process=True)
    else:
        m = re.fullmatch(r"([a-z]+)-(\d+)", name)
        if m is None or m.group(1) not in PROCEDURAL_FAMILIES:
            raise ValueError(f"unknown shape {name!r}: a file mesh ({', '.join(sorted(_FILE_SHAPES))}) or "
                             f"'<family>-<k>' with family in {PROCEDURAL_FAMILIES}")
        family, k = m.group(1), int(m.group(2))
        rng = np.random.default_rng([PROCEDURAL_FAMILIES.index(family), k, 20240611])
        mesh = _PROCEDURAL[family](rng)
    mesh = normalise(mesh)
    mesh.metadata["name"] = name
    return mesh


def load_shape(name: str):
    """The shape ``name`` as a ``trimesh.Trimesh``, normalised (bbox centre 0, bbox diagonal 1).

    Raises ``ValueError`` for a held-out name (:data:`HELD_OUT`) or an unknown one, and
    ``FileNotFoundError`` when a file shape's Debian package is not installed. Meshes are cached
    in memory; each call returns a fresh copy."""
    _refuse_held_out(name)
    return _load_cached(str(name)).copy()


# ------------------------------------------------------------------------------------------------
# procedural shapes
# ------------------------------------------------------------------------------------------------
def _rot(rng) -> np.ndarray:
    return random_rotation(rng)


def _box(rng):
    import trimesh.creation as tc

    return tc.box(extents=rng.uniform(0.15, 1.0, 3))


def _cylinder(rng):
    import trimesh.creation as tc

    return tc.cylinder(radius=rng.uniform(0.1, 0.5), height=rng.uniform(0.2, 1.0), sections=48)


def _cone(rng):
    import trimesh.creation as tc

    return tc.cone(radius=rng.uniform(0.15, 0.5), height=rng.uniform(0.3, 1.0), sections=48)


def _capsule(rng):
    import trimesh.creation as tc

    return tc.capsule(height=rng.uniform(0.2, 1.0), radius=rng.uniform(0.1, 0.4), count=[24, 24])


def _torus(rng):
    import trimesh.creation as tc

    major = rng.uniform(0.3, 0.5)
    mesh = tc.torus(major_radius=major, minor_radius=major * rng.uniform(0.15, 0.6), major_sections=48,
                    minor_sections=24)
    mesh.vertices = mesh.vertices * np.array([1.0, rng.uniform(0.6, 1.0), 1.0])
    return mesh


def _bumps(rng, mesh, count: int, width: tuple[float, float], height: tuple[float, float]):
    """Radial displacement of a unit-sphere mesh by ``count`` Gaussian bumps (signed heights)."""
    v = mesh.vertices / np.linalg.norm(mesh.vertices, axis=1, keepdims=True)
    centres = rng.standard_normal((count, 3))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    widths = rng.uniform(*width, count)
    heights = rng.uniform(*height, count) * rng.choice([-1.0, 1.0], count, p=[0.3, 0.7])
    ang = np.arccos(np.clip(v @ centres.T, -1.0, 1.0))
    r = 1.0 + (heights * np.exp(-0.5 * (ang / widths) ** 2)).sum(axis=1)
    mesh.vertices = v * np.maximum(r, 0.3)[:, None]
    return mesh


def _blob(rng):
    """Ellipsoid with a few broad bumps, randomly oriented: smooth and asymmetric."""
    import trimesh.creation as tc

    mesh = _bumps(rng, tc.icosphere(subdivisions=4), int(rng.integers(3, 7)), (0.3, 0.7), (0.2, 0.6))
    mesh.vertices = mesh.vertices * rng.uniform(0.35, 1.0, 3)
    return mesh


def _bumpy(rng):
    """Sphere with many narrow bumps and dents."""
    import trimesh.creation as tc

    mesh = _bumps(rng, tc.icosphere(subdivisions=4), int(rng.integers(10, 25)), (0.12, 0.3), (0.1, 0.4))
    mesh.vertices = mesh.vertices * rng.uniform(0.7, 1.0, 3)
    return mesh


def _union(rng):
    """2-5 boxes and ellipsoids at random places and orientations; the faces of one part that lie
    inside another part are removed (an approximate boolean union, analytic inside tests)."""
    import trimesh
    import trimesh.creation as tc

    parts = []  # (mesh in world, kind, R, centre, half-sizes)
    for i in range(int(rng.integers(2, 6))):
        kind = "box" if rng.random() < 0.5 else "ellipsoid"
        half = rng.uniform(0.08, 0.4, 3)
        R = _rot(rng)
        c = rng.uniform(-0.3, 0.3, 3) if i else np.zeros(3)
        m = tc.box(extents=2 * half) if kind == "box" else tc.icosphere(subdivisions=3)
        if kind == "ellipsoid":
            m.vertices = m.vertices * half
        m.vertices = m.vertices @ R.T + c
        parts.append((m, kind, R, c, half))

    def inside(points, kind, R, c, half):
        local = (points - c) @ R / half
        if kind == "box":
            return (np.abs(local) < 1.0 - 1e-9).all(axis=1)
        return (local ** 2).sum(axis=1) < 1.0 - 1e-9

    kept = []
    for i, (m, *_) in enumerate(parts):
        cen = m.triangles_center
        mask = np.ones(len(m.faces), dtype=bool)
        for j, (_, kind, R, c, half) in enumerate(parts):
            if j != i:
                mask &= ~inside(cen, kind, R, c, half)
        if mask.any():
            m = m.copy()
            m.update_faces(mask)
            m.remove_unreferenced_vertices()
            kept.append(m)
    return trimesh.util.concatenate(kept)


def _extrude(rng):
    """A random star-shaped polygon (no mirror symmetry) extruded and tapered: closed prism."""
    import trimesh

    k = int(rng.integers(5, 12))
    ang = np.sort(rng.uniform(0.0, 2 * np.pi, k))
    rad = rng.uniform(0.3, 1.0, k)
    poly = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    height = rng.uniform(0.2, 1.2)
    taper = rng.uniform(0.4, 1.0)
    shift = rng.uniform(-0.2, 0.2, 2)
    bottom = np.concatenate([poly, np.zeros((k, 1))], axis=1)
    top = np.concatenate([poly * taper + shift, np.full((k, 1), height)], axis=1)
    verts = np.concatenate([bottom, top, [[0.0, 0.0, 0.0], [shift[0], shift[1], height]]])
    cb, ct = 2 * k, 2 * k + 1
    faces = []
    for i in range(k):  # polygon is star-shaped about the origin: fan triangulation of the caps
        j = (i + 1) % k
        faces += [[cb, j, i], [ct, k + i, k + j], [i, j, k + j], [i, k + j, k + i]]
    return trimesh.Trimesh(verts, np.array(faces), process=True)


_PROCEDURAL = {"box": _box, "cylinder": _cylinder, "cone": _cone, "capsule": _capsule, "torus": _torus,
               "blob": _blob, "bumpy": _bumpy, "union": _union, "extrude": _extrude}
assert tuple(_PROCEDURAL) == PROCEDURAL_FAMILIES


# ------------------------------------------------------------------------------------------------
# sampling, poses, the pair recipe
# ------------------------------------------------------------------------------------------------
def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def sample_surface(mesh, n: int, rng) -> np.ndarray:
    """``n`` points ``(n, 3)`` (float64) drawn uniformly by area on the surface of ``mesh``.

    ``rng`` is a ``numpy.random.Generator`` (or a seed); the same state gives the same points."""
    rng = _rng(rng)
    tri = np.asarray(mesh.triangles, dtype=np.float64)
    area = np.asarray(mesh.area_faces, dtype=np.float64)
    if len(tri) == 0 or not area.sum() > 0:
        raise ValueError("mesh has no surface to sample")
    face = rng.choice(len(tri), size=int(n), p=area / area.sum())
    u, v = rng.random((2, int(n)))
    su = np.sqrt(u)
    w = np.stack([1.0 - su, su * (1.0 - v), su * v], axis=1)
    return np.einsum("nk,nkd->nd", w, tri[face])


def rotation_about_axis(axis, angle_rad: float) -> np.ndarray:
    """Rotation matrix ``(3, 3)`` by ``angle_rad`` about ``axis`` (normalised here), via
    :func:`stochgen.spaces.so3.exp` in float64."""
    import torch
    from stochgen.spaces import so3

    axis = np.asarray(axis, dtype=np.float64)
    phi = torch.from_numpy(axis / np.linalg.norm(axis) * float(angle_rad))
    return so3.exp(phi).numpy()


def random_rotation(rng, angle_deg: float | None = None) -> np.ndarray:
    """A rotation ``(3, 3)``: by exactly ``angle_deg`` degrees about a uniformly random axis, or,
    for ``angle_deg=None``, Haar-uniform over SO(3) (normalised Gaussian quaternion)."""
    rng = _rng(rng)
    if angle_deg is None:
        import torch
        from stochgen.spaces import so3

        q = rng.standard_normal(4)
        while not np.linalg.norm(q) > 1e-12:
            q = rng.standard_normal(4)
        return so3.from_quaternion(torch.from_numpy(q)).numpy()
    axis = rng.standard_normal(3)
    while not np.linalg.norm(axis) > 1e-12:
        axis = rng.standard_normal(3)
    return rotation_about_axis(axis, math.radians(float(angle_deg)))


def random_translation(rng, max_trans: float) -> np.ndarray:
    """A translation ``(3,)`` uniform in the **ball** of radius ``max_trans`` (not the cube)."""
    rng = _rng(rng)
    d = rng.standard_normal(3)
    d /= max(np.linalg.norm(d), 1e-300)
    return d * float(max_trans) * rng.random() ** (1.0 / 3.0)


def crop_furthest(points: np.ndarray, keep: float, direction: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the ``round(keep * n)`` points (at least 1) furthest along
    ``direction``: a plane normal to ``direction`` separates kept from dropped points."""
    n = len(points)
    m = min(n, max(1, int(math.floor(float(keep) * n + 0.5))))
    proj = np.asarray(points) @ np.asarray(direction, dtype=np.float64)
    order = np.argsort(-proj, kind="stable")
    return np.sort(order[:m])


def make_pair(mesh, angle_deg: float | None, rng, n: int = 1024, keep: float = 0.7, noise: float = 0.01,
              max_trans: float = 0.1, independent: bool = True):
    """One registration pair ``(source (n, 3), target (m, 3), T_true (4, 4))``, float64.

    * ``source``: ``n`` area-uniform surface points of ``mesh`` (normalise it first, e.g. by
      :func:`load_shape`);
    * ``target``: an independent ``n``-point sample of the same mesh (the same points when
      ``independent=False``, for tests), moved by ``T_true`` (``p -> R p + t``), then cropped to
      the ``m = round(keep * n)`` points furthest along a uniformly random direction (a partial
      view), then ``N(0, noise^2)`` added to each coordinate;
    * ``T_true``: rotation by exactly ``angle_deg`` degrees about a uniformly random axis
      (``angle_deg=None``: uniform over SO(3)), translation uniform in the ball of radius
      ``max_trans``. It maps the source onto the target: ``target ~= source @ R.T + t``.

    ``rng`` is a ``numpy.random.Generator`` or a seed; the draws are made in a fixed order, so
    the same seed gives the same pair.
    """
    rng = _rng(rng)
    source = sample_surface(mesh, n, rng)
    points = sample_surface(mesh, n, rng) if independent else source.copy()
    target, T = move_and_crop(points, angle_deg, rng, keep=keep, noise=noise, max_trans=max_trans)
    return source, target, T


def move_and_crop(points: np.ndarray, angle_deg: float | None, rng, keep: float = 0.7, noise: float = 0.01,
                  max_trans: float = 0.1):
    """The target half of :func:`make_pair`: ``points`` moved by a drawn ``T_true``, cropped to the
    ``round(keep * n)`` points furthest along a random direction, plus ``N(0, noise^2)``; returns
    ``(target, T_true)``. Draws, in order: rotation, translation, crop direction, noise."""
    import torch
    from stochgen.spaces import se3

    rng = _rng(rng)
    R = random_rotation(rng, angle_deg)
    t = random_translation(rng, max_trans)
    T = se3.from_rt(torch.from_numpy(R), torch.from_numpy(t)).numpy()
    moved = points @ R.T + t
    direction = rng.standard_normal(3)
    direction /= max(np.linalg.norm(direction), 1e-300)
    target = moved[crop_furthest(moved, keep, direction)]
    if noise > 0:
        target = target + float(noise) * rng.standard_normal(target.shape)
    return target, T


def random_training_pair(rng, shapes=None, n: int = 1024, keep_range=(0.6, 0.9), noise_range=(0.0, 0.02),
                         max_trans: float = 0.1, angle_deg: float | None = None):
    """A training pair by :func:`make_pair` on a random shape of ``shapes`` (names or meshes;
    default :func:`list_shapes`), with ``keep ~ U(keep_range)``, ``noise ~ U(noise_range)`` and a
    uniform rotation (unless ``angle_deg``). Returns ``(source, target, T_true)``."""
    rng = _rng(rng)
    if shapes is None:
        shapes = list_shapes()
    if len(shapes) == 0:
        raise ValueError("no shapes to draw from")
    shape = shapes[int(rng.integers(len(shapes)))]
    if isinstance(shape, str):
        _refuse_held_out(shape)
        mesh = _load_cached(shape)  # cached: no copy needed, make_pair does not modify it
    else:
        mesh = shape
    keep = float(rng.uniform(*keep_range))
    noise = float(rng.uniform(*noise_range))
    return make_pair(mesh, angle_deg, rng, n=n, keep=keep, noise=noise, max_trans=max_trans)
