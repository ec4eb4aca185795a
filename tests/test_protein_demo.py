"""The protein part of ``stochgen demo`` with the shipped design model (seconds on the CPU)."""
import os

import numpy as np
import pytest

import stochgen
from domains.protein import structure as S
from domains.protein.demo import DEMO_CHAIN, DEMO_SEGMENT
from domains.protein.domain import default_weights


@pytest.mark.skipif(not default_weights().is_file(), reason="no shipped design model")
def test_demo_designs_the_embedded_segment_with_valid_geometry(tmp_path):
    pytest.importorskip("matplotlib")
    seed = int(os.environ.get("STOCHGEN_TEST_SEED_SHIFT", 0))
    lines = stochgen.domain("protein").demo(str(tmp_path), quick=True, seed=seed)
    assert any("co-designed residues A:40-49" in line for line in lines)
    files = sorted(os.listdir(tmp_path))
    assert files == ["design_001.pdb", "design_002.pdb", "design_003.pdb", "design_004.pdb", "designs.png"]
    native = S.read_chains(DEMO_CHAIN)[0]
    start = native.index_of(40)
    for f in files[:4]:
        d = S.read_chains(tmp_path / f)[0]
        assert len(d) == len(native) and d.sequence[:start] == native.sequence[:start]
        ca = d.ca[start - 1:start + 11]
        # closure: every CA-CA bond of the segment and its junctions 3.80 A (PDB precision)
        np.testing.assert_allclose(np.linalg.norm(np.diff(ca, axis=0), axis=-1), 3.80, atol=5e-3)
        # the designed segment stays near its place: within 12 A CA-RMSD of the native one
        assert np.sqrt(((d.ca[start:start + 10] - native.ca[start:start + 10]) ** 2).sum(-1).mean()) < 12.0
    assert DEMO_SEGMENT == "A:40-49"
