"""Segment co-design as a composite state: a window of a chain in its own reference frame.

A **window** is a segment of ``L`` consecutive residues (``MIN_LENGTH..SLOTS``) of a chain with at
least one residue on each side; the residue before it is the N-anchor, the one after it the
C-anchor. Everything is expressed in the N-anchor's frame ``T0`` (:mod:`domains.protein.frames`),
translations in units of ``LENGTH_UNIT`` Angstrom, so a window does not change when the protein
moves rigidly:

* state ``{"frames": (SLOTS, 4, 4), "seq": (SLOTS,)}``: the segment's frames ``T0^-1 T_i`` and
  amino acids; slots past ``L`` are padding (the C-anchor's frame, token ``PAD``);
* condition ``context`` ``(CONTEXT, F)``: the ``CONTEXT`` fixed residues nearest to either anchor
  (anchors included; padded with zero rows flagged absent for small chains) -- CA position, frame
  axes e1, e2, amino acid (one-hot), signed sequence offset from the segment, anchor flag,
  distance to the nearer anchor, presence flag;
* condition ``slots`` ``(SLOTS, G)``: inside-the-segment flag, position from the start and from
  the end, the length.

The process (:func:`make_process`) is the core's ``Composite`` of ``SE3Diffusion`` on the frames
and ``AbsorbingCTMC`` over 21 tokens (20 amino acids and ``PAD``) on the sequence, on one clock;
the network is :class:`domains.protein.nets.SegmentNet`.

After sampling, :func:`close_segment` (default on in design) moves the designed CA atoms little
so that consecutive CA-CA distances, the two junctions included, are 3.80 A and no designed CA
comes closer than ``MIN_CONTACT`` to the CA of a residue 2 or more positions away (alternating
SHAKE-style projections onto the bond constraints, anchors fixed, and pushes out of contacts);
the frames keep their rotations.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from stochgen import processes

from .frames import CA_CA, backbone_from_frames, frames_from_backbone, idealize_ca, place_oxygens
from .structure import AMINO_ACIDS, Backbone, encode_sequence

__all__ = ["SLOTS", "MIN_LENGTH", "CONTEXT", "LENGTH_UNIT", "PAD", "make_process", "parse_segment", "window",
           "check_window", "to_world", "splice", "close_segment", "geometry_report", "CONTEXT_FEATURES",
           "SLOT_FEATURES"]

SLOTS = 16
MIN_LENGTH = 4
CONTEXT = 64
LENGTH_UNIT = 10.0
PAD = len(AMINO_ACIDS)  # token 20: a padding slot
CONTEXT_FEATURES = 9 + len(AMINO_ACIDS) + 4
SLOT_FEATURES = 4
_OFFSET_SCALE = 16.0
#: the closest a designed CA is let come to a CA of a non-neighbouring residue in the closure (Angstrom);
#: above the 3 A of the validity check
MIN_CONTACT = 3.8


def make_process(trans_scale: float = 1.0):
    """The composite (frames x sequence) process of segment design (module docstring)."""
    return processes.Composite(
        {"frames": processes.SE3Diffusion(trans_scale=float(trans_scale)),
         "seq": processes.AbsorbingCTMC(num_states=PAD + 1)},
        event_shapes={"frames": (SLOTS, 4, 4), "seq": (SLOTS,)})


def parse_segment(spec: str) -> tuple[str, int, int]:
    """``"A:45-56"`` -> ``("A", 45, 56)`` (chain, first and last residue number, inclusive)."""
    m = re.fullmatch(r"\s*([^:\s]+):(-?\d+)-(-?\d+)\s*", str(spec))
    if not m:
        raise ValueError(f"segment {spec!r}: write it as CHAIN:START-END, e.g. A:45-56")
    chain, a, b = m.group(1), int(m.group(2)), int(m.group(3))
    if b < a:
        raise ValueError(f"segment {spec!r}: END ({b}) is before START ({a})")
    return chain, a, b


def check_window(bb: Backbone, start: int, length: int, what: str = "segment") -> None:
    """A clear error unless positions ``start .. start + length - 1`` make a designable window of ``bb``."""
    n = len(bb)
    if not MIN_LENGTH <= length <= SLOTS:
        raise ValueError(f"{what}: {length} residues; segments of {MIN_LENGTH} to {SLOTS} residues can be designed")
    if start < 0 or start + length > n:
        raise ValueError(f"{what} lies outside the chain ({n} residues)")
    if start < 1 or start + length > n - 1:
        raise ValueError(f"{what} touches the chain's end: a segment needs at least one fixed residue on each side "
                         "(its anchors)")


def _context_rows(bb: Backbone, start: int, length: int, T0inv: np.ndarray, T: np.ndarray) -> np.ndarray:
    n = len(bb)
    fixed = np.r_[0:start, start + length:n]
    anchors = bb.ca[[start - 1, start + length]]
    d = np.linalg.norm(bb.ca[fixed][:, None, :] - anchors[None], axis=-1).min(1)
    pick = fixed[np.argsort(d, kind="stable")[:CONTEXT]]
    dist = np.linalg.norm(bb.ca[pick][:, None, :] - anchors[None], axis=-1).min(1)
    local = T0inv[None] @ T[pick]
    seq = encode_sequence(bb.sequence)
    rows = np.zeros((CONTEXT, CONTEXT_FEATURES))
    k = len(pick)
    rows[:k, 0:3] = local[:, :3, 3] / LENGTH_UNIT
    rows[:k, 3:6] = local[:, :3, 0]
    rows[:k, 6:9] = local[:, :3, 1]
    rows[np.arange(k), 9 + seq[pick]] = 1.0
    off = np.where(pick < start, pick - start, pick - (start + length - 1))
    o = 9 + len(AMINO_ACIDS)
    rows[:k, o] = np.clip(off / _OFFSET_SCALE, -1.0, 1.0)
    rows[:k, o + 1] = (np.abs(off) == 1).astype(float)
    rows[:k, o + 2] = dist / LENGTH_UNIT
    rows[:k, o + 3] = 1.0
    return rows


def window(bb: Backbone, start: int, length: int) -> dict:
    """The training / design row of a window (module docstring): ``frames``, ``seq``, ``context``,
    ``slots`` (numpy) and ``T0`` (4x4, Angstrom) that maps the reference frame back to the chain."""
    check_window(bb, start, length)
    T = frames_from_backbone(bb.coords)
    T0 = T[start - 1]
    T0inv = np.linalg.inv(T0)
    local = T0inv[None] @ T
    local[:, :3, 3] /= LENGTH_UNIT
    frames = np.repeat(local[start + length][None], SLOTS, axis=0)
    frames[:length] = local[start:start + length]
    seq = np.full(SLOTS, PAD, dtype=np.int64)
    seq[:length] = encode_sequence(bb.sequence[start:start + length])
    i = np.arange(SLOTS)
    slots = np.stack([(i < length).astype(float), i / SLOTS, (length - 1 - i) / SLOTS,
                      np.full(SLOTS, length / SLOTS)], axis=-1)
    return {"frames": frames, "seq": seq, "context": _context_rows(bb, start, length, T0inv, T), "slots": slots,
            "T0": T0}


def to_world(frames, T0, length: int) -> np.ndarray:
    """Designed frames ``(n, SLOTS, 4, 4)`` of the reference frame -> chain frames ``(n, length, 4, 4)``."""
    f = np.asarray(frames, dtype=np.float64)[:, :length].copy()
    f[..., :3, 3] *= LENGTH_UNIT
    return np.asarray(T0)[None, None] @ f


def close_segment(ca_before: np.ndarray, ca: np.ndarray, ca_after: np.ndarray, iters: int = 200,
                  others: np.ndarray | None = None, pairs: np.ndarray | None = None,
                  min_contact: float = MIN_CONTACT) -> np.ndarray:
    """Segment CA ``(L, 3)`` moved so that consecutive CA-CA distances (anchors fixed) are 3.80 A and, with
    ``others`` ``(M, 3)`` (CA atoms of the fixed chain), no segment CA lies closer than ``min_contact`` to
    one of them where ``pairs`` ``(L, M)`` is true (default: all), nor to a segment CA 2 or more
    positions away (module docstring)."""
    pts = np.concatenate([ca_before[None], np.asarray(ca, dtype=np.float64), ca_after[None]])
    free = np.ones(len(pts), dtype=bool)
    free[[0, -1]] = False
    if others is None or not len(others):
        return idealize_ca(pts, free, iters)[1:-1]
    others = np.asarray(others, dtype=np.float64)
    seg = slice(1, len(pts) - 1)
    k = len(pts) - 2
    pairs = np.ones((k, len(others)), dtype=bool) if pairs is None else np.asarray(pairs, dtype=bool)
    apart = np.abs(np.arange(k)[:, None] - np.arange(k)[None]) >= 2
    for _ in range(int(iters)):
        pts = idealize_ca(pts, free, 1)
        s = pts[seg]
        d = s[:, None, :] - others[None]  # push segment atoms out of the fixed chain (the chain does not move)
        r = np.linalg.norm(d, axis=-1)
        push = np.where(pairs, np.clip(min_contact - r, 0.0, None) / np.maximum(r, 1e-9), 0.0)
        s = s + (push[..., None] * d).sum(1)
        d = s[:, None, :] - s[None]  # and out of each other, half each
        r = np.linalg.norm(d, axis=-1)
        push = np.where(apart, np.clip(min_contact - r, 0.0, None) / np.maximum(r, 1e-9), 0.0)
        pts[seg] = s + 0.5 * (push[..., None] * d).sum(1)
    return idealize_ca(pts, free, 20)[1:-1]


def splice(bb: Backbone, start: int, length: int, seg_frames: np.ndarray, seg_seq: str) -> Backbone:
    """The chain with positions ``start..start+length-1`` rebuilt from ``seg_frames`` (ideal backbone) and
    ``seg_seq``; the O atoms of the residue before the segment and of the segment are placed anew."""
    coords = bb.coords.copy()
    coords[start:start + length] = backbone_from_frames(np.asarray(seg_frames, dtype=np.float64))
    lo, hi = start - 1, start + length + 1
    coords[lo:hi - 1, 3] = place_oxygens(coords[lo:hi, :3])[:-1]
    seq = bb.sequence[:start] + seg_seq + bb.sequence[start + length:]
    return bb.replace(coords=coords, sequence=seq)


def geometry_report(bb: Backbone, start: int, length: int) -> dict:
    """CA-CA deviations of the segment's bonds (junctions included) and the closest CA-CA contact between
    a segment residue and any residue at least 2 positions away: ``{"ca_ca_max_dev", "min_contact",
    "valid"}`` (valid: every bond 3.80 +- 0.10 A and no contact below 3 A)."""
    ca = bb.ca
    idx = np.arange(start - 1, start + length + 1)
    bonds = np.linalg.norm(np.diff(ca[idx], axis=0), axis=-1)
    dev = float(np.abs(bonds - CA_CA).max())
    seg = np.arange(start, start + length)
    d = np.linalg.norm(ca[seg][:, None, :] - ca[None], axis=-1)
    far = np.abs(seg[:, None] - np.arange(len(ca))[None]) >= 2
    contact = float(d[far].min()) if far.any() else float("inf")
    return {"ca_ca_max_dev": dev, "min_contact": contact, "valid": bool(dev <= 0.10 and contact >= 3.0)}


def frames_tensor(rows: list[dict], key: str, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.stack([r[key] for r in rows]), dtype=dtype)
