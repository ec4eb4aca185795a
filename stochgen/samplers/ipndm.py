"""iPNDM: explicit Adams-Bashforth multistep on the probability-flow ODE (Zhang & Chen, ICLR 2023).

"Improved pseudo numerical methods for diffusion models" (the iPNDM of the DEIS paper) integrates
the ODE in the VE-equivalent form of :mod:`stochgen.samplers.ode`,

    dx~/ds~ = d(x~, s~) = (x~ - x0_hat) / s~        (x~ = (x - offset)/alpha, s~ = sigma/alpha),

with the Adams-Bashforth formulas of order 1..4 written for *equal* steps,

    x~' = x~ + (s~' - s~) sum_j c_j d_{i-j},
    c = [1], [3, -1]/2, [23, -16, 5]/12, [55, -59, 37, -9]/24,

warming up with the lower orders while the history is short (no Runge-Kutta start, so one model
call per step). On a grid uniform in s~ each step is of order ``order`` and over 10-40 steps the
error falls at close to that order (slope 3.4 for order 4), but the low-order warm-up (the Euler
first step's O(h^2) local error) takes over on finer grids (slope 2.0 from 40 to 80); on a smoothly
graded grid (Karras, log-SNR) the equal-step weights commit an O(h (h_i - h_{i-1})) = O(h^3)
error per step, so every order >= 2 converges at second order (measured 1.9-2.2 on the Karras
grid, ``tests/test_samplers_ipndm.py``). Its strength is the error constant at few steps: Zhang &
Chen, and later few-step comparisons such as Zhou et al. 2024 (AMED), report it among the most
accurate solvers at 5-20 model calls, and in ``benchmarks/bench_samplers.py`` it has the lowest
median error at NFE 5-10; the variable-step Adams weights, tried there too, were less accurate
(ODE err 8.9e-2 against 5.3e-2 at NFE 10 on the Karras grid). Note that d is the predicted noise
eps_hat (x~ = x0 + s~ eps), so the method is PNDM's linear multistep on eps, taken in the
variable s~.

The last interval to the data end (sigma = 0) is the explicit denoising step
``x = alpha x0_hat + offset``, as in every stochgen ODE sampler, and a step from alpha = 0 (an
interpolant's prior end, s~ = inf) is the Euler step ``x~' = x0_hat + s~' eps_hat``.
"""
from __future__ import annotations

import math

import torch

from .kernel import check_times
from .schedule import _At, _cast, _reject_unknown, _Schedule
from .registry import register

# Adams-Bashforth weights for equal steps, newest derivative first
AB_WEIGHTS = {
    1: (1.0,),
    2: (3.0 / 2.0, -1.0 / 2.0),
    3: (23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0),
    4: (55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0),
}


def _combine(ds: list, weights) -> torch.Tensor:
    out = ds[0] * weights[0]
    for d, w in zip(ds[1:], weights[1:]):
        out.add_(d, alpha=w)
    return out


@register("ipndm", kind="ode", default_grid="karras", requires="linear")
def ipndm(process, pred, x, times, *, generator=None, callback=None, order: int = 4, **options):
    """iPNDM: Adams-Bashforth of order 1-4 with equal-step weights on dx~/ds~ = eps_hat (Zhang & Chen 2023)."""
    _reject_unknown("ipndm", options)
    if isinstance(order, bool) or not isinstance(order, int) or order not in AB_WEIGHTS:
        raise ValueError(f"ipndm order must be 1, 2, 3 or 4, got {order!r}")
    times = check_times(times, x, coef=True, process=process, pred=pred)
    sch = _Schedule(process, pred, x, times)
    hist: list[torch.Tensor] = []  # d = eps_hat at the previous grid times, newest first
    for i in range(len(times) - 1):
        cur, nxt = sch[i], sch[i + 1]
        if cur.fast and nxt.fast and nxt.is_data_end():
            x = sch.x0(x, cur) * nxt.alpha
        elif cur.fast and nxt.fast and cur.alpha != 0.0 and math.isfinite(s := cur.sig_tilde) and s > 0.0:
            a, a_next = cur.alpha, nxt.alpha
            x0 = sch.x0(x, cur)
            xt = x if a == 1.0 else x / a
            hist.insert(0, torch.sub(xt, x0).div_(s))
            del hist[order:]
            xt = torch.add(xt, _combine(hist, AB_WEIGHTS[len(hist)]), alpha=nxt.sig_tilde - s)
            x = xt if a_next == 1.0 else xt * a_next
        else:  # an offset tensor, or a step from alpha = 0
            x = _general_step(pred, x, sch.general(cur), sch.general(nxt), hist, order)
        if callback is not None:
            callback(i, sch.t[i + 1], x)
    return x


def _general_step(pred, x, cur: _At, nxt: _At, hist: list, order: int) -> torch.Tensor:
    """One step with tensor schedule quantities (an offset tensor: the mean-reverting processes)."""
    if nxt.is_data_end():
        return _cast(nxt.alpha, x) * pred.x0(x, cur.t) + _cast(nxt.off, x)
    s, s_next = cur.sig_tilde, nxt.sig_tilde
    if bool(torch.isfinite(s).all()) and bool((cur.alpha != 0).all()):
        x0 = pred.x0(x, cur.t)
        xt = (x - _cast(cur.off, x)) / _cast(cur.alpha, x)
        hist.insert(0, (xt - x0) / _cast(s, x))
        del hist[order:]
        xt = xt + _cast(s_next - s, x) * _combine(hist, AB_WEIGHTS[len(hist)])
    else:
        x0, eps = pred.both(x, cur.t)
        hist.insert(0, eps)
        xt = x0 + _cast(s_next, x) * eps
    return _cast(nxt.alpha, x) * xt + _cast(nxt.off, x)
