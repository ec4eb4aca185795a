"""Residue frames from backbone atoms and ideal backbone atoms from frames.

A residue's frame is the rigid motion ``T = [[R, CA], [0, 1]]`` built by Gram-Schmidt from its N,
CA, C atoms (as AlphaFold and FrameDiff do): ``e1`` along C - CA, ``e2`` the part of N - CA
orthogonal to ``e1``, ``e3 = e1 x e2``, ``R = [e1 e2 e3]`` (columns). In that frame the ideal
backbone (Engh & Huber bond lengths and the N-CA-C angle) has CA at the origin, C on the x axis
at 1.526 A and N in the xy plane at (-0.525, 1.363, 0) (|N - CA| = 1.458 A, N-CA-C = 111.1 deg);
:func:`backbone_from_frames` maps these through each frame. The carbonyl O is placed in the
peptide plane from C and the next residue's N (C=O 1.231 A, on the bisector of the two bonds
leaving C); the last residue, with no next N, takes a typical local O position of real chains.

Everything takes numpy arrays or torch tensors with any leading batch shape and returns the same kind.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["frames_from_backbone", "backbone_from_frames", "place_oxygens", "IDEAL_LOCAL", "backbone_rmsd",
           "CA_CA", "idealize_ca", "superpose"]

#: ideal local positions of N, CA, C in the residue frame (Angstrom)
IDEAL_LOCAL = np.array([[-0.525, 1.363, 0.0], [0.0, 0.0, 0.0], [1.526, 0.0, 0.0]])
#: local position of O for a chain's last residue (no next N). Measured over the residues of the 51
#: MDAnalysisTests DSSP chains: O's mean local x is 2.151 A and its mean direction about the CA-C axis
#: points along (y, z) = (-0.95, -0.30); O is put there at its C=O distance (1.06 A from the axis).
#: The rotation about the axis (psi) is not known for a last residue, so that one atom is approximate.
_LAST_O_LOCAL = np.array([2.151, -1.01, -0.32])
_CO_BOND = 1.231
#: the CA-CA distance of consecutive trans residues (Angstrom)
CA_CA = 3.80


def _torch(x):
    return (torch.as_tensor(x, dtype=torch.float64), True) if isinstance(x, np.ndarray) else (x, False)


def _unit(v, eps=1e-12):
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def frames_from_backbone(coords):
    """``(..., L, >=3, 3)`` atoms (N, CA, C first) -> frames ``(..., L, 4, 4)``."""
    x, was_np = _torch(coords)
    if x.shape[-1] != 3 or x.dim() < 2 or x.shape[-2] < 3:
        raise ValueError(f"backbone atoms must have shape (..., 3 or 4, 3) (N, CA, C[, O]), got {tuple(x.shape)}")
    n, ca, c = x[..., 0, :], x[..., 1, :], x[..., 2, :]
    e1 = _unit(c - ca)
    u2 = n - ca
    e2 = _unit(u2 - (u2 * e1).sum(-1, keepdim=True) * e1)
    e3 = torch.linalg.cross(e1, e2, dim=-1)
    T = torch.zeros(x.shape[:-2] + (4, 4), dtype=x.dtype, device=x.device)
    T[..., :3, :3] = torch.stack([e1, e2, e3], dim=-1)
    T[..., :3, 3] = ca
    T[..., 3, 3] = 1.0
    return T.numpy() if was_np else T


def place_oxygens(ncac):
    """Carbonyl O of every residue ``(..., L, 3)`` from N, CA, C ``(..., L, 3, 3)`` (module docstring)."""
    x, was_np = _torch(ncac)
    ca, c = x[..., 1, :], x[..., 2, :]
    o = torch.empty_like(c)
    if x.shape[-3] > 1:
        n_next = x[..., 1:, 0, :]
        d = _unit(_unit(c[..., :-1, :] - ca[..., :-1, :]) + _unit(c[..., :-1, :] - n_next))
        o[..., :-1, :] = c[..., :-1, :] + _CO_BOND * d
    T = frames_from_backbone(x[..., -1:, :, :])
    local = torch.as_tensor(_LAST_O_LOCAL, dtype=x.dtype, device=x.device)
    o[..., -1, :] = (T[..., 0, :3, :3] @ local) + T[..., 0, :3, 3]
    return o.numpy() if was_np else o


def backbone_from_frames(frames):
    """Frames ``(..., L, 4, 4)`` -> ideal backbone atoms ``(..., L, 4, 3)`` (N, CA, C, O)."""
    T, was_np = _torch(frames)
    if T.shape[-2:] != (4, 4):
        raise ValueError(f"frames must have shape (..., L, 4, 4), got {tuple(T.shape)}")
    local = torch.as_tensor(IDEAL_LOCAL, dtype=T.dtype, device=T.device)
    ncac = torch.einsum("...ij,aj->...ai", T[..., :3, :3], local) + T[..., None, :3, 3]
    out = torch.cat([ncac, place_oxygens(ncac)[..., None, :]], dim=-2)
    return out.numpy() if was_np else out


def backbone_rmsd(a, b, atoms=slice(0, 3)) -> float:
    """RMSD (no superposition) between two ``(L, 4, 3)`` backbones over ``atoms`` (default N, CA, C)."""
    a, b = np.asarray(a)[:, atoms], np.asarray(b)[:, atoms]
    return float(np.sqrt(((a - b) ** 2).sum(-1).mean()))


def idealize_ca(ca: np.ndarray, free: np.ndarray | None = None, iters: int = 200) -> np.ndarray:
    """CA atoms ``(..., L, 3)`` moved (little) so that consecutive CA-CA distances are 3.80 A.

    Cyclic projection onto the distance constraints (SHAKE-style): each bond in turn is set to
    ``CA_CA`` by moving its two ends along the bond, split between the ends that are ``free``
    (``(L,)`` bool, default all; fixed atoms never move), ``iters`` sweeps. Converges when the
    constraints can be met (a gap no longer than its bonds allow)."""
    pts = np.array(ca, dtype=np.float64)
    free = np.ones(pts.shape[-2], dtype=bool) if free is None else np.asarray(free, dtype=bool)
    w = free.astype(float)
    for _ in range(int(iters)):
        for i in range(pts.shape[-2] - 1):
            if w[i] + w[i + 1] == 0:
                continue
            d = pts[..., i + 1, :] - pts[..., i, :]
            r = np.linalg.norm(d, axis=-1, keepdims=True)
            corr = (r - CA_CA) / np.maximum(r, 1e-9) * d
            pts[..., i, :] += corr * w[i] / (w[i] + w[i + 1])
            pts[..., i + 1, :] -= corr * w[i + 1] / (w[i] + w[i + 1])
    return pts


def superpose(P: np.ndarray, Q: np.ndarray):
    """Optimal superposition (Kabsch, through ``roma.rigid_points_registration``) of point sets ``P``
    ``(M, k, 3)`` (or ``(k, 3)``) onto ``Q`` ``(k, 3)``: rotations ``(M, 3, 3)``, translations ``(M, 3)``
    with ``P R^T + t ~= Q``, and the RMSD after superposition ``(M,)``."""
    import roma

    P = torch.as_tensor(np.asarray(P, dtype=np.float64))
    single = P.dim() == 2
    P = P[None] if single else P
    Q = torch.as_tensor(np.asarray(Q, dtype=np.float64)).expand_as(P)
    R, t = roma.rigid_points_registration(P, Q)
    moved = P @ R.transpose(-1, -2) + t[:, None]
    rmsd = ((moved - Q) ** 2).sum(-1).mean(-1).sqrt()
    R, t, rmsd = R.numpy(), t.numpy(), rmsd.numpy()
    return (R[0], t[0], rmsd[0]) if single else (R, t, rmsd)
