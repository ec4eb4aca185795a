"""Segment co-design: windows, the composite sampler's fixed parts, closure, baselines, API and CLI.

A tiny design model (hidden 32, one layer, 30 steps on the windows of the embedded demo chain)
is trained once per module: what is tested is the machinery around it (fixed residues stay
exactly fixed, tokens stay in the alphabet, invariance to rigid motion, files), not its quality
(benchmarks/bench_protein.py measures that against the baselines).
"""
import os

import numpy as np
import pytest
import torch

import stochgen
from domains.protein import baselines as B
from domains.protein import design as D
from domains.protein import structure as S
from domains.protein.frames import CA_CA, frames_from_backbone

DEMO = os.path.join(os.path.dirname(S.__file__), "data", "demo_2i39A.pdb.gz")
SHIFT = int(os.environ.get("STOCHGEN_TEST_SEED_SHIFT", 0))


def demo_chain():
    return S.read_chains(DEMO)[0]


def rigid(seed):
    from stochgen.spaces import so3

    g = torch.Generator().manual_seed(seed)
    R = so3.exp(2.0 * torch.randn(3, generator=g, dtype=torch.float64)).numpy()
    return R, 20.0 * torch.randn(3, generator=g, dtype=torch.float64).numpy()


@pytest.fixture(scope="module")
def tiny():
    dom = stochgen.domain("protein", hidden=32, depth=1, heads=2, lengths_per_start=1)
    data = dom.load([demo_chain()])
    model = stochgen.fit(dom, data, steps=30, batch_size=16, seed=SHIFT, progress=False)
    return dom, model


def test_window_features_are_invariant_to_rigid_motion_and_map_back_exactly():
    bb = demo_chain()
    R, t = rigid(3 + SHIFT)
    moved = bb.replace(coords=bb.coords @ R.T + t)
    w, wm = D.window(bb, 40, 12), D.window(moved, 40, 12)
    for k in ("frames", "context", "slots"):
        np.testing.assert_allclose(wm[k], w[k], atol=1e-9)
    np.testing.assert_array_equal(wm["seq"], w["seq"])
    assert (w["seq"][:12] < 20).all() and (w["seq"][12:] == D.PAD).all()
    back = D.to_world(w["frames"][None], w["T0"], 12)[0]
    np.testing.assert_allclose(back, frames_from_backbone(bb.coords)[40:52], atol=1e-9)


def test_composite_sampler_holds_fixed_parts_and_masked_positions_exactly():
    proc = D.make_process()
    g = torch.Generator().manual_seed(SHIFT)
    n = 3
    x0 = proc.prior_sample({"frames": (n, D.SLOTS, 4, 4), "seq": (n, D.SLOTS)}, generator=g)
    x0["seq"] = torch.randint(0, 20, (n, D.SLOTS), generator=g)
    seen = []

    def model(x, t, **c):
        seen.append({k: v.clone() for k, v in x.items()})
        return {"frames": torch.zeros(n, D.SLOTS, 6), "seq": torch.zeros(n, D.SLOTS, D.PAD + 1)}

    mask = torch.zeros(n, D.SLOTS, dtype=torch.bool)
    mask[:, :5] = True
    out = stochgen.sample(proc, model, shape={"frames": (n, D.SLOTS, 4, 4), "seq": (n, D.SLOTS)},
                          sampler="composite", steps=8, prediction="parts", generator=g,
                          fixed={"frames": x0["frames"], "seq": (x0["seq"], mask)})
    torch.testing.assert_close(out["frames"], x0["frames"], rtol=0, atol=0)
    assert torch.equal(out["seq"][:, :5], x0["seq"][:, :5])
    assert int(out["seq"].min()) >= 0 and int(out["seq"].max()) <= D.PAD  # no mask token left, in the alphabet
    # on the way the fixed tokens are either the data or masked (the forward marginal), never another value
    for x in seen:
        fixed_tok = x["seq"][:, :5]
        assert bool(((fixed_tok == x0["seq"][:, :5]) | (fixed_tok == D.PAD + 1)).all())
    with pytest.raises(ValueError, match="fixed names part 'pos'"):
        stochgen.sample(proc, model, shape={"frames": (n, D.SLOTS, 4, 4), "seq": (n, D.SLOTS)}, sampler="composite",
                        steps=2, prediction="parts", fixed={"pos": x0["seq"]})
    with pytest.raises(ValueError, match="mask of fixed part 'seq'"):
        stochgen.sample(proc, model, shape={"frames": (n, D.SLOTS, 4, 4), "seq": (n, D.SLOTS)}, sampler="composite",
                        steps=2, prediction="parts", fixed={"seq": (x0["seq"], mask[:, :3])})


def test_design_keeps_the_fixed_residues_and_the_alphabet(tiny):
    dom, model = tiny
    bb = demo_chain()
    designs = dom.design_window(bb, 50, 10, n=3, model=model, steps=10, seed=SHIFT)
    assert len(designs) == 3
    for d in designs:
        assert d["coords"].shape == bb.coords.shape and len(d["sequence"]) == len(bb)
        outside = np.r_[0:49, 61:len(bb)]  # the residue before the segment gets a new O only
        np.testing.assert_array_equal(d["coords"][outside], bb.coords[outside])
        np.testing.assert_array_equal(d["coords"][49, :3], bb.coords[49, :3])
        assert d["sequence"][:50] == bb.sequence[:50] and d["sequence"][60:] == bb.sequence[60:]
        assert len(d["segment_sequence"]) == 10 and set(d["segment_sequence"]) <= set(S.AMINO_ACIDS)
    seq_only = dom.design_window(bb, 50, 10, n=2, model=model, steps=10, mode="sequence", seed=SHIFT)
    for d in seq_only:
        np.testing.assert_array_equal(d["coords"], bb.coords)
        assert d["rmsd_to_input"] == 0.0
    struct_only = dom.design_window(bb, 50, 10, n=2, model=model, steps=10, mode="structure", seed=SHIFT)
    for d in struct_only:
        assert d["sequence"] == bb.sequence


def test_design_moves_with_the_protein(tiny):
    dom, model = tiny
    bb = demo_chain()
    R, t = rigid(11 + SHIFT)
    moved = bb.replace(coords=bb.coords @ R.T + t)
    a = dom.design_window(bb, 30, 8, n=2, model=model, steps=10, seed=5, close=False)
    b = dom.design_window(moved, 30, 8, n=2, model=model, steps=10, seed=5, close=False)
    for x, y in zip(a, b):
        assert x["segment_sequence"] == y["segment_sequence"]
        np.testing.assert_allclose(y["coords"][30:38], x["coords"][30:38] @ R.T + t, atol=2e-3)


def test_closure_gives_ideal_ca_spacing():
    bb = demo_chain()
    rng = np.random.default_rng(SHIFT)
    ca = bb.ca[20:32] + rng.normal(0, 0.8, (12, 3))
    closed = D.close_segment(bb.ca[19], ca, bb.ca[32])
    pts = np.concatenate([bb.ca[19:20], closed, bb.ca[32:33]])
    np.testing.assert_allclose(np.linalg.norm(np.diff(pts, axis=0), axis=-1), CA_CA, atol=2e-3)
    # it moves the trace little: the native one (bonds 3.8 +- 0.05) stays within 0.1 A
    native = D.close_segment(bb.ca[19], bb.ca[20:32], bb.ca[32])
    assert np.abs(native - bb.ca[20:32]).max() < 0.1


def test_segment_errors_are_named(tiny):
    dom, model = tiny
    with pytest.raises(ValueError, match="CHAIN:START-END"):
        dom.design(DEMO, segment="45-56", model=model)
    with pytest.raises(ValueError, match="has no residue 500"):
        dom.design(DEMO, segment="A:500-505", model=model)
    with pytest.raises(ValueError, match="touches the chain's end"):
        dom.design(DEMO, segment="A:-1-5", model=model)
    with pytest.raises(ValueError, match="4 to 16 residues"):
        dom.design(DEMO, segment="A:10-40", model=model)
    with pytest.raises(ValueError, match="no chain 'B'"):
        dom.design(DEMO, segment="B:10-15", model=model)
    with pytest.raises(ValueError, match="mode must be"):
        dom.design(DEMO, segment="A:10-15", model=model, mode="both")


def test_baselines_on_known_geometry():
    bb = demo_chain()
    lin = B.linear_ca(bb, 40, 9)
    np.testing.assert_allclose(np.diff(np.concatenate([bb.ca[39:40], lin, bb.ca[49:50]]), axis=0),
                               np.broadcast_to((bb.ca[49] - bb.ca[39]) / 10, (10, 3)), atol=1e-12)
    sp = B.spline_ca(bb, 40, 9)
    assert sp.shape == (9, 3)
    # a library that holds the chain itself finds its own segment (anchor RMSD 0)
    lib = B.FragmentLibrary([bb], flank=2)
    np.testing.assert_allclose(lib.predict(bb, 40, 9), bb.ca[40:49], atol=1e-8)
    prior = B.SecondaryStructurePrior([bb], ["H" * 60 + "C" * (len(bb) - 60)])
    counts = {a: bb.sequence[:60].count(a) for a in S.AMINO_ACIDS}
    assert prior.predict("H") == max(counts, key=counts.get)


def test_design_cli_writes_pdbs_and_scores(tiny, tmp_path):
    from stochgen.cli import main

    dom, model = tiny
    ckpt = model.save(tmp_path / "d.ckpt")
    out = tmp_path / "designs"
    assert main(["design", DEMO, "--segment", "A:40-49", "--model", str(ckpt), "-n", "3", "-o", str(out),
                 "--steps", "8"]) == 0
    files = sorted(os.listdir(out))
    assert files == ["design_001.pdb", "design_002.pdb", "design_003.pdb", "designs.csv"]
    import csv

    rows = list(csv.DictReader(open(out / "designs.csv")))
    assert len(rows) == 3
    back = S.read_chains(out / "design_002.pdb")[0]
    assert back.sequence == rows[1]["sequence"] and len(rows[1]["segment_sequence"]) == 10
    np.testing.assert_allclose(back.coords[:40], demo_chain().coords[:40], atol=5e-4)
    assert main(["design", DEMO, "--segment", "A:40-80", "--model", str(ckpt), "-o", str(out)]) != 0
