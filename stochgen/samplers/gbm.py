"""Reverse-time sampler for geometric Brownian motion (positive data), stepping in log space.

The forward process ``dX = f(X, t) dt + g(X, t) dW`` on X > 0 (``process.sde``;
GBM: f = mu X, g = s X) is, in the log coordinate Y = log X (Ito),

    dY = b dt + c dW,    b = f/X - g^2 / (2 X^2),   c = g / X     (GBM: b = mu - s^2/2, c = s).

If p_X(x) = p_Y(log x) / x then the log-coordinate score is

    d/dy log p_Y(y) = x * d/dx log p_X(x) + 1,

so from the model's DATA-SPACE score the reverse SDE of Y,
``dY = [b - d/dy(c^2) - c^2 score_Y] dt + c dW_bar``, is stepped by Euler–Maruyama
(additive in log space) and mapped back multiplicatively,

    x <- x * exp(delta_y),

which keeps every state strictly positive. ``stochastic=False`` steps the
probability-flow ODE of Y instead, ``dY/dt = b - (d/dy(c^2) + c^2 score_Y) / 2``
(Euler, order 1). When the grid ends at the data end the last interval is the
same step without noise; for GBM (constant b, c) it is exactly log-space Tweedie,
E[log X_0 | X_t] = log x - b t + c^2 t score_Y, so no stray noise is left.

Prediction kinds: the model's output is read as the data-space score
grad_x log p_t(x) through ``pred.score`` -- a ``"score"`` prediction as it is, an ``"eps"``
one (the log-space noise) by the log-space family's conversion
(:mod:`stochgen.objectives.log_space`). A data-space x0 = E[X_0 | X_t] does not determine the
score, so the family has no x0 / v kinds. (A model trained on log data with a linear process
in log coordinates can use the ordinary samplers there instead.)
"""
from __future__ import annotations

import math

import torch

from .registry import register
from .kernel import check_cond, check_times, randn_like as _randn_like, sde_coefficients
from .sde import _at_data_end

__all__ = ["gbm_euler"]


def _log_coeffs(process, x, t, cond):
    """(b, c, d/dy c^2) of log X at (x, t), from the data-space SDE by Ito's formula: with f, g and
    d/dx g^2 from :func:`~stochgen.samplers.kernel.sde_coefficients`, c = g/x, b = f/x - c^2/2 and
    d/dy c^2 = x d/dx (g^2/x^2) = d/dx(g^2)/x - 2 c^2 (0 for GBM's g = s x)."""
    f, g, dg2 = sde_coefficients(process, x, t, cond, state_dependent=True)
    c = g / x
    return f / x - 0.5 * c**2, c, dg2 / x - 2.0 * c**2


@register("gbm-euler", kind="sde", default_grid="log_snr", requires="log-space")
def gbm_euler(process, pred, x, times, *, generator=None, callback=None, stochastic: bool = True):
    """Log-space Euler–Maruyama (or probability-flow Euler) for GBM: multiplicative steps, positive states."""
    check_cond(process, pred, "gbm-euler")
    times = check_times(times)
    if not bool((x > 0).all()):
        raise ValueError(f"gbm-euler needs a strictly positive start state; {int((x <= 0).sum())} value(s) are <= 0")
    cond = pred.cond
    w = 1.0 if stochastic else 0.5
    n = times.numel() - 1
    y = torch.log(x)
    for i in range(n):
        t, s = times[i], times[i + 1]
        h = float(t) - float(s)
        b, c, dc2 = _log_coeffs(process, x, t, cond)
        score_y = x * pred.score(x, t) + 1.0
        dy = -h * (b - w * (dc2 + c**2 * score_y))
        last_to_data = i == n - 1 and _at_data_end(process, s)
        if stochastic and not last_to_data:
            dy = dy + c * math.sqrt(h) * _randn_like(x, generator)
        y = y + dy
        x = torch.exp(y)
        if callback is not None:
            callback(i, s, x)
    return x
