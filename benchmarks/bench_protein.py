"""Segment design on held-out chains: stochgen's model beside the structure and sequence baselines, one run.

    python benchmarks/bench_protein.py [--model CKPT] [--lengths 8 12 16] [--every 12] [--samples 4] [--steps 100]

Chains: the test side of the 40%-identity split of the MDAnalysisTests DSSP chains (10 chains, none
above 40% identity to a training chain). Segments: every ``--every``-th start of each test chain
with two fixed residues on each side, for each length. Per method: median CA-RMSD (A) of the
segment against the native one (the fixed part is kept exactly, so no superposition changes it),
share of valid geometry (every CA-CA bond of the segment and its junctions 3.80 +- 0.10 A, no CA
contact below 3 A), amino-acid recovery (AAR) and, for the model, the TM-score of the whole designed
chain against the native (tmtools). stochgen: the first of ``--samples`` designs (and the mean over
them). Baselines: linear and spline CA interpolation between the anchors, fragment lookup in the
training chains by anchor geometry, and the most frequent residue of each secondary-structure class.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="design checkpoint (default: the shipped one)")
    p.add_argument("--lengths", type=int, nargs="+", default=[8, 12, 16])
    p.add_argument("--every", type=int, default=12)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--csv", default=None, help="per-segment rows to this CSV")
    p.add_argument("--skip-design", action="store_true")
    p.add_argument("--skip-ensemble", action="store_true")
    p.add_argument("--ensemble-steps", type=int, default=None, help="training steps of the ensemble model "
                   "(default: the domain's)")
    p.add_argument("--ensemble-model", default=None, help="a trained ensemble checkpoint instead of training one")
    p.add_argument("--held-out", default="39:59", help="frames (start:stop) of adk_dims.dcd held out")
    p.add_argument("--confs", type=int, default=100, help="conformations drawn by each ensemble method")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if not args.skip_design:
        bench_design(args)
    if not args.skip_ensemble:
        bench_ensemble(args)
    return 0


def bench_ensemble(args) -> None:
    """adk_dims.dcd (MDAnalysisTests: 98 frames of adenylate kinase, 214 residues): train on the frames outside
    ``--held-out``, compare the model's conformations and ProDy's ANM sampling with the held-out frames."""
    import stochgen
    from domains.protein import baselines as B
    from domains.protein.data import mdanalysis_tests_data
    from domains.protein.metrics import ensemble_report, superpose_all
    from domains.protein.structure import read_trajectory

    data = mdanalysis_tests_data()
    frames = read_trajectory(os.path.join(data, "adk_dims.dcd"), os.path.join(data, "adk.psf"))
    a, b = (int(v) for v in args.held_out.split(":"))
    held = [f for i, f in enumerate(frames) if a <= i < b]
    train = [f for i, f in enumerate(frames) if not a <= i < b]
    dom = stochgen.domain("protein")
    t0 = time.time()
    if args.ensemble_model:
        model = stochgen.load(args.ensemble_model)
    else:
        tr = dom.ensemble_data(train, "adk_dims.dcd (training frames)")
        model = stochgen.fit(dom, tr, steps=args.ensemble_steps, progress=False, seed=0)
    fit_s = time.time() - t0
    t0 = time.time()
    gen = np.stack([m.ca for m in dom.ensemble(model, n=args.confs, seed=1)])
    gen_s = time.time() - t0
    ref = train[0].ca
    train_ca = superpose_all(np.stack([f.ca for f in train]), ref)
    held_ca = np.stack([f.ca for f in held])
    anm = B.anm_ensemble(train_ca, args.confs, seed=1)
    print(f"\nensembles: adk_dims.dcd, {len(train)} training frames, frames {a}-{b - 1} held out ({len(held)}); "
          f"{args.confs} conformations each; model trained in {fit_s:.0f} s, sampled in {gen_s:.1f} s")
    print(f"{'method':>22} | {'RMSF Pearson':>12} | {'W1 pairwise RMSD (A)':>20} | {'valid':>6} | {'valid bonds':>11}")
    for name, X in (("stochgen", gen), ("ANM (prody.sampleModes)", anm), ("training frames", train_ca)):
        r = ensemble_report(X, held_ca, ref)
        print(f"{name:>22} | {r['rmsf_pearson']:12.3f} | {r['pairwise_rmsd_w1']:20.3f} | {r['valid']:6.2f} | "
              f"{r['valid_bonds']:11.3f}")


def bench_design(args) -> None:
    import stochgen
    from domains.protein import baselines as B
    from domains.protein import design as D
    from domains.protein.data import chain_breaks, dssp_chains, identity_split

    chains = dssp_chains()
    tr, te = identity_split([c[1].sequence for c in chains], 0.2, 0.4, 0)
    train = [chains[i] for i in tr]
    test = [chains[i] for i in te]
    lib = B.FragmentLibrary([c[1] for c in train], flank=2)
    prior = B.SecondaryStructurePrior([c[1] for c in train], [c[2] for c in train])
    dom = stochgen.domain("protein")
    model = dom.resolve_model(args.model)
    try:
        import tmtools
    except ImportError:
        tmtools = None
    rows = []
    t0 = time.time()
    for name, bb, ss in test:
        brk = chain_breaks(bb)
        for L in args.lengths:
            for s in range(2, len(bb) - L - 2, args.every):
                if brk[s - 2:s + L + 1].any():
                    continue
                native = bb.ca[s:s + L]
                r = {"chain": name, "start": s, "length": L}
                for meth, ca in (("linear", B.linear_ca(bb, s, L)), ("spline", B.spline_ca(bb, s, L)),
                                 ("fragment", lib.predict(bb, s, L))):
                    r[f"{meth}_rmsd"] = float(np.sqrt(((ca - native) ** 2).sum(-1).mean()))
                    tmp = bb.coords.copy()
                    tmp[s:s + L, 1] = ca
                    r[f"{meth}_valid"] = D.geometry_report(bb.replace(coords=tmp), s, L)["valid"]
                r["ss_prior_aar"] = float(np.mean([a == b for a, b in zip(prior.predict(ss[s:s + L]),
                                                                           bb.sequence[s:s + L])]))
                designs = dom.design_window(bb, s, L, n=args.samples, model=model, steps=args.steps, seed=s)
                rm = [d["rmsd_to_input"] for d in designs]
                aar = [float(np.mean([a == b for a, b in zip(d["segment_sequence"], bb.sequence[s:s + L])]))
                       for d in designs]
                r.update({"model_rmsd": rm[0], "model_rmsd_mean": float(np.mean(rm)),
                          "model_valid": designs[0]["valid"],
                          "model_valid_mean": float(np.mean([d["valid"] for d in designs])), "model_aar": aar[0],
                          "model_aar_mean": float(np.mean(aar))})
                if tmtools is not None:
                    res = tmtools.tm_align(designs[0]["backbone"].ca, bb.ca, designs[0]["sequence"], bb.sequence)
                    r["model_tm"] = float(res.tm_norm_chain2)
                rows.append(r)
        print(f"{name}: {len(rows)} segments so far ({time.time() - t0:.0f} s)", flush=True)
    if args.csv:
        import csv

        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    print(f"\n{len(rows)} segments of {len(test)} held-out chains, {args.samples} designs each, "
          f"{time.time() - t0:.0f} s")
    hdr = f"{'length':>6} {'n':>4} | {'median CA-RMSD (A)':^44} | {'valid geometry':^36} | {'AAR':^17}"
    print(hdr)
    print(f"{'':>6} {'':>4} | {'model':>7} {'mean4':>6} {'linear':>7} {'spline':>7} {'fragm':>7} {'ratio':>6} | "
          f"{'model':>6} {'mean4':>6} {'linear':>6} {'spline':>6} {'fragm':>6} | {'model':>6} {'SS-prior':>8}")
    groups = [("8-16", rows)] + [(str(L), [r for r in rows if r["length"] == L]) for L in args.lengths]
    for label, rs in groups:
        if not rs:
            continue
        med = {k: float(np.median([r[k] for r in rs])) for k in
               ("model_rmsd", "model_rmsd_mean", "linear_rmsd", "spline_rmsd", "fragment_rmsd")}
        best = min(med["linear_rmsd"], med["spline_rmsd"], med["fragment_rmsd"])
        val = {k: float(np.mean([r[k] for r in rs])) for k in
               ("model_valid", "model_valid_mean", "linear_valid", "spline_valid", "fragment_valid")}
        aar = (float(np.mean([r["model_aar"] for r in rs])), float(np.mean([r["ss_prior_aar"] for r in rs])))
        print(f"{label:>6} {len(rs):>4} | {med['model_rmsd']:7.2f} {med['model_rmsd_mean']:6.2f} "
              f"{med['linear_rmsd']:7.2f} {med['spline_rmsd']:7.2f} {med['fragment_rmsd']:7.2f} "
              f"{med['model_rmsd'] / best:6.2f} | {val['model_valid']:6.2f} {val['model_valid_mean']:6.2f} "
              f"{val['linear_valid']:6.2f} {val['spline_valid']:6.2f} {val['fragment_valid']:6.2f} | "
              f"{aar[0]:6.3f} {aar[1]:8.3f}")
    if rows and "model_tm" in rows[0]:
        print(f"TM-score of the whole designed chains vs native (tmtools): median "
              f"{np.median([r['model_tm'] for r in rows]):.3f}")
    print("ratio: the model's median CA-RMSD over the best baseline's (below 1 beats it)")


if __name__ == "__main__":
    sys.exit(main())
