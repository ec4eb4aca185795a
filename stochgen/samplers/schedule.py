"""Deterministic (and DDIM-/DPM-SDE-style) reverse samplers for linear Gaussian processes.

Every sampler here talks to the process only through the linear protocol
``alpha(t)``, ``sigma(t)``, ``lambda_(t) = log(alpha/sigma)``, ``t_of_lambda`` and
``offset(t, **cond)`` (``x_t = alpha x_0 + offset + sigma eps``), and to the model only
through a :class:`~stochgen.parameterization.Prediction` (which converts score / eps /
x0 / v and counts NFE). They therefore work for VP, VE, EDM, interpolants and
mean-reverting processes alike.

Two equivalent views of the probability-flow ODE are used:

* **VE-equivalent form** (``euler``, ``heun``): with ``x~ = (x - offset)/alpha`` and
  ``s~ = sigma/alpha = exp(-lambda)``, the marginal is ``x~ = x_0 + s~ eps`` and the ODE
  is ``dx~/ds~ = (x~ - x0_hat(x, t))/s~`` (Karras et al. 2022, eq. 4 with s(t) = 1).
* **Exponential-integrator form** (``ddim``, ``dpm++*``): in the centred state
  ``xc = x - offset`` the linear part is integrated exactly in ``lambda``:
  ``xc_t = (sigma_t/sigma_s) xc_s + sigma_t int_{lambda_s}^{lambda_t} e^lambda x0_hat d lambda``
  (Lu et al. 2022, DPM-Solver++), and the integral is approximated by a Taylor
  expansion of ``x0_hat`` in ``lambda`` built from the previous steps (multistep).

Implementation: the schedule of the whole grid is evaluated once per call. For the common
case -- a process whose ``offset`` is the plain number 0 (all but the mean-reverting ones) and
one time for the whole batch -- alpha, sigma and lambda at every grid time are Python floats,
each step folds its coefficients into 1-6 full-size tensor ops (``torch.lerp`` / ``add`` with
``alpha=``), and the model's output is converted to x0 with the same float coefficients (one
model call, as ``Prediction.x0``). Differences of predictions (Heun's ``x0_2 - x~_e``,
DPM-Solver++'s divided differences) are still formed before they are scaled, so round-off is
not amplified where the coefficients grow. A nonzero offset (a tensor), per-sample times (time
shift with ``ts_stat="sample"``), a schedule that needs gradients and Euler/Heun steps from
``alpha = 0`` take the general path, in tensors.

A grid produced by :mod:`stochgen.samplers.grids` ends at the data end ``t_lo`` where
``sigma = 0`` (``lambda = inf``); that last interval is taken as an explicit denoising
step ``x = alpha x0_hat + offset`` by every sampler (first order in the step, exact
given the denoiser). A step *from* ``alpha = 0`` (an interpolant's prior end,
``lambda = -inf``) is also handled: the exponential-integrator formulas stay finite
there and the Heun correction is skipped for that step.

Note: the plain Euler step in ``s~`` coincides algebraically with DDIM (``eta = 0``) and
with DPM-Solver++ order 1; the three names exist because users look for each, and
they differ only in round-off and in the options they accept.

This module is the engine they share: the schedule over a call's grid (:class:`_Schedule`, with its
float fast path :class:`_Pt` and tensor points :class:`_At`), the model calls converted to x0, and
the multistep order rule :func:`final_order_cap`. The samplers live in :mod:`.euler_heun` and
:mod:`.dpm` (DDIM, DPM-Solver++), the time shift in :mod:`.time_shift`.
"""
from __future__ import annotations

import math

import torch

from .._validate import batch_time
from ..parameterization import KINDS, Prediction, coefficients, x0_from

SQRT2_M1 = math.sqrt(2.0) - 1.0


class _At:
    """Schedule quantities at time ``t`` (scalar or one per sample), shaped to broadcast with ``x``."""

    __slots__ = ("t", "alpha", "sigma", "lam", "off")
    fast = False  # see _Pt

    def __init__(self, process, t: torch.Tensor, x: torch.Tensor, cond: dict):
        self.t = t
        self.alpha, self.sigma, self.lam, off = coefficients(process, t, like=x, cond=cond)
        self.off = off if torch.is_tensor(off) else torch.as_tensor(off, dtype=t.dtype, device=x.device)

    @property
    def sig_tilde(self) -> torch.Tensor:
        """sigma / alpha = exp(-lambda) (inf where alpha = 0)."""
        return torch.exp(-self.lam)

    def is_data_end(self) -> bool:
        return bool((self.sigma == 0).all())


def _cast(c, x):
    return c.to(x.dtype) if torch.is_tensor(c) else c


def _fexp(v: float) -> float:
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _scaled(x: torch.Tensor, c: float) -> torch.Tensor:
    return x if c == 1.0 else x * c


class _Pt:
    """Schedule quantities at one scalar time as Python floats: the fast path (see :class:`_Schedule`).

    ``t`` is the time as a 0-d tensor (what :class:`_At` and ``Prediction``'s conversions get),
    ``tm`` the time as the model gets it: one entry per sample, in the state's dtype.
    """

    __slots__ = ("t", "tm", "alpha", "sigma", "lam")
    fast = True

    def __init__(self, t, tm, alpha: float, sigma: float, lam: float):
        self.t, self.tm, self.alpha, self.sigma, self.lam = t, tm, alpha, sigma, lam

    @property
    def sig_tilde(self) -> float:
        """sigma / alpha = exp(-lambda) (inf where alpha = 0)."""
        return _fexp(-self.lam)

    def is_data_end(self) -> bool:
        return self.sigma == 0.0


def _try(fn, *args):
    """``fn(*args)``, or None where Python-float arithmetic fails (a division by 0, an overflow) --
    the general (tensor) path then takes the step and gives what it always gave there (inf / nan)."""
    try:
        return fn(*args)
    except ArithmeticError:
        return None


class _Schedule:
    """The schedule over a sampler call's time grid, and the model calls.

    Fast path: when the process's offset is the plain number 0 (every linear process but the
    mean-reverting ones), alpha, sigma and lambda at all grid times come from one vectorised
    call each and are kept as Python floats (:class:`_Pt`), so a step's coefficients cost no
    tensor ops and no device syncs, and the samplers fold them into a few full-size ops.
    Otherwise (an offset tensor), and at per-sample times (time shift with ``ts_stat="sample"``),
    points are :class:`_At` (tensors) and the samplers take their general path.
    """

    def __init__(self, process, pred, x: torch.Tensor, times: torch.Tensor):
        self.process, self.pred, self.cond = process, pred, pred.cond
        self.x_like, self.n = x, x.shape[0]
        self.t = times.unbind(0)
        off = process.offset(batch_time(times[0], x), **self.cond)
        self.fast = isinstance(off, (int, float)) and not isinstance(off, bool) and off == 0
        cls = type(pred)
        # the model's output converted here with float coefficients, as Prediction.x0 would
        self.direct = (getattr(pred, "kind", None) in KINDS and getattr(cls, "x0", None) is Prediction.x0
                       and getattr(cls, "as_kind", None) is Prediction.as_kind)
        if self.fast:
            tt = times.reshape((-1,) + (1,) * (x.dim() - 1))
            sched = [torch.broadcast_to(torch.as_tensor(f(tt)), tt.shape).reshape(-1)
                     for f in (process.alpha, process.sigma, process.lambda_)]
            # a schedule with parameters that gradients must reach stays in tensors (general path)
            self.fast = not (torch.is_grad_enabled() and any(c.requires_grad for c in sched))
        if self.fast:
            tm = times.to(x.dtype).unsqueeze(1).expand(-1, self.n).unbind(0)
            self.pts = [_Pt(*v) for v in zip(self.t, tm, *(c.tolist() for c in sched))]

    def __getitem__(self, i: int):
        """The schedule at grid time ``i``."""
        return self.pts[i] if self.fast else _At(self.process, self.t[i], self.x_like, self.cond)

    def point(self, t: torch.Tensor):
        """The schedule at a time off the grid (0-d, or one per sample)."""
        if not (self.fast and t.dim() == 0):
            return _At(self.process, t, self.x_like, self.cond)
        tb = batch_time(t, self.x_like)
        p = self.process
        return _Pt(t, t.to(self.x_like.dtype).expand(self.n), float(p.alpha(tb)), float(p.sigma(tb)),
                   float(p.lambda_(tb)))

    def general(self, p):
        """``p`` as an :class:`_At` (the general path's tensors)."""
        return _At(self.process, p.t, self.x_like, self.cond) if p.fast else p

    def fast_x0(self, p) -> bool:
        """Whether :meth:`x0` at ``p`` takes the fast conversion (it does what ``pred.x0`` does either way)."""
        return p.fast and self.direct and (p.alpha != 0.0 or self.pred.kind in ("x0", "v"))

    def x0(self, x: torch.Tensor, p) -> torch.Tensor:
        """x0_hat(x, t) from one model call (``pred.x0``), converted with float coefficients on the fast path."""
        if not self.fast_x0(p):
            return self.pred.x0(x, p.t)
        return x0_from(self.pred.kind, self.pred(x, p.tm), x, p.alpha, p.sigma)


def _reject_unknown(name: str, options: dict):
    if options:
        raise TypeError(f"sampler {name!r} got unknown option(s): {', '.join(sorted(options))}")


def _add_(out: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """``out + c y``, in place in ``out`` (a fresh tensor of ours) unless that would lower y's dtype."""
    return out.add_(y, alpha=c) if out.dtype == torch.promote_types(out.dtype, y.dtype) else torch.add(out, y, alpha=c)


def _finite_lam(p) -> bool:
    return math.isfinite(p.lam) if p.fast else bool(torch.isfinite(p.lam).all())


def final_order_cap(order: int, i: int, n_steps: int, to_data: bool, enabled: bool = True) -> int:
    """The order a multistep sampler may use at step ``i`` of ``n_steps`` (``lower_order_final``).

    A grid that ends at the data end (``to_data``: sigma = 0 there) finishes with the explicit
    denoising step, so capping step i at ``n_steps - i`` only lowers the step into the last grid
    time before it (third order -> at most second): one step's local error O(h^3), global order
    kept, and it keeps the huge last log-SNR step of a VP grid uniform in t from diverging. A grid
    that stops short of the data end has no such step after it: there the cap would make the final
    step first order and the whole method second order, so it applies only to few-step grids
    (fewer than 15 steps, DPM-Solver's and diffusers' rule) where stability matters more.
    """
    if enabled and (to_data or n_steps < 15):
        return min(order, n_steps - i)
    return order
