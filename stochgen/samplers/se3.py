"""Geodesic Euler–Maruyama for diffusions on Lie groups (SE(3) poses, SO(3) rotations).

The forward process (``process.sde``) is written in the tangent coordinates of
its state space: ``x <- space.exp(x, f dt + g dW)`` with drift ``f`` and
diagonal diffusion ``g``, both of shape ``(*batch, space.dim)``. The model
returns the score in the same coordinates (for :class:`~stochgen.processes.SE3Diffusion`
the 6-vector ``(translation score, body-frame rotation score at x)``), shape
``(*batch, space.dim)`` while the state is ``(*batch, *space.event_shape)``
(``(*batch, 4, 4)`` for poses). One step from ``t`` down to ``s = t - h`` is

    v = h [ w g^2 score(x, t) - f(x, t) ] + g sqrt(h) z,    x <- space.exp(x, v)

with ``w = 1`` for the reverse-time SDE and ``w = 1/2`` and no noise for the
probability-flow ODE (``stochastic=False``). For SE3Diffusion (product tangent
convention) that is the reverse VP step ``p <- p + [beta/2 p + beta score_p] h +
sqrt(beta h) z`` on the translations and ``R <- R Exp(g_rot^2 score_R h + g_rot sqrt(h) z)``
on the rotations (FrameDiff's reverse step). Rotations move only by ``Exp``
of a tangent vector, so they stay on SO(3) to round-off (no projection).

Last interval. When the grid ends at the data end ``process.t_lo`` (as every
grid of :mod:`stochgen.samplers.grids` does), the last interval ``t_min -> t_lo``
is the reverse-SDE step **without noise** (``w = 1``, for both variants): the
model is never called at ``t_lo`` (where the translation noise level is 0 and
the score is singular) and no noise of size ``g sqrt(t_min)`` is added at the end.
For VP translations ``beta(t_min) t_min ~= sigma(t_min)^2``, so this step is
close to Tweedie denoising (it removes ~all of the ``sigma(t_min)`` noise; with
the defaults ~9% of it remains, ~1e-3). For rotations the marginal at ``t_lo``
still has ``rot_sigma(0) = rot_sigma_min`` and this mean step shrinks the
rotation noise a little more than the SDE would (it scales the rotation
vector by ``1 - g_rot^2 h / rot_sigma(t_min)^2 ~= 0.94`` with the defaults: measured
spread ``0.096``-``0.098`` instead of ``0.1``), i.e. samples are slightly closer to
the data poses. (The probability-flow step would keep the rotation spread but
leave half of the translation noise; no generic step does both.) A grid that does not end at ``t_lo`` (``to_data=False``) is
integrated with the plain step all the way.

Requirements on the process: ``sde(x, t, **cond)`` with a diffusion that does not
depend on the state (checked once; a state-dependent one would need a
divergence correction on the manifold), a ``space`` with ``exp``, ``dim`` and a
fixed ``event_shape``. The prediction must be the tangent score: ``stochgen.sample(...,
prediction="tangent_score")`` (the family's default).

Registered: ``"se3-euler"`` (options ``stochastic=True``, ``noise_scale=1.0``).
"""
from __future__ import annotations

import math

import torch

from .kernel import check_times, diffusion_depends_on_state
from .registry import register

__all__ = ["se3_euler", "geodesic_step"]

_SCORE_KINDS = ("tangent_score",)


def _check_times(process, times) -> torch.Tensor:
    """The grid check (:func:`stochgen.samplers.kernel.check_times`) with the times in the process's range."""
    return check_times(times, process=process, in_range=True)


def _shapes(process, x, name: str = "x") -> tuple[tuple, tuple]:
    """(batch shape, tangent shape) of a state ``x``; ``ValueError`` for anything that is not a batch of states."""
    space = getattr(process, "space", None)
    event = tuple(getattr(space, "event_shape", None) or ())
    dim = getattr(space, "dim", None) if space is not None else None
    if space is None or not event or any(e is None for e in event) or not isinstance(dim, int):
        raise ValueError(f"sampler 'se3-euler' needs a process whose space has a fixed event shape, a dimension "
                         f"and an exponential map (poses, rotations); {type(process).__name__} has {space!r}")
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a tensor of states (batch, ..., {', '.join(map(str, event))}), "
                         f"got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    k = len(event)
    if x.dim() <= k or tuple(x.shape[-k:]) != event:
        raise ValueError(f"{name} must have shape (batch, ..., {', '.join(map(str, event))}) for {space!r}, "
                         f"got {tuple(x.shape)}")
    space.check(x, name)  # finite, on the manifold
    batch = tuple(x.shape[:-k])
    return batch, batch + (dim,)


def _check_pred(pred):
    kind = getattr(pred, "kind", "score")
    if kind not in _SCORE_KINDS:
        raise ValueError(f"sampler 'se3-euler' needs a model that predicts the tangent-space score "
                         f"(shape (*batch, space.dim)); got prediction={kind!r}; pass prediction='tangent_score'")


def _tangent_score(pred, x, t, tangent_shape) -> torch.Tensor:
    """One model call through the :class:`~stochgen.parameterization.Prediction` (it counts the NFE and checks
    the shape ``(*batch, space.dim)`` of a tangent score, ``tangent_shape``)."""
    return pred(x, torch.as_tensor(t, dtype=x.dtype, device=x.device)).to(x.dtype)


def geodesic_step(process, pred, x, t, s, *, tangent_shape=None, stochastic: bool = True, noise: bool = True,
                  noise_scale: float = 1.0, generator=None) -> torch.Tensor:
    """One geodesic Euler(–Maruyama) step of the reverse process from ``t`` down to ``s < t``.

    ``v = h (w g^2 score - f) [+ noise_scale g sqrt(h) z]``, ``x <- space.exp(x, v)`` with ``h = t - s``,
    ``w = 1`` (reverse SDE; noise only if ``noise``) or ``w = 1/2`` and no noise (``stochastic=False``).
    """
    if tangent_shape is None:
        tangent_shape = _shapes(process, x)[1]
    cond = getattr(pred, "cond", {})
    h = float(t) - float(s)
    tt = torch.as_tensor(float(t), dtype=x.dtype, device=x.device)
    drift, diff = process.sde(x, tt, **cond)
    score = _tangent_score(pred, x, tt, tangent_shape)
    w = 1.0 if stochastic else 0.5
    v = h * (w * diff**2 * score - drift)
    if stochastic and noise and noise_scale != 0.0:
        z = torch.randn(tangent_shape, generator=generator, dtype=x.dtype, device=x.device)
        v = v + (noise_scale * math.sqrt(h)) * diff * z
    return process.space.exp(x, v)


@register("se3-euler", kind="sde", default_grid="uniform", prediction="tangent_score", requires="lie-sde")
def se3_euler(process, pred, x, times, *, generator=None, callback=None, stochastic: bool = True,
              noise_scale: float = 1.0):
    """Geodesic Euler–Maruyama on SE(3)/SO(3) (reverse SDE, or probability-flow ODE with stochastic=False).

    ``stochastic=True`` integrates the reverse-time SDE, ``False`` the probability-flow
    ODE (half the score term, no noise; deterministic given ``x``). ``noise_scale``
    multiplies the SDE noise (FrameDiff's knob; values below 1 trade diversity for
    sample quality and do not sample the model's distribution). The last interval
    to the data end is a noise-free reverse-SDE step (module docstring).
    """
    _check_pred(pred)
    if not isinstance(stochastic, bool):
        raise ValueError(f"stochastic must be True or False, got {stochastic!r}")
    try:
        noise_scale = float(noise_scale)
    except (TypeError, ValueError):
        raise ValueError(f"noise_scale must be a number, got {noise_scale!r}") from None
    if not (math.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"noise_scale must be a non-negative finite number, got {noise_scale!r}")
    _, tangent_shape = _shapes(process, x)
    times = _check_times(process, times)
    cond = getattr(pred, "cond", {})
    if diffusion_depends_on_state(process, x, times[0], cond):
        raise ValueError(f"sampler 'se3-euler' supports only diffusions that do not depend on the state; "
                         f"{type(process).__name__}.sde returns a state-dependent one")
    lo = float(process.t_lo)
    n = times.numel() - 1
    for i in range(n):
        t, s = times[i], times[i + 1]
        last = i == n - 1 and float(s) <= lo + 1e-12 * max(1.0, abs(lo))
        if last:  # noise-free reverse-SDE (mean) step to the data end, for both variants
            x = geodesic_step(process, pred, x, t, s, tangent_shape=tangent_shape, stochastic=True, noise=False)
        else:
            x = geodesic_step(process, pred, x, t, s, tangent_shape=tangent_shape, stochastic=stochastic,
                              noise_scale=noise_scale, generator=generator)
        if callback is not None:
            callback(i, s, x)
    return x
