"""UniPC (Zhao et al. 2023): unified predictor-corrector multistep solver, data prediction, one NFE per step.

Like ``dpm++*`` (see :mod:`stochgen.samplers.ode`) it works on the centred state
``xc = x - offset`` of any linear process ``x_t = alpha x_0 + offset + sigma eps`` and
integrates the linear part of the probability-flow ODE exactly in ``lambda = log(alpha/sigma)``.
With ``h = lambda_t - lambda_s`` and ``u = lambda - lambda_s``:

    xc_t = (sigma_t/sigma_s) xc_s + alpha_t int_0^h e^{-(h-u)} x0(u) du
         = (sigma_t/sigma_s) xc_s + alpha_t [I_0 D_s + sum_{k>=1} I_k x0^(k)(lambda_s)],
    I_k(h) = int_0^h e^{-(h-u)} u^k/k! du:   I_0 = 1 - e^{-h},  I_k = h^k/k! - I_{k-1}.

UniPC replaces the unknown derivatives by differences of stored predictions
``D_m - D_s`` at ``r_m = (lambda_m - lambda_s)/h``:

    xc_t = (sigma_t/sigma_s) xc_s + alpha_t [I_0 D_s + sum_m w_m (D_m - D_s)],

and the weights ``w`` match the Taylor terms k = 1..K (K = number of differences):
``sum_m w_m r_m^k = k! I_k / h^k``. In the paper's notation ``w_m = B(h) a_m / r_m``
with ``R a = b / B(h)``; the solved weights do not depend on ``B(h)``.

* **UniP-p (predictor)**: the p - 1 previous predictions (r_m < 0): order p.
* **UniC (corrector)**: after the predictor has reached ``x~_t`` the model is evaluated
  there -- that evaluation is the one the next step needs anyway -- and the step is
  re-taken with the new prediction as one more point (r = 1): order p + 1 at no extra
  NFE. The new prediction is kept for the following steps although it was taken at
  ``x~_t`` rather than at the corrected state (that reuse is what makes UniC free).
* ``variant``: the paper's (and the official code's / diffusers') implementation
  replaces the 1x1 systems -- the order-2 predictor's weight and the first-order
  corrector's weight -- by their small-step value 1/2 of ``a``:
  ``w = B(h)/(2 r)``, with ``B(h) = h`` (``"bh1"``) or ``B(h) = 1 - e^{-h}`` (``"bh2"``,
  ``e^{h} - 1`` in the paper's noise-prediction form). ``variant="exact"`` solves every
  system exactly (then ``w = I_1/(h r)``: the exact integral of the linear interpolant).
  Systems of two or more weights are solved exactly by all variants, so the variants
  differ only where a 1x1 system occurs.

The NFE is the number of steps: the model is evaluated at every grid time but the last.
The last interval, to the data end (sigma = 0, lambda = inf), is the explicit denoising
step ``x = alpha x0_hat + offset`` as in every sampler here; a last interval that stops at
a noise floor (VE) is a UniP step. Either way no evaluation follows it, so it has no
corrector. A step from ``alpha = 0`` (lambda = -inf, an interpolant's prior end) is a
first-order step without corrector, and the prediction there does not enter later
differences.

``lower_order_final`` (default on; ``ode.final_order_cap``, shared with ``dpm++*``) caps the
order of step i at ``n_steps - i`` (the last step before the data end at 2, the one before at
3) at every step count on grids that end at the data end; a grid that stops short of it is
capped below 15 steps only (capping its final step would make the whole method second order). On a VP grid uniform in t the last
log-SNR steps are ~10x the earlier ones, and order-3 extrapolation across them diverged
at 15-20 steps (endpoint RMS error 1.26 / 0.68 at 15 / 20 steps against 0.15 / 0.12 with
the cap, 8-d Gaussian mixture); on the log-SNR and Karras grids the cap changes little.

Defaults, measured on ``benchmarks/bench_samplers.py`` (EDM, 64-d 8-component mixture,
log-SNR grid): ``order=3`` is far ahead from NFE 20 on (ODE err 2.6e-2 / 9.3e-3 at NFE
20 / 35 against 3.5e-2 / 2.1e-2 for order 2) and has the better mode weights at NFE 10;
``order=2`` is better at NFE 5 and on within-mode spread at NFE 10. ``"bh2"`` beats
``"bh1"`` and ``"exact"`` at NFE 5-10 (they agree from NFE ~10 on for order 3, where no
1x1 system is left but the warm-up's).
"""
from __future__ import annotations

import math

import torch

from .._validate import batch_time
from .kernel import check_times
from .schedule import _reject_unknown, final_order_cap
from .registry import register

__all__ = ["unipc", "unipc_weights"]

VARIANTS = ("bh1", "bh2", "exact")


def _taylor_targets(h: float, K: int) -> list[float]:
    """``k! I_k(h) / h^k`` for k = 1..K (float64; a series for small h avoids cancellation)."""
    out = []
    if h < 1.0:
        # k! I_k / h^k = k! sum_{j>=0} (-1)^j h^{j+1} / (k+1+j)!
        for k in range(1, K + 1):
            s, term = 0.0, h / math.factorial(k + 1)  # j = 0
            j = 0
            while True:
                s += term
                j += 1
                term *= -h / (k + 1 + j)
                if abs(term) < 1e-18 * abs(s) or j > 60:
                    break
            out.append(math.factorial(k) * s)
        return out
    I = -math.expm1(-h)  # I_0
    for k in range(1, K + 1):
        I = h**k / math.factorial(k) - I
        out.append(math.factorial(k) * I / h**k)
    return out


def unipc_weights(h: float, rs, variant: str = "bh2") -> list[float]:
    """Weights ``w_m`` of the differences ``D_m - D_s`` at ``r_m = (lambda_m - lambda_s)/h``.

    ``sum_m w_m r_m^k = k! I_k(h)/h^k`` for k = 1..len(rs); for a single point the
    ``"bh1"``/``"bh2"`` variants use the paper's simplification ``w = B(h)/(2 r)``.
    """
    rs = [float(r) for r in rs]
    K = len(rs)
    if K == 0:
        return []
    if K == 1 and variant != "exact":
        B = h if variant == "bh1" else -math.expm1(-h)
        return [0.5 * B / rs[0]]
    g = _taylor_targets(h, K)
    V = [[r**k for r in rs] for k in range(1, K + 1)]
    return _solve(V, g)


def _solve(A: list, b: list) -> list:
    """Solve the small dense system A w = b (Gaussian elimination with partial pivoting, Python floats)."""
    n = len(b)
    M = [list(row) + [bi] for row, bi in zip(A, b)]
    for c in range(n):
        piv = max(range(c, n), key=lambda r: abs(M[r][c]))
        if M[piv][c] == 0.0:
            raise ValueError("UniPC: coincident lambda values in the multistep history")
        M[c], M[piv] = M[piv], M[c]
        for r in range(c + 1, n):
            f = M[r][c] / M[c][c]
            for k in range(c, n + 1):
                M[r][k] -= f * M[c][k]
    w = [0.0] * n
    for r in range(n - 1, -1, -1):
        w[r] = (M[r][n] - sum(M[r][k] * w[k] for k in range(r + 1, n))) / M[r][r]
    return w


def _schedule(process, times, x):
    """alpha, sigma, lambda at every grid time as Python floats (one vectorised call each)."""
    tt = times.reshape((-1,) + (1,) * max(x.dim() - 1, 0))
    return [torch.broadcast_to(torch.as_tensor(f(tt)), tt.shape).reshape(-1).tolist()
            for f in (process.alpha, process.sigma, process.lambda_)]


def _step(base, D, a_t: float, i0: float, ws, points, off):
    """``base + alpha_t [I_0 D + sum_m w_m (D_m - D)] (+ offset)``, written as one fused sum."""
    out = torch.add(base, D, alpha=a_t * (i0 - sum(ws)))
    for w, D_m in zip(ws, points):
        out.add_(D_m, alpha=a_t * w)
    return out if off is None else out.add_(off)


@register("unipc", kind="ode", default_grid="log_snr", requires="linear")
def unipc(process, pred, x, times, *, generator=None, callback=None, order: int = 3, variant: str = "bh2",
          lower_order_final: bool = True, corrector: bool = True, disable_corrector=(), **options):
    """UniPC (Zhao et al. 2023): UniP-p predictor + UniC corrector in lambda, data prediction, one NFE per step.

    ``order`` (1-3) is the predictor's order p; the corrector makes the step order p + 1.
    ``variant``: "bh2" (default), "bh1" or "exact" (see the module docstring).
    ``lower_order_final``: step i uses order <= n_steps - i (the step into the last grid time
    before the data end at most 2) -- at every step count on grids ending at the data end, below
    15 steps on grids that stop short of it (see the module docstring).
    ``corrector=False`` gives the bare multistep predictor; ``disable_corrector`` lists step
    indices i whose result (at ``times[i + 1]``) is not corrected. The first steps warm up with orders 1, 2, ...
    ``callback(i, t, x)`` sees the corrected state.
    """
    _reject_unknown("unipc", options)
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown UniPC variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    no_corr = {int(i) for i in disable_corrector}
    times = check_times(times, x, coef=True, process=process, pred=pred)
    cond = pred.cond
    n_steps = len(times) - 1
    A, S, L = _schedule(process, times, x)

    def offset(i):  # None for the plain 0 of processes without offset
        off = process.offset(batch_time(times[i], x), **cond)
        if not torch.is_tensor(off) and off == 0:
            return None
        return torch.as_tensor(off, device=x.device).to(x.dtype)

    off_s = offset(0)
    to_data = S[n_steps] == 0.0
    hist: list = []  # (lambda, x0_hat) at earlier grid times, most recent last
    D = pred.x0(x, times[0])  # x0_hat at the current grid time
    for i in range(n_steps):
        off_t = offset(i + 1) if off_s is not None else None
        a_t = A[i + 1]
        if S[i + 1] == 0.0:  # data end: explicit denoising step; no evaluation follows, so no corrector
            x = D * a_t if off_t is None else torch.add(off_t, D, alpha=a_t)
        else:
            lam_s, h = L[i], L[i + 1] - L[i]
            finite = math.isfinite(lam_s)
            p = min(order, len(hist) + 1) if finite else 1
            p = final_order_cap(p, i, n_steps, to_data, lower_order_final)
            i0 = -math.expm1(-h)  # I_0: xc_t = (sigma_t/sigma_s) xc_s + alpha_t I_0 D_s for a constant x0_hat
            base = (x if off_s is None else x - off_s) * (S[i + 1] / S[i])
            past = hist[len(hist) - (p - 1):] if p > 1 else []
            rs = [(lam_m - lam_s) / h for lam_m, _ in past]
            points = [D_m for _, D_m in past]
            x = _step(base, D, a_t, i0, unipc_weights(h, rs, variant), points, off_t)  # UniP
            # a last step that stops short of sigma = 0 (VE's floor) is followed by no evaluation
            D_t = pred.x0(x, times[i + 1]) if i < n_steps - 1 else None
            if D_t is not None and corrector and finite and i not in no_corr:  # UniC: D_t at r = 1
                x = _step(base, D, a_t, i0, unipc_weights(h, rs + [1.0], variant), points + [D_t], off_t)
            if finite:
                hist.append((lam_s, D))
                del hist[:-2]
            else:  # a prediction at alpha = 0 (lambda = -inf) cannot enter differences
                hist.clear()
            D = D_t  # kept although taken at the predictor's state (what makes UniC free)
        off_s = off_t
        if callback is not None:
            callback(i, times[i + 1], x)
    return x
