"""The baselines a structural biologist already has for a missing segment, for side-by-side figures.

Structure (CA trace of a segment between two fixed anchors):

* :func:`linear_ca`: CA atoms evenly spaced on the straight line between the anchors' CA;
* :func:`spline_ca`: a cubic Hermite curve from the N-anchor to the C-anchor whose end tangents
  follow the chain's direction at each anchor (CA of the anchor minus its outer neighbour),
  scaled so that the tangents match the curve length of a 3.8 A-per-residue trace;
* :class:`FragmentLibrary`: classic loop modelling by database lookup -- every fragment of the
  training chains with the same length, superposed (Kabsch) on the query by the CA atoms of
  ``flank`` residues on each side; the fragment with the lowest anchor RMSD gives the segment.

Sequence: :class:`SecondaryStructurePrior` -- the most frequent amino acid of each
secondary-structure class (helix / strand / coil) in the training chains.
"""
from __future__ import annotations

import numpy as np

from .frames import CA_CA, superpose
from .structure import AMINO_ACIDS, Backbone

__all__ = ["linear_ca", "spline_ca", "FragmentLibrary", "SecondaryStructurePrior", "anm_ensemble"]


def linear_ca(bb: Backbone, start: int, length: int) -> np.ndarray:
    a, b = bb.ca[start - 1], bb.ca[start + length]
    w = (np.arange(1, length + 1) / (length + 1))[:, None]
    return (1 - w) * a + w * b


def spline_ca(bb: Backbone, start: int, length: int) -> np.ndarray:
    ca = bb.ca
    a, b = ca[start - 1], ca[start + length]
    ta = a - ca[start - 2] if start >= 2 else b - a
    tb = ca[start + length + 1] - b if start + length + 1 < len(ca) else b - a
    span = CA_CA * (length + 1)
    ta = ta / max(np.linalg.norm(ta), 1e-9) * span
    tb = tb / max(np.linalg.norm(tb), 1e-9) * span
    s = (np.arange(1, length + 1) / (length + 1))[:, None]
    h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * a + h10 * ta + h01 * b + h11 * tb


class FragmentLibrary:
    """Fragments of the training chains, looked up by the geometry of ``flank`` anchor residues a side."""

    def __init__(self, chains: list[Backbone], flank: int = 2):
        from .data import chain_breaks

        self.flank = int(flank)
        self._chains = [(bb.ca, np.concatenate([[False], chain_breaks(bb)])) for bb in chains]
        self._cache: dict = {}

    def _fragments(self, length: int) -> np.ndarray:
        if length not in self._cache:
            k = length + 2 * self.flank
            out = []
            for ca, brk in self._chains:
                for s in range(len(ca) - k + 1):
                    if not brk[s + 1:s + k].any():
                        out.append(ca[s:s + k])
            self._cache[length] = np.stack(out) if out else np.zeros((0, k, 3))
        return self._cache[length]

    def predict(self, bb: Backbone, start: int, length: int) -> np.ndarray:
        f = self.flank
        if start - f < 0 or start + length + f > len(bb):
            raise ValueError(f"the fragment lookup needs {f} fixed residues on each side of the segment")
        frags = self._fragments(length)
        if not len(frags):
            raise ValueError(f"no training fragment of length {length + 2 * f}")
        ca = bb.ca
        q = np.concatenate([ca[start - f:start], ca[start + length:start + length + f]])
        anchors = np.concatenate([frags[:, :f], frags[:, f + length:]], axis=1)
        R, t, rmsd = superpose(anchors, q)
        i = int(np.argmin(rmsd))
        return frags[i, f:f + length] @ R[i].T + t[i]


class SecondaryStructurePrior:
    """The most frequent amino acid per secondary-structure class (H / E / C) of the training chains."""

    def __init__(self, chains: list[Backbone], ss: list[str]):
        counts = {c: np.zeros(len(AMINO_ACIDS)) for c in "HEC"}
        for bb, s in zip(chains, ss):
            for aa, c in zip(bb.sequence, s):
                counts[c][AMINO_ACIDS.index(aa)] += 1
        self.best = {c: AMINO_ACIDS[int(np.argmax(v))] for c, v in counts.items()}

    def predict(self, ss: str) -> str:
        return "".join(self.best.get(c, self.best["C"]) for c in ss)


def anm_ensemble(train_ca: np.ndarray, n: int, modes: int = 20, seed: int = 0) -> np.ndarray:
    """ProDy's anisotropic network model baseline (``prody.sampleModes``): the ANM of the training frames'
    mean structure, sampled along its ``modes`` slowest modes at the training frames' mean RMSD from
    that mean. ``train_ca`` ``(M, N, 3)`` superposed CA atoms; returns ``(n, N, 3)``."""
    try:
        import prody
    except ImportError:
        raise ImportError("the ANM baseline needs ProDy: pip install ProDy==2.6.1") from None
    from .metrics import superpose_all

    X = superpose_all(train_ca, train_ca[0])
    mu = X.mean(0)
    X = superpose_all(X, mu)
    rmsd = float(np.sqrt(((X - mu) ** 2).sum(-1).mean(-1)).mean())
    prody.confProDy(verbosity="none")
    anm = prody.ANM("train")
    anm.buildHessian(mu)
    anm.calcModes(modes)
    atoms = prody.AtomGroup("mean")
    atoms.setCoords(mu)
    np.random.seed(seed)  # sampleModes draws from numpy's global generator
    ens = prody.sampleModes(anm[:modes], atoms, n_confs=int(n), rmsd=rmsd)
    return np.asarray(ens.getCoordsets())
