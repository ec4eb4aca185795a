"""Protein structures: reading / writing backbones, residue frames and the ideal backbone.

Real chains: the embedded demo chain (2i39 chain A, 117 residues, from MDAnalysisTests' DSSP set)
and, where MDAnalysisTests is installed, all 50 chains of that set.
"""
import gzip
import os
import warnings

import numpy as np
import pytest
import torch

from domains.protein import frames as F
from domains.protein import structure as S

DEMO = os.path.join(os.path.dirname(S.__file__), "data", "demo_2i39A.pdb.gz")


def demo_chain():
    return S.read_chains(DEMO)[0]


def test_demo_chain_reads_with_its_sequence_and_numbering():
    bb = demo_chain()
    assert len(bb) == 117 and bb.chain == "A" and bb.coords.shape == (117, 4, 3)
    # the first residue of the file is SER -1 (N at -16.733 58.529 34.806)
    assert bb.sequence[0] == "S" and bb.resnums[0] == -1
    np.testing.assert_allclose(bb.coords[0, 0], [-16.733, 58.529, 34.806])
    assert bb.index_of(bb.resnums[10]) == 10


def test_frames_are_rigid_and_place_ca_c_n_as_defined():
    bb = demo_chain()
    T = F.frames_from_backbone(bb.coords)
    R = T[:, :3, :3]
    np.testing.assert_allclose(R.transpose(0, 2, 1) @ R, np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    np.testing.assert_allclose(T[:, :3, 3], bb.ca)
    local_c = np.einsum("nji,nj->ni", R, bb.coords[:, 2] - bb.ca)  # C on the +x axis
    np.testing.assert_allclose(local_c[:, 1:], 0.0, atol=1e-9)
    assert (local_c[:, 0] > 0).all()
    local_n = np.einsum("nji,nj->ni", R, bb.coords[:, 0] - bb.ca)  # N in the xy plane, y > 0
    np.testing.assert_allclose(local_n[:, 2], 0.0, atol=1e-9)
    assert (local_n[:, 1] > 0).all()


def test_frames_to_backbone_to_frames_is_exact():
    g = torch.Generator().manual_seed(int(os.environ.get("STOCHGEN_TEST_SEED_SHIFT", 0)))
    from stochgen.spaces import se3, so3

    R = so3.exp(2.0 * torch.randn(5, 7, 3, generator=g, dtype=torch.float64))
    T = se3.from_rt(R, 10 * torch.randn(5, 7, 3, generator=g, dtype=torch.float64))
    again = F.frames_from_backbone(F.backbone_from_frames(T))
    torch.testing.assert_close(again, T, atol=1e-10, rtol=0)


def test_round_trip_of_real_chains_is_below_005_angstrom():
    from domains.protein.data import dssp_chains

    try:
        chains = [c[1] for c in dssp_chains()]
    except ImportError:
        chains = [demo_chain()]
    rms = [F.backbone_rmsd(F.backbone_from_frames(F.frames_from_backbone(bb.coords)), bb.coords) for bb in chains]
    # N, CA, C rebuilt with ideal geometry: the mean over chains is 0.041 A; real bond angles vary by ~2 deg
    assert np.mean(rms) < 0.05, np.mean(rms)
    assert max(rms) < 0.1
    # the rebuilt O (placed from C and the next N) stays within a few tenths of an Angstrom
    o = [F.backbone_rmsd(F.backbone_from_frames(F.frames_from_backbone(bb.coords))[:-1], bb.coords[:-1],
                         slice(3, 4)) for bb in chains]
    assert np.mean(o) < 0.25, np.mean(o)


@pytest.mark.parametrize("suffix", [".pdb", ".cif"])
def test_written_structure_reads_back_identical(tmp_path, suffix):
    bb = demo_chain()
    path = S.write_structure(tmp_path / f"x{suffix}", bb)
    back = S.read_chains(path)[0]
    assert back.sequence == bb.sequence and back.chain == bb.chain
    np.testing.assert_array_equal(back.resnums, bb.resnums)
    np.testing.assert_allclose(back.coords, bb.coords, atol=5e-4)  # the formats keep 3 decimals
    # a second round trip changes nothing at all
    again = S.read_chains(S.write_structure(tmp_path / f"y{suffix}", back))[0]
    np.testing.assert_array_equal(again.coords, back.coords)


def test_multi_model_file_reads_as_an_ensemble(tmp_path):
    bb = demo_chain()
    shifted = bb.replace(coords=bb.coords + 1.5)
    path = S.write_structure(tmp_path / "ens.pdb", [[bb], [shifted]])
    models = S.read_models(path)
    assert len(models) == 2
    np.testing.assert_allclose(models[1].coords - models[0].coords, 1.5, atol=2e-3)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        S.read_chains(tmp_path / "none.pdb")
    empty = tmp_path / "empty.pdb"
    empty.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        S.read_chains(empty)
    with pytest.raises(ValueError, match="unsupported structure format"):
        S.read_chains(DEMO.replace(".pdb.gz", ".pdb.dssp"))
    text = gzip.open(DEMO, "rt").read()
    # a chain with no backbone atoms: keep only side-chain atoms
    side = "\n".join(line for line in text.splitlines()
                     if not (line.startswith("ATOM") and line[12:16].strip() in ("N", "CA", "C")))
    p = tmp_path / "nobb.pdb"
    p.write_text(side)
    with pytest.raises(ValueError, match="no amino-acid residue with backbone atoms"):
        S.read_chains(p)
    # an unknown residue name inside the chain
    bad = text.replace("SER A  -1", "XYZ A  -1")
    p = tmp_path / "unk.pdb"
    p.write_text(bad)
    with pytest.raises(ValueError, match="XYZ.*not one of the 20 standard amino acids"):
        S.read_chains(p)
    with pytest.raises(ValueError, match="no chain 'Q'"):
        S.read_chains(DEMO, chain="Q")
    with pytest.raises(ValueError, match="unknown amino-acid letter"):
        S.encode_sequence("ACDB")
    # a residue missing CA is dropped with a warning naming it
    one = "\n".join(line for line in text.splitlines()
                    if not (line.startswith("ATOM") and line[12:16].strip() == "CA" and line[22:26].strip() == "5"))
    p = tmp_path / "gap.pdb"
    p.write_text(one)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = S.read_chains(p)[0]
    assert len(got) == 116 and any("dropped 1 residue" in str(x.message) for x in w)


def test_identity_split_keeps_test_chains_below_40_percent():
    from domains.protein import data

    pytest.importorskip("gemmi")
    try:
        chains = data.dssp_chains()
    except ImportError:
        pytest.skip("MDAnalysisTests is not installed (pip install --no-deps MDAnalysisTests==2.11.0)")
    seqs = [c[1].sequence for c in chains]
    train, test = data.identity_split(seqs, 0.2, 0.4, 0)
    assert len(chains) == 50 and len(train) == 40 and len(test) == 10 and not set(train) & set(test)
    assert max(data.identity(seqs[i], seqs[j]) for i in test for j in train) <= 0.4
    assert data.identity("ACDEFGHIKL", "ACDEFGHIKL") == 1.0
    # every chain's secondary structure is read and matches its residues
    assert all(len(ss) == len(bb) and set(ss) <= set("HEC") for _, bb, ss in chains)
    assert sum(ss.count("H") for *_, ss in chains) > 1000


def test_extended_corpus_adds_no_chain_close_to_a_test_chain():
    from domains.protein import data

    try:
        chains = data.dssp_chains()
    except ImportError:
        pytest.skip("MDAnalysisTests is not installed (pip install --no-deps MDAnalysisTests==2.11.0)")
    train, test = data.identity_split([c[1].sequence for c in chains], 0.2, 0.4, 0)
    tests = [chains[i][1].sequence for i in test]
    extra = data.extra_chains(tests)
    assert len(extra) >= 1 and all(len(c) >= 40 for _, c in extra)
    assert all(data.identity(c.sequence, t) <= 0.4 for _, c in extra for t in tests)
    assert not any(h in name.lower() for name, _ in extra for h in data.HELD_OUT)
