"""The speech domain's score network: a conditional 2-D U-Net over (real, imag) spectrograms.

:class:`SpeechUNet` ``(x, t, y=...)`` takes the state ``x`` (the compressed complex STFT as
``(B, 2, F, T)``, real and imaginary parts) and the condition ``y`` (the noisy or
reverberant spectrogram, same shape), and returns a tensor of ``x``'s shape. Inside:

1. ``x`` and ``y`` are stacked (4 channels) and folded into ``patch = (pf, pt)`` patches
   (space-to-depth: ``(B, 4, F, T) -> (B, 4 pf pt, F / pf, T / pt)``; F and T padded with
   zeros to multiples of the patch and cropped back at the end). With the default
   ``(4, 2)`` the U-Net runs on an eighth of the time-frequency points, what makes it
   trainable on 2 CPU cores; ``(1, 1)`` turns it off;
2. the generic :class:`stochgen.nets.UNet` (residual blocks, GroupNorm, the noise-level
   embedding of ``t`` added in every block, optional attention at the lowest level);
3. depth-to-space back to ``(B, 2, F, T)``.

Size and speed of the default (channels 32/64/64/128, patch (4, 2)), measured on one
thread of this project's 2-core machine: 2.9 M parameters (11.6 MB in float32); one
evaluation on 2 s of audio (256 x 251 bins) 0.09-0.13 s, i.e. a real-time factor of about
0.05 per evaluation; a training step on 8 one-second segments (forward and backward) about
1.2 s. Unfolded (``patch=(1, 1)``) the same widths cost about 7x more per evaluation.

Registered in :mod:`stochgen.nets` as ``"SpeechUNet"``, so a checkpoint's network spec
rebuilds it (``stochgen.nets.build(net.spec())``) once :mod:`domains.speech.nets` is imported.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F

from stochgen import nets
from stochgen.nets import ScoreNet, UNet

__all__ = ["SpeechUNet", "fold", "unfold"]


def fold(h: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    """Space-to-depth: ``(B, C, F, T) -> (B, C * pf * pt, F / pf, T / pt)`` (F, T multiples of the patch)."""
    pf, pt = patch
    b, c, f, t = h.shape
    h = h.reshape(b, c, f // pf, pf, t // pt, pt)
    return h.permute(0, 1, 3, 5, 2, 4).reshape(b, c * pf * pt, f // pf, t // pt)


def unfold(h: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    """Depth-to-space, the inverse of :func:`fold`: ``(B, C * pf * pt, F', T') -> (B, C, F' pf, T' pt)``."""
    pf, pt = patch
    b, cp, f, t = h.shape
    c = cp // (pf * pt)
    h = h.reshape(b, c, pf, pt, f, t)
    return h.permute(0, 1, 4, 2, 5, 3).reshape(b, c, f * pf, t * pt)


@nets.register
class SpeechUNet(ScoreNet):
    """``SpeechUNet()(x, t, y=y)`` for spectrogram states ``x`` and conditions ``y`` of shape ``(B, 2, F, T)``.

    * ``channels``, ``num_res_blocks``, ``attention``, ``heads``, ``emb_dim``, ``embedding``,
      ``emb_scale``, ``groups``, ``dropout``, ``zero_init``: as :class:`stochgen.nets.UNet`;
    * ``patch``: the (frequency, time) patch folded into channels before the U-Net;
    * ``conditional``: read ``y`` (default); ``False`` gives an unconditional net of ``x`` alone;
    * ``residual``: return ``y + net(...)`` (for an ``x0`` prediction: the untrained net returns
      the noisy input, and it learns the correction). The speech domain's default.
    """

    def __init__(self, channels: Sequence[int] = (32, 64, 64, 128), num_res_blocks: int = 1,
                 patch: Sequence[int] = (4, 2), conditional: bool = True, attention: bool = False, heads: int = 4,
                 emb_dim: int = 128, embedding: str = "sinusoidal", emb_scale: float | None = None, groups: int = 8,
                 dropout: float = 0.0, zero_init: bool = True, residual: bool = False):
        super().__init__()
        patch = tuple(int(p) for p in patch)
        if len(patch) != 2 or min(patch) < 1:
            raise ValueError(f"patch must be two positive integers (frequency, time), got {patch}")
        self.patch, self.conditional = patch, bool(conditional)
        if residual and not self.conditional:
            raise ValueError("residual=True adds the condition y to the output; it needs conditional=True")
        self.residual = bool(residual)
        self._cond_size = 2 if self.conditional else 0  # ScoreNet reads y (B, 2, F, T) when set
        area = patch[0] * patch[1]
        self.body = UNet(in_channels=(2 + self._cond_size) * area, channels=channels, num_res_blocks=num_res_blocks,
                         attention=attention, heads=heads, emb_dim=emb_dim, out_channels=2 * area, groups=groups,
                         dropout=dropout, embedding=embedding, emb_scale=emb_scale, zero_init=zero_init)
        self.label_emb = None

    def config(self) -> dict:
        body = self.body.config()
        return {"channels": list(body["channels"]), "num_res_blocks": body["num_res_blocks"],
                "patch": list(self.patch), "conditional": self.conditional, "attention": body["attention"],
                "heads": body["heads"], "emb_dim": body["emb_dim"], "embedding": body["embedding"],
                "emb_scale": body["emb_scale"], "groups": body["groups"], "dropout": body["dropout"],
                "zero_init": body["zero_init"], "residual": self.residual}

    def forward(self, x: torch.Tensor, t, **cond) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 2 or torch.is_complex(x):
            raise ValueError(f"SpeechUNet takes real spectrogram states (B, 2, F, T) (real, imaginary parts; "
                             f"see domains.speech.stft.to_channels), got {x.dtype} of shape {tuple(x.shape)}")
        dtype = self._param_dtype()
        h = x.to(dtype)
        y = self._cond_input(x, cond, dtype)
        if y is not None:
            h = torch.cat([h, y], dim=1)
        f, n = h.shape[-2:]
        pf, pt = self.patch
        pad_f, pad_t = (-f) % pf, (-n) % pt
        if pad_f or pad_t:
            h = F.pad(h, (0, pad_t, 0, pad_f))
        out = unfold(self.body(fold(h, self.patch), self._batch_time(t, x)), self.patch)
        out = out[..., :f, :n]
        if self.residual:  # predict the correction to y (an x0 network starts at the noisy input)
            out = out + y
        return out.to(x.dtype)
