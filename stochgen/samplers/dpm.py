"""DDIM and DPM-Solver++ (1, 2M, 3M, 2M-SDE): exponential integrators in lambda for linear processes.

In the centred state ``xc = x - offset`` the linear part of the probability-flow ODE is integrated
exactly in ``lambda = log(alpha/sigma)``:
``xc_t = (sigma_t/sigma_s) xc_s + sigma_t int_{lambda_s}^{lambda_t} e^lambda x0_hat d lambda``
(Lu et al. 2022, DPM-Solver++), and the integral is approximated by a Taylor expansion of
``x0_hat`` in ``lambda`` built from the previous steps (multistep). The schedule engine and the
fast path are in :mod:`.schedule`; ``time_shift=True`` is :mod:`.time_shift`.
"""
from __future__ import annotations

import math

import torch

from .kernel import check_times, randn_like as _randn_like
from .registry import register
from .schedule import (_add_, _At, _cast, _fexp, _finite_lam, _Pt, _reject_unknown, _Schedule, _try,
                       final_order_cap)
from .time_shift import _split_ts_options, _TimeShift


# --------------------------------------------------------------------------------------
# DDIM
# --------------------------------------------------------------------------------------
def _ddim_coef(cur: _Pt, nxt: _Pt, eta: float):
    """(c2, keep) of a fast DDIM step: c^2 = eta^2 sigma_t^2 (1 - e^{-2h}) and sqrt(sigma_t^2 - c^2)."""
    c2 = 0.0
    if eta > 0:
        c2 = eta**2 * nxt.sigma**2 * (-math.expm1(-2.0 * (nxt.lam - cur.lam)))
        if math.isnan(c2):
            c2 = 0.0
    return c2, math.sqrt(max(nxt.sigma**2 - c2, 0.0)) / cur.sigma


@register("ddim", kind="ode", default_grid="karras", requires="linear")
def ddim(process, pred, x, times, *, generator=None, callback=None, eta: float = 0.0, time_shift: bool = False,
         **options):
    """DDIM (Song et al. 2021) for any linear process; eta = 0 deterministic, eta = 1 ancestral (DDPM-like).

    x_t = alpha_t x0_hat + offset_t + sqrt(sigma_t^2 - c^2) eps_hat + c z with
    c = eta sigma_t sqrt(1 - e^{-2h}), h = lambda_t - lambda_s. ``time_shift=True`` turns on
    the time-shift sampler (options ``ts_*``, see the module docstring).
    """
    ts_kw = _split_ts_options(options)
    _reject_unknown("ddim", options)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    times = check_times(times, x, coef=True, process=process, pred=pred)
    cond = pred.cond
    shift = _TimeShift(process, times, time_shift, cond, **ts_kw)
    sch = _Schedule(process, pred, x, times)
    cur = sch[0]
    for i in range(len(times) - 1):
        nxt = sch[i + 1]
        coef = _try(_ddim_coef, cur, nxt, eta) if (nxt.fast and sch.fast_x0(cur)) else None
        if coef is not None:
            # eps_hat = (x - alpha_s x0_hat)/sigma_s, so x_t = k x + (alpha_t - k alpha_s) x0_hat, k = keep/sigma_s
            c2, k = coef
            x0 = sch.x0(x, cur)
            if k == 0.0:
                x_new = x0 * nxt.alpha
            elif cur.alpha == 1.0 and nxt.alpha == 1.0 and x0.dtype == x.dtype:
                x_new = torch.lerp(x0, x, k)
            else:
                x_new = torch.add(x * k, x0, alpha=nxt.alpha - k * cur.alpha)
            if eta > 0 and not nxt.is_data_end():
                x_new = _add_(x_new, _randn_like(x, generator), math.sqrt(c2))
            x = x_new
        else:
            cg, ng = sch.general(cur), sch.general(nxt)
            x0, eps = pred.both(x, cg.t)
            # c^2 = eta^2 sigma_t^2 (1 - e^{-2h}); e^{-h} = sigma_t alpha_s / (sigma_s alpha_t) is 0 at either end
            if eta > 0:
                c2 = torch.nan_to_num(eta**2 * ng.sigma**2 * (-torch.expm1(-2.0 * (ng.lam - cg.lam))), nan=0.0)
            else:
                c2 = torch.zeros_like(ng.sigma)
            keep = torch.sqrt(torch.clamp(ng.sigma**2 - c2, min=0.0))
            x = _cast(ng.alpha, x) * x0 + _cast(ng.off, x) + _cast(keep, x) * eps
            if eta > 0 and not ng.is_data_end():
                x = x + _cast(torch.sqrt(c2), x) * _randn_like(x, generator)
        t_eff = shift(x, i + 1)
        cur = nxt if t_eff is None else sch.point(t_eff)
        if callback is not None:
            callback(i, sch.t[i + 1], x)
    return x


# --------------------------------------------------------------------------------------
# DPM-Solver++ (multistep, data prediction) and its SDE variant
# --------------------------------------------------------------------------------------
def _dpmpp_step(x, cur: _At, nxt: _At, D0, hist, order: int):
    """One multistep DPM-Solver++ step of the given order from ``cur`` to ``nxt``.

    ``hist`` holds (lambda, x0_hat) of the previous steps, most recent last. With the
    Taylor expansion x0(lambda) = D0 + D' u + D'' u^2 / 2 (u = lambda - lambda_s) the
    exact integral gives
        xc_t = (sigma_t/sigma_s) xc_s - alpha_t phi1 D0 + alpha_t phi2 (h D') - alpha_t phi3 (h^2 D''),
    phi1 = expm1(-h), phi2 = phi1/h + 1, phi3 = phi2/h - 1/2; h D' and h^2 D'' come from
    divided differences of the stored predictions (non-uniform steps).
    """
    h = nxt.lam - cur.lam
    a_t = nxt.alpha
    phi1 = torch.expm1(-h)
    xc = x - _cast(cur.off, x)
    out = _cast(nxt.sigma / cur.sigma, x) * xc - _cast(a_t * phi1, x) * D0
    if order >= 2 and len(hist) >= 1:
        lam1, D1m = hist[-1]
        r0 = (cur.lam - lam1) / h
        D1_0 = (D0 - D1m) / _cast(r0, x)  # ~ h D'
        if order >= 3 and len(hist) >= 2:
            lam2, D2m = hist[-2]
            r1 = (lam1 - lam2) / h
            D1_1 = (D1m - D2m) / _cast(r1, x)
            D1 = D1_0 + _cast(r0 / (r0 + r1), x) * (D1_0 - D1_1)  # ~ h D'
            D2 = _cast(2.0 / (r0 + r1), x) * (D1_0 - D1_1)  # ~ h^2 D''
            phi2 = phi1 / h + 1.0
            phi3 = phi2 / h - 0.5
            out = out + _cast(a_t * phi2, x) * D1 - _cast(a_t * phi3, x) * D2
        else:  # DPM-Solver++(2M): D0 + D1_0 / 2 in the first-order formula
            out = out - _cast(0.5 * a_t * phi1, x) * D1_0
    return out + _cast(nxt.off, x)


def _dpmpp_coef(cur: _Pt, nxt: _Pt, lams, order: int):
    """:func:`_dpmpp_step`'s coefficients on the fast path, as Python floats: (c_x, c0, w) for orders 1
    and 2, (c_x, c0, g0, g1) for order 3; ``lams`` are the lambdas of the stored predictions
    D_{-1}, D_{-2}, most recent first (see :func:`_dpmpp_fast`)."""
    h = nxt.lam - cur.lam
    a_t = nxt.alpha
    phi1 = math.expm1(-h)
    c_x, c0 = nxt.sigma / cur.sigma, -a_t * phi1
    if order >= 2 and len(lams) >= 1:
        r0 = (cur.lam - lams[0]) / h  # D1_0 = (D0 - D_{-1}) / r0 ~ h D'
        if order >= 3 and len(lams) >= 2:
            r1 = (lams[0] - lams[1]) / h  # D1_1 = (D_{-1} - D_{-2}) / r1
            phi2 = phi1 / h + 1.0
            phi3 = phi2 / h - 0.5
            k, m = r0 / (r0 + r1), 2.0 / (r0 + r1)
            # a phi2 D1 - a phi3 D2 = g0 (D0 - D_{-1}) + g1 (D_{-1} - D_{-2}),
            # D1 = (1 + k) D1_0 - k D1_1 ~ h D', D2 = m (D1_0 - D1_1) ~ h^2 D''
            return c_x, c0, a_t * (phi2 * (1.0 + k) - phi3 * m) / r0, a_t * (phi3 * m - phi2 * k) / r1
        return c_x, c0, -0.5 / r0  # DPM-Solver++(2M): D0 + D1_0 / 2 = lerp(D0, D_{-1}, -1/(2 r0))
    return c_x, c0, None


def _dpmpp_fast(x, coef, Ds):
    """:func:`_dpmpp_step` from :func:`_dpmpp_coef`'s floats in 2 (order 1), 3 (order 2) or 6 (order 3)
    full-size ops; ``Ds`` = (D0, D_{-1}, D_{-2}) as far as used. Differences of predictions are formed
    before they are scaled, as in :func:`_dpmpp_step` (where 1/r0 is large they nearly cancel)."""
    if len(coef) == 4:
        c_x, c0, g0, g1 = coef
        out = torch.sub(Ds[0], Ds[1]).mul_(g0)
        return _add_(out.add_(torch.sub(Ds[1], Ds[2]), alpha=g1).add_(Ds[0], alpha=c0), x, c_x)
    c_x, c0, w = coef
    return _add_(torch.mul(Ds[0], c0) if w is None else torch.lerp(Ds[0], Ds[1], w).mul_(c0), x, c_x)


def _dpmpp_multistep(name, order, process, pred, x, times, generator, callback, time_shift, lower_order_final,
                     options):
    ts_kw = _split_ts_options(options)
    _reject_unknown(name, options)
    times = check_times(times, x, coef=True, process=process, pred=pred)
    cond = pred.cond
    shift = _TimeShift(process, times, time_shift, cond, **ts_kw)
    sch = _Schedule(process, pred, x, times)
    n_steps = len(times) - 1
    hist: list = []  # (lambda, x0_hat): lambda a float on the fast path, else a tensor
    to_data = sch[n_steps].is_data_end()
    cur = sch[0]
    for i in range(n_steps):
        nxt = sch[i + 1]
        step_order = final_order_cap(order, i, n_steps, to_data, lower_order_final)
        coef = None
        if cur.fast and nxt.fast and not nxt.is_data_end() and all(type(lam) is float for lam, _ in hist):
            coef = _try(_dpmpp_coef, cur, nxt, [lam for lam, _ in reversed(hist)], step_order)
        D0 = sch.x0(x, cur)
        if coef is not None:
            x = _dpmpp_fast(x, coef, [D0] + [D for _, D in reversed(hist)])
        elif nxt.is_data_end():
            x = D0 * nxt.alpha if nxt.fast else _cast(nxt.alpha, x) * D0 + _cast(nxt.off, x)
        else:
            x = _dpmpp_step(x, sch.general(cur), sch.general(nxt), D0, hist, step_order)
        if _finite_lam(cur):
            hist.append((cur.lam, D0))
            del hist[:-2]
        else:  # a prediction at alpha = 0 (lambda = -inf) cannot enter divided differences
            hist.clear()
        t_eff = shift(x, i + 1)
        cur = nxt if t_eff is None else sch.point(t_eff)
        if callback is not None:
            callback(i, sch.t[i + 1], x)
    return x


@register("dpm++1", kind="ode", default_grid="log_snr", requires="linear")
def dpmpp_1(process, pred, x, times, *, generator=None, callback=None, time_shift: bool = False, **options):
    """DPM-Solver++ order 1 (exponential integrator in lambda, data prediction; equals DDIM with eta = 0)."""
    return _dpmpp_multistep("dpm++1", 1, process, pred, x, times, generator, callback, time_shift, False, options)


@register("dpm++2m", kind="ode", default_grid="log_snr", requires="linear")
def dpmpp_2m(process, pred, x, times, *, generator=None, callback=None, time_shift: bool = False,
             lower_order_final: bool = True, **options):
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2): second-order multistep in lambda, one NFE per step.

    The first step is first order; the last step to sigma = 0 is the explicit denoising
    step. ``lower_order_final`` (default on; :func:`final_order_cap`) caps the order of step i
    at ``n_steps - i`` on grids that end at the data end, whatever their length, so the step
    into the last grid time before the denoising step is at most second order (for 3M): on a
    grid uniform in t (VP) that step spans a far larger log-SNR interval than the ones before
    it, and third-order extrapolation over it made 15 steps less accurate than 10. On grids
    that stop short of the data end it applies below 15 steps only (as in diffusers).
    """
    return _dpmpp_multistep("dpm++2m", 2, process, pred, x, times, generator, callback, time_shift,
                            lower_order_final, options)


@register("dpm++3m", kind="ode", default_grid="log_snr", requires="linear")
def dpmpp_3m(process, pred, x, times, *, generator=None, callback=None, time_shift: bool = False,
             lower_order_final: bool = True, **options):
    """DPM-Solver++(3M): third-order multistep in lambda (orders 1, 2 at the first steps), one NFE per step.

    ``lower_order_final`` as for ``dpm++2m``.
    """
    return _dpmpp_multistep("dpm++3m", 3, process, pred, x, times, generator, callback, time_shift,
                            lower_order_final, options)


def _sde_coef(cur: _Pt, nxt: _Pt, prev_lam, eta: float, midpoint: bool, s_noise: float):
    """(decay, c0, w, noise_sd) of a fast DPM-Solver++(2M) SDE step, as Python floats:
    x_t = decay x_s + c0 lerp(D0, D_prev, w) + noise_sd z (w None for a first-order step)."""
    h = nxt.lam - cur.lam
    eta_h = eta * h if eta > 0 else 0.0
    psi = h + eta_h
    one_m = -math.expm1(-psi)  # 1 - e^{-psi}
    decay = nxt.sigma / cur.sigma * _fexp(-eta_h)
    if math.isnan(decay):
        decay = 0.0
    c0, w = nxt.alpha * one_m, None
    if prev_lam is not None:  # + c (D0 - D_prev) / r = c0 (D0 + w (D_prev - D0))
        r = (cur.lam - prev_lam) / h
        c = 0.5 * nxt.alpha * one_m if midpoint else nxt.alpha * (1.0 - one_m / psi)
        w = -c / (r * c0)
    noise_sd = nxt.sigma * math.sqrt(-math.expm1(-2.0 * eta_h)) * s_noise if eta > 0 else 0.0
    return decay, c0, w, noise_sd


@register("dpm++2m-sde", kind="sde", default_grid="log_snr", requires="linear")
def dpmpp_2m_sde(process, pred, x, times, *, generator=None, callback=None, eta: float = 1.0, s_noise: float = 1.0,
                 solver_type: str = "midpoint", time_shift: bool = False, **options):
    """DPM-Solver++(2M) SDE (Lu et al. 2022; k-diffusion's dpmpp_2m_sde) for any linear process.

    With h = lambda_t - lambda_s and psi = (1 + eta) h:
    xc_t = (sigma_t/sigma_s) e^{-eta h} xc_s + alpha_t (1 - e^{-psi}) D0 + [2nd-order term]
           + sigma_t sqrt(1 - e^{-2 eta h}) s_noise z.
    The 2nd-order term is 0.5 alpha_t (1 - e^{-psi}) (D0 - D_prev)/r (``solver_type="midpoint"``)
    or alpha_t (1 - (1 - e^{-psi})/psi) (D0 - D_prev)/r (``"heun"``), r = h_prev / h.
    eta = 0 gives the deterministic DPM-Solver++(2M) ("midpoint"); eta = 1 the reverse SDE.
    """
    ts_kw = _split_ts_options(options)
    _reject_unknown("dpm++2m-sde", options)
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"unknown solver_type {solver_type!r}; choose 'midpoint' or 'heun'")
    if eta < 0 or s_noise < 0:
        raise ValueError(f"eta and s_noise must be >= 0, got {eta}, {s_noise}")
    times = check_times(times, x, coef=True, process=process, pred=pred)
    cond = pred.cond
    shift = _TimeShift(process, times, time_shift, cond, **ts_kw)
    sch = _Schedule(process, pred, x, times)
    prev = None  # (lambda, D)
    cur = sch[0]
    for i in range(len(times) - 1):
        nxt = sch[i + 1]
        second = prev is not None and _finite_lam(cur)
        coef = None
        if cur.fast and nxt.fast and not nxt.is_data_end() and (not second or type(prev[0]) is float):
            coef = _try(_sde_coef, cur, nxt, prev[0] if second else None, eta, solver_type == "midpoint", s_noise)
        D0 = sch.x0(x, cur)
        if coef is not None:
            decay, c0, w, noise_sd = coef
            x_new = _add_(torch.mul(D0, c0) if w is None else torch.lerp(D0, prev[1], w).mul_(c0), x, decay)
            if eta > 0:
                x_new = _add_(x_new, _randn_like(x, generator), noise_sd)
            x = x_new
        elif nxt.is_data_end():
            x = D0 * nxt.alpha if nxt.fast else _cast(nxt.alpha, x) * D0 + _cast(nxt.off, x)
        else:
            cg, ng = sch.general(cur), sch.general(nxt)
            h = ng.lam - cg.lam
            eta_h = eta * h if eta > 0 else torch.zeros_like(h)
            psi = h + eta_h
            one_m = -torch.expm1(-psi)  # 1 - e^{-psi}
            xc = x - _cast(cg.off, x)
            decay = torch.nan_to_num(ng.sigma / cg.sigma * torch.exp(-eta_h), nan=0.0)
            x_new = _cast(decay, x) * xc + _cast(ng.alpha * one_m, x) * D0
            if second:
                r = (cg.lam - prev[0]) / h
                dD = (D0 - prev[1]) / _cast(r, x)
                if solver_type == "midpoint":
                    x_new = x_new + _cast(0.5 * ng.alpha * one_m, x) * dD
                else:
                    x_new = x_new + _cast(ng.alpha * (1.0 - one_m / psi), x) * dD
            if eta > 0:
                noise_sd = ng.sigma * torch.sqrt(-torch.expm1(-2.0 * eta_h)) * s_noise
                x_new = x_new + _cast(noise_sd, x) * _randn_like(x, generator)
            x = x_new + _cast(ng.off, x)
        prev = (cur.lam, D0) if _finite_lam(cur) else None
        t_eff = shift(x, i + 1)
        cur = nxt if t_eff is None else sch.point(t_eff)
        if callback is not None:
            callback(i, sch.t[i + 1], x)
    return x
