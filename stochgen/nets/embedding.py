"""What a score network does with its inputs before its body: noise level, class label, checks.

* :class:`SinusoidalEmbedding` / :class:`FourierEmbedding` turn a per-sample scalar noise
  input ``t`` of shape ``(B,)`` into features ``(B, dim)``.
* :class:`TimeEmbedding` follows the features with a two-layer MLP to the network's
  embedding width.
* :class:`LabelEmbedding` is a class-embedding table with one extra, reserved **null**
  row for classifier-free guidance: label ``-1`` (or ``label=None``) selects it.
  :func:`drop_labels` replaces labels by ``-1`` at random during training.
* :class:`ScoreNet` is the base class of every network in :mod:`stochgen.nets`: it
  parses ``(x, t, **cond)`` the same way everywhere and provides ``config()`` /
  ``spec()`` (what checkpoints store).

The noise input ``t`` is whatever the caller feeds the network: the process time in
``[0, 1]`` (VP, sub-VP, interpolants), or a preconditioned noise level such as EDM's
``c_noise = log(sigma) / 4``. The default sinusoidal features (``scale=1000``) resolve
differences of about 1e-3 and stay unambiguous over a range of about +-30; for inputs
spanning other ranges choose ``emb_scale`` (or ``embedding="fourier"``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

EMBEDDINGS = ("sinusoidal", "fourier")


class SinusoidalEmbedding(nn.Module):
    """Transformer-style features ``[cos(w_k t), sin(w_k t)]`` with
    ``w_k = scale * max_period ** (-k / (dim / 2))``, ``k = 0 .. dim/2 - 1``.

    Deterministic (no parameters, nothing in the state dict).
    """

    def __init__(self, dim: int, scale: float = 1000.0, max_period: float = 10000.0):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"the embedding dimension must be even and >= 2, got {dim}")
        if not (scale > 0 and max_period > 1):
            raise ValueError(f"need scale > 0 and max_period > 1, got scale={scale}, max_period={max_period}")
        self.dim, self.scale, self.max_period = int(dim), float(scale), float(max_period)
        half = dim // 2
        freqs = self.scale * torch.exp(-math.log(self.max_period) * torch.arange(half, dtype=torch.float64) / half)
        self.register_buffer("freqs", freqs.to(torch.get_default_dtype()), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        ang = t.to(self.freqs.dtype)[:, None] * self.freqs
        return torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scale={self.scale:g}, max_period={self.max_period:g}"


class FourierEmbedding(nn.Module):
    """Random Fourier features ``[cos(2 pi f_k t), sin(2 pi f_k t)]`` with ``f_k ~ N(0, scale^2)``.

    The frequencies come from a private generator seeded by ``seed`` (so ``config()``
    rebuilds them) and are also kept in the state dict, so a checkpoint carries them.
    """

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"the embedding dimension must be even and >= 2, got {dim}")
        if not scale > 0:
            raise ValueError(f"need scale > 0, got {scale}")
        self.dim, self.scale, self.seed = int(dim), float(scale), int(seed)
        g = torch.Generator().manual_seed(self.seed)
        freqs = torch.randn(dim // 2, generator=g, dtype=torch.float64) * self.scale
        self.register_buffer("freqs", freqs.to(torch.get_default_dtype()))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        ang = (2 * math.pi) * t.to(self.freqs.dtype)[:, None] * self.freqs
        return torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scale={self.scale:g}, seed={self.seed}"


def make_features(kind: str, dim: int, scale: float | None = None) -> nn.Module:
    """``"sinusoidal"`` (default scale 1000) or ``"fourier"`` (default scale 16) features of width ``dim``."""
    if kind == "sinusoidal":
        return SinusoidalEmbedding(dim, scale=1000.0 if scale is None else scale)
    if kind == "fourier":
        return FourierEmbedding(dim, scale=16.0 if scale is None else scale)
    raise ValueError(f"unknown embedding {kind!r}; choose one of {', '.join(EMBEDDINGS)}")


class TimeEmbedding(nn.Module):
    """Noise-level features followed by ``Linear -> SiLU -> Linear``: ``(B,) -> (B, hidden)``."""

    def __init__(self, emb_dim: int, hidden: int, kind: str = "sinusoidal", scale: float | None = None):
        super().__init__()
        self.features = make_features(kind, emb_dim, scale)
        self.mlp = nn.Sequential(nn.Linear(emb_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(t).to(self.mlp[0].weight.dtype))


class LabelEmbedding(nn.Module):
    """Class-embedding table with ``num_classes + 1`` rows; the last row is the **null** class.

    Labels are integer class indices ``0 .. num_classes - 1``; ``-1`` selects the null row
    (the unconditional branch of classifier-free guidance), and so does ``label=None`` for
    the whole batch. Anything else is an error, never silently clamped.
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.table = nn.Embedding(self.num_classes + 1, dim)

    @property
    def null_index(self) -> int:
        return self.num_classes

    def index(self, label, batch: int, device) -> torch.Tensor:
        """Row indices ``(batch,)`` for ``label`` (None, int, or integer tensor of shape () or (batch,))."""
        if label is None:
            return torch.full((batch,), self.null_index, dtype=torch.long, device=device)
        lab = label if isinstance(label, torch.Tensor) else torch.as_tensor(label)
        if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
            raise ValueError(f"label must hold integer class indices (or -1 for the null class), got dtype {lab.dtype}")
        lab = lab.to(device=device, dtype=torch.long)
        if lab.dim() == 0 or (lab.dim() == 1 and lab.shape[0] == 1):
            lab = lab.reshape(1).expand(batch)
        elif lab.shape != (batch,):
            raise ValueError(f"label must be a scalar or have one entry per sample ({batch}), got shape {tuple(lab.shape)}")
        bad = (lab < -1) | (lab >= self.num_classes)
        if bool(bad.any()):
            raise ValueError(f"labels must lie in 0..{self.num_classes - 1} (or -1 for the null class), "
                             f"got values in [{int(lab.min())}, {int(lab.max())}]")
        return torch.where(lab < 0, torch.full_like(lab, self.null_index), lab)

    def forward(self, label, batch: int) -> torch.Tensor:
        return self.table(self.index(label, batch, self.table.weight.device))


def drop_labels(label: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return a copy of integer ``label`` with each entry replaced by ``-1`` (null) with probability ``p``.

    This is the label dropout that trains the unconditional branch used by
    classifier-free guidance (``stochgen.guidance.cfg(model, w, uncond={"label": -1})``).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"the drop probability must lie in [0, 1], got {p}")
    label = torch.as_tensor(label)
    if label.is_floating_point():
        raise ValueError(f"label must hold integer class indices, got dtype {label.dtype}")
    u = torch.rand(label.shape, generator=generator, device=label.device if generator is None else generator.device)
    return torch.where(u.to(label.device) < p, torch.full_like(label, -1), label)


def _groups(channels: int, want: int) -> int:
    """The largest group count <= ``want`` that divides ``channels`` (for GroupNorm)."""
    for g in range(min(want, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


class ScoreNet(nn.Module):
    """Base class: ``net(x, t, **cond) -> tensor`` of ``x``'s shape; ``config()``, ``spec()``.

    Shared input handling:

    * ``t``: scalar, ``(B,)``, or ``(B, 1, ..., 1)``; any real dtype.
    * ``x`` may have a different floating dtype from the parameters (a float64 sampler
      driving a float32 network): it is cast to the parameters' dtype and the output cast
      back to ``x``'s dtype.
    * ``cond``: the network reads ``label`` when built with ``num_classes`` and ``y`` when
      built with a conditioning input, and ignores other keys, as the rest of stochgen
      expects (``guidance.cfg`` hands the conditional keywords to a separate unconditional
      network; a mean-reverting process's ``y`` reaches every network). ``net.cond_keys``
      lists the keys it reads, for callers that want to check that a condition is used.
    """

    def config(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def spec(self) -> dict:
        """``{"type": class name, "config": config()}``; ``stochgen.nets.build(spec)`` rebuilds the net."""
        return {"type": type(self).__name__, "config": self.config(), "module": type(self).__module__}

    @property
    def cond_keys(self) -> tuple[str, ...]:
        """The conditioning keys this network reads."""
        keys = []
        if getattr(self, "label_emb", None) is not None:
            keys.append("label")
        if getattr(self, "_cond_size", 0):
            keys.append("y")
        keys.extend(k for k in (getattr(self, "cond_inputs", None) or {}) if k not in keys)
        return tuple(keys)

    def _named_inputs(self, x: torch.Tensor, cond: dict, dtype) -> list:
        """The named conditions of ``self.cond_inputs`` (``{name: entries per sample}``), each flattened to
        ``(B, size)`` in ``dtype`` (one row is broadcast to the batch); a clear error when one is missing
        or has the wrong size."""
        out = []
        for k, size in (getattr(self, "cond_inputs", None) or {}).items():
            c = cond.get(k)
            if c is None:
                raise ValueError(f"{type(self).__name__} reads the condition {k!r}; pass {k}=tensor of shape "
                                 f"(B, ...) with {size} entries per sample")
            c = torch.as_tensor(c, device=x.device)
            if c.dim() == 0 or c.shape[0] not in (1, x.shape[0]) or c[0].numel() != size:
                raise ValueError(f"condition {k!r} must have shape (B={x.shape[0]}, ...) with {size} entries per "
                                 f"sample, got {tuple(c.shape)}")
            out.append(c.reshape(c.shape[0], -1).to(dtype).expand(x.shape[0], -1))
        return out

    def _param_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @staticmethod
    def _batch_time(t, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        if t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"t must be real, got dtype {t.dtype}")
        if t.numel() == 1:
            return t.reshape(1).expand(b)
        if t.dim() >= 1 and t.shape[0] == b and t.numel() == b:
            return t.reshape(b)
        raise ValueError(f"t must be a scalar or have one entry per sample ({b}), got shape {tuple(t.shape)}")

    def _embed(self, x: torch.Tensor, t, cond: dict) -> torch.Tensor:
        """The (B, hidden) embedding of the noise level and (if used) the label."""
        e = self.time_emb(self._batch_time(t, x))
        if self.label_emb is not None:
            e = e + self.label_emb(cond.get("label"), x.shape[0]).to(e.dtype)
        return e

    def _cond_input(self, x: torch.Tensor, cond: dict, dtype: torch.dtype) -> torch.Tensor | None:
        """The conditioning signal ``y`` (same shape as ``x`` except the channel/feature size)."""
        if not self._cond_size:
            return None
        y = cond.get("y")
        if y is None:
            raise ValueError(f"{type(self).__name__} was built with a conditioning input; pass y=tensor")
        y = torch.as_tensor(y, device=x.device)
        want = (x.shape[0], self._cond_size) + tuple(x.shape[2:])
        if tuple(y.shape) != want:
            raise ValueError(f"y must have shape {want}, got {tuple(y.shape)}")
        return y.to(dtype)

    def _inputs(self, x: torch.Tensor, t, cond: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Network input (x in the parameters' dtype, with ``y`` concatenated on dim 1) and the embedding."""
        dtype = self._param_dtype()
        h = x.to(dtype)
        y = self._cond_input(x, cond, dtype)
        if y is not None:
            h = torch.cat([h, y], dim=1)
        return h, self._embed(x, t, cond)
