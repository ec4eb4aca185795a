"""One conversion module between the things a network may predict.

For a process with ``x_t = alpha(t) x_0 + (1 - alpha(t)) y + sigma(t) eps`` (``y = 0``
except for mean-reverting processes, which pass the conditioning signal):

* ``"x0"``       the clean data x_0
* ``"eps"``      the noise eps
* ``"score"``    grad log p_t(x_t) = -eps / sigma
* ``"v"``        alpha eps - sigma x_0 (Salimans & Ho; for VP it is d x_t / d phi)
* ``"velocity"`` the flow-matching velocity E[d x_t / dt | x_t] = alpha' x0 + sigma' eps
                 (processes without an offset; not the same thing as ``"v"``)

Other families predict other things (:mod:`stochgen.families` says which a model may declare):

* ``"tangent_score"`` a score in the tangent space of a Lie group, shape ``(*batch, space.dim)``
* ``"velocity"`` of a Lie-group interpolant: a Lie-algebra velocity, shape ``(*batch, space.dim)``
* ``"probs"`` / ``"logits"`` denoising probabilities p(x_0 | x_t) of a jump process (or their
  logits), shape ``(*x.shape, K)``; ``logits`` converts to ``probs`` by a softmax
* ``"parts"`` a dict of per-part predictions (composite states)

Every sampler asks a :class:`Prediction` for the kind it needs, so every
sampler accepts every prediction kind its family allows. Conversions are exact
algebra; they never call the model twice.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ._validate import batch_time

KINDS = ("score", "eps", "x0", "v")  # the linear-Gaussian kinds, convertible into each other
ALL_KINDS = KINDS + ("velocity", "tangent_score", "probs", "logits", "parts")
_LINEAR_CONVERTIBLE = KINDS + ("velocity",)
_SPECIAL_KINDS = ("probs", "logits", "tangent_score", "parts")  # jump processes; Lie groups; composite states


def check_kind(kind: str) -> str:
    if kind not in ALL_KINDS:
        raise ValueError(f"unknown prediction kind {kind!r}; choose one of {', '.join(ALL_KINDS)}")
    return kind


def coefficients(process, t, like: torch.Tensor | None = None, cond: dict | None = None, lam: bool = True):
    """(alpha, sigma, lambda, offset) of a linear process at time ``t``: the one getter of the schedule.

    Without ``like``: Python floats at one scalar time, computed in float64 (lambda = -inf where
    alpha = 0, +inf where sigma = 0; the offset is not computed, None). With ``like`` (a state):
    tensors at one time or one time per sample (``t`` in ``like``'s device, its dtype unless ``t``
    is a tensor already), shaped to broadcast with it, and the offset ``process.offset(t, **cond)``
    (a tensor, or the plain number 0 of processes without one); ``lam=False`` skips lambda (None).
    """
    if like is None:
        tt = torch.as_tensor(t, dtype=torch.float64).detach().cpu()
        a, s = float(process.alpha(tt)), float(process.sigma(tt))
        if s <= 0:
            return a, s, math.inf, None
        return a, s, (math.log(a) if a > 0 else -math.inf) - math.log(s), None
    t = t.to(like.device) if torch.is_tensor(t) else torch.as_tensor(t, dtype=like.dtype, device=like.device)
    tb = batch_time(t, like)
    return (process.alpha(tb), process.sigma(tb), process.lambda_(tb) if lam else None,
            process.offset(tb, **(cond or {})))


def _rates(process, x, t):
    """(d alpha/dt, d sigma/dt) at ``t``, shaped like the state's batch."""
    tb = batch_time(torch.as_tensor(t, dtype=x.dtype, device=x.device), x)
    return process.dalpha(tb), process.dsigma(tb)


def _no_offset(process, off, kind):
    if not (isinstance(off, (int, float)) and off == 0):
        raise ValueError(f"a {kind!r} prediction is defined for processes without an offset; "
                         f"{type(process).__name__} drifts toward a conditioning signal (use x0, eps, score or v)")


def x0_from(kind: str, out, xc, a, s):
    """x0 from a prediction ``out`` of kind x0 / eps / score / v at the centred state ``xc = alpha x0 + sigma eps``.

    The one home of these formulas: :func:`convert` calls it with tensor coefficients, the samplers'
    fast path (:mod:`stochgen.samplers.schedule`) with Python floats ``a``, ``s``, for which each
    kind is one or two fused full-size ops.
    """
    if kind == "x0":
        return out
    if isinstance(a, float) and isinstance(s, float):
        if kind == "eps":  # x0 = (x - s eps) / a
            return torch.add(xc, out, alpha=-s).div_(a)
        if kind == "score":  # eps = -s score
            return torch.add(xc, out, alpha=s * s).div_(a)
        n2 = a * a + s * s  # v = a eps - s x0
        return torch.add(xc * (a / n2), out, alpha=-s / n2)
    if kind == "eps":
        return (xc - s * out) / a
    if kind == "score":
        return (xc + s * s * out) / a
    return (a * xc - s * out) / (a**2 + s**2)


def convert(out, kind: str, to: str, process, x: torch.Tensor, t, **cond):
    """Convert a prediction ``out`` of kind ``kind`` at state ``x``, time ``t`` into kind ``to``."""
    check_kind(kind)
    check_kind(to)
    if kind == to:
        return out
    if kind == "logits" and to == "probs":
        return torch.softmax(out.double() if out.dtype in (torch.float16, torch.bfloat16) else out, dim=-1)
    fam = getattr(type(process), "family", None)
    conv = _FAMILY_CONVERTERS.get(getattr(fam, "name", None))
    if conv is not None:
        return conv(out, kind, to, process, x, t, cond)
    if kind not in _LINEAR_CONVERTIBLE or to not in _LINEAR_CONVERTIBLE or fam is None or not fam.has("linear"):
        raise ValueError(f"a {kind!r} prediction cannot be converted to {to!r} for {type(process).__name__}")
    a, s, _, off = coefficients(process, torch.as_tensor(t, dtype=x.dtype, device=x.device), like=x, cond=cond,
                                lam=False)
    xc = x - off  # centred state: alpha x0 + sigma eps
    # first to (x0, eps)
    if kind == "velocity" or to == "velocity":
        _no_offset(process, off, "velocity")
        da, ds = _rates(process, x, t)
    if kind == "velocity":  # solve [xc; u] = [[a, s], [da, ds]] [x0; eps]
        det = a * ds - s * da
        x0 = (ds * xc - s * out) / det
        eps = (a * out - da * xc) / det
    else:
        x0 = x0_from(kind, out, xc, a, s)
        if kind == "x0":
            eps = (xc - a * x0) / s
        elif kind == "eps":
            eps = out
        elif kind == "score":
            eps = -s * out
        else:  # v
            eps = (s * xc + a * out) / (a**2 + s**2)
    if to == "x0":
        return x0
    if to == "eps":
        return eps
    if to == "score":
        return -eps / s
    if to == "velocity":
        return da * x0 + ds * eps
    return a * eps - s * x0


#: conversions of families whose kinds are not the linear-Gaussian ones:
#: ``family name -> fn(out, kind, to, process, x, t, cond)`` (their objective modules add them)
_FAMILY_CONVERTERS: dict = {}


def register_converter(family_name: str, fn) -> None:
    """Install the conversion between the prediction kinds of one family (one home per family)."""
    _FAMILY_CONVERTERS[family_name] = fn


def check_output(out, kind: str, process, x) -> None:
    """``ValueError`` when a model's output ``out`` has the wrong shape for a ``kind`` prediction at ``x``."""
    if kind == "parts":
        if not isinstance(out, dict):
            raise ValueError(f"a composite model returns a dict of per-part predictions, got {type(out).__name__}")
        return
    if not torch.is_tensor(out):
        raise ValueError(f"the model returned {type(out).__name__}, not a tensor")
    fam = getattr(type(process), "family", None)
    tangent = kind == "tangent_score" or (kind == "velocity" and fam is not None and fam.has("lie-flow"))
    if kind in ("probs", "logits"):
        if tuple(out.shape[:-1]) != tuple(x.shape):
            raise ValueError(f"the model returned shape {tuple(out.shape)}; denoising {kind} for a state "
                             f"of shape {tuple(x.shape)} must have shape {tuple(x.shape)} + (K,)")
    elif tangent:
        ev = len(getattr(process.space, "event_shape", None) or ())
        want = tuple(x.shape[: x.dim() - ev]) + (process.space.dim,)
        if tuple(out.shape) != want:
            raise ValueError(f"the model returned shape {tuple(out.shape)}; a tangent {kind.replace('tangent_', '')} for "
                             f"states of shape "
                             f"{tuple(x.shape)} must have shape {want}")
    elif out.shape != x.shape:
        raise ValueError(f"the model returned shape {tuple(out.shape)} for a state of shape {tuple(x.shape)}")


class Prediction:
    """Wraps ``model(x, t, **cond)`` that returns prediction kind ``kind`` and counts evaluations (NFE).

    ``pred.x0(x, t)``, ``pred.eps(x, t)``, ``pred.score(x, t)``, ``pred.v(x, t)`` each make one
    model call; ``pred.both(x, t)`` returns (x0, eps) from one call.
    """

    def __init__(self, model: Callable, kind: str, process, cond: dict | None = None):
        self.model, self.process = model, process
        self.kind = check_kind(kind)
        self.cond = dict(cond or {})
        self.nfe = 0

    def __call__(self, x, t):
        tdtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        t = torch.as_tensor(t, dtype=tdtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        self.nfe += 1
        out = self.model(x, t, **self.cond)
        check_output(out, self.kind, self.process, x)
        return out

    def as_kind(self, to: str, x, t):
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
