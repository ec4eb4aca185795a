"""Euler and EDM's Heun (with churn) on the probability-flow ODE in the VE-equivalent form.

With ``x~ = (x - offset)/alpha`` and ``s~ = sigma/alpha = exp(-lambda)`` the marginal of any linear
process is ``x~ = x_0 + s~ eps`` and the ODE is ``dx~/ds~ = (x~ - x0_hat(x, t))/s~`` (Karras et al.
2022, eq. 4 with s(t) = 1). The schedule engine and the fast path are in :mod:`.schedule`.
"""
from __future__ import annotations

import math

import torch

from .kernel import check_times, randn_like as _randn_like
from .registry import register
from .schedule import SQRT2_M1, _add_, _At, _cast, _Pt, _reject_unknown, _scaled, _Schedule


# --------------------------------------------------------------------------------------
# Euler and Heun (EDM) in the VE-equivalent form
# --------------------------------------------------------------------------------------
def _xtilde(x, at: _At):
    return (x - _cast(at.off, x)) / _cast(at.alpha, x)


def _from_xtilde(xt, at: _At):
    return _cast(at.alpha, xt) * xt + _cast(at.off, xt)


def _ve_lerp(x, a: float, x0, a_next: float, r: float):
    """``a_next (r x~ + (1 - r) x0)`` with ``x~ = x / a`` (fast path: zero offset, float coefficients)."""
    if a == 1.0 and a_next == 1.0 and x0.dtype == x.dtype:
        # x0 + r (x - x0): the weight r, not 1 - r, so that a small r keeps its relative precision in float32
        return torch.lerp(x0, x, r)
    return torch.add(_scaled(x, a_next * r / a), x0, alpha=a_next * (1.0 - r))


def _ve_ratio(cur: _Pt, nxt: _Pt):
    """r = s~_next / s~ of a fast Euler/Heun step (None: take the general path)."""
    s, s_next = cur.sig_tilde, nxt.sig_tilde
    if not (math.isfinite(s) and s > 0.0 and s_next > 0.0 and cur.alpha != 0.0):
        return None
    return s_next / s


def _euler_general(pred, x, cur: _At, nxt: _At):
    s, s_next = cur.sig_tilde, nxt.sig_tilde
    if nxt.is_data_end():
        return _from_xtilde(pred.x0(x, cur.t), nxt)
    if bool(torch.isfinite(s).all()):
        x0 = pred.x0(x, cur.t)
        xt = _xtilde(x, cur)
        return _from_xtilde(xt + _cast(s_next - s, x) * ((xt - x0) / _cast(s, x)), nxt)
    # alpha = 0 at the start: the same Euler step written finitely (x~ = x0 + s~ eps)
    x0, eps = pred.both(x, cur.t)
    return _from_xtilde(x0 + _cast(s_next, x) * eps, nxt)


@register("euler", kind="ode", default_grid="karras", requires="linear")
def euler(process, pred, x, times, *, generator=None, callback=None, **options):
    """Euler on the probability-flow ODE in the VE-equivalent form dx~/ds~ = (x~ - x0_hat)/s~ (k-diffusion's euler)."""
    _reject_unknown("euler", options)
    times = check_times(times, x, coef=True, process=process, pred=pred)
    sch = _Schedule(process, pred, x, times)
    cur = sch[0]
    for i in range(len(times) - 1):
        nxt = sch[i + 1]
        if cur.fast and nxt.fast and nxt.is_data_end():
            x = sch.x0(x, cur) * nxt.alpha
        elif cur.fast and nxt.fast and (r := _ve_ratio(cur, nxt)) is not None:
            x = _ve_lerp(x, cur.alpha, sch.x0(x, cur), nxt.alpha, r)  # x~ + (s~' - s~)(x~ - x0)/s~
        else:
            x = _euler_general(pred, x, sch.general(cur), sch.general(nxt))
        cur = nxt
        if callback is not None:
            callback(i, sch.t[i + 1], x)
    return x


def _heun_general(pred, x, cur: _At, nxt: _At):
    s, s_next = cur.sig_tilde, nxt.sig_tilde
    if nxt.is_data_end():
        return _from_xtilde(pred.x0(x, cur.t), nxt)
    if not bool(torch.isfinite(s).all()):
        x0, eps = pred.both(x, cur.t)
        return _from_xtilde(x0 + _cast(s_next, x) * eps, nxt)
    x0 = pred.x0(x, cur.t)
    xt = _xtilde(x, cur)
    ds = _cast(s_next - s, x)
    d = (xt - x0) / _cast(s, x)
    xt_e = xt + ds * d
    x0_2 = pred.x0(_from_xtilde(xt_e, nxt), nxt.t)
    d2 = (xt_e - x0_2) / _cast(s_next, x)
    return _from_xtilde(xt + ds * 0.5 * (d + d2), nxt)


@register("heun", kind="ode", default_grid="karras", requires="linear")
def heun(process, pred, x, times, *, generator=None, callback=None, S_churn: float = 0.0, S_min: float = 0.0,
         S_max: float = float("inf"), S_noise: float = 1.0, **options):
    """EDM's Heun sampler (Karras et al. 2022, Alg. 2) with churn, in the VE-equivalent noise level s~ = sigma/alpha.

    ``S_churn`` > 0 adds noise before each step whose s~ lies in [S_min, S_max]:
    s^ = s~ (1 + gamma), gamma = min(S_churn / N, sqrt(2) - 1), x~ += sqrt(s^2 - s~^2) S_noise z,
    and the model is then evaluated at t^ = t_of_lambda(-log s^) (s^ is capped at the
    process's largest time ``t_hi`` when that is finite). The last step (to sigma = 0)
    and a step from alpha = 0 are Euler steps. NFE = 2 N - 1.
    """
    _reject_unknown("heun", options)
    if S_churn < 0 or S_noise < 0:
        raise ValueError(f"S_churn and S_noise must be >= 0, got {S_churn}, {S_noise}")
    times = check_times(times, x, coef=True, process=process, pred=pred)
    n_steps = len(times) - 1
    gamma_max = min(S_churn / n_steps, SQRT2_M1) if S_churn > 0 else 0.0
    s_cap = math.inf
    if gamma_max > 0 and math.isfinite(process.t_hi):
        s_cap = float(torch.exp(-process.lambda_(torch.tensor(process.t_hi, dtype=times.dtype))))
    sch = _Schedule(process, pred, x, times)
    cur = sch[0]
    for i in range(n_steps):
        nxt = sch[i + 1]
        if gamma_max > 0:
            s = cur.sig_tilde
            s_f = s if cur.fast else float(s.reshape(-1)[0])
            if S_min <= s_f <= S_max and math.isfinite(s_f):
                s_hat = min(s_f * (1.0 + gamma_max), s_cap)
                if s_hat > s_f:
                    c = math.sqrt(s_hat**2 - s_f**2) * S_noise
                    z = _randn_like(x, generator)
                    t_hat = process.t_of_lambda(torch.tensor(-math.log(s_hat), dtype=times.dtype, device=x.device))
                    new = sch.point(t_hat)
                    if cur.fast and new.fast and cur.alpha != 0.0:  # x~ = x / a + c z, x = a^ x~
                        x = torch.add(_scaled(x, new.alpha / cur.alpha), z, alpha=new.alpha * c)
                    else:
                        x = _from_xtilde(_xtilde(x, sch.general(cur)) + c * z, sch.general(new))
                    cur = new
        if cur.fast and nxt.fast and nxt.is_data_end():
            x = sch.x0(x, cur) * nxt.alpha
        elif cur.fast and nxt.fast and (r := _ve_ratio(cur, nxt)) is not None:
            # x~' = x~ + (s~' - s~)(d + d2)/2 with d = (x~ - x0)/s~ and d2 = (x~_e - x0_2)/s~' at the Euler point
            # x~_e = r x~ + (1 - r) x0, r = s~'/s~: x~' = (x~ + x~_e)/2 + (1/r - 1)/2 (x0_2 - x~_e). x0_2 - x~_e is
            # formed first, as in d2: near the data end x0_2 follows x~_e, and their round-off cancels there.
            a, a_next = cur.alpha, nxt.alpha
            x0 = sch.x0(x, cur)
            x_e = _ve_lerp(x, a, x0, a_next, r)
            x0_2 = sch.x0(x_e, nxt)
            x = _add_(_ve_lerp(x, a, x0, a_next, 0.5 * (1.0 + r)), torch.sub(x0_2, x_e, alpha=1.0 / a_next),
                      a_next * 0.5 * (1.0 / r - 1.0))
        else:
            x = _heun_general(pred, x, sch.general(cur), sch.general(nxt))
        cur = nxt
        if callback is not None:
            callback(i, sch.t[i + 1], x)
    return x
