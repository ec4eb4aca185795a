"""``CompositeNet``: the default network of composite states (a dict of named parts).

``net({name: x_part}, t, **cond) -> {name: prediction}``. Every part is embedded into one
``hidden``-wide vector -- floats ``(B, ...)`` flattened through a linear layer, integer tokens
``(B, L, ...)`` through a token table (plus a learned position table) whose rows are
concatenated and projected -- the part vectors are concatenated and mixed by residual blocks
that read the time embedding (and the label / named conditions, as :class:`~stochgen.nets.MLP`
does), and one linear head per part returns that part's prediction: the state's shape for
``x0`` / ``eps`` / ..., ``(B, L, ..., K)`` logits for tokens, ``(B, ..., dim)`` for tangent
predictions. Heads start at zero (an untrained net predicts 0 / uniform logits).

``parts`` (the config) is ``{name: {"input": "floats" | "tokens", "shape": [...per sample],
"categories": K (tokens), "output": [...per-sample output shape], "probs": bool}}``
(:func:`stochgen.objectives.composite.part_layout` builds it from a process and an example).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from . import register
from .embedding import LabelEmbedding, ScoreNet, TimeEmbedding
from .mlp import _ResBlock

__all__ = ["CompositeNet"]

_INPUTS = ("floats", "tokens")


def _check_layout(name, spec) -> dict:
    if not isinstance(spec, dict) or spec.get("input") not in _INPUTS:
        raise ValueError(f"part {name!r}: the layout needs input in {_INPUTS}, got {spec!r}")
    out = {"input": spec["input"], "shape": [int(v) for v in spec.get("shape", [])],
           "output": [int(v) for v in spec.get("output", spec.get("shape", []))], "probs": bool(spec.get("probs"))}
    if any(v < 1 for v in out["shape"] + out["output"]):
        raise ValueError(f"part {name!r}: shapes must have positive sizes, got {spec!r}")
    if out["input"] == "tokens":
        k = int(spec.get("categories", 0))
        if k < 2:
            raise ValueError(f"part {name!r}: a token part needs categories >= 2, got {spec.get('categories')!r}")
        out["categories"] = k
    return out


@register
class CompositeNet(ScoreNet):
    """Embed every part, mix them jointly with the time embedding, one head per part (module docstring)."""

    def __init__(self, parts: dict, hidden: int = 128, depth: int = 3, emb_dim: int = 64, token_dim: int = 16,
                 num_classes: int | None = None, cond_inputs: dict | None = None, dropout: float = 0.0):
        super().__init__()
        if not isinstance(parts, dict) or not parts:
            raise ValueError(f"CompositeNet needs parts={{name: layout}}, got {parts!r}")
        if int(hidden) < 1 or int(depth) < 0 or int(emb_dim) < 2 or int(token_dim) < 1:
            raise ValueError(f"need hidden >= 1, depth >= 0, emb_dim >= 2, token_dim >= 1; got hidden={hidden}, "
                             f"depth={depth}, emb_dim={emb_dim}, token_dim={token_dim}")
        self.parts = {str(k): _check_layout(k, v) for k, v in parts.items()}
        self.hidden, self.depth, self.emb_dim, self.token_dim = int(hidden), int(depth), int(emb_dim), int(token_dim)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.cond_inputs = {str(k): int(v) for k, v in (cond_inputs or {}).items()}
        self.dropout = float(dropout)
        self._cond_size = 0
        self.time_emb = TimeEmbedding(self.emb_dim, self.hidden)
        self.label_emb = LabelEmbedding(self.num_classes, self.hidden) if self.num_classes is not None else None
        self.tokens = nn.ModuleDict()
        self.positions = nn.ParameterDict()
        self.embed = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        for k, lay in self.parts.items():
            n_in = math.prod(lay["shape"])
            if lay["input"] == "tokens":
                self.tokens[k] = nn.Embedding(lay["categories"], self.token_dim)
                self.positions[k] = nn.Parameter(torch.zeros(n_in, self.token_dim))
                n_in = n_in * self.token_dim
            self.embed[k] = nn.Linear(n_in, self.hidden)
            head = nn.Linear(self.hidden, math.prod(lay["output"]))
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
            self.heads[k] = head
        n_cond = sum(self.cond_inputs.values())
        self.mix = nn.Linear(self.hidden * len(self.parts) + n_cond, self.hidden)
        self.blocks = nn.ModuleList(_ResBlock(self.hidden, self.dropout) for _ in range(self.depth))
        self.out_norm = nn.LayerNorm(self.hidden)

    def config(self) -> dict:
        return {"parts": {k: dict(v) for k, v in self.parts.items()}, "hidden": self.hidden, "depth": self.depth,
                "emb_dim": self.emb_dim, "token_dim": self.token_dim, "num_classes": self.num_classes,
                "cond_inputs": dict(self.cond_inputs) or None, "dropout": self.dropout}

    @property
    def cond_keys(self) -> tuple[str, ...]:
        return (("label",) if self.label_emb is not None else ()) + tuple(self.cond_inputs)

    def _part_input(self, k: str, x, dtype) -> torch.Tensor:
        lay = self.parts[k]
        if not torch.is_tensor(x) or x.dim() < 1 or list(x.shape[1:]) != lay["shape"]:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"CompositeNet: part {k!r} must have shape (B, {', '.join(map(str, lay['shape']))}), "
                             f"got {got}")
        b = x.shape[0]
        if lay["input"] == "tokens":
            if x.is_floating_point():
                if not bool((x == torch.round(x)).all()):
                    raise ValueError(f"CompositeNet: part {k!r} holds tokens; got non-integer values")
                x = x.round().long()
            x = x.long().reshape(b, -1)
            if bool(((x < 0) | (x >= lay["categories"])).any()):
                raise ValueError(f"CompositeNet: part {k!r} holds tokens in 0..{lay['categories'] - 1}, got values "
                                 f"in [{int(x.min())}, {int(x.max())}]")
            h = self.tokens[k](x) + self.positions[k]
            return h.reshape(b, -1).to(dtype)
        if not x.is_floating_point():
            raise ValueError(f"CompositeNet: part {k!r} holds floats, got dtype {x.dtype}")
        return x.reshape(b, -1).to(dtype)

    def forward(self, x: dict, t, **cond) -> dict:
        if not isinstance(x, dict) or set(x) != set(self.parts):
            got = sorted(x) if isinstance(x, dict) else type(x).__name__
            raise ValueError(f"CompositeNet takes a dict with the parts {sorted(self.parts)}, got {got}")
        dtype = self._param_dtype()
        first = x[next(iter(self.parts))]
        b = first.shape[0]
        hs = [self.embed[k](self._part_input(k, x[k], dtype)) for k in self.parts]
        # named conditions through the one ScoreNet helper (cond_inputs)
        named = self._named_inputs(first, cond, dtype) if self.cond_inputs else []
        h = torch.cat(hs + named, dim=1)
        h = self.mix(h)
        e = self._embed(first, t, cond)
        for blk in self.blocks:
            h = blk(h, e)
        h = F.silu(self.out_norm(h))
        out = {}
        for k, lay in self.parts.items():
            y = self.heads[k](h).reshape([b] + lay["output"])
            if lay["probs"]:
                y = torch.softmax(y.float(), dim=-1)
            elif lay["input"] == "floats" and torch.is_tensor(x[k]) and x[k].is_floating_point():
                y = y.to(x[k].dtype)
            out[k] = y
        return out
