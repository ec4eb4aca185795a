"""Conformational ensembles: the ensemble state, training / drawing through the CLI, and the metrics.

The ensemble here is made from the embedded demo chain: its C-terminal 40 residues turned rigidly
about a hinge by a random angle per model (a two-domain motion), so the fluctuation profile is
known: zero before the hinge, growing with the distance from the axis after it.
"""
import os

import numpy as np
import pytest
import torch

import stochgen
from domains.protein import metrics as M
from domains.protein import structure as S
from domains.protein.frames import backbone_from_frames

DEMO = os.path.join(os.path.dirname(S.__file__), "data", "demo_2i39A.pdb.gz")
SHIFT = int(os.environ.get("STOCHGEN_TEST_SEED_SHIFT", 0))


def hinge_ensemble(m=24, seed=0, deg=6.0):
    from stochgen.spaces import so3

    bb = S.read_chains(DEMO)[0]
    rng = np.random.default_rng(seed)
    pivot = bb.ca[76]
    axis = np.cross(bb.ca[76] - bb.ca[60], bb.ca[100] - bb.ca[76])
    axis /= np.linalg.norm(axis)
    out = []
    for _ in range(m):
        R = so3.exp(torch.as_tensor(axis * np.deg2rad(deg) * rng.normal(), dtype=torch.float64)).numpy()
        c = bb.coords.copy()
        c[77:] = (c[77:] - pivot) @ R.T + pivot
        out.append(bb.replace(coords=c))
    return out


def test_ensemble_state_reconstructs_the_superposed_models():
    models = hinge_ensemble(seed=SHIFT)
    dom = stochgen.domain("protein")
    data = dom.ensemble_data(models, "hinge")
    assert dom.settings["task"] == "ensemble" and data.x.shape == (24, 117, 4, 4)
    mean = np.zeros((117, 4, 4))
    mean[:, :3, :] = np.asarray(dom.settings["mean_frames"])
    mean[:, 3, 3] = 1
    back = backbone_from_frames(mean[None] @ data.x.double().numpy())
    # the models are superposed on the first (and centred): compare after the same superposition
    ca = M.superpose_all(np.stack([m.ca for m in models]), back[0][:, 1])
    np.testing.assert_allclose(back[:, :, 1], ca, atol=2e-4)  # float32 state, rounded mean frames
    # the deviations are small: a few degrees of hinge motion move no residue by more than a few Angstrom
    assert float(data.x[..., :3, 3].norm(dim=-1).max()) < 5.0


def test_metrics_on_known_ensembles():
    models = hinge_ensemble(seed=SHIFT)
    X = np.stack([m.ca for m in models])
    rng = np.random.default_rng(SHIFT)
    moved = []
    for x in X:  # every model moved rigidly: no fluctuation left after superposition
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        import roma

        R = roma.unitquat_to_rotmat(torch.as_tensor(q)).numpy()
        moved.append(X[0] @ R.T + rng.normal(size=3) * 10)
    np.testing.assert_allclose(M.rmsf(np.stack(moved)), 0.0, atol=1e-8)
    np.testing.assert_allclose(M.pairwise_rmsd(np.stack(moved)), 0.0, atol=1e-6)
    # isotropic noise of std 0.3 A on one residue of identical copies: RMSF there 0.3 sqrt(3) ~ 0.52 A
    m = 400
    Y = np.repeat(X[:1], m, axis=0)
    Y[:, 50] += rng.normal(0, 0.3, (m, 3))
    f = M.rmsf(Y)
    # the sample RMSF of m draws has relative standard error ~ 1 / sqrt(6 m) ~ 2%; superposition on 117
    # atoms takes ~1/117 of the variance away
    assert abs(f[50] - 0.3 * np.sqrt(3)) < 0.1 * 0.3 * np.sqrt(3), f[50]
    assert np.delete(f, 50).max() < 0.05
    rep = M.ensemble_report(X[:12], X[12:], X[0])
    assert rep["rmsf_pearson"] > 0.9 and rep["valid"] == 1.0 and rep["valid_bonds"] > 0.95
    valid, _ = M.valid_geometry(X[:2] * 1.1)  # stretched: CA-CA 4.2 A
    assert not valid.any()


def test_anm_baseline_samples_at_the_training_rmsd():
    pytest.importorskip("prody")
    from domains.protein.baselines import anm_ensemble

    X = M.superpose_all(np.stack([m.ca for m in hinge_ensemble(seed=SHIFT)]), hinge_ensemble()[0].ca)
    mu = X.mean(0)
    want = np.sqrt(((M.superpose_all(X, mu) - mu) ** 2).sum(-1).mean(-1)).mean()
    A = anm_ensemble(X, 50, seed=SHIFT)
    assert A.shape == (50, 117, 3)
    got = np.sqrt(((A - A.mean(0)) ** 2).sum(-1).mean(-1)).mean()
    assert abs(got - want) < 0.25 * want


def test_train_and_draw_an_ensemble_from_the_command_line(tmp_path):
    from stochgen.cli import main

    ens = S.write_structure(tmp_path / "ens.pdb", [[m] for m in hinge_ensemble(seed=SHIFT)])
    ckpt = tmp_path / "e.ckpt"
    assert main(["train", "protein", ens, "--steps", "20", "--batch-size", "8", "--out", str(ckpt),
                 "--no-progress", "--set", "hidden=16", "--set", "depth=1"]) == 0
    out = tmp_path / "gen.pdb"
    assert main(["ensemble", str(ckpt), "-n", "3", "-o", str(out), "--steps", "5"]) == 0
    models = S.read_models(out)
    assert len(models) == 3 and models[0].sequence == S.read_chains(DEMO)[0].sequence
    np.testing.assert_array_equal(models[0].resnums, S.read_chains(DEMO)[0].resnums)
    # drawn conformations are idealised: every CA-CA bond 3.80 A (within 0.01 A: the file's 3 decimals and
    # the finite number of projection sweeps on the wild conformations of a 20-step model)
    bonds = np.linalg.norm(np.diff(np.stack([m.ca for m in models]), axis=1), axis=-1)
    np.testing.assert_allclose(bonds, 3.80, atol=1e-2)
    # a design checkpoint is refused by `ensemble`, and an ensemble one by design
    dom = stochgen.domain("protein")
    with pytest.raises(ValueError, match="ensemble model"):
        dom.design(DEMO, segment="A:40-49", model=str(ckpt))
    assert main(["ensemble", str(tmp_path / "none.ckpt"), "-o", str(out)]) != 0
