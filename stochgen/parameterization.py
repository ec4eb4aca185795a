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


def _coeffs(process, x, t, cond):
    tb = batch_time(torch.as_tensor(t, dtype=x.dtype, device=x.device), x)
    a, s = process.alpha(tb), process.sigma(tb)
    return a, s, process.offset(tb, **cond)


def _rates(process, x, t):
    """(d alpha/dt, d sigma/dt) at ``t``, shaped like the state's batch."""
    tb = batch_time(torch.as_tensor(t, dtype=x.dtype, device=x.device), x)
    return process.dalpha(tb), process.dsigma(tb)


def _no_offset(process, off, kind):
    if not (isinstance(off, (int, float)) and off == 0):
        raise ValueError(f"a {kind!r} prediction is defined for processes without an offset; "
                         f"{type(process).__name__} drifts toward a conditioning signal (use x0, eps, score or v)")


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
    a, s, off = _coeffs(process, x, t, cond)
    xc = x - off  # centred state: alpha x0 + sigma eps
    # first to (x0, eps)
    if kind == "velocity" or to == "velocity":
        _no_offset(process, off, "velocity")
        da, ds = _rates(process, x, t)
    if kind == "velocity":  # solve [xc; u] = [[a, s], [da, ds]] [x0; eps]
        det = a * ds - s * da
        x0 = (ds * xc - s * out) / det
        eps = (a * out - da * xc) / det
    elif kind == "x0":
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
            raise ValueError(f"the model returned shape {tuple(out.shape)}; a tangent {kind} for states of shape "
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
