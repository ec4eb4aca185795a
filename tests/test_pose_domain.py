"""The pose domain: normalisation round trip, training rows, the register pipeline on a tiny model."""
import numpy as np
import pytest
import torch

pytest.importorskip("roma")
pytest.importorskip("trimesh")

import stochgen  # noqa: E402
from stochgen.spaces import se3, so3  # noqa: E402

from domains.pose.domain import PoseDomain  # noqa: E402

TINY = dict(n_points=96, width=16, hidden=16, k=8, k2=12, seed=0)


def _cloud(n=400, seed=0):
    """An asymmetric cloud: a box of sides 1 x 0.6 x 0.3 with a bump (no rotational symmetry)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(-0.5, 0.5, (n, 3)) * [1.0, 0.6, 0.3]
    face = rng.integers(0, 3, n)
    p[np.arange(n), face] = np.sign(rng.standard_normal(n)) * np.array([0.5, 0.3, 0.15])[face]
    bump = p[:, 0] > 0.3
    p[bump, 2] += 0.2 * (p[bump, 0] - 0.3)
    return p


def _pose(deg, axis, trans):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    R = so3.exp(torch.tensor(np.deg2rad(deg) * axis)).numpy()
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, trans
    return T


def test_normalise_round_trip():
    src = _cloud() * 3.0 + [5.0, -2.0, 1.0]
    T = _pose(150, [1, 2, 3], [0.4, -1.0, 2.0])
    tgt = src @ T[:3, :3].T + T[:3, 3]
    s, t, A, B = PoseDomain.normalise(src, tgt)
    assert np.abs(s.mean(0)).max() < 1e-12 and np.abs(t.mean(0)).max() < 1e-12
    assert np.linalg.norm(s.max(0) - s.min(0)) == pytest.approx(1.0)
    Tn = B @ T @ np.linalg.inv(A)
    assert np.allclose(Tn[:3, :3] @ Tn[:3, :3].T, np.eye(3), atol=1e-12)  # still rigid: same scale on both sides
    assert np.abs(s @ Tn[:3, :3].T + Tn[:3, 3] - t).max() < 1e-12
    assert np.abs(PoseDomain.denormalise(Tn, A, B) - T).max() < 1e-12


def test_load_dict_rows_and_errors():
    src = _cloud(300)
    T = _pose(60, [0, 0, 1], [0.1, 0.0, 0.0])
    tgt = (src @ T[:3, :3].T + T[:3, 3])[:200]
    d = PoseDomain(**TINY)
    data = d.load({"source": [src, src], "target": [tgt, tgt], "T": np.stack([T, T])})
    assert data.x.shape == (2, 4, 4) and data.cond["source"].shape == (2, 96, 3)
    assert data.cond["target"].shape == (2, 96, 3)
    # the row pose maps the row's normalised source onto its normalised target
    Tn = data.x[0].double()
    tgt_full = src @ T[:3, :3].T + T[:3, 3]
    s, t, A, B = PoseDomain.normalise(src, tgt)
    moved = se3.apply(Tn, torch.from_numpy(s)).numpy()
    assert np.abs(moved - (tgt_full - tgt.mean(0)) / np.linalg.norm(src.max(0) - src.min(0))).max() < 1e-5
    with pytest.raises(ValueError, match="missing T"):
        d.load({"source": [src], "target": [tgt]})
    with pytest.raises(ValueError, match="same number of pairs"):
        d.load({"source": [src, src], "target": [tgt], "T": T[None]})
    with pytest.raises(ValueError, match="2 columns"):
        d.load({"source": [src[:, :2]], "target": [tgt], "T": T[None]})


@pytest.fixture(scope="module")
def tiny_model():
    d = PoseDomain(pairs=24, **TINY)
    return stochgen.fit(d, d.load(), steps=4, batch_size=4, lr=1e-3, warmup=1, ema=None, progress=False)


def test_register_exact_copy_after_refinement(tiny_model):
    """An exactly rotated copy (no crop, no noise): hypotheses + selection + ICP give the pose to
    1e-3 degrees at any angle (the particles start from uniform rotations; refinement finishes)."""
    d = PoseDomain()
    src = _cloud(500, seed=1)
    for deg in (30, 150, 180):
        T = _pose(deg, [0.3, -1, 0.5], [0.05, -0.02, 0.08])
        tgt = src @ T[:3, :3].T + T[:3, 3]
        Te, info = d.register(src, tgt[::-1].copy(), model=tiny_model, particles=32, keep=32, steps=3, seed=0,
                              return_info=True)
        rot, trans = d.errors(Te, T)
        assert rot < 1e-3 and trans < 1e-5, (deg, rot, trans)
        assert info["score"] == pytest.approx(1.0)
        assert np.allclose(Te[3], [0, 0, 0, 1]) and np.allclose(Te[:3, :3] @ Te[:3, :3].T, np.eye(3), atol=1e-9)


def test_register_bad_input(tiny_model):
    d = PoseDomain()
    src = _cloud(100)
    with pytest.raises(ValueError, match="source"):
        d.register(src[:2], src, model=tiny_model)
    with pytest.raises(ValueError, match="NaN|finite"):
        d.register(src, np.where(np.arange(300).reshape(100, 3) == 7, np.nan, src), model=tiny_model)
    with pytest.raises(ValueError, match="particles"):
        d.register(src, src, model=tiny_model, particles=0)
    with pytest.raises(TypeError, match="unknown registration options: bogus"):
        d.register(src, src, model=tiny_model, bogus=1)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        d.register(src, src, model="/nonexistent.ckpt")


def test_register_command(tiny_model, tmp_path, capsys):
    """stochgen register: reads .npy / .xyz, prints the matrix and the errors against --truth, writes -o
    (read back equal to what register returns) and the figure; a missing file is one line, exit 2."""
    from stochgen.cli import main

    from domains.pose.io import read_transform

    ck = str(tmp_path / "m.ckpt")
    tiny_model.save(ck)
    src = _cloud(400, seed=3)
    T = _pose(120, [1, 1, 0], [0.1, 0.0, -0.05])
    np.save(tmp_path / "s.npy", src)
    np.savetxt(tmp_path / "t.xyz", src @ T[:3, :3].T + T[:3, 3])
    np.savetxt(tmp_path / "true.txt", T)
    rc = main(["register", str(tmp_path / "s.npy"), str(tmp_path / "t.xyz"), "--model", ck, "--particles", "32",
               "--truth", str(tmp_path / "true.txt"), "-o", str(tmp_path / "T.txt"), "--plot", str(tmp_path / "f.png")])
    out = capsys.readouterr().out
    assert rc == 0 and "rotation error" in out
    rot = float(out.split("rotation error")[1].split("deg")[0])
    Te = read_transform(tmp_path / "T.txt")
    assert rot < 1e-3 and PoseDomain.errors(Te, T)[0] < 1e-3
    assert (tmp_path / "f.png").stat().st_size > 10_000
    assert main(["register", str(tmp_path / "s.npy"), str(tmp_path / "missing.ply"), "--model", ck]) == 2
    err = capsys.readouterr().err
    assert "missing.ply" in err and len(err.strip().splitlines()) == 1


def test_prior_proposals_and_coarse_stage(tiny_model):
    """proposals="prior" (uniform rotations, no network) with the coarse ICP stage still finds an exactly
    rotated copy; an unknown proposal kind is named."""
    d = PoseDomain()
    src = _cloud(500, seed=2)
    T = _pose(150, [1, 0.2, -0.4], [0.02, 0.06, -0.03])
    tgt = src @ T[:3, :3].T + T[:3, 3]
    for proposals in ("prior", "diffusion"):
        Te = d.register(src, tgt, model=tiny_model, particles=32, uniform=0, steps=2, coarse=6, keep=4,
                        proposals=proposals)
        rot, trans = d.errors(Te, T)
        assert rot < 1e-3 and trans < 1e-5, (proposals, rot, trans)
    with pytest.raises(ValueError, match="proposals must be"):
        d.register(src, tgt, model=tiny_model, proposals="ransac")
    with pytest.raises(ValueError, match="uniform"):
        d.register(src, tgt, model=tiny_model, uniform=-1)
    # uniform starts join the diffusion's particles: every hypothesis is scored
    _, info = d.register(src, tgt, model=tiny_model, particles=3, uniform=5, steps=2, return_info=True)
    assert len(info["hypothesis_scores"]) == 8


def test_demo_pair_follows_the_benchmark_recipe():
    """The demo's pair: 1024 source and 717 target points, the target an independent sample of the same
    surface turned by exactly 150 degrees: under T_true every target point lies near the moved source
    surface (noise 0.01), under the identity it does not."""
    from scipy.spatial import cKDTree

    from domains.pose.demo import demo_pair

    s, t, T = demo_pair(seed=3)
    assert s.shape == (1024, 3) and t.shape == (717, 3)
    assert PoseDomain.errors(np.eye(4), T)[0] == pytest.approx(150.0, abs=1e-6)
    near = cKDTree(s @ T[:3, :3].T + T[:3, 3]).query(t)[0]
    far = cKDTree(s).query(t)[0]
    assert (near < 0.03).mean() > 0.85 and (far < 0.03).mean() < 0.5 and far.mean() > 2 * near.mean()
