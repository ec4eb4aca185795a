"""What every sampler shares, one home each.

* :func:`check_times` -- the time-grid check (a decreasing 1-D float tensor, finite, on the state's
  device), and the start rule at an interpolant's prior end (:func:`start_inside`);
* :func:`coefficients` -- alpha, sigma, lambda (and the offset) of a linear process at one time
  (defined in :mod:`stochgen.parameterization`, whose conversions use it too);
* :func:`diffusion_depends_on_state` -- the probe whether ``process.sde``'s diffusion depends on
  the state, :func:`sde_coefficients` -- drift, diffusion and ``d/dx g^2`` at a state;
* :func:`flow_velocity` -- the probability-flow velocity (``ode`` sampler and
  :func:`stochgen.log_likelihood`);
* :data:`ADAPTIVE` -- torchdiffeq's adaptive solvers;
* :func:`check_cond` -- the conditioning check.
"""
from __future__ import annotations


import torch

from .._validate import batch_time, check_finite
from ..parameterization import coefficients  # noqa: F401  (its home: the conversion module)

__all__ = ["ADAPTIVE", "RK_ADAPTIVE", "check_times", "start_inside", "coef_dtype", "coefficients",
           "diffusion_depends_on_state", "sde_coefficients", "flow_velocity", "check_cond", "scalar_t",
           "randn_like"]

#: torchdiffeq's adaptive solvers (``rtol`` / ``atol`` apply; others step on the grid)
ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun", "scipy_solver")
#: torchdiffeq's own adaptive Runge-Kutta solvers (they accept ``step_t``)
RK_ADAPTIVE = ADAPTIVE[:-1]

#: how far inside the prior end a grid starts where alpha = 0 gives the step nothing to go on
#: (a fraction of the first interval; the grids of :mod:`.grids` space from 1e-3 inside too)
INSIDE = 1e-3


def coef_dtype(x: torch.Tensor) -> torch.dtype:
    """Schedule coefficients are computed in float64 unless the device cannot (MPS)."""
    return torch.float32 if x.device.type == "mps" else torch.float64


def scalar_t(t, x: torch.Tensor) -> torch.Tensor:
    """``t`` as a tensor in ``x``'s dtype and device."""
    return torch.as_tensor(t, dtype=x.dtype, device=x.device)


def randn_like(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def check_times(times, x: torch.Tensor | None = None, *, coef: bool = False, process=None, pred=None,
                needs_sde: bool = False, in_range: bool = False, finite: bool = False) -> torch.Tensor:
    """``times`` as a strictly decreasing 1-D float tensor (a clear ``ValueError`` otherwise; NaN fails the order).

    With ``x`` it is moved to ``x``'s device (and with ``coef=True`` to the coefficient dtype,
    :func:`coef_dtype`); ``finite`` refuses infinite times too, ``in_range`` times outside the
    process's time range (``stochgen.sample`` checks that once for every sampler); with ``process``
    and ``pred`` (and ``needs_sde``) the prior-end rule :func:`start_inside` applies. The checks
    cost a few small tensor ops per call, none per step.
    """
    times = torch.as_tensor(times)
    if not times.is_floating_point():
        if times.dtype == torch.bool or times.is_complex():
            raise ValueError(f"times must be a floating-point tensor, got dtype {times.dtype}")
        times = times.to(torch.float64)
    if times.dim() != 1 or times.numel() < 2:
        raise ValueError(f"times must be a 1-D tensor with at least 2 entries, got shape {tuple(times.shape)}")
    if not bool((times[1:] < times[:-1]).all()):
        if bool(torch.isnan(times).any()):
            check_finite(times, "times")
        raise ValueError("times must be strictly decreasing (from the prior end to the data end)")
    if finite:
        check_finite(times, "times")
    if x is not None:
        if x.dim() < 1:
            raise ValueError("x must have a leading batch dimension")
        times = times.to(device=x.device, dtype=coef_dtype(x) if coef else times.dtype)
    if in_range:
        process.check_t(times)
    if pred is not None:
        times = start_inside(process, times, pred.kind, needs_sde)
    return times


def start_inside(process, times: torch.Tensor, kind: str, needs_sde: bool = False) -> torch.Tensor:
    """The grid with its first time moved just inside the prior end where alpha(times[0]) = 0 cannot start it.

    At an interpolant's prior end (alpha = 0, lambda = -inf) x_t is pure noise: an ``"eps"`` or
    ``"score"`` prediction there says nothing about x_0 (x0 = (x - sigma eps)/alpha is 0/0), and
    the SDE's drift ``alpha'/alpha`` is infinite. Then the first time becomes
    ``t0 - INSIDE (t0 - t1)`` (alpha ~ 1e-3 of the first interval's): the state drawn at t0 stands
    for the marginal there, an error of the order of that alpha, like the residual signal that
    VP's prior ignores. ``x0``, ``v`` and ``velocity`` predictions start at alpha = 0 exactly.
    """
    if process is None or not callable(getattr(process, "alpha", None)):
        return times
    if not (needs_sde or kind in ("eps", "score")):
        return times
    t0 = times[0].to(torch.float64)
    if float(process.alpha(t0)) != 0.0:
        return times
    out = times.clone()
    out[0] = times[0] - INSIDE * (times[0] - times[1])
    return out


def check_cond(process, pred, sampler: str) -> None:
    """``ValueError`` naming the sampler when a conditioning signal the process needs is missing."""
    missing = [k for k in getattr(process, "cond_keys", ()) if pred.cond.get(k) is None]
    if missing:
        raise ValueError(
            f"sampler {sampler!r}: {type(process).__name__} needs the conditioning signal(s) {missing}; "
            f"pass them as cond={{{missing[0]!r}: tensor}} to stochgen.sample"
        )


def diffusion_depends_on_state(process, x, t, cond, sampler: str | None = None) -> bool:
    """Probe once whether ``process.sde``'s diffusion depends on x (then the reverse SDE needs d/dx g^2).

    With ``sampler`` given, also refuse SDE coefficients that are not finite at the start time
    with a clear error instead of NaN samples.
    """
    with torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        drift, diff = process.sde(xr, scalar_t(t, x), **cond)
        dep = bool(torch.is_tensor(diff) and diff.requires_grad)
    if sampler is not None and not (bool(torch.isfinite(drift).all()) and bool(torch.isfinite(diff).all())):
        raise ValueError(
            f"sampler {sampler!r}: the SDE of {type(process).__name__} is singular at t={float(t):g} (non-finite "
            f"drift or diffusion); start the grid below it (grids.make_grid(..., t_start=...)) or use "
            f"'reverse-diffusion' or an ODE sampler"
        )
    return dep


def sde_coefficients(process, x, t, cond, state_dependent: bool):
    """(drift, diffusion, d/dx diffusion^2 or None) of the forward SDE at (x, t).

    ``d/dx g^2`` is the elementwise ``d_i (g_i^2)`` of a diagonal diffusion whose entry i depends
    on x_i only. When ``x`` requires grad (the likelihood's divergence) the results stay in its
    graph; otherwise they are detached.
    """
    tt = scalar_t(t, x)
    if not state_dependent:
        drift, diff = process.sde(x, tt, **cond)
        return drift, diff, None
    keep = x.requires_grad
    with torch.enable_grad():
        xr = x if keep else x.detach().clone().requires_grad_(True)
        drift, diff = process.sde(xr, tt, **cond)
        (div,) = torch.autograd.grad((diff**2).sum(), xr, allow_unused=True, create_graph=keep)
    div = torch.zeros_like(x) if div is None else div
    if keep:
        return drift, diff, div
    return drift.detach(), diff.detach(), div.detach()


def _velocity_form(process, x, t, cond) -> bool:
    """Whether the flow velocity is the prediction's own ``"velocity"`` (a linear process without offset)."""
    fam = getattr(type(process), "family", None)
    if fam is None or not fam.has("linear"):
        return False
    off = process.offset(batch_time(scalar_t(t, x), x), **cond)
    return isinstance(off, (int, float)) and not isinstance(off, bool) and off == 0


def flow_velocity(process, pred, x, t, state_dependent: bool = False) -> torch.Tensor:
    """The probability-flow velocity ``dx/dt`` at ``(x, t)`` from one model call.

    A linear process without offset: ``alpha' x0_hat + sigma' eps_hat`` (the prediction converted to
    ``"velocity"``; finite at an interpolant's prior end alpha = 0, where ``f x`` and ``g^2 score``
    are each infinite). Otherwise ``f - 1/2 d/dx(g^2) - 1/2 g^2 score`` from ``process.sde``
    (Song et al. 2021, eq. 13 for a diagonal diffusion): the ``d/dx(g^2)`` term is nonzero for a
    state-dependent noise such as GBM's ``g = s x``.
    """
    if _velocity_form(process, x, t, pred.cond):
        return pred.as_kind("velocity", x, t)
    drift, diff, div = sde_coefficients(process, x, t, pred.cond, state_dependent)
    v = drift - 0.5 * diff**2 * pred.score(x, t)
    return v if div is None else v - 0.5 * div
