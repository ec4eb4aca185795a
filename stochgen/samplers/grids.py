"""Time grids: plain functions returning a decreasing 1-D tensor the caller can inspect.

Every grid runs from ``t_start`` (default the process's ``t_max``) down to
``t_min`` in ``steps`` points and then appends the data end ``t_lo`` (where
sigma = 0 for VP, EDM, interpolants; VE keeps its floor sigma_min there) unless ``to_data=False``: the last interval is an explicit
denoising step, so no stray noise of size sigma(t_min) is left in the sample.
A grid of ``steps`` points therefore has ``steps`` intervals.

* ``uniform``  equal steps in t
* ``karras``   EDM's rho-spacing in the noise-to-signal ratio sigma/alpha (rho = 7)
* ``log_snr``  equal steps in lambda = log(alpha/sigma) (DPM-Solver's "logSNR")
"""
from __future__ import annotations

import torch


def _ends(process, t_start, t_end):
    t_start = process.t_max if t_start is None else float(t_start)
    t_end = process.t_min if t_end is None else float(t_end)
    if not t_start > t_end:
        raise ValueError(f"the grid must run backwards in time: t_start={t_start} <= t_end={t_end}")
    return t_start, t_end


def _inside(a: float, b: float) -> float:
    """A time just inside the prior end, where lambda is finite."""
    return a - 1e-3 * (a - b)


def _finish(process, ts: torch.Tensor, to_data: bool) -> torch.Tensor:
    if to_data:
        ts = torch.cat([ts, ts.new_tensor([process.t_lo])])
    return ts


def _check_steps(steps):
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


def uniform(process, steps: int, t_start=None, t_end=None, to_data: bool = True, dtype=torch.float64, device=None):
    _check_steps(steps)
    a, b = _ends(process, t_start, t_end)
    ts = torch.linspace(a, b, steps, dtype=dtype, device=device) if steps > 1 else torch.tensor([a], dtype=dtype, device=device)
    return _finish(process, ts, to_data)


def karras(process, steps: int, rho: float = 7.0, t_start=None, t_end=None, to_data: bool = True,
           dtype=torch.float64, device=None):
    """Karras et al.'s schedule in the VE-equivalent noise level sigma/alpha = exp(-lambda)."""
    _check_steps(steps)
    if not (isinstance(rho, (int, float)) and rho > 0):
        raise ValueError(f"rho must be a positive number, got {rho!r}")
    a, b = _ends(process, t_start, t_end)
    s_max = torch.exp(-process.lambda_(torch.tensor(a, dtype=torch.float64)))
    s_min = torch.exp(-process.lambda_(torch.tensor(b, dtype=torch.float64)))
    if not torch.isfinite(s_max):  # alpha(t_max) = 0 (flow matching): space from just inside the end
        s_max = torch.exp(-process.lambda_(torch.tensor(_inside(a, b), dtype=torch.float64)))
    r = torch.linspace(0, 1, steps, dtype=torch.float64) if steps > 1 else torch.zeros(1, dtype=torch.float64)
    sig = (s_max ** (1 / rho) + r * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    ts = process.t_of_lambda(-torch.log(sig))
    ts[0], ts[-1] = a, (b if steps > 1 else a)
    return _finish(process, ts.to(dtype=dtype, device=device), to_data)


def log_snr(process, steps: int, t_start=None, t_end=None, to_data: bool = True, dtype=torch.float64, device=None):
    _check_steps(steps)
    a, b = _ends(process, t_start, t_end)
    la = process.lambda_(torch.tensor(a, dtype=torch.float64))
    lb = process.lambda_(torch.tensor(b, dtype=torch.float64))
    if not torch.isfinite(la):  # alpha(t_max) = 0 gives lambda = -inf
        la = process.lambda_(torch.tensor(_inside(a, b), dtype=torch.float64))
    lam = torch.linspace(float(la), float(lb), steps, dtype=torch.float64) if steps > 1 else la.reshape(1)
    ts = process.t_of_lambda(lam)
    ts[0], ts[-1] = a, (b if steps > 1 else a)
    return _finish(process, ts.to(dtype=dtype, device=device), to_data)


GRIDS = {"uniform": uniform, "karras": karras, "log_snr": log_snr}


def make_grid(process, steps: int, kind: str = "karras", **kw) -> torch.Tensor:
    if kind not in GRIDS:
        raise ValueError(f"unknown time grid {kind!r}; choose one of {', '.join(GRIDS)}")
    if kind != "uniform" and not has_log_snr(process):
        raise ValueError(f"grid {kind!r} needs the process's lambda_(t) and t_of_lambda, which "
                         f"{type(process).__name__} does not have; use grid='uniform'")
    return GRIDS[kind](process, steps, **kw)


def has_log_snr(process) -> bool:
    """Whether ``process`` has the log-SNR protocol that the karras and log_snr grids use."""
    return hasattr(process, "lambda_") and hasattr(process, "t_of_lambda")
