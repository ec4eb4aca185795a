"""``SegmentNet``: the joint (frames, sequence) denoiser of segment design.

Input: the composite state ``{"frames": (B, S, 4, 4), "seq": (B, S)}`` of the ``S`` segment slots,
expressed in the frame of the residue before the segment (translations in units of
``LENGTH_UNIT`` Angstrom; :mod:`domains.protein.design`), the time ``t`` and two conditions:
``context`` ``(B, K, F)`` -- the nearest fixed residues, each as its CA position and frame axes in
the same reference frame, its amino acid and its sequence offset from the segment -- and
``slots`` ``(B, S, G)`` -- per slot: whether it is inside the segment and its position from
either end.

Every feature is measured in the reference frame of the chain itself, so the network's
output does not change when the whole protein is moved rigidly (SE(3)-invariant inputs;
the tangent outputs live in the same frame). A transformer (pre-norm self-attention over
the ``S`` slot tokens and the ``K`` context tokens together, the time embedding added to every
token) mixes them; two zero-initialised heads read the slot tokens: the tangent score (6 per
slot, translation first) scaled to the score's size at ``t`` as :class:`stochgen.nets.PoseMLP`
does (``score_process``), and logits over the sequence part's data states.
"""
from __future__ import annotations

import torch
from torch import nn

from stochgen import nets, processes
from stochgen.nets import ScoreNet, TimeEmbedding
from stochgen.objectives import rot_score_scale_fn

__all__ = ["SegmentNet", "EnsembleNet"]


def _score_scale(proc, rot_scale, t, b: int, n: int) -> torch.Tensor:
    """``(b, n, 6)``: 1 / sigma(t) on the translation part, the RMS rotation score at ``t`` on the rotation part."""
    t64 = t.to(torch.float64).clamp(min=proc.t_min).reshape(b, 1, 1)
    return torch.cat([(1.0 / proc.sigma(t64)).expand(b, n, 3), rot_scale(t64).expand(b, n, 3)], dim=-1)


def _score_process(spec: dict):
    """The SE3Diffusion of ``spec`` and its tabulated RMS rotation score (a clear error for another process)."""
    proc = processes.from_spec(spec)
    if not callable(getattr(proc, "rot_sigma", None)):
        raise ValueError(f"score_process must be an SE3Diffusion spec, got {spec!r}")
    return proc, rot_score_scale_fn(proc)


def _batch_time(t, b: int, device, dtype) -> torch.Tensor:
    tt = torch.as_tensor(t, device=device)
    return (tt.expand(b) if tt.dim() == 0 else tt.reshape(b)).to(dtype)


@nets.register
class SegmentNet(ScoreNet):
    """Transformer over segment slots and context residues (module docstring)."""

    def __init__(self, score_process: dict, slots: int, context_features: int, slot_features: int,
                 seq_categories: int, seq_states: int, hidden: int = 128, depth: int = 4, heads: int = 4,
                 emb_dim: int = 64, dropout: float = 0.0):
        super().__init__()
        self.score_process = dict(score_process)
        self._proc, self._rot_scale = _score_process(self.score_process)
        self.slots, self.context_features, self.slot_features = int(slots), int(context_features), int(slot_features)
        self.seq_categories, self.seq_states = int(seq_categories), int(seq_states)
        self.hidden, self.depth, self.heads, self.emb_dim, self.dropout = int(hidden), int(depth), int(heads), \
            int(emb_dim), float(dropout)
        h = self.hidden
        self.time_emb = TimeEmbedding(self.emb_dim, h)
        self.pose_in = nn.Linear(12, h)
        self.tok_in = nn.Embedding(self.seq_categories, h)
        self.slot_in = nn.Linear(self.slot_features, h)
        self.slot_pos = nn.Parameter(torch.zeros(self.slots, h))
        self.ctx_in = nn.Sequential(nn.Linear(self.context_features, h), nn.SiLU(), nn.Linear(h, h))
        self.kind = nn.Parameter(torch.zeros(2, h))  # slot / context token type
        layer = nn.TransformerEncoderLayer(h, self.heads, 4 * h, self.dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.mixer = nn.TransformerEncoder(layer, self.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(h)
        self.pose_head = nn.Linear(h, 6)
        self.seq_head = nn.Linear(h, self.seq_states)
        for head in (self.pose_head, self.seq_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def config(self) -> dict:
        return {"score_process": self.score_process, "slots": self.slots, "context_features": self.context_features,
                "slot_features": self.slot_features, "seq_categories": self.seq_categories,
                "seq_states": self.seq_states, "hidden": self.hidden, "depth": self.depth, "heads": self.heads,
                "emb_dim": self.emb_dim, "dropout": self.dropout}

    def forward(self, x: dict, t, context=None, slots=None, **_):
        if not isinstance(x, dict) or "frames" not in x or "seq" not in x:
            raise ValueError("SegmentNet takes the composite state {'frames': (B, S, 4, 4), 'seq': (B, S)}")
        if context is None or slots is None:
            raise ValueError("SegmentNet needs the conditions 'context' (B, K, F) and 'slots' (B, S, G)")
        T, seq = x["frames"], x["seq"]
        b = T.shape[0]
        dt = self.pose_in.weight.dtype
        pose = torch.cat([T[..., :3, :3].reshape(b, self.slots, 9), T[..., :3, 3]], dim=-1).to(dt)
        tt = _batch_time(t, b, T.device, dt)
        temb = self.time_emb(tt)[:, None, :]
        hs = self.pose_in(pose) + self.tok_in(seq.long()) + self.slot_in(slots.to(dt)) + self.slot_pos + self.kind[0]
        hc = self.ctx_in(context.to(dt)) + self.kind[1]
        h = self.mixer(torch.cat([hs, hc], dim=1) + temb)
        h = self.norm(h[:, : self.slots])
        raw = self.pose_head(h)
        scale = _score_scale(self._proc, self._rot_scale, tt, b, self.slots)
        return {"frames": raw * scale.to(raw.dtype), "seq": self.seq_head(h)}


@nets.register
class EnsembleNet(ScoreNet):
    """Tangent score of a whole protein's frames ``(B, N, 4, 4)`` (ensemble task): one token per residue.

    Per residue: its frame (rotation entries and translation over ``trans_scale``) and a learned
    residue embedding; a transformer over the residues with the time embedding added; a
    zero-initialised 6-vector head scaled to the score's size at ``t`` (as :class:`SegmentNet`).
    One token per residue keeps the map from noisy state to score wide (an MLP over all frames
    squeezes hundreds of coordinates through one hidden layer and under-fits the score)."""

    def __init__(self, score_process: dict, residues: int, hidden: int = 64, depth: int = 3, heads: int = 4,
                 emb_dim: int = 64):
        super().__init__()
        self.score_process = dict(score_process)
        self._proc, self._rot_scale = _score_process(self.score_process)
        self.trans_scale = float(getattr(self._proc, "trans_scale", 1.0))
        self.residues, self.hidden, self.depth, self.heads, self.emb_dim = int(residues), int(hidden), int(depth), \
            int(heads), int(emb_dim)
        h = self.hidden
        self.time_emb = TimeEmbedding(self.emb_dim, h)
        self.pose_in = nn.Sequential(nn.Linear(12, h), nn.SiLU(), nn.Linear(h, h))
        self.res_emb = nn.Parameter(torch.randn(self.residues, h) * 0.02)
        layer = nn.TransformerEncoderLayer(h, self.heads, 4 * h, 0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.mixer = nn.TransformerEncoder(layer, self.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(h)
        self.head = nn.Linear(h, 6)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def config(self) -> dict:
        return {"score_process": self.score_process, "residues": self.residues, "hidden": self.hidden,
                "depth": self.depth, "heads": self.heads, "emb_dim": self.emb_dim}

    def forward(self, x, t, **_):
        if not torch.is_tensor(x) or x.dim() != 4 or tuple(x.shape[1:]) != (self.residues, 4, 4):
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"EnsembleNet takes frames (B, {self.residues}, 4, 4), got {got}")
        b = x.shape[0]
        dt = self.head.weight.dtype
        feat = torch.cat([x[..., :3, :3].reshape(b, self.residues, 9), x[..., :3, 3] / self.trans_scale], -1).to(dt)
        tt = _batch_time(t, b, x.device, dt)
        h = self.mixer(self.pose_in(feat) + self.res_emb + self.time_emb(tt)[:, None, :])
        raw = self.head(self.norm(h))
        return raw * _score_scale(self._proc, self._rot_scale, tt, b, self.residues).to(raw.dtype)
