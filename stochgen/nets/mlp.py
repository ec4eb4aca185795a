"""Residual MLP score network for vector data ``(B, dim)``."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .embedding import EMBEDDINGS, LabelEmbedding, ScoreNet, TimeEmbedding


class _ResBlock(nn.Module):
    """``h + W2 silu(W1 silu(LN(h)) + E e)``: the noise/label embedding ``e`` is added inside every block."""

    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        z = self.fc1(F.silu(self.norm(h))) + self.emb(F.silu(e))
        return h + self.fc2(self.drop(F.silu(z)))


class MLP(ScoreNet):
    """``MLP(dim)(x, t, label=None, y=None)`` for ``x`` of shape ``(B, dim)``; returns ``(B, out_dim or dim)``.

    * ``hidden``, ``depth``: width and number of residual blocks.
    * ``emb_dim``: width of the noise-level features (``embedding``: ``"sinusoidal"`` or
      ``"fourier"``, ``emb_scale``: their frequency scale; see :mod:`stochgen.nets.embedding`).
    * ``num_classes``: class conditioning through cond key ``label`` (integers ``0..num_classes-1``);
      ``label=-1`` or ``label=None`` is the reserved null class for classifier-free guidance.
    * ``cond_dim``: a conditioning vector ``y`` of shape ``(B, cond_dim)`` concatenated to ``x``
      (e.g. the signal of a mean-reverting process).
    * ``cond_inputs``: ``{name: size}`` -- named conditions of any shape ``(B, ...)`` with ``size``
      entries per sample, flattened and concatenated to ``x`` (what ``fit`` builds for data with
      conditions). A missing one is an error naming it.
    * ``zero_init``: the output layer starts at zero, so the untrained net outputs exactly 0.
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, emb_dim: int = 128,
                 num_classes: int | None = None, cond_dim: int = 0, out_dim: int | None = None,
                 embedding: str = "sinusoidal", emb_scale: float | None = None, dropout: float = 0.0,
                 zero_init: bool = True, cond_inputs: dict | None = None):
        super().__init__()
        self.cond_inputs = {str(k): int(v) for k, v in (cond_inputs or {}).items()}
        if any(v < 1 for v in self.cond_inputs.values()):
            raise ValueError(f"cond_inputs sizes must be >= 1, got {self.cond_inputs}")
        if int(dim) < 1 or int(hidden) < 1 or int(depth) < 0 or int(cond_dim) < 0:
            raise ValueError(f"need dim >= 1, hidden >= 1, depth >= 0, cond_dim >= 0; got dim={dim}, "
                             f"hidden={hidden}, depth={depth}, cond_dim={cond_dim}")
        if embedding not in EMBEDDINGS:
            raise ValueError(f"unknown embedding {embedding!r}; choose one of {', '.join(EMBEDDINGS)}")
        self.dim, self.hidden, self.depth, self.emb_dim = int(dim), int(hidden), int(depth), int(emb_dim)
        self.num_classes = None if num_classes is None else int(num_classes)
        self._cond_size = int(cond_dim)
        self.out_dim = self.dim if out_dim is None else int(out_dim)
        self.embedding, self.emb_scale = embedding, None if emb_scale is None else float(emb_scale)
        self.dropout, self.zero_init = float(dropout), bool(zero_init)

        self.time_emb = TimeEmbedding(self.emb_dim, self.hidden, embedding, self.emb_scale)
        self.label_emb = LabelEmbedding(self.num_classes, self.hidden) if self.num_classes is not None else None
        self.in_proj = nn.Linear(self.dim + self._cond_size + sum(self.cond_inputs.values()), self.hidden)
        self.blocks = nn.ModuleList(_ResBlock(self.hidden, self.dropout) for _ in range(self.depth))
        self.out_norm = nn.LayerNorm(self.hidden)
        self.out = nn.Linear(self.hidden, self.out_dim)
        if self.zero_init:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def config(self) -> dict:
        return {"dim": self.dim, "hidden": self.hidden, "depth": self.depth, "emb_dim": self.emb_dim,
                "num_classes": self.num_classes, "cond_dim": self._cond_size,
                "out_dim": None if self.out_dim == self.dim else self.out_dim, "embedding": self.embedding,
                "emb_scale": self.emb_scale, "dropout": self.dropout, "zero_init": self.zero_init,
                "cond_inputs": dict(self.cond_inputs) or None}

    def forward(self, x: torch.Tensor, t, **cond) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"MLP(dim={self.dim}) takes x of shape (B, {self.dim}), got {tuple(x.shape)}")
        h, e = self._inputs(x, t, cond)
        if self.cond_inputs:
            h = torch.cat([h] + self._named_inputs(x, cond, h.dtype), dim=1)
        h = self.in_proj(h)
        for blk in self.blocks:
            h = blk(h, e)
        return self.out(F.silu(self.out_norm(h))).to(x.dtype)
