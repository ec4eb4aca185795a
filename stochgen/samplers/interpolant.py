"""The stochastic-interpolant SDE with adjustable noise, stepped by Euler–Maruyama (``si-euler``).

For an interpolant ``x_t = a(t) x_0 + b(t) x_1 + gamma(t) z`` (data at t = 0, Gaussian
noise at t = 1) with velocity ``b(x, t) = E[d x_t / dt | x_t = x]`` and score
``s(x, t) = grad log p_t(x)``, every diffusion coefficient ``eps(t) >= 0`` gives a backward
SDE whose time-t marginal is p_t (Albergo, Boffi & Vanden-Eijnden 2023, "Stochastic
interpolants", the backward SDE with ``b_B = b - eps s``):

    dX = [b(X, t) - eps(t) s(X, t)] dt + sqrt(2 eps(t)) dW,     solved from t = 1 down to 0,

(its Fokker–Planck equation is the transport equation ``d_t p = -div(b p)`` for every eps).
One Euler–Maruyama step from t to s < t, h = t - s:

    x <- x - h b(x, t) + h eps(t) s(x, t) + sqrt(2 eps(t) h) xi,    xi ~ N(0, I).

``eps = 0`` is the probability-flow ODE stepped by Euler (``deterministic=True``, or
``noise=0``). The noise follows the path's noise level: ``eps(t) = noise * sigma(t)^2``
(``sigma^2 = b^2 + gamma^2``; ``noise`` defaults to 1). Near the data end the score grows
like ``1/sigma^2``, so a constant eps would need steps ``h << sigma^2`` to stay stable;
with this choice ``eps s = -noise sigma eps_hat`` stays bounded and the injected noise
vanishes at the data end. At the prior end (t = 1) ``eps = noise``.

The velocity and the score come from ONE model call per step, converted by
:mod:`stochgen.parameterization` (the score of a velocity model is exact algebra for
Gaussian ``x_1``: ``eps_hat = (a u - a' x) / (a sigma' - sigma a')``, no division by
alpha, and at t = 1 it is ``-x / sigma^2``). ``eps`` and ``score`` predictions cannot be
converted at alpha = 0 (x0 = 0/0), so for them the grid starts just inside t = 1
(:func:`~stochgen.samplers.kernel.start_inside`). When the grid ends at the data end the
last interval is an explicit denoising step, ``x = alpha x0_hat + sigma eps_hat`` at the
final time (``x0_hat`` where sigma = 0), without noise.
"""
from __future__ import annotations

import math

import torch

from ..parameterization import convert
from .kernel import check_times, randn_like
from .registry import register
from .sde import _at_data_end

__all__ = ["si_euler", "noise_level"]


def noise_level(process, t, noise: float) -> float:
    """The diffusion coefficient ``eps(t) = noise * sigma(t)^2`` of ``si-euler`` (a float)."""
    if noise == 0:
        return 0.0
    s = float(process.sigma(torch.as_tensor(t, dtype=torch.float64)))
    return float(noise) * s * s


@register("si-euler", kind="sde", default_grid="uniform", prediction="velocity", requires="interpolant")
def si_euler(process, pred, x, times, *, generator=None, callback=None, noise: float = 1.0,
             deterministic: bool = False):
    """Stochastic-interpolant SDE dX = (b - eps s) dt + sqrt(2 eps) dW backward in time, eps = noise sigma^2."""
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"si-euler: noise (the scale of eps(t) = noise * sigma(t)^2) must be a finite number "
                         f">= 0, got {noise!r}")
    times = check_times(times, x, coef=True, process=process, pred=pred)
    scale = 0.0 if deterministic else float(noise)
    cond, kind = pred.cond, pred.kind
    n = times.numel() - 1
    for i in range(n):
        t, s = times[i], times[i + 1]
        tt = t.to(x.dtype)
        out = pred(x, tt)
        if i == n - 1 and _at_data_end(process, s):
            x0 = convert(out, kind, "x0", process, x, tt, **cond)
            eps_hat = convert(out, kind, "eps", process, x, tt, **cond)
            a = process.alpha(s).to(x.dtype)
            sd = process.sigma(s).to(x.dtype)
            x = a * x0 + sd * eps_hat
        else:
            h = float(t - s)
            drift = convert(out, kind, "velocity", process, x, tt, **cond)
            e = noise_level(process, t, scale)
            if e > 0:
                drift = drift - e * convert(out, kind, "score", process, x, tt, **cond)
                x = x - h * drift + math.sqrt(2.0 * e * h) * randn_like(x, generator)
            else:
                x = x - h * drift
        if callback is not None:
            callback(i, s, x)
    return x
