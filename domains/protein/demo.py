"""The protein part of ``stochgen demo``: co-design a 10-residue segment of an embedded chain.

The chain ships in ``domains/protein/data/demo_2i39A.pdb.gz`` (2i39 chain A, 117 residues, from
MDAnalysisTests' DSSP set; it is on the test side of the training split, so the shipped model never
saw it, nor any chain more than 40% identical to it). The demo redesigns residues 40-49 (backbone
and sequence), writes the designs as PDB files with their scores, and draws the CA traces of the
native chain, the designs and the straight-line baseline. Needs gemmi (``pip install -e ".[protein]"``);
matplotlib for the figure.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

DEMO_CHAIN = Path(__file__).resolve().parent / "data" / "demo_2i39A.pdb.gz"
DEMO_SEGMENT = "A:40-49"


def plot_designs(path: str, bb, designs, start: int, length: int, baseline=None, label: str | None = None) -> str:
    """3-D CA traces: the chain near the segment (grey), its native segment (black), the designs (colours)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stochgen.checkpoint import write_atomic

    lo, hi = max(0, start - 12), min(len(bb), start + length + 12)
    fig = plt.figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot(1, 1, 1, projection="3d")
    ca = bb.ca
    ax.plot(*ca[lo:hi].T, color="0.75", lw=2, label="fixed chain")
    seg = slice(start - 1, start + length + 1)
    ax.plot(*ca[seg].T, color="black", lw=2.5, label="native segment")
    for i, d in enumerate(designs):
        ax.plot(*d["backbone"].ca[seg].T, lw=1.2, alpha=0.85, label="designs" if i == 0 else None)
    if baseline is not None:
        pts = np.concatenate([ca[start - 1:start], baseline, ca[start + length:start + length + 1]])
        ax.plot(*pts.T, "--", color="tab:red", lw=1.2, label="linear baseline")
    label = label or f"residues {bb.resnums[start]}-{bb.resnums[start + length - 1]}"
    ax.set_title(f"{label}: native vs {len(designs)} designs (CA traces)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path


def run(domain, out: str, quick: bool = False, seed: int = 0, device: str = "cpu", progress: bool = True) -> list[str]:
    from .baselines import linear_ca
    from .domain import default_weights
    from .structure import read_chains, write_structure

    if not default_weights().is_file():
        return [f"no shipped design model at {default_weights()}; nothing to show"]
    t0 = time.perf_counter()
    n = 4 if quick else 8
    designs = domain.design(DEMO_CHAIN, segment=DEMO_SEGMENT, n=n, seed=seed)
    took = time.perf_counter() - t0
    bb = read_chains(DEMO_CHAIN)[0]
    start, length = designs[0]["start"], designs[0]["length"]
    os.makedirs(out, exist_ok=True)
    for i, d in enumerate(designs):
        write_structure(os.path.join(out, f"design_{i + 1:03d}.pdb"), d["backbone"])
    rm = [d["rmsd_to_input"] for d in designs]
    lin = linear_ca(bb, start, length)
    lin_rmsd = float(np.sqrt(((lin - bb.ca[start:start + length]) ** 2).sum(-1).mean()))
    native = bb.sequence[start:start + length]
    aar = np.mean([np.mean([a == b for a, b in zip(d["segment_sequence"], native)]) for d in designs])
    lines = [f"co-designed residues {DEMO_SEGMENT} (backbone + sequence) of a held-out 117-residue chain: {n} designs "
             f"in {took:.1f} s with the shipped model",
             f"CA-RMSD to the native segment: median {np.median(rm):.2f} A (straight-line baseline {lin_rmsd:.2f} A); "
             f"valid geometry {sum(d['valid'] for d in designs)}/{n}; sequence recovery {aar:.2f}",
             f"native {native}, designs " + ", ".join(d["segment_sequence"] for d in designs[:3]) + ", ..."]
    try:
        fig = plot_designs(os.path.join(out, "designs.png"), bb, designs, start, length, lin, DEMO_SEGMENT)
        lines.append(f"wrote design_001..{n:03d}.pdb and {os.path.basename(fig)} to {out}")
    except ImportError:
        lines.append(f"wrote design_001..{n:03d}.pdb to {out} (the figure needs matplotlib)")
    return lines
