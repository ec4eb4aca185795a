"""A point-free MLP over poses: ``PoseMLP(frames)(x, t, **cond) -> (B, *frames, 6)`` Lie-algebra vectors.

The input is a batch of poses ``(B, 4, 4)`` or a product of frames ``(B, *frames, 4, 4)``
(one pose per part / residue). Each pose is read as its 9 rotation-matrix entries, its
translation ``p`` divided by ``trans_scale`` and that translation in the body frame ``R^T p``
(15 features, continuous everywhere on SE(3): no rotation-vector wrap at angle pi; the body-frame
one spares the network learning the products a body-frame velocity or score is made of); the features of all frames are flattened together, so
frames interact, and go through :class:`stochgen.nets.MLP` (time embedding, labels, named
conditions). The output is one 6-vector per frame, translation part first, rotation last.

Output scaling (``score_process``): a tangent score of :class:`~stochgen.processes.SE3Diffusion`
spans orders of magnitude over time (translation ``-eps / sigma(t)``, rotation up to ~``sqrt(3) /
rot_sigma_min``). Given that process's spec, the network's raw output ``(a, b)`` per frame is
returned as ``(a / sigma(t), b * rot_score_scale(t))``: the raw translation part is then the
negative noise (eps matching) and the raw rotation part the score over its RMS norm (FrameDiff's
normalisation), both of order one. Without it (interpolants: a velocity of order one) the
raw output is returned.
"""
from __future__ import annotations

import math

import torch

from . import register
from .mlp import MLP

__all__ = ["PoseMLP"]


def _frames(frames) -> tuple:
    if frames is None:
        return ()
    if isinstance(frames, int):
        frames = (frames,)
    try:
        out = tuple(int(f) for f in frames)
    except (TypeError, ValueError):
        raise ValueError(f"frames must be None, an int or a list of ints (the frame shape), got {frames!r}") from None
    if any(f < 1 for f in out):
        raise ValueError(f"frames must hold positive sizes, got {frames!r}")
    return out


@register
class PoseMLP(MLP):
    """Residual MLP over the poses of all frames; see the module docstring.

    * ``frames``: the frame shape (``None`` or ``[]``: one pose per sample ``(B, 4, 4)``;
      ``3`` or ``[3]``: ``(B, 3, 4, 4)``).
    * ``trans_scale``: translations are divided by it on input (the data's length scale).
    * ``score_process``: spec of an :class:`SE3Diffusion` whose tangent score the output
      is scaled to (``None``: no output scaling).
    * ``hidden``, ``depth``, ``emb_dim``, ``num_classes``, ``cond_inputs``, ``embedding``,
      ``emb_scale``, ``dropout``, ``zero_init``: as for :class:`stochgen.nets.MLP`.
    """

    def __init__(self, frames=None, hidden: int = 128, depth: int = 3, emb_dim: int = 64,
                 num_classes: int | None = None, cond_inputs: dict | None = None, trans_scale: float = 1.0,
                 score_process: dict | None = None, embedding: str = "sinusoidal", emb_scale: float | None = None,
                 dropout: float = 0.0, zero_init: bool = True):
        self.frames = _frames(frames)
        k = math.prod(self.frames)
        super().__init__(dim=15 * k, hidden=hidden, depth=depth, emb_dim=emb_dim, num_classes=num_classes,
                         out_dim=6 * k, embedding=embedding, emb_scale=emb_scale, dropout=dropout,
                         zero_init=zero_init, cond_inputs=cond_inputs)
        try:
            self.trans_scale = float(trans_scale)
        except (TypeError, ValueError):
            raise ValueError(f"trans_scale must be a positive number, got {trans_scale!r}") from None
        if not (math.isfinite(self.trans_scale) and self.trans_scale > 0):
            raise ValueError(f"trans_scale must be a positive number, got {trans_scale!r}")
        self.score_process = None if score_process is None else dict(score_process)
        self._scaler = None
        if self.score_process is not None:
            from .. import processes
            from ..objectives.lie_group import rot_score_scale_fn

            proc = processes.from_spec(self.score_process)
            for need in ("sigma", "rot_sigma"):
                if not callable(getattr(proc, need, None)):
                    raise ValueError(f"score_process must be a diffusion on SO(3) x R^3 with sigma(t) and "
                                     f"rot_sigma(t) (SE3Diffusion); {type(proc).__name__} has no {need}()")
            self._scaler = (proc, rot_score_scale_fn(proc))

    def config(self) -> dict:
        return {"frames": list(self.frames) or None, "hidden": self.hidden, "depth": self.depth,
                "emb_dim": self.emb_dim, "num_classes": self.num_classes,
                "cond_inputs": dict(self.cond_inputs) or None, "trans_scale": self.trans_scale,
                "score_process": self.score_process, "embedding": self.embedding, "emb_scale": self.emb_scale,
                "dropout": self.dropout, "zero_init": self.zero_init}

    def forward(self, x: torch.Tensor, t, **cond) -> torch.Tensor:
        want = self.frames + (4, 4)
        if not torch.is_tensor(x) or x.dim() != len(want) + 1 or tuple(x.shape[1:]) != want:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"PoseMLP(frames={list(self.frames) or None}) takes poses of shape "
                             f"(B, {', '.join(map(str, want))}), got {got}")
        b = x.shape[0]
        R, p = x[..., :3, :3], x[..., :3, 3] / self.trans_scale
        body = (R.transpose(-1, -2) @ p[..., None])[..., 0]  # the translation in the body frame (R^T p)
        feat = torch.cat([R.reshape(x.shape[:-2] + (9,)), p, body], dim=-1)
        raw = super().forward(feat.reshape(b, -1), t, **cond).reshape((b,) + self.frames + (6,))
        if self._scaler is None:
            return raw
        proc, rot_scale = self._scaler
        tb = self._batch_time(t, x).to(torch.float64).clamp(min=proc.t_min)  # sigma(0) = 0: never divide by it
        tb = tb.reshape((b,) + (1,) * (len(self.frames) + 1))
        scale = torch.cat([(1.0 / proc.sigma(tb)).expand(raw.shape[:-1] + (3,)),
                           rot_scale(tb).expand(raw.shape[:-1] + (3,))], dim=-1)
        return raw * scale.to(raw.dtype)
