"""Ensemble metrics: per-residue RMSF and the distribution of pairwise RMSDs, on CA atoms.

* :func:`superpose_all`: every conformation ``(M, N, 3)`` superposed (Kabsch) on a reference ``(N, 3)``;
* :func:`rmsf`: per-residue root-mean-square fluctuation about the set's own mean (after superposition);
* :func:`pairwise_rmsd`: the RMSD after optimal superposition of every pair of conformations;
* :func:`ensemble_report`: a generated set against a held-out set: Pearson correlation of their
  RMSF profiles, Wasserstein-1 distance between their pairwise-RMSD distributions, and the share
  of generated conformations with valid geometry (every consecutive CA-CA 3.80 +- 0.10 A,
  no two CA atoms at least 2 residues apart closer than 3 A), with the share of valid bonds.
"""
from __future__ import annotations

import numpy as np

from .frames import CA_CA, superpose

__all__ = ["superpose_all", "rmsf", "pairwise_rmsd", "ensemble_report", "valid_geometry"]


def superpose_all(X: np.ndarray, ref: np.ndarray) -> np.ndarray:
    R, t, _ = superpose(X, ref)
    return np.einsum("mij,mkj->mki", R, X) + t[:, None]


def rmsf(X: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    X = superpose_all(X, X[0] if ref is None else ref)
    mu = superpose_all(X, X.mean(0)).mean(0)
    X = superpose_all(X, mu)
    return np.sqrt(((X - X.mean(0)) ** 2).sum(-1).mean(0))


def pairwise_rmsd(X: np.ndarray) -> np.ndarray:
    out = []
    for i in range(len(X) - 1):
        out.append(superpose(X[i + 1:], X[i])[2])
    return np.concatenate(out) if out else np.zeros(0)


def valid_geometry(X: np.ndarray) -> tuple[np.ndarray, float]:
    """Per conformation: valid (bonds and contacts, module docstring); and the share of valid CA-CA bonds."""
    d = np.linalg.norm(np.diff(X, axis=1), axis=-1)
    ok_bonds = np.abs(d - CA_CA) <= 0.10
    n = X.shape[1]
    far = np.abs(np.arange(n)[:, None] - np.arange(n)[None]) >= 2
    valid = []
    for x in X:
        dd = np.linalg.norm(x[:, None] - x[None], axis=-1)
        valid.append(bool(dd[far].min() >= 3.0))
    return ok_bonds.all(1) & np.array(valid), float(ok_bonds.mean())


def ensemble_report(gen: np.ndarray, held: np.ndarray, ref: np.ndarray) -> dict:
    from scipy.stats import pearsonr, wasserstein_distance

    r = float(pearsonr(rmsf(gen, ref), rmsf(held, ref))[0])
    w1 = float(wasserstein_distance(pairwise_rmsd(gen), pairwise_rmsd(held)))
    valid, bonds = valid_geometry(gen)
    return {"rmsf_pearson": r, "pairwise_rmsd_w1": w1, "valid": float(valid.mean()), "valid_bonds": bonds}
