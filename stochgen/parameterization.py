"""One conversion module between the four things a network may predict.

For a process with ``x_t = alpha(t) x_0 + (1 - alpha(t)) y + sigma(t) eps`` (``y = 0``
except for mean-reverting processes, which pass the conditioning signal):

* ``"x0"``    the clean data x_0
* ``"eps"``   the noise eps
* ``"score"`` grad log p_t(x_t) = -eps / sigma
* ``"v"``     alpha eps - sigma x_0 (Salimans & Ho; for VP it is d x_t / d phi)

Every sampler asks a :class:`Prediction` for the kind it needs, so every
sampler accepts every prediction kind. Conversions are exact algebra; they
never call the model twice.
"""
from __future__ import annotations

from typing import Callable

import torch

from ._validate import batch_time

KINDS = ("score", "eps", "x0", "v")
_SPECIAL_KINDS = ("probs", "tangent_score")  # jump processes; Lie groups


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown prediction kind {kind!r}; choose one of {', '.join(KINDS)}")
    return kind


def _coeffs(process, x, t, cond):
    tb = batch_time(torch.as_tensor(t, dtype=x.dtype, device=x.device), x)
    a, s = process.alpha(tb), process.sigma(tb)
    return a, s, process.offset(tb, **cond)


def convert(out: torch.Tensor, kind: str, to: str, process, x: torch.Tensor, t, **cond) -> torch.Tensor:
    """Convert a prediction ``out`` of kind ``kind`` at state ``x``, time ``t`` into kind ``to``."""
    check_kind(kind)
    check_kind(to)
    if kind == to:
        return out
    a, s, off = _coeffs(process, x, t, cond)
    xc = x - off  # centred state: alpha x0 + sigma eps
    # first to (x0, eps)
    if kind == "x0":
        x0 = out
        eps = (xc - a * x0) / s
    elif kind == "eps":
        eps = out
        x0 = (xc - s * eps) / a
    elif kind == "score":
        eps = -s * out
        x0 = (xc - s * eps) / a
    else:  # v
        n2 = a**2 + s**2
        x0 = (a * xc - s * out) / n2
        eps = (s * xc + a * out) / n2
    if to == "x0":
        return x0
    if to == "eps":
        return eps
    if to == "score":
        return -eps / s
    return a * eps - s * x0


class Prediction:
    """Wraps ``model(x, t, **cond)`` that returns prediction kind ``kind`` and counts evaluations (NFE).

    ``pred.x0(x, t)``, ``pred.eps(x, t)``, ``pred.score(x, t)``, ``pred.v(x, t)`` each make one
    model call; ``pred.both(x, t)`` returns (x0, eps) from one call.
    """

    def __init__(self, model: Callable, kind: str, process, cond: dict | None = None):
        # "probs": denoising probabilities p(x_0 | x_t) of shape (*x.shape, K) for jump processes;
        # "tangent_score": a score in the tangent space of a Lie group, shape (*batch, space.dim)
        self.model, self.process = model, process
        self.kind = kind if kind in _SPECIAL_KINDS else check_kind(kind)
        self.cond = dict(cond or {})
        self.nfe = 0

    def __call__(self, x, t) -> torch.Tensor:
        tdtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        t = torch.as_tensor(t, dtype=tdtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        self.nfe += 1
        out = self.model(x, t, **self.cond)
        if self.kind == "probs":
            if out.shape[:-1] != x.shape:
                raise ValueError(f"the model returned shape {tuple(out.shape)}; denoising probabilities for a state "
                                 f"of shape {tuple(x.shape)} must have shape {tuple(x.shape)} + (K,)")
        elif self.kind == "tangent_score":
            ev = len(getattr(self.process.space, "event_shape", None) or ())
            want = tuple(x.shape[: x.dim() - ev]) + (self.process.space.dim,)
            if tuple(out.shape) != want:
                raise ValueError(f"the model returned shape {tuple(out.shape)}; a tangent score for states of shape "
                                 f"{tuple(x.shape)} must have shape {want}")
        elif out.shape != x.shape:
            raise ValueError(f"the model returned shape {tuple(out.shape)} for a state of shape {tuple(x.shape)}")
        return out

    def as_kind(self, to: str, x, t) -> torch.Tensor:
        if self.kind in _SPECIAL_KINDS:
            raise ValueError(f"a {self.kind!r} prediction cannot be converted to score/eps/x0/v")
        return convert(self(x, t), self.kind, to, self.process, x, t, **self.cond)

    def x0(self, x, t):
        return self.as_kind("x0", x, t)

    def eps(self, x, t):
        return self.as_kind("eps", x, t)

    def score(self, x, t):
        return self.as_kind("score", x, t)

    def v(self, x, t):
        return self.as_kind("v", x, t)

    def both(self, x, t):
        out = self(x, t)
        return (convert(out, self.kind, "x0", self.process, x, t, **self.cond),
                convert(out, self.kind, "eps", self.process, x, t, **self.cond))
