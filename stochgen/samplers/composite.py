"""The sampler of composite states (``"composite"``): one time grid, one model call per step.

For ``process = Composite(parts=...)`` and a model that returns ``{part: prediction}`` (kind
``"parts"``; each part's kind is ``process.predictions[part]``), every step from ``t`` down to
``s`` makes **one** model call on the whole state and then moves every part from ``t`` to ``s``
by the step of its family (chosen by the family's traits, never by class):

* ``"jump"`` parts (CTMC chains): the exact-conditional ("analytic") step of
  :mod:`stochgen.samplers.ctmc` -- ``x_s ~ sum_x0 p(x0|x_t) q(x_s|x0) q(x_t|x_s) / q(x_t|x0)`` per
  position -- and at the last step to the data end the denoising draw (``final="sample"``) or
  its argmax (``final="argmax"``). Logits are turned into probabilities by the conversion module.
* ``"lie-sde"`` parts (SE(3) / SO(3) diffusions): the geodesic Euler-Maruyama step of
  :mod:`stochgen.samplers.se3` (noise-free on the last interval to the data end).
* ``"linear"`` parts (VP, sub-VP, interpolants, mean-reverting ...): the DDIM step with
  ``x0`` and ``eps`` from the conversion module, ``eta = 1`` (default) being the exact DDPM
  ancestral step -- the posterior ``q(x_s | x_t, x0)`` at the predicted ``x0`` -- and ``eta = 0``
  deterministic DDIM. Offsets (mean-reverting parts) are handled by stepping the centred state
  ``x - offset(t)``, which is linear Gaussian with the same ``alpha``, ``sigma``.

Every part is updated from the same state at ``t`` with the same model output, so the parts
move jointly only through the network (a factorised step, exact as the steps shrink). The
grid is uniform in ``t`` (``stochgen.sample`` builds it from ``process.t_max`` to
``process.t_min`` and appends the data end ``t_lo``). ``NFE == len(times) - 1``. All randomness
comes from ``generator``; float parts keep the start state's dtype, token parts stay ``long``.

``fixed={part: x0}`` or ``{part: (x0, mask)}`` holds a part (or the positions of a part where
``mask`` is true; ``mask`` has the part's batch and position dims, e.g. ``(N, L)`` for frames
``(N, L, 4, 4)`` or tokens ``(N, L)``) at known data ``x0``: at every time ``s`` of the grid those
entries are replaced by a draw of the part's forward marginal ``q(x_s | x0)`` (replacement
inpainting, so the network always sees a state of the law it was trained on) and at the data
end they are ``x0`` exactly. The other parts are generated conditioned on them through the
network (sequence design for a fixed backbone, structure for a fixed sequence).
"""
from __future__ import annotations

import math

import torch

from ..families import describe, family_of
from ..parameterization import convert
from . import ctmc as _ctmc
from . import se3 as _se3
from .registry import register

__all__ = ["composite"]

_STEPS = ("jump", "lie-sde", "linear")  # traits with a composite step, in the order they are tried


def _step_kind(name, process) -> str:
    fam = family_of(process)
    for trait in _STEPS:
        if fam.has(trait):
            return trait
    raise ValueError(f"the composite sampler has no step for part {name!r}: {describe(process)} (it steps parts "
                     "that are jump processes, Lie-group diffusions or linear Gaussian processes)")


class _PartPred:
    """A per-part prediction for the steps of other samplers: ``model`` returns the output already computed."""

    def __init__(self, out, kind, process, cond):
        self.out, self.kind, self.process, self.cond, self.nfe = out, kind, process, cond, 0

    def model(self, x, t, **cond):
        return self.out

    def __call__(self, x, t, **cond):  # the Prediction protocol of the Lie-group step (samplers.se3)
        return self.out


def _check_grid(process, times) -> torch.Tensor:
    times = torch.as_tensor(times)
    if not times.is_floating_point():
        times = times.to(torch.float64)
    if times.dim() != 1 or times.numel() < 2 or bool((times[1:] >= times[:-1]).any()):
        raise ValueError("times must be a strictly decreasing 1-D tensor with at least 2 entries")
    process.check_t(times)
    return times


def _call(pred, process, x: dict, t: torch.Tensor) -> dict:
    """One model call on the whole state; returns the checked dict of per-part outputs."""
    model = getattr(pred, "model", pred)
    cond = dict(getattr(pred, "cond", None) or {})
    if hasattr(pred, "nfe"):
        pred.nfe += 1
    first = next(iter(x.values()))
    tdtype = next((v.dtype for v in x.values() if v.is_floating_point()), torch.get_default_dtype())
    tt = t.to(dtype=tdtype, device=first.device).expand(first.shape[0]).clone()
    out = model(x, tt, **cond)
    if not isinstance(out, dict):
        raise ValueError(f"a composite model returns a dict of per-part predictions {{part: tensor}}, got "
                         f"{type(out).__name__}")
    missing = [k for k in process.parts if k not in out]
    if missing:
        raise ValueError(f"the composite model returned no prediction for the part(s) {missing}")
    return out


def _linear_step(process, kind, out, x, t, s, cond, eta, generator):
    """DDIM step (``eta = 1``: DDPM ancestral, the posterior at the predicted x0) from ``t`` to ``s``."""
    t64, s64 = t.to(torch.float64), s.to(torch.float64)
    x0 = convert(out.to(x.dtype), kind, "x0", process, x, t.to(x.dtype), **cond)
    a_t, sg_t = float(process.alpha(t64)), float(process.sigma(t64))
    a_s, sg_s = float(process.alpha(s64)), float(process.sigma(s64))
    off_t = process.offset(torch.as_tensor(t64, dtype=x.dtype, device=x.device), **cond)
    off_s = process.offset(torch.as_tensor(s64, dtype=x.dtype, device=x.device), **cond)
    xc = x - off_t
    eps = (xc - a_t * x0) / sg_t
    # posterior variance of q(x_s | x_t, x0): sigma_{t|s}^2 sigma_s^2 / sigma_t^2
    a_ts = a_t / a_s
    var_ts = max(sg_t**2 - a_ts**2 * sg_s**2, 0.0)
    c2 = eta**2 * var_ts * sg_s**2 / sg_t**2
    new = a_s * x0 + math.sqrt(max(sg_s**2 - c2, 0.0)) * eps
    if c2 > 0:
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        new = new + math.sqrt(c2) * z
    return new + off_s


def _jump_step(process, kind, out, x, t, s, last, final, generator):
    probs = convert(out, kind, "probs", process, x, t)
    p0 = _ctmc.check_probs(process, probs, x)
    t64, s64 = t.to(torch.float64), s.to(torch.float64)
    if last:
        return _ctmc.final_step(process, x, t64, p0, final, generator)
    return _ctmc.analytic_step(process, x, t64, s64, p0, generator)


def _lie_step(process, kind, out, x, t, s, cond, last, generator):
    pp = _PartPred(out, kind, process, cond)
    return _se3.geodesic_step(process, pp, x, t, s, stochastic=True, noise=not last, generator=generator)


def _check_fixed(process, fixed, x) -> dict:
    """``{part: (x0, mask or None)}`` with x0 of the part's state shape and dtype; errors name the part."""
    if not fixed:
        return {}
    if not isinstance(fixed, dict):
        raise ValueError(f"fixed must be a dict {{part: x0 or (x0, mask)}}, got {type(fixed).__name__}")
    out = {}
    for k, v in fixed.items():
        if k not in process.parts:
            raise ValueError(f"fixed names part {k!r} that the composite does not have "
                             f"(parts: {', '.join(process.parts)})")
        x0, mask = (v if isinstance(v, tuple) else (v, None))
        x0 = torch.as_tensor(x0, device=x[k].device)
        x0 = x0.to(x[k].dtype) if x[k].is_floating_point() else x0.long()
        if x0.shape != x[k].shape:
            raise ValueError(f"fixed part {k!r} has shape {tuple(x0.shape)}; the state's part has {tuple(x[k].shape)}")
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=torch.bool, device=x[k].device)
            if mask.dim() > x0.dim() or tuple(x0.shape[: mask.dim()]) != tuple(mask.shape):
                raise ValueError(f"the mask of fixed part {k!r} has shape {tuple(mask.shape)}; it must match the "
                                 f"leading dims of the part's shape {tuple(x0.shape)}")
            mask = mask.reshape(tuple(mask.shape) + (1,) * (x0.dim() - mask.dim()))
        out[k] = (x0, mask)
    return out


def _hold(process, fixed: dict, x: dict, s, last: bool, generator) -> dict:
    """Replace the fixed entries of state ``x`` at time ``s`` by ``q(x_s | x0)`` draws (``x0`` at the data end)."""
    if not fixed:
        return x
    x = dict(x)
    for k, (x0, mask) in fixed.items():
        if last:
            held = x0
        else:
            s_b = s.to(torch.float64).expand(x0.shape[0]).to(x0.dtype if x0.is_floating_point() else torch.float64)
            held = process.parts[k].marginal(x0, s_b, generator=generator).x_t.to(x[k].dtype)
        x[k] = held if mask is None else torch.where(mask, held, x[k])
    return x


@register("composite", kind="composite", default_grid="uniform", prediction="parts", requires="composite")
def composite(process, pred, x, times, *, generator=None, callback=None, eta: float = 1.0, final: str = "sample",
              fixed: dict | None = None):
    """One time grid, one model call per step; each part takes its family's step (DDPM / analytic CTMC / geodesic).

    ``eta``: the DDIM noise of linear Gaussian parts (1 = ancestral DDPM, 0 = deterministic);
    ``final``: the last step of jump parts, ``"sample"`` or ``"argmax"``; ``fixed``: parts (or masked
    positions of parts) held at known data (replacement inpainting). See the module docstring.
    """
    try:
        eta = float(eta)
    except (TypeError, ValueError):
        raise ValueError(f"eta must be a number in [0, 1], got {eta!r}") from None
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
    final = _ctmc.check_final(final)
    x = dict(process.check_states(x, "x"))
    steps = {k: _step_kind(k, p) for k, p in process.parts.items()}
    for k, p in process.parts.items():
        if steps[k] == "jump":
            x[k] = _ctmc.as_states(p, x[k])
        elif not x[k].is_floating_point():
            raise ValueError(f"part {k!r} of the start state must be floating point, got dtype {x[k].dtype}")
    times = _check_grid(process, times).to(device=next(iter(x.values())).device)
    fixed = _check_fixed(process, fixed, x)
    x = _hold(process, fixed, x, times[0], False, generator)
    cond_all = dict(getattr(pred, "cond", None) or {})
    lo = float(process.t_lo)
    n = times.numel() - 1
    for i in range(n):
        t, s = times[i], times[i + 1]
        last = float(s) <= lo + 1e-12 * max(1.0, abs(lo))
        out = _call(pred, process, x, t)
        new = {}
        for k, p in process.parts.items():
            kind, cond = process.predictions[k], {c: cond_all[c] for c in p.cond_keys if c in cond_all}
            if steps[k] == "jump":
                new[k] = _jump_step(p, kind, out[k], x[k], t, s, last, final, generator)
            elif steps[k] == "lie-sde":
                new[k] = _lie_step(p, kind, out[k], x[k], t, s, cond, last, generator)
            else:
                new[k] = _linear_step(p, kind, out[k], x[k], t, s, cond, eta, generator)
        x = _hold(process, fixed, new, s, last, generator)
        if callback is not None:
            callback(i, s, x)
    return x
