"""Geodesic ODE solvers for Lie-group interpolants (``"se3-flow"``): flow matching on SE(3).

The model returns the body-frame Lie-algebra velocity ``v(x, t) = x^{-1} dx/dt`` (the target of
:meth:`SE3Interpolation.marginal`'s ``velocity``), one 6-vector per pose ``(*batch, 6)``, so the
flow is ``dx/dt = x hat(v)``. Integrating it backwards from the prior end to the data end, one
step from ``t`` down to ``s = t - h`` is

* ``"euler"``:    ``x <- x Exp(-h v(x, t))``  (one model call per step, first order);
* ``"heun"``:     ``k1 = v(x, t)``, ``k2 = v(x Exp(-h k1), s)``, ``x <- x Exp(-h (k1 + k2) / 2)``;
* ``"midpoint"``: ``k1 = v(x, t)``, ``k2 = v(x Exp(-h k1 / 2), t - h/2)``, ``x <- x Exp(-h k2)``.

Heun and midpoint are Runge--Kutta--Munthe-Kaas methods of order 2 (two calls per step); the
``dexp^{-1}`` correction they leave out is ``O(h^3)`` per step, since ``[k1, k2] = O(h)``.
The state moves only by right-multiplication with ``Exp`` of a twist (``process.space.exp``), so
rotations stay orthonormal to round-off. The last step ends at the grid's last time (the data end
``process.t_lo`` on the grids of :mod:`stochgen.samplers.grids`).

Registered: ``"se3-flow"`` (option ``method="euler" | "heun" | "midpoint"``); the model is called
through ``pred(x, t)`` (a :class:`stochgen.parameterization.Prediction`), which counts the NFE.
"""
from __future__ import annotations

import torch

from .registry import register
from .se3 import _check_times

__all__ = ["se3_flow", "METHODS"]

METHODS = ("euler", "heun", "midpoint")


def _check_state(process, x) -> None:
    space = getattr(process, "space", None)
    event = tuple(getattr(space, "event_shape", None) or ())
    if space is None or not event or not callable(getattr(space, "exp", None)):
        raise ValueError(f"sampler 'se3-flow' needs a process whose space has an exponential map (poses); "
                         f"{type(process).__name__} has {space!r}")
    if not torch.is_tensor(x) or not x.is_floating_point():
        got = x.dtype if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"the start state must be a floating-point tensor of poses, got {got}")
    k = len(event)
    if x.dim() <= k or tuple(x.shape[-k:]) != event:
        raise ValueError(f"the start state must have shape (batch, ..., {', '.join(map(str, event))}) for "
                         f"{space!r}, got {tuple(x.shape)}")
    space.check(x, "x_T")


@register("se3-flow", kind="ode", default_grid="uniform", prediction="velocity", requires="lie-flow")
def se3_flow(process, pred, x, times, *, generator=None, callback=None, method: str = "euler"):
    """Geodesic Euler / Heun / midpoint on SE(3) for a Lie-algebra velocity model (flow matching)."""
    if getattr(pred, "kind", None) != "velocity":
        raise ValueError(f"sampler 'se3-flow' needs a model that predicts the Lie-algebra velocity; got "
                         f"prediction={getattr(pred, 'kind', None)!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    _check_state(process, x)
    times = _check_times(process, times)
    exp = process.space.exp
    n = times.numel() - 1
    for i in range(n):
        t, s = float(times[i]), float(times[i + 1])
        h = t - s
        k1 = pred(x, t).to(x.dtype)
        if method == "euler":
            step = k1
        elif method == "heun":
            k2 = pred(exp(x, -h * k1), s).to(x.dtype)
            step = 0.5 * (k1 + k2)
        else:
            step = pred(exp(x, -0.5 * h * k1), t - 0.5 * h).to(x.dtype)
        x = exp(x, -h * step)
        if callback is not None:
            callback(i, times[i + 1], x)
    return x
