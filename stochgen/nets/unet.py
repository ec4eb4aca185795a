"""Small U-Nets: :class:`UNet` for images ``(B, C, H, W)`` and :class:`UNet1d` for sequences ``(B, C, L)``.

Both share one implementation over the number of spatial dimensions. Per level:
``num_res_blocks`` residual blocks (GroupNorm, SiLU, 3-wide convolutions, the
noise/label embedding added between the two convolutions), then a stride-2
convolution down. Odd sizes are fine: going down rounds up (7 -> 4) and going up
interpolates to exactly the size of the matching skip connection, so H=W=8 (8 -> 4)
and 28 (28 -> 14 -> 7) both work, as does any length L. Optional multi-head
self-attention sits at the lowest resolution (off by default).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .embedding import EMBEDDINGS, LabelEmbedding, ScoreNet, TimeEmbedding, _groups


def _conv(dims: int):
    return nn.Conv1d if dims == 1 else nn.Conv2d


class ResBlock(nn.Module):
    """``skip(h) + conv2(drop(silu(norm2(conv1(silu(norm1(h))) + E silu(e)))))``."""

    def __init__(self, dims: int, cin: int, cout: int, emb: int, groups: int = 8, dropout: float = 0.0):
        super().__init__()
        conv = _conv(dims)
        self.norm1 = nn.GroupNorm(_groups(cin, groups), cin)
        self.conv1 = conv(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(_groups(cout, groups), cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = conv(cout, cout, 3, padding=1)
        self.skip = conv(cin, cout, 1) if cin != cout else nn.Identity()
        self._tail = (1,) * dims

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        z = self.conv1(F.silu(self.norm1(h)))
        z = z + self.emb(F.silu(e)).reshape(e.shape[0], -1, *self._tail)
        z = self.conv2(self.drop(F.silu(self.norm2(z))))
        return self.skip(h) + z


class SelfAttention(nn.Module):
    """Multi-head self-attention over all spatial positions, with a residual connection."""

    def __init__(self, channels: int, heads: int = 4, groups: int = 8):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention heads ({heads}) must divide the channel count ({channels})")
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, c = h.shape[:2]
        z = self.norm(h).reshape(b, c, -1)
        n = z.shape[-1]
        q, k, v = self.qkv(z).reshape(b, 3, self.heads, c // self.heads, n).transpose(-1, -2).unbind(1)
        o = F.scaled_dot_product_attention(q, k, v)  # (b, heads, n, c / heads)
        o = o.transpose(-1, -2).reshape(b, c, n)
        return h + self.proj(o).reshape(h.shape)


class _Block(nn.Module):
    def __init__(self, res: ResBlock, attn: SelfAttention | None):
        super().__init__()
        self.res, self.attn = res, attn

    def forward(self, h, e):
        h = self.res(h, e)
        return self.attn(h) if self.attn is not None else h


class Downsample(nn.Module):
    def __init__(self, dims: int, channels: int):
        super().__init__()
        self.conv = _conv(dims)(channels, channels, 3, stride=2, padding=1)

    def forward(self, h):
        return self.conv(h)


class Upsample(nn.Module):
    """Nearest-neighbour resize to exactly ``size`` (the skip connection's), then a 3-wide convolution."""

    def __init__(self, dims: int, channels: int):
        super().__init__()
        self.conv = _conv(dims)(channels, channels, 3, padding=1)

    def forward(self, h, size):
        return self.conv(F.interpolate(h, size=tuple(size), mode="nearest"))


class _UNet(ScoreNet):
    _dims = 2
    _layout = "(B, C, H, W)"

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (32, 64), num_res_blocks: int = 1,
                 attention: bool = False, heads: int = 4, emb_dim: int = 128, num_classes: int | None = None,
                 cond_channels: int = 0, out_channels: int | None = None, groups: int = 8, dropout: float = 0.0,
                 embedding: str = "sinusoidal", emb_scale: float | None = None, zero_init: bool = True):
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive widths, got {channels}")
        if int(in_channels) < 1 or int(num_res_blocks) < 1 or int(cond_channels) < 0:
            raise ValueError(f"need in_channels >= 1, num_res_blocks >= 1, cond_channels >= 0; got "
                             f"{in_channels}, {num_res_blocks}, {cond_channels}")
        if embedding not in EMBEDDINGS:
            raise ValueError(f"unknown embedding {embedding!r}; choose one of {', '.join(EMBEDDINGS)}")
        dims = self._dims
        self.in_channels, self.channels, self.num_res_blocks = int(in_channels), channels, int(num_res_blocks)
        self.attention, self.heads, self.emb_dim = bool(attention), int(heads), int(emb_dim)
        self.num_classes = None if num_classes is None else int(num_classes)
        self._cond_size = int(cond_channels)
        self.out_channels = self.in_channels if out_channels is None else int(out_channels)
        self.groups, self.dropout = int(groups), float(dropout)
        self.embedding, self.emb_scale = embedding, None if emb_scale is None else float(emb_scale)
        self.zero_init = bool(zero_init)

        hidden = 4 * channels[0]
        self.time_emb = TimeEmbedding(self.emb_dim, hidden, embedding, self.emb_scale)
        self.label_emb = LabelEmbedding(self.num_classes, hidden) if self.num_classes is not None else None

        def block(cin, cout, attn):
            res = ResBlock(dims, cin, cout, hidden, self.groups, self.dropout)
            return _Block(res, SelfAttention(cout, self.heads, self.groups) if attn else None)

        conv = _conv(dims)
        self.in_conv = conv(self.in_channels + self._cond_size, channels[0], 3, padding=1)
        skips, cur = [channels[0]], channels[0]
        self.down = nn.ModuleList()
        for i, c in enumerate(channels):
            lowest = i == len(channels) - 1
            for _ in range(self.num_res_blocks):
                self.down.append(block(cur, c, self.attention and lowest))
                cur = c
                skips.append(cur)
            if not lowest:
                self.down.append(Downsample(dims, cur))
                skips.append(cur)
        self.mid = nn.ModuleList([block(cur, cur, self.attention), block(cur, cur, False)])
        self.up = nn.ModuleList()
        for i in reversed(range(len(channels))):
            lowest = i == len(channels) - 1
            for _ in range(self.num_res_blocks + 1):
                self.up.append(block(cur + skips.pop(), channels[i], self.attention and lowest))
                cur = channels[i]
            if i > 0:
                self.up.append(Upsample(dims, cur))
        self.out_norm = nn.GroupNorm(_groups(cur, self.groups), cur)
        self.out_conv = conv(cur, self.out_channels, 3, padding=1)
        if self.zero_init:
            nn.init.zeros_(self.out_conv.weight)
            nn.init.zeros_(self.out_conv.bias)

    def config(self) -> dict:
        return {"in_channels": self.in_channels, "channels": list(self.channels),
                "num_res_blocks": self.num_res_blocks, "attention": self.attention, "heads": self.heads,
                "emb_dim": self.emb_dim, "num_classes": self.num_classes, "cond_channels": self._cond_size,
                "out_channels": None if self.out_channels == self.in_channels else self.out_channels,
                "groups": self.groups, "dropout": self.dropout, "embedding": self.embedding,
                "emb_scale": self.emb_scale, "zero_init": self.zero_init}

    def forward(self, x: torch.Tensor, t, **cond) -> torch.Tensor:
        if x.dim() != self._dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}(in_channels={self.in_channels}) takes x of shape "
                             f"{self._layout} with C={self.in_channels}, got {tuple(x.shape)}")
        h, e = self._inputs(x, t, cond)
        h = self.in_conv(h)
        hs = [h]
        for m in self.down:
            h = m(h) if isinstance(m, Downsample) else m(h, e)
            hs.append(h)
        for m in self.mid:
            h = m(h, e)
        for m in self.up:
            if isinstance(m, Upsample):
                h = m(h, hs[-1].shape[2:])
            else:
                h = m(torch.cat([h, hs.pop()], dim=1), e)
        return self.out_conv(F.silu(self.out_norm(h))).to(x.dtype)


class UNet(_UNet):
    """``UNet(in_channels)(x, t, label=None, y=None)`` for images ``x`` of shape ``(B, C, H, W)``.

    * ``channels``: width per level, e.g. ``(32, 64)`` (two levels: 8 -> 4, 28 -> 14);
      ``num_res_blocks`` residual blocks per level (plus one on the way up).
    * ``attention``: self-attention (``heads`` heads) at the lowest resolution; off by default.
    * ``num_classes``: class conditioning through cond key ``label``; ``-1`` / ``None`` is the
      reserved null class for classifier-free guidance.
    * ``cond_channels``: a conditioning image ``y`` of shape ``(B, cond_channels, H, W)``
      concatenated to ``x`` (e.g. the degraded input of a mean-reverting process).
    * ``emb_dim``, ``embedding``, ``emb_scale``: noise-level features (see
      :mod:`stochgen.nets.embedding`); the embedding width inside the net is ``4 * channels[0]``.
    * ``zero_init``: the output convolution starts at zero (the untrained net outputs 0).
    """

    _dims = 2
    _layout = "(B, C, H, W)"


class UNet1d(_UNet):
    """:class:`UNet` for sequences ``x`` of shape ``(B, C, L)`` (time series, audio frames); same options."""

    _dims = 1
    _layout = "(B, C, L)"
