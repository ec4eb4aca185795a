"""Reverse-time samplers for continuous-time Markov chains (discrete diffusion).

Registered samplers (``kind="jump"``, default grid ``"uniform"``):

* ``"tau-leaping"`` -- Campbell et al. (2022): in a step from ``t`` to
  ``s < t`` every position draws, for each other state ``y``, a number of
  jumps ``n_y ~ Poisson(R_rev(x -> y) (t - s))`` with the reverse rates
  frozen at ``t``. States are categorical (no order), so jumps cannot be
  summed: a position moves to ``y`` when it drew **exactly one** jump in all
  (``n_y = 1``, all other counts 0) and **stays** when it drew none or more
  than one (multi-jumps are rejected). The chance of a move to ``y`` is thus
  ``r_y h exp(-lambda h)`` with ``lambda = sum_y r_y``, ``h = t - s``; the
  sampler draws this law directly, one categorical draw per position
  instead of ``K`` Poisson variates (same distribution, less work). The
  rejection keeps the step a valid kernel however large ``lambda h`` is,
  at the price of an ``O(h)`` bias near ``t = 0`` where the rates are large.
* ``"ctmc-euler"`` -- the Euler step of the reverse chain (as in SEDD, Lou
  et al. 2024): ``P(x_s = y | x_t = x) = [y = x] + h R_rev(x -> y)``,
  clipped to ``[0, 1]`` and renormalised, one categorical draw per position.
  With ``analytic=True`` it takes the exact-conditional ("analytic") step
  instead::

      p(x_s = y | x_t = x) = sum_x0 p(x0 | x_t) q(y | x0) q(x | y) / q(x | x0)

  with ``q(y | x0) = P(0, s)[x0, y]``, ``q(x | y) = P(s, t)[y, x]`` and
  ``q(x | x0) = P(0, t)[x0, x]`` from ``process.transition``. For every
  position this is the true conditional law of ``x_s`` given ``x_t`` when
  the denoiser is exact, whatever the step size; for a sequence it is exact
  when the positions of the data are independent (otherwise the
  per-position updates are a factorised approximation that becomes exact as
  the steps shrink).

Common behaviour
----------------
* ``pred`` wraps the model: ``model(x_t, t, **cond)`` returns the denoising
  probabilities ``p(x0 | x_t)`` of shape ``x_t.shape + (K,)`` with
  ``K = process.num_categories`` (for an absorbing chain also
  ``x_t.shape + (num_states,)``, the mask being no data value); a ``"logits"``
  model is turned into probabilities by the conversion module. The output
  is validated: wrong shape, non-finite or negative entries, or rows that do
  not sum to 1 (within ``1e-3``; ``2e-2`` for half precision) raise
  ``ValueError`` -- apply softmax to logits. Mass on the mask state is
  dropped and the rest renormalised. ``t`` is passed as a tensor of shape
  ``(batch,)`` in the default floating dtype. One model call per step, so ``NFE == len(times) - 1``.
* ``times`` is a decreasing 1-D grid. Every interval costs one model call at
  its start. When the grid ends at the data end ``process.t_lo`` (= 0, what
  :mod:`~stochgen.samplers.grids` produce), the last interval is a
  **denoising step**: ``x0`` is drawn from ``p(x0 | x_t)`` restricted to the
  data values ``x0`` that can reach ``x_t`` (``q(x_t | x0) > 0``; this is
  the analytic step with ``s = 0``; e.g. an absorbing chain keeps unmasked
  tokens), or its argmax with ``final="argmax"``. If the model puts no mass
  on any reachable value the unrestricted ``p(x0 | x_t)`` is used. The
  result holds data states only (no mask). A grid that stops above ``t_lo``
  ends with an ordinary step and may leave masked / noisy positions.
* ``callback(i, t, x)`` is called after step ``i`` with ``t = times[i + 1]``,
  the time of the new state ``x``.
* All randomness comes from ``generator``; the step arithmetic runs in
  float64. States are ``torch.long`` of any shape ``(batch, *event_shape)``;
  a floating start state holding integer values is accepted (cast to long).
* The analytic step and the final denoising step form the ``K x K``
  matrices ``P(0, t)``, ``P(0, s)``, ``P(s, t)`` once per step (the
  tau-leaping and Euler steps need only ``P(0, t)`` at the final step), so
  they suit small to moderate ``K``.
"""
from __future__ import annotations

import torch

from .._validate import check_finite

# the step pieces other samplers compose (the composite sampler's jump parts): public, one home
__all__ = ["tau_leaping", "ctmc_euler", "as_states", "check_final", "check_probs", "analytic_step", "final_step"]
from ..parameterization import Prediction
from .kernel import check_times
from .registry import register

_F64 = torch.float64
_REACH_TOL = 1e-13  # q(x_t | x0) below this counts as "x0 cannot reach x_t" (as in CTMC.reverse_rates)
_FINALS = ("sample", "argmax")


# ---------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------


def _check_process(process) -> None:
    needed = ("reverse_rates", "transition", "num_categories", "num_states", "space")
    missing = [a for a in needed if not hasattr(process, a)]
    if missing:
        raise ValueError(
            f"CTMC samplers need a jump process (a CTMC with {', '.join(needed)}); "
            f"{type(process).__name__} lacks {', '.join(missing)}"
        )


def as_states(process, x) -> torch.Tensor:
    """The start state as a ``torch.long`` index tensor (floating tensors must hold integer values)."""
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        check_finite(x, "x")
        r = torch.round(x)
        if not bool((r == x).all()):
            raise ValueError("the start state x must hold integer state indices, got non-integer values")
        x = r.long()
    return process.space.check(x, "x").long()


def check_final(final: str) -> str:
    if final not in _FINALS:
        raise ValueError(f"final must be one of {', '.join(repr(f) for f in _FINALS)}, got {final!r}")
    return final


# ---------------------------------------------------------------------------
# the model call
# ---------------------------------------------------------------------------


def _denoise(process, pred, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """One model call through the :class:`~stochgen.parameterization.Prediction` (it counts the NFE and
    turns ``"logits"`` into ``"probs"``): ``p(x0 | x_t)`` over the ``K`` categories, float64, mask
    column zero, rows summing to 1. A bare callable is read as a ``"probs"`` model."""
    if not isinstance(pred, Prediction):
        if not callable(pred):
            raise ValueError(f"pred must be a Prediction or a callable model, got {type(pred).__name__}")
        pred = Prediction(pred, "probs", process)
    if pred.kind not in ("probs", "logits"):
        raise ValueError(f"a jump-process sampler needs a model of the denoising 'probs' (or their 'logits'), "
                         f"got prediction {pred.kind!r}")
    tt = t.to(dtype=torch.get_default_dtype(), device=x.device).expand(x.shape[0])
    return check_probs(process, pred.as_kind("probs", x, tt), x)


def check_probs(process, out, x: torch.Tensor) -> torch.Tensor:
    K, S = process.num_categories, process.num_states
    M = getattr(process, "mask_index", None)
    allowed = [K] + ([S] if M is not None and S != K else [])
    want = " or ".join(str(tuple(x.shape) + (k,)) for k in allowed)
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        got = f"dtype {out.dtype}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"a jump-process model must return denoising probabilities p(x0 | x_t) as a floating tensor of "
            f"shape {want}, got {got}"
        )
    if tuple(out.shape[:-1]) != tuple(x.shape) or out.dim() != x.dim() + 1 or out.shape[-1] not in allowed:
        raise ValueError(
            f"a jump-process model must return denoising probabilities p(x0 | x_t) of shape {want} "
            f"(one distribution over the states per position), got shape {tuple(out.shape)}"
        )
    p = out.to(_F64)
    if p.numel() == 0:
        return torch.zeros(x.shape + (K,), dtype=_F64, device=x.device)
    total = p.sum(-1)
    if not bool(torch.isfinite(total).all()):  # a NaN / inf entry makes its row sum non-finite
        check_finite(out, "the model output p(x0 | x_t)")
    half = out.dtype in (torch.float16, torch.bfloat16)
    tol = 2e-2 if half else 1e-3
    lo = float(p.min())
    if lo < -1e-6:
        raise ValueError(
            f"the model output p(x0 | x_t) has negative entries (min {lo:.3g}); it must be probabilities "
            f"(apply softmax to logits)"
        )
    if bool(((total - 1.0).abs() > tol).any()):
        raise ValueError(
            f"the model output p(x0 | x_t) must sum to 1 over its last axis, found sums in "
            f"[{float(total.min()):.4g}, {float(total.max()):.4g}] (apply softmax to logits)"
        )
    p = p.clamp_min(0.0)
    if p.shape[-1] != K:  # absorbing chain given data-state probabilities only
        p = torch.cat([p, torch.zeros_like(p[..., :1])], dim=-1)
    elif M is not None:
        p[..., M] = 0.0  # x0 is never the mask
    data = p.sum(-1, keepdim=True)
    if bool((data <= 0).any()):
        raise ValueError("the model output p(x0 | x_t) puts all its mass on the mask state at some positions")
    return p / data


# ---------------------------------------------------------------------------
# sampling helpers
# ---------------------------------------------------------------------------


def _categorical(weights: torch.Tensor, generator) -> torch.Tensor:
    """One draw per row of non-negative ``weights`` (``(..., K)``, positive row sums), by inverse CDF."""
    K = weights.shape[-1]
    flat = weights.reshape(-1, K)
    c = flat.cumsum(-1)
    last = c[:, -1:]
    u = torch.rand(flat.shape[0], 1, generator=generator, dtype=c.dtype, device=c.device) * last
    u = torch.minimum(u, last * (1.0 - 1e-12))  # keep u < total under round-off
    idx = (c <= u).sum(-1)  # category j owns [c[j-1], c[j]); empty when weight j is 0
    return idx.reshape(weights.shape[:-1])


def _off_rates(process, x, t, p0) -> torch.Tensor:
    """Reverse rates ``R_rev(x -> y)`` for ``y != x`` (float64, ``x.shape + (K,)``), zero at ``y = x``."""
    R = process.reverse_rates(x, t, p0).to(_F64)
    R = R.scatter(-1, x.unsqueeze(-1), 0.0)
    return R.clamp_min(0.0)


def _analytic_weights(process, x, t, s, p0) -> torch.Tensor:
    """Unnormalised ``p(x_s = . | x_t = x) = sum_x0 p0(x0) q(. | x0) q(x | .) / q(x | x0)`` (``x.shape + (K,)``).

    ``x0`` values with ``q(x | x0) = 0`` are left out (they cannot have produced ``x``).
    With ``s = 0`` this is ``p0`` restricted to the values that can reach ``x``.
    """
    dev = x.device
    A = process.transition(torch.zeros_like(t), t, dtype=_F64, device=dev).to(dev)  # P(0, t)[x0, x_t]
    col = A.transpose(-1, -2)[x]  # q(x_t | x0) over x0
    reach = col > _REACH_TOL
    w = torch.where(reach, p0 / torch.where(reach, col, torch.ones_like(col)), torch.zeros_like(col))
    if float(s) <= 0.0:
        return w * col
    Bs = process.transition(torch.zeros_like(s), s, dtype=_F64, device=dev).to(dev)  # P(0, s)[x0, x_s]
    C = process.transition(s, t, dtype=_F64, device=dev).to(dev)  # P(s, t)[x_s, x_t]
    return (w @ Bs) * C.transpose(-1, -2)[x]


def final_step(process, x, t, p0, final, generator) -> torch.Tensor:
    """The denoising step to ``t = 0``: ``x0 ~ p(x0 | x_t)`` restricted to values that reach ``x_t``."""
    w = _analytic_weights(process, x, t, torch.zeros_like(t), p0)
    empty = w.sum(-1, keepdim=True) <= 0
    w = torch.where(empty, p0, w)
    if final == "argmax":
        return w.argmax(-1)
    return _categorical(w, generator)


def _run(process, pred, x, times, generator, callback, final, step):
    _check_process(process)
    final = check_final(final)
    x = as_states(process, x)
    times = check_times(times, x, finite=True)
    t_lo = float(getattr(process, "t_lo", 0.0))
    for i in range(times.numel() - 1):
        t = times[i].to(_F64)
        s = times[i + 1].to(_F64)
        p0 = _denoise(process, pred, x, t)
        if float(s) <= t_lo:
            x = final_step(process, x, t, p0, final, generator)
        else:
            x = step(process, x, t, s, p0, generator)
        if callback is not None:
            callback(i, times[i + 1], x)
    return x


# ---------------------------------------------------------------------------
# steps
# ---------------------------------------------------------------------------


def _tau_step(process, x, t, s, p0, generator):
    # Independent counts n_y ~ Poisson(r_y h), move to y iff n_y = 1 and all others 0: that event has
    # probability r_y h exp(-lambda h); drawn here as one categorical per position (the same law).
    h = float(t - s)
    jump = _off_rates(process, x, t, p0) * h
    one = jump * torch.exp(-jump.sum(-1, keepdim=True))
    stay = (1.0 - one.sum(-1, keepdim=True)).clamp_min(0.0)
    return _categorical(one.scatter(-1, x.unsqueeze(-1), stay), generator)


def _euler_step(process, x, t, s, p0, generator):
    h = float(t - s)
    R = _off_rates(process, x, t, p0)
    stay = (1.0 - h * R.sum(-1, keepdim=True)).clamp(0.0, 1.0)
    probs = (h * R).clamp(0.0, 1.0).scatter(-1, x.unsqueeze(-1), stay)
    return _categorical(probs, generator)


def analytic_step(process, x, t, s, p0, generator):
    w = _analytic_weights(process, x, t, s, p0)
    empty = w.sum(-1, keepdim=True) <= 0
    if bool(empty.any()):  # the model put mass only on values that cannot reach x_t: keep x_t
        keep = torch.nn.functional.one_hot(x, w.shape[-1]).to(w.dtype)
        w = torch.where(empty, keep, w)
    return _categorical(w, generator)


# ---------------------------------------------------------------------------
# registered samplers
# ---------------------------------------------------------------------------


@register("tau-leaping", kind="jump", default_grid="uniform", prediction="probs", requires="jump")
def tau_leaping(process, pred, x, times, *, generator=None, callback=None, final: str = "sample"):
    """Tau-leaping (Campbell et al. 2022): Poisson jump counts at frozen reverse rates; a position moves only on exactly one jump.

    ``final``: ``"sample"`` (default) draws ``x0 ~ p(x0 | x_t)`` at the last
    step to ``t = 0``, ``"argmax"`` takes its mode. See the module docstring.
    """
    return _run(process, pred, x, times, generator, callback, final, _tau_step)


@register("ctmc-euler", kind="jump", default_grid="uniform", prediction="probs", requires="jump")
def ctmc_euler(process, pred, x, times, *, generator=None, callback=None, analytic: bool = False,
               final: str = "sample"):
    """Euler step of the reverse CTMC (delta + h R_rev, clipped, renormalised); analytic=True takes the exact-conditional step.

    ``analytic=True`` draws ``x_s`` from ``sum_x0 p(x0|x_t) q(x_s|x0) q(x_t|x_s) / q(x_t|x0)``
    per position, exact for an exact denoiser and independent positions at
    any step size. ``final`` as for :func:`tau_leaping`.
    """
    return _run(process, pred, x, times, generator, callback, final, analytic_step if analytic else _euler_step)
