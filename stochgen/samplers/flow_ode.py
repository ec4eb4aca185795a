"""The probability-flow ODE integrated by torchdiffeq (Song et al. 2021, score SDE).

    dx/dt = drift(x, t) - 1/2 d/dx diffusion(x, t)^2 - 1/2 diffusion(x, t)^2 * score(x, t)

``drift`` and ``diffusion`` come from the process's own ``sde(x, t, **cond)``, so the
sampler works for any diffusion whose model gives a score (for a mean-reverting
process the drift carries the pull towards ``y``; for GBM's state-dependent noise
``g = s x`` the ``d/dx g^2`` term is what keeps the flow's marginals right). A linear
process without offset uses the same velocity written as ``alpha' x0_hat + sigma' eps_hat``
(:func:`~stochgen.samplers.kernel.flow_velocity`), which stays finite at an interpolant's
prior end alpha = 0. The solver only ever sees times inside the integration interval
(torchdiffeq's initial-step probe may ask for one far outside where the velocity is ~0,
as at IR-SDE's t = 1 with its cosine theta). The ODE is integrated from
``times[0]`` to ``times[-2]`` (the grid's ``t_min``) by ``torchdiffeq.odeint`` and then the
last interval to the data end is an explicit denoising step (Tweedie:
``x = alpha x0_hat + offset + sigma eps_hat`` at ``times[-1]``, i.e. ``x0_hat`` where sigma = 0).
Processes without the linear ``alpha``/``sigma`` protocol are integrated all the way
to ``times[-1]`` instead.

Options: ``method`` (default ``"dopri5"``; any torchdiffeq method), ``rtol``/``atol``
(adaptive methods, default 1e-5), ``odeint_options`` (a dict passed as torchdiffeq's
``options``). Fixed-step methods (``"euler"``, ``"midpoint"``, ``"rk4"``, ...) step
exactly on the grid ``times[:-1]``; adaptive ones choose their own steps and report
the solution at the grid times (dense output), where ``callback`` sees it. The NFE
(counted by the :class:`~stochgen.parameterization.Prediction`) includes the
adaptive solver's rejected steps.
"""
from __future__ import annotations

import torch

from .kernel import ADAPTIVE, RK_ADAPTIVE, check_times, diffusion_depends_on_state, flow_velocity
from .registry import register


def _is_linear(process) -> bool:
    return all(callable(getattr(process, name, None)) for name in ("alpha", "sigma", "offset"))


@register("ode", kind="ode", default_grid="karras", requires="flow")
def probability_flow_ode(process, pred, x, times, *, generator=None, callback=None, method: str = "dopri5",
                         rtol: float = 1e-5, atol: float = 1e-5, odeint_options: dict | None = None, **options):
    """Probability-flow ODE dx/dt = drift - g^2/2 score by torchdiffeq (default dopri5), then a denoising step."""
    if options:
        raise TypeError(f"sampler 'ode' got unknown option(s): {', '.join(sorted(options))}")
    from torchdiffeq import odeint

    times = check_times(times, x, coef=True, pred=pred, process=process)
    cond = pred.cond
    linear = _is_linear(process)
    ode_times = times[:-1] if linear else times
    t_grid = ode_times.to(x.dtype)
    state_dependent = diffusion_depends_on_state(process, x, times[0], cond)
    t_lo, t_hi = t_grid.min(), t_grid.max()

    def rhs(t, y):
        return flow_velocity(process, pred, y, torch.clamp(t, t_lo, t_hi), state_dependent)

    if len(t_grid) >= 2:
        opts = dict(odeint_options or {})
        if method in RK_ADAPTIVE and "step_t" not in opts:
            # step onto the end point instead of stepping past it and interpolating back: a
            # step past t_min would evaluate the model outside the process's time range
            opts["step_t"] = t_grid[-1:]
        if method not in ADAPTIVE and "grid_constructor" not in opts and "step_size" not in opts:
            opts["grid_constructor"] = lambda func, y0, t: t_grid  # fixed steps exactly on the grid
        kw = dict(method=method, options=opts or None)
        if method in ADAPTIVE:
            kw.update(rtol=rtol, atol=atol)
        # keep every grid state only when a callback wants to see it (memory: one state per grid time)
        t_out = t_grid if callback is not None else t_grid[[0, -1]]
        path = odeint(rhs, x, t_out, **kw)
        if callback is not None:
            for i in range(1, len(path)):
                callback(i - 1, ode_times[i], path[i])
        x = path[-1]
    if linear:
        # explicit denoising step from times[-2] to the data end times[-1]
        t_s, t_e = ode_times[-1], times[-1]
        x0, eps = pred.both(x, t_s)
        shape = (1,) * x.dim()
        a = process.alpha(t_e).reshape(shape).to(x.dtype)
        s = process.sigma(t_e).reshape(shape).to(x.dtype)
        off = process.offset(t_e.reshape(shape), **cond)
        x = a * x0 + s * eps + (off.to(x.dtype) if torch.is_tensor(off) else off)
        if callback is not None:
            callback(len(times) - 2, t_e, x)
    return x
