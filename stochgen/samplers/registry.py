"""Sampler registry: ``stochgen.samplers.names()`` lists every name, an unknown name lists the valid ones.

A sampler is a pure function

    fn(process, pred, x, times, *, generator=None, callback=None, **options) -> x_0

where ``pred`` is a :class:`stochgen.parameterization.Prediction` (it converts the
model's output to the kind the sampler needs and counts NFE), ``x`` the start
state at ``times[0]`` and ``times`` a decreasing 1-D tensor. ``callback``, if
given, is called as ``callback(i, t, x)`` after step i. Each sampler states the family trait
it needs (``requires``, see :mod:`stochgen.families`); ``stochgen.sample`` checks it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class SamplerInfo:
    name: str
    fn: Callable
    kind: str  # "ode", "sde", "jump"
    default_grid: str
    doc: str
    prediction: str | None = None  # default prediction kind, where the sampler needs a special one
    requires: str = "linear"  # the family trait the process must offer (stochgen.families.TRAITS)


_SAMPLERS: dict[str, SamplerInfo] = {}


def register(name: str, kind: str = "ode", default_grid: str = "karras", prediction: str | None = None,
             requires: str = "linear"):
    """Register ``fn`` under ``name``; ``requires`` is the family trait it needs (checked by ``stochgen.sample``)."""
    from ..families import TRAITS

    if requires not in TRAITS:
        raise ValueError(f"unknown trait {requires!r} for sampler {name!r}; known: {', '.join(TRAITS)}")

    def deco(fn):
        if name in _SAMPLERS:
            raise ValueError(f"sampler {name!r} is registered twice")
        _SAMPLERS[name] = SamplerInfo(name, fn, kind, default_grid,
                                     (fn.__doc__ or "").strip().split("\n")[0], prediction, requires)
        return fn

    return deco


def names() -> list[str]:
    return sorted(_SAMPLERS)


def get(name: str) -> SamplerInfo:
    if name not in _SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid samplers: {', '.join(names())}")
    return _SAMPLERS[name]
