"""Composite states: a state made of named parts, each with its own space and forward process.

``Composite(parts={"seq": AbsorbingCTMC(20), "pos": VP()}, weights={"seq": 1.0, "pos": 1.0})``
corrupts a state ``{"seq": tokens (N, L), "pos": floats (N, d)}`` part by part, every part
with its own process but all at **one time** ``t``: the parts run on one shared clock, so a
network sees every part at the same noise level and a sampler walks one time grid.

* Time range: the parts must agree on where the prior end is (``t_max``) and where the data
  end is (``t_lo``); otherwise a ``ValueError`` names the ranges (no silent rescaling of one
  part's clock). ``t_min`` -- where samplers stop before their final denoising step -- is the
  largest of the parts' ``t_min`` (so no part is asked for a time it does not serve).
  ``t_hi`` is the smallest ``t_hi``. For example ``VP`` (``[1e-3, 1]``) and the CTMC chains
  (``[1e-3, 1]``) combine; ``EDM`` (times are noise levels up to 80) does not.
* ``weights``: the weight of each part's loss in the one composite loss (default 1 each).
* ``predictions``: what the network predicts for each part (default: the part family's
  default prediction, e.g. ``"x0"`` for a linear Gaussian part, ``"logits"`` for a jump part).
* ``event_shapes``: optional per-sample shapes ``{name: (...)}`` so that
  ``prior_sample((n,))`` knows them; without it ``prior_sample`` takes a dict of full shapes
  ``{name: (n, ...)}`` (what :meth:`stochgen.Model.sample` passes).
* States are dicts ``{name: tensor (N, ...)}`` with exactly the parts' names and one ``N``.
  ``marginal(x0, t)`` returns a :class:`Marginal` whose ``x_t`` (and ``noise`` where the parts
  have one) is such a dict and whose ``extra["parts"]`` holds every part's own Marginal.
* Conditions: ``cond_keys`` is the union of the parts'; each part receives the ones it names.
* ``spec()`` nests every part's ``spec()``, so ``processes.from_spec`` rebuilds the whole.

The family is :data:`stochgen.families.COMPOSITE`: objective ``"composite"``
(:mod:`stochgen.objectives.composite`), sampler ``"composite"``
(:mod:`stochgen.samplers.composite`), prediction kind ``"parts"`` (a dict of per-part predictions).
"""
from __future__ import annotations

import math

import torch

from .. import families
from .._validate import as_tensor, check_time
from .base import Marginal, Process

__all__ = ["Composite"]

_TIME_TOL = 1e-9


def _part_name(k) -> str:
    if not isinstance(k, str) or not k:
        raise ValueError(f"composite part names must be non-empty strings, got {k!r}")
    return k


class Composite(Process):
    """A state of named parts with a process each, on one shared time (module docstring)."""

    family = families.COMPOSITE
    #: a composite state has no single space: every part has its own (``parts[name].space``)
    space = None

    def __init__(self, parts: dict, weights: dict | None = None, predictions: dict | None = None,
                 event_shapes: dict | None = None):
        from . import from_spec

        if not isinstance(parts, dict) or not parts:
            raise ValueError(f"Composite needs parts={{name: process, ...}} with at least one part, got {parts!r}")
        built = {}
        for k, p in parts.items():
            k = _part_name(k)
            if isinstance(p, dict):
                p = from_spec(p)
            if not isinstance(p, Process):
                raise ValueError(f"part {k!r} must be a stochgen process (or its spec dict), got {type(p).__name__}")
            if families.family_of(p) is families.COMPOSITE:
                raise ValueError(f"part {k!r} is itself a Composite; flatten the parts into one Composite")
            built[k] = p
        self.parts: dict[str, Process] = built
        self.weights = self._check_weights(weights)
        self.predictions = self._check_predictions(predictions)
        self.event_shapes = self._check_event_shapes(event_shapes)
        self._set_times()
        keys = []
        for p in built.values():
            keys.extend(k for k in p.cond_keys if k not in keys)
        self.cond_keys = tuple(keys)

    # --- construction checks ---------------------------------------------------------------
    def _unknown(self, given: dict, what: str) -> None:
        extra = [k for k in given if k not in self.parts]
        if extra:
            raise ValueError(f"{what} names part(s) {extra} that the composite does not have "
                             f"(parts: {', '.join(self.parts)})")

    def _check_weights(self, weights) -> dict:
        weights = {} if weights is None else weights
        if not isinstance(weights, dict):
            raise ValueError(f"weights must be a dict {{part: weight}}, got {type(weights).__name__}")
        self._unknown(weights, "weights")
        out = {}
        for k in self.parts:
            try:
                w = float(weights.get(k, 1.0))
            except (TypeError, ValueError):
                raise ValueError(f"the weight of part {k!r} must be a number, got {weights[k]!r}") from None
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"the weight of part {k!r} must be finite and >= 0, got {weights[k]!r}")
            out[k] = w
        if not any(w > 0 for w in out.values()):
            raise ValueError("at least one part needs a positive weight (every part's loss is weighted 0)")
        return out

    def _check_predictions(self, predictions) -> dict:
        from ..parameterization import check_kind

        predictions = {} if predictions is None else predictions
        if not isinstance(predictions, dict):
            raise ValueError(f"predictions must be a dict {{part: kind}}, got {type(predictions).__name__}")
        self._unknown(predictions, "predictions")
        out = {}
        for k, p in self.parts.items():
            kind = predictions.get(k, families.family_of(p).default_prediction)
            try:
                families.check_prediction(p, check_kind(kind))
            except ValueError as exc:
                raise ValueError(f"part {k!r}: {exc}") from None
            out[k] = kind
        return out

    def _check_event_shapes(self, shapes) -> dict | None:
        if shapes is None:
            return None
        if not isinstance(shapes, dict):
            raise ValueError(f"event_shapes must be a dict {{part: per-sample shape}}, got {type(shapes).__name__}")
        self._unknown(shapes, "event_shapes")
        missing = [k for k in self.parts if k not in shapes]
        if missing:
            raise ValueError(f"event_shapes lacks the part(s) {missing}")
        try:
            return {k: tuple(int(v) for v in shapes[k]) for k in self.parts}
        except (TypeError, ValueError):
            raise ValueError(f"event_shapes must map parts to tuples of ints, got {shapes!r}") from None

    def _set_times(self) -> None:
        def ranges():
            return ", ".join(f"{k}: [{p.t_lo:g}, {p.t_max:g}]" for k, p in self.parts.items())

        t_max = [float(p.t_max) for p in self.parts.values()]
        t_lo = [float(p.t_lo) for p in self.parts.values()]
        if max(t_max) - min(t_max) > _TIME_TOL * max(1.0, abs(max(t_max))):
            raise ValueError(f"the parts of a Composite run on one clock, so their time ranges must agree; "
                             f"their prior ends t_max differ ({ranges()}). Use parts with the same range "
                             "(e.g. VP / Interpolant / CTMC chains on [0, 1]; not EDM / VE noise-level times)")
        if max(t_lo) - min(t_lo) > _TIME_TOL * max(1.0, abs(max(t_lo))):
            raise ValueError(f"the parts of a Composite must share the data end t_lo ({ranges()})")
        self.t_max = max(t_max)
        self.t_min = max(float(p.t_min) for p in self.parts.values())
        self._t_lo = max(t_lo)
        self._t_hi = min(float(p.t_hi) for p in self.parts.values())
        if not self._t_lo <= self.t_min < self.t_max <= self._t_hi + _TIME_TOL:
            raise ValueError(f"the parts' time ranges leave no common interval ({ranges()})")

    # --- time range -----------------------------------------------------------------------
    @property
    def t_lo(self) -> float:
        return self._t_lo

    @property
    def t_hi(self) -> float:
        return self._t_hi

    def check_t(self, t, like=None) -> torch.Tensor:
        if isinstance(like, dict):
            like = next((v for v in like.values() if torch.is_tensor(v) and v.is_floating_point()), None)
        return check_time(t, self.t_lo, self.t_hi, like=like)

    # --- states -----------------------------------------------------------------------------
    def check_states(self, x, name: str = "x") -> dict:
        """``x`` as a dict with exactly the parts' names, tensors with one batch size; else ``ValueError``."""
        if not isinstance(x, dict):
            raise ValueError(f"{name} must be a composite state: a dict {{{', '.join(map(repr, self.parts))}}} of "
                             f"batch-first tensors, got {type(x).__name__}")
        missing = [k for k in self.parts if k not in x]
        extra = [k for k in x if k not in self.parts]
        if missing or extra:
            raise ValueError(f"{name} must have exactly the parts {list(self.parts)}; "
                             + (f"missing {missing}" if missing else "") + ("; " if missing and extra else "")
                             + (f"unknown {extra}" if extra else ""))
        rows = {}
        for k in self.parts:
            v = x[k]
            if not torch.is_tensor(v):
                raise ValueError(f"part {k!r} of {name} must be a tensor, got {type(v).__name__}")
            if v.dim() < 1:
                raise ValueError(f"part {k!r} of {name} must be batch-first (N, ...), got a scalar")
            rows[k] = int(v.shape[0])
        if len(set(rows.values())) != 1:
            raise ValueError(f"the parts of {name} must have the same number of samples, got {rows}")
        return {k: x[k] for k in self.parts}

    def coerce_states(self, x) -> dict:
        """Training data as composite states: every part coerced by its own process (tokens, poses, floats)."""
        x = self.check_states(x, "data")
        out = {}
        for k, p in self.parts.items():
            try:
                out[k] = p.coerce_states(x[k])
            except ValueError as exc:
                raise ValueError(f"part {k!r}: {exc}") from None
        return out

    def _cond_for(self, part: Process, cond: dict) -> dict:
        return {k: cond[k] for k in part.cond_keys if k in cond}

    def check_cond(self, cond: dict, x=None) -> None:
        for k, p in self.parts.items():
            p.check_cond(self._cond_for(p, cond), None if not isinstance(x, dict) else x.get(k))

    # --- protocol ---------------------------------------------------------------------------
    def marginal(self, x0, t, generator: torch.Generator | None = None, **cond) -> Marginal:
        """Every part drawn from its own marginal at the same time ``t`` (scalar or ``(N,)``)."""
        x0 = self.check_states(x0, "x0")
        t = self.check_t(t, like=x0)
        ms = {}
        for k, p in self.parts.items():
            try:
                ms[k] = p.marginal(x0[k], t, generator=generator, **self._cond_for(p, cond))
            except ValueError as exc:
                raise ValueError(f"part {k!r}: {exc}") from None
        noise = {k: m.noise for k, m in ms.items() if m.noise is not None}
        return Marginal(x_t={k: m.x_t for k, m in ms.items()}, t=t, noise=noise or None,
                        extra={"parts": ms})

    def _full_shapes(self, shape) -> dict:
        if isinstance(shape, dict):
            self._unknown(shape, "shape")
            missing = [k for k in self.parts if k not in shape]
            if missing:
                raise ValueError(f"the shape dict lacks the part(s) {missing}; give {{part: (n, ...)}} for "
                                 f"every part of {list(self.parts)}")
            out = {k: tuple(int(v) for v in shape[k]) for k in self.parts}
            if any(len(s) == 0 for s in out.values()) or len({s[0] for s in out.values()}) != 1:
                raise ValueError(f"every part's shape must start with the same number of samples n, got {out}")
            return out
        shape = tuple(int(v) for v in shape)
        if len(shape) != 1:
            raise ValueError(f"a composite prior takes a dict {{part: (n, ...)}} or (n,), got {shape}")
        out = {}
        for k, p in self.parts.items():
            ev = self.event_shapes[k] if self.event_shapes is not None else getattr(p.space, "event_shape", None)
            if ev is None or any(e is None for e in ev):
                raise ValueError(f"prior_sample((n,)) needs the per-sample shape of part {k!r}, which its process "
                                 "does not fix; pass a dict {part: (n, ...)} or build the Composite with "
                                 "event_shapes={part: (...)}")
            out[k] = shape + tuple(ev)
        return out

    def prior_sample(self, shape, generator: torch.Generator | None = None, dtype=None, device=None, **cond) -> dict:
        """``{part: the part's prior draw}``; ``shape`` is ``{part: (n, ...)}`` or ``(n,)`` (see ``event_shapes``)."""
        shapes = self._full_shapes(shape)
        return {k: p.prior_sample(shapes[k], generator=generator, dtype=dtype, device=device,
                                  **self._cond_for(p, cond))
                for k, p in self.parts.items()}

    def prior_log_prob(self, x, **cond) -> torch.Tensor:
        """Sum of the parts' prior log-probabilities (the parts' priors are independent)."""
        x = self.check_states(x)
        total = None
        for k, p in self.parts.items():
            lp = as_tensor(p.prior_log_prob(x[k], **self._cond_for(p, cond)))
            total = lp if total is None else total + lp.to(total.dtype)
        return total

    # --- spec -------------------------------------------------------------------------------
    def config(self) -> dict:
        return {"parts": {k: p.spec() for k, p in self.parts.items()}, "weights": dict(self.weights),
                "predictions": dict(self.predictions),
                "event_shapes": None if self.event_shapes is None
                else {k: list(v) for k, v in self.event_shapes.items()}}

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={p!r}" for k, p in self.parts.items())
        return f"Composite({inner}; weights={self.weights}, predictions={self.predictions})"
