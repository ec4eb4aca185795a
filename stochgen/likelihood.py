"""Exact log-likelihood by the probability-flow ODE, and bits per dimension.

For a diffusion ``dx = f(x, t) dt + g(t) dW`` whose reverse-time score is
given by a model, the probability-flow ODE

    dx/dt = v(x, t) = f(x, t) - 1/2 d/dx g(x, t)^2 - 1/2 g(x, t)^2 score(x, t)

(the ``d/dx g^2`` term is nonzero for a state-dependent noise, GBM's ``g = s x``; a linear
process without offset writes the same velocity as ``alpha' x0_hat + sigma' eps_hat``,
:func:`stochgen.samplers.kernel.flow_velocity`) carries the marginal ``p_t`` to ``p_T``; along a solution the log-density obeys
``d/dt log p_t(x(t)) = -div v(x(t), t)``. Integrating the state together with the
divergence from ``t_eps`` to ``t_max`` gives

    log p_{t_eps}(x) = log p_prior(x(t_max)) + int_{t_eps}^{t_max} div v(x(t), t) dt.

**Small-t truncation.** The score is singular where sigma = 0, so the
integration starts at ``t_eps`` (default ``process.t_min``), and the number
returned is the log-density of the *marginal at t_eps* evaluated at the data
point, ``log p_{t_eps}(x)``, not ``log p_0(x)``. For data with a smooth density
the two differ by O(sigma(t_eps)^2 / s^2), ``s`` the data's local length scale
(plus the ``log alpha(t_eps)`` rescaling of VP-type processes); choose ``t_eps``
small for exactness, larger when the model is unreliable near the data (as
score_sde does). No correction for the interval [0, t_eps] is added. Likewise the
prior term is ``process.prior_log_prob``, which for VP-type processes ignores the
residual signal ``alpha(t_max) x_0`` (0.0066 of it for the default VP) and for
VE/EDM the data mean relative to sigma_max: a bias of order
``|mean| |x_T| / sigma_max^2`` nats per dimension.

Measured (float64, exact oracle, rtol = atol = 1e-5, ``tests/test_likelihood.py``):
the ODE part matches the exact ``log p_{t_eps}`` to 2e-5 nats/dim (VP, EDM, VE,
Gaussian mixture); the whole estimate matches the data log-density to 2e-3
(VP), 4e-3 (EDM), 7e-3 (VE, sigma_max = 50) nats/dim, the rest being the prior term.

**Divergence.** ``divergence="exact"`` takes the trace of the Jacobian by
autograd, one backward pass per dimension (use it for small ``d``);
``"hutchinson"`` uses the unbiased estimate ``E[e^T (dv/dx) e]`` with
``probes`` probe vectors ``e`` (Rademacher or Gaussian) drawn once per solve
(fixed along the trajectory, as the estimator requires) and averaged. The
Hutchinson log-likelihood is an unbiased estimate of the exact-trace one.

The model is assumed to treat the samples of a batch independently (the
divergence of sample ``i`` is read off the gradient of output ``i``).
Results are detached (no gradient flows back into the model).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ._validate import as_tensor, check_batched, check_finite
from .parameterization import Prediction, check_kind
from .samplers.kernel import RK_ADAPTIVE, diffusion_depends_on_state, flow_velocity, start_inside

__all__ = ["log_likelihood", "bits_per_dim", "DIVERGENCES", "PROBE_DISTS"]

DIVERGENCES = ("exact", "hutchinson")
PROBE_DISTS = ("rademacher", "gaussian")


def _check_options(divergence, probes, probe_dist, rtol, atol):
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; choose one of {', '.join(DIVERGENCES)}")
    if probe_dist not in PROBE_DISTS:
        raise ValueError(f"unknown probe_dist {probe_dist!r}; choose one of {', '.join(PROBE_DISTS)}")
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"probes must be a positive integer, got {probes!r}")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")


def _draw_probes(probes, shape, dist, generator, dtype, device):
    if dist == "gaussian":
        return torch.randn((probes,) + tuple(shape), generator=generator, dtype=dtype, device=device)
    r = torch.randint(0, 2, (probes,) + tuple(shape), generator=generator, device=device)
    return (2 * r - 1).to(dtype)


def _grad(out, x, retain):
    (g,) = torch.autograd.grad(out, x, retain_graph=retain, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def _exact_div(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    vf = v.reshape(n, -1)
    D = vf.shape[1]
    div = torch.zeros(n, dtype=x.dtype, device=x.device)
    for i in range(D):
        if not vf.requires_grad:
            break
        g = _grad(vf[:, i].sum(), x, retain=i < D - 1)
        div = div + g.reshape(n, -1)[:, i]
    return div


def _hutchinson_div(v: torch.Tensor, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    n, k = x.shape[0], eps.shape[0]
    div = torch.zeros(n, dtype=x.dtype, device=x.device)
    if not v.requires_grad:
        return div
    for j in range(k):
        g = _grad((v * eps[j]).sum(), x, retain=j < k - 1)
        div = div + (g * eps[j]).reshape(n, -1).sum(1)
    return div / k


def log_likelihood(process, model: Callable, x, prediction: str = "eps", cond: dict | None = None,
                   divergence: str = "exact", probes: int = 1, probe_dist: str = "rademacher",
                   method: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5, t_eps: float | None = None,
                   generator: torch.Generator | None = None, return_info: bool = False, options: dict | None = None,
                   progress: bool = False):
    """log p_{t_eps}(x) in nats per sample by the probability-flow ODE (see the module docstring).

    ``model(x, t, **cond)`` returns the declared ``prediction`` (score, eps, x0 or v); the
    ODE drift is ``drift - 1/2 diffusion^2 * score`` from ``process.sde`` and the score
    of the prediction. ``method``, ``rtol``, ``atol`` and ``options`` go to
    ``torchdiffeq.odeint``; integration runs from ``t_eps`` (default ``process.t_min``)
    to ``process.t_max``. ``generator`` draws the Hutchinson probes. ``progress``: a tqdm bar
    over the integration time (the adaptive solver's steps are not known in advance).

    Returns a tensor of shape ``(n,)`` or, with ``return_info=True``,
    ``(logp, info)`` where ``info`` has ``nfe`` (model evaluations), ``ode_evals``,
    ``prior_log_prob``, ``delta_log_prob`` (the divergence integral), ``x_T`` (the state
    at t_max), ``t_eps``, ``t_max``, ``divergence``, ``probes``.
    """
    from torchdiffeq import odeint

    _check_options(divergence, probes, probe_dist, rtol, atol)
    check_kind(prediction)
    x = as_tensor(x, "x")
    check_batched(x, "x")
    if x.dim() < 2:
        raise ValueError(f"x must have shape (batch, ...) with at least one data dimension, got {tuple(x.shape)}")
    check_finite(x, "x")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch")
    process.space.check(x, "x")
    cond = dict(cond or {})
    if hasattr(process, "check_cond"):
        process.check_cond(cond, x)

    t0 = float(process.t_min if t_eps is None else t_eps)
    t1 = float(process.t_max)
    if not math.isfinite(t0) or not (process.t_lo <= t0 < t1):
        raise ValueError(f"t_eps must lie in [{process.t_lo:g}, {t1:g}) (the process's t_lo .. t_max), got {t0:g}")
    if hasattr(process, "sigma") and float(process.sigma(torch.tensor(t0, dtype=torch.float64))) <= 0:
        raise ValueError(f"sigma(t_eps) = 0 at t_eps={t0:g}: the score is singular there; choose t_eps > {process.t_lo:g}")

    pred = Prediction(model, prediction, process, cond)
    # an eps / score model says nothing at an interpolant's alpha(t_max) = 0: end just inside (kernel.start_inside)
    t1 = float(start_inside(process, torch.tensor([t1, t0], dtype=torch.float64), prediction)[0])
    state_dependent = diffusion_depends_on_state(process, x, t0, cond)
    eps = None
    if divergence == "hutchinson":
        eps = _draw_probes(probes, x.shape, probe_dist, generator, x.dtype, x.device)
    counter = {"evals": 0, "done": 0}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=1000, desc=f"likelihood ODE ({x.shape[0]} samples)", leave=False,
                   bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")

    def velocity(xx, t):
        return flow_velocity(process, pred, xx, t, state_dependent)

    def func(t, state):
        xx, _ = state
        counter["evals"] += 1
        # adaptive solvers may probe slightly past the end (initial step selection); stay in range
        t = torch.clamp(t, t0, t1)
        if bar is not None:
            # share of the way from t0 to t1, on a log scale where the range spans decades (EDM, VP)
            frac = (math.log(float(t) / t0) / math.log(t1 / t0) if t0 > 0 and t1 / t0 > 100
                    else (float(t) - t0) / (t1 - t0))
            done = int(1000 * min(max(frac, 0.0), 1.0))
            if done > counter["done"]:
                bar.update(done - counter["done"])
                counter["done"] = done
            bar.set_postfix_str(f"nfe {counter['evals']}", refresh=False)
        with torch.enable_grad():
            xx = xx.detach().requires_grad_(True)
            v = velocity(xx, t)
            if v.shape != xx.shape:
                raise ValueError(f"the probability-flow velocity has shape {tuple(v.shape)}, expected {tuple(xx.shape)}")
            div = _exact_div(v, xx) if eps is None else _hutchinson_div(v, xx, eps)
        return v.detach(), div.detach()

    ts = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
    state0 = (x.detach(), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))
    options = dict(options or {})
    if method in RK_ADAPTIVE and "step_t" not in options and "jump_t" not in options:
        options["step_t"] = ts[-1:]  # end a step exactly at t_max instead of stepping past it
    try:
        xs, deltas = odeint(func, state0, ts, method=method, rtol=rtol, atol=atol, options=options)
    finally:
        if bar is not None:
            bar.close()
    x_T, delta = xs[-1], deltas[-1]
    prior = process.prior_log_prob(x_T, **cond)
    logp = prior + delta
    if not return_info:
        return logp
    return logp, {"nfe": pred.nfe, "ode_evals": counter["evals"], "prior_log_prob": prior, "delta_log_prob": delta,
                  "x_T": x_T, "t_eps": t0, "t_max": t1, "divergence": divergence,
                  "probes": probes if divergence == "hutchinson" else None}


def bits_per_dim(process, model: Callable, x, prediction: str = "eps", *, num_bins: int = 256,
                 data_range: tuple[float, float] = (-1.0, 1.0), dequantize: str | None = "uniform",
                 generator: torch.Generator | None = None, return_info: bool = False, **likelihood_kwargs):
    """Bits per dimension of discrete data under the model (per sample, shape ``(n,)``).

    Convention (score_sde's, so numbers compare with the literature): the data are
    ``num_bins`` levels spread over ``data_range = (lo, hi)`` inclusive,
    ``x = lo + k (hi - lo) / (num_bins - 1)`` with integer ``k`` in ``[0, num_bins)``
    (e.g. 8-bit pixels scaled to [-1, 1] as ``k / 127.5 - 1``). Uniform dequantization
    maps level ``k`` to ``lo + (k + u) * delta`` with ``u ~ U(0, 1)`` and bin width
    ``delta = (hi - lo) / num_bins`` (``u`` is drawn first from ``generator`` by
    ``torch.rand(x.shape)``), so the bins tile ``[lo, hi]``. Then

        bpd = -log p(x_deq) / (D ln 2) - log2(delta)

    (``-log2(delta) = 7`` for 256 bins on [-1, 1]): ``-log2`` of the probability of the
    bin under the piecewise-density bound, an upper bound (in expectation over ``u``)
    on the discrete model's bits. ``dequantize=None`` takes ``x`` as already
    continuous (no grid check, no noise) and applies the same conversion.

    Other keyword arguments go to :func:`log_likelihood` (``generator`` is shared: it
    draws the dequantization noise, then the Hutchinson probes). With
    ``return_info=True`` returns ``(bpd, info)``; ``info`` adds ``x_dequantized``,
    ``log_prob`` (nats) and ``bin_width`` to the likelihood info.
    """
    if dequantize not in ("uniform", None):
        raise ValueError(f"unknown dequantize {dequantize!r}; choose 'uniform' or None")
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins must be an integer >= 2, got {num_bins!r}")
    lo, hi = (float(v) for v in data_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"data_range must be (lo, hi) with lo < hi, got {data_range!r}")
    x = as_tensor(x, "x")
    check_batched(x, "x")
    check_finite(x, "x")
    delta = (hi - lo) / num_bins
    slack = 1e-6 * (hi - lo)
    if dequantize == "uniform":
        if bool((x < lo - slack).any()) or bool((x > hi + slack).any()):
            raise ValueError(f"x must lie in data_range [{lo:g}, {hi:g}], got values in "
                             f"[{float(x.min()):g}, {float(x.max()):g}]")
        kf = (x - lo) / (hi - lo) * (num_bins - 1)
        k = torch.round(kf)
        if bool(((kf - k).abs() > 1e-3).any()):
            raise ValueError(f"x is not on the grid of {num_bins} levels over [{lo:g}, {hi:g}] "
                             "(lo + k (hi - lo) / (num_bins - 1)); pass dequantize=None for continuous data")
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x_deq = lo + (k + u) * delta
    else:
        x_deq = x
    out = log_likelihood(process, model, x_deq, prediction, generator=generator, return_info=return_info,
                         **likelihood_kwargs)
    logp, info = out if return_info else (out, None)
    D = x[0].numel()
    bpd = -logp / (D * math.log(2.0)) - math.log2(delta)
    if not return_info:
        return bpd
    info.update(x_dequantized=x_deq, log_prob=logp, bin_width=delta)
    return bpd, info
