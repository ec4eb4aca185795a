"""Networks over integer tokens for jump processes (discrete diffusion): a small transformer
(:class:`TokenTransformer`) and a one-hot MLP for short sequences (:class:`TokenMLP`).

``TokenTransformer(num_tokens, num_outputs, length)(x, t, **cond)`` takes integer states ``x`` of
shape ``(B, *event_shape)`` (``prod(event_shape) == length``; every position is one token of
``0 .. num_tokens - 1``, the mask of an absorbing chain included) and returns one vector of
``num_outputs`` logits (or probabilities, ``output="probs"``) per position:
``(B, *event_shape, num_outputs)``.

Body: token embedding + learned position embedding, then ``depth`` pre-norm transformer blocks
whose layer norms are modulated (shift, scale, gate) by the noise-level / label / condition
embedding (adaLN, as in DiT), then a modulated output norm and a linear head. The head starts at
zero (``zero_init``), so the untrained net predicts the uniform law at every position.

Conditions: ``label`` (integer classes, ``-1`` / ``None`` = the null class for classifier-free
guidance; needs ``num_classes``) and named floating conditions ``cond_inputs={name: size}``
(flattened per sample, projected and added to the embedding). ``net.cond_keys`` lists them.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from . import register
from .embedding import EMBEDDINGS, LabelEmbedding, ScoreNet, TimeEmbedding
from .mlp import MLP

__all__ = ["TokenTransformer", "TokenMLP"]

_OUTPUTS = ("logits", "probs")
_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return h * (1.0 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class _Block(nn.Module):
    """``h + g1 attn(mod(LN(h))) ; h + g2 mlp(mod(LN(h)))`` with (shift, scale, gate) from the embedding."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        inner = max(1, int(round(width * mlp_ratio)))
        self.mlp = nn.Sequential(nn.Linear(width, inner), nn.GELU(), nn.Dropout(dropout), nn.Linear(inner, width))
        self.ada = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        s1, c1, g1, s2, c2, g2 = self.ada(F.silu(e)).chunk(6, dim=-1)
        a = _modulate(self.norm1(h), s1, c1)
        h = h + (1.0 + g1.unsqueeze(1)) * self.attn(a, a, a, need_weights=False)[0]
        m = _modulate(self.norm2(h), s2, c2)
        return h + (1.0 + g2.unsqueeze(1)) * self.mlp(m)


@register
class TokenTransformer(ScoreNet):
    """Transformer denoiser over tokens (module docstring).

    * ``num_tokens``: input vocabulary (a jump process's ``num_categories``: the mask included);
      ``num_outputs``: values predicted per position (its ``num_states``: data values only).
    * ``length``: number of positions of one state (``prod(event_shape)``).
    * ``width``, ``depth``, ``heads``, ``mlp_ratio``, ``dropout``: transformer size.
    * ``emb_dim``, ``embedding``, ``emb_scale``: the noise-level features (see
      :mod:`stochgen.nets.embedding`); the network is fed the process time in ``[0, 1]``.
    * ``num_classes``, ``cond_inputs``: conditions (module docstring).
    * ``output``: ``"logits"`` (default) or ``"probs"`` (a softmax over the last axis).
    """

    def __init__(self, num_tokens: int, num_outputs: int, length: int, width: int = 64, depth: int = 2,
                 heads: int = 4, mlp_ratio: float = 4.0, emb_dim: int = 64, num_classes: int | None = None,
                 cond_inputs: dict | None = None, embedding: str = "sinusoidal", emb_scale: float | None = None,
                 dropout: float = 0.0, output: str = "logits", zero_init: bool = True):
        super().__init__()
        for name, v, lo in (("num_tokens", num_tokens, 1), ("num_outputs", num_outputs, 1), ("length", length, 1),
                            ("width", width, 1), ("depth", depth, 0), ("heads", heads, 1), ("emb_dim", emb_dim, 2)):
            if isinstance(v, bool) or int(v) != v or int(v) < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if int(width) % int(heads):
            raise ValueError(f"width ({width}) must be a multiple of heads ({heads})")
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(map(repr, _OUTPUTS))}, got {output!r}")
        if embedding not in EMBEDDINGS:
            raise ValueError(f"unknown embedding {embedding!r}; choose one of {', '.join(EMBEDDINGS)}")
        if not mlp_ratio > 0 or not 0 <= dropout < 1:
            raise ValueError(f"need mlp_ratio > 0 and dropout in [0, 1), got {mlp_ratio}, {dropout}")
        self.cond_inputs = {str(k): int(v) for k, v in (cond_inputs or {}).items()}
        if any(v < 1 for v in self.cond_inputs.values()):
            raise ValueError(f"cond_inputs sizes must be >= 1, got {self.cond_inputs}")
        self.num_tokens, self.num_outputs, self.length = int(num_tokens), int(num_outputs), int(length)
        self.width, self.depth, self.heads, self.emb_dim = int(width), int(depth), int(heads), int(emb_dim)
        self.mlp_ratio, self.dropout, self.output, self.zero_init = float(mlp_ratio), float(dropout), output, \
            bool(zero_init)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.embedding, self.emb_scale = embedding, None if emb_scale is None else float(emb_scale)
        self._cond_size = 0  # no concatenated 'y' signal (ScoreNet.cond_keys)

        self.tok = nn.Embedding(self.num_tokens, self.width)
        self.pos = nn.Parameter(torch.randn(self.length, self.width) / math.sqrt(self.width))
        self.time_emb = TimeEmbedding(self.emb_dim, self.width, embedding, self.emb_scale)
        self.label_emb = LabelEmbedding(self.num_classes, self.width) if self.num_classes is not None else None
        self.cond_proj = nn.ModuleDict({k: nn.Linear(v, self.width) for k, v in self.cond_inputs.items()})
        self.blocks = nn.ModuleList(_Block(self.width, self.heads, self.mlp_ratio, self.dropout)
                                    for _ in range(self.depth))
        self.out_norm = nn.LayerNorm(self.width, elementwise_affine=False)
        self.out_ada = nn.Linear(self.width, 2 * self.width)
        nn.init.zeros_(self.out_ada.weight)
        nn.init.zeros_(self.out_ada.bias)
        self.head = nn.Linear(self.width, self.num_outputs)
        if self.zero_init:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def config(self) -> dict:
        return {"num_tokens": self.num_tokens, "num_outputs": self.num_outputs, "length": self.length,
                "width": self.width, "depth": self.depth, "heads": self.heads, "mlp_ratio": self.mlp_ratio,
                "emb_dim": self.emb_dim, "num_classes": self.num_classes, "cond_inputs": dict(self.cond_inputs) or None,
                "embedding": self.embedding, "emb_scale": self.emb_scale, "dropout": self.dropout,
                "output": self.output, "zero_init": self.zero_init}

    @property
    def cond_keys(self) -> tuple[str, ...]:
        return (("label",) if self.label_emb is not None else ()) + tuple(self.cond_inputs)

    def _tokens(self, x) -> torch.Tensor:
        if not torch.is_tensor(x):
            raise ValueError(f"TokenTransformer takes an integer tensor of tokens, got {type(x).__name__}")
        if x.is_floating_point():
            if not bool(torch.isfinite(x).all()) or not bool((x == torch.round(x)).all()):
                raise ValueError("TokenTransformer takes integer tokens; got non-integer floating values")
            x = x.long()
        elif x.dtype not in _INT_DTYPES:
            raise ValueError(f"TokenTransformer takes integer tokens, got dtype {x.dtype}")
        if x.dim() < 2 or math.prod(x.shape[1:]) != self.length:
            raise ValueError(f"TokenTransformer(length={self.length}) takes tokens of shape (B, ...) with "
                             f"{self.length} positions per sample, got shape {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.num_tokens):
            raise ValueError(f"tokens must lie in 0..{self.num_tokens - 1}, got values in "
                             f"[{int(x.min())}, {int(x.max())}]")
        return x.long()

    def _condition(self, x: torch.Tensor, t, cond: dict) -> torch.Tensor:
        e = self.time_emb(self._batch_time(t, x))
        if self.label_emb is not None:
            e = e + self.label_emb(cond.get("label"), x.shape[0]).to(e.dtype)
        # named conditions, checked and flattened by the one ScoreNet helper
        for (k, proj), c in zip(self.cond_proj.items(), self._named_inputs(x, cond, e.dtype)):
            e = e + proj(c)
        return e

    def forward(self, x, t, **cond) -> torch.Tensor:
        x = self._tokens(x)
        b = x.shape[0]
        e = self._condition(x, t, cond)
        h = self.tok(x.reshape(b, self.length)) + self.pos.to(e.dtype)
        for blk in self.blocks:
            h = blk(h, e)
        shift, scale = self.out_ada(F.silu(e)).chunk(2, dim=-1)
        out = self.head(_modulate(self.out_norm(h), shift, scale))
        out = out.reshape(tuple(x.shape) + (self.num_outputs,))
        return torch.softmax(out, dim=-1) if self.output == "probs" else out


@register
class TokenMLP(ScoreNet):
    """Residual MLP over the one-hot encoding of a whole (short) token sequence.

    ``TokenMLP(num_tokens, num_outputs, length)(x, t, **cond)``: same inputs and output as
    :class:`TokenTransformer`; the ``length * num_tokens`` one-hot features of a state go
    through a :class:`stochgen.nets.MLP` (``hidden``, ``depth``, time / label / condition
    embeddings) whose ``length * num_outputs`` outputs are the per-position logits. Cheap on a
    CPU for short sequences (its cost does not grow with ``length`` squared, but its input layer
    grows with ``length * num_tokens``); no weight sharing between positions.
    """

    def __init__(self, num_tokens: int, num_outputs: int, length: int, hidden: int = 128, depth: int = 2,
                 emb_dim: int = 64, num_classes: int | None = None, cond_inputs: dict | None = None,
                 embedding: str = "sinusoidal", emb_scale: float | None = None, dropout: float = 0.0,
                 output: str = "logits", zero_init: bool = True):
        super().__init__()
        for name, v in (("num_tokens", num_tokens), ("num_outputs", num_outputs), ("length", length)):
            if isinstance(v, bool) or int(v) != v or int(v) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(map(repr, _OUTPUTS))}, got {output!r}")
        self.num_tokens, self.num_outputs, self.length = int(num_tokens), int(num_outputs), int(length)
        self.output = output
        self.body = MLP(dim=self.length * self.num_tokens, hidden=hidden, depth=depth, emb_dim=emb_dim,
                        num_classes=num_classes, out_dim=self.length * self.num_outputs, embedding=embedding,
                        emb_scale=emb_scale, dropout=dropout, zero_init=zero_init, cond_inputs=cond_inputs)
        self._cond_size = 0

    def config(self) -> dict:
        c = self.body.config()
        return {"num_tokens": self.num_tokens, "num_outputs": self.num_outputs, "length": self.length,
                "hidden": c["hidden"], "depth": c["depth"], "emb_dim": c["emb_dim"], "num_classes": c["num_classes"],
                "cond_inputs": c["cond_inputs"], "embedding": c["embedding"], "emb_scale": c["emb_scale"],
                "dropout": c["dropout"], "output": self.output, "zero_init": c["zero_init"]}

    @property
    def cond_keys(self) -> tuple[str, ...]:
        return (("label",) if self.body.label_emb is not None else ()) + tuple(self.body.cond_inputs)

    _tokens = TokenTransformer._tokens

    def forward(self, x, t, **cond) -> torch.Tensor:
        x = self._tokens(x)
        b = x.shape[0]
        dtype = self.body.in_proj.weight.dtype
        h = F.one_hot(x.reshape(b, self.length), self.num_tokens).to(dtype).reshape(b, -1)
        out = self.body(h, t, **cond).reshape(tuple(x.shape) + (self.num_outputs,))
        return torch.softmax(out, dim=-1) if self.output == "probs" else out
