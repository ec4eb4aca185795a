"""Reverse-time SDE samplers for any diffusion process.

The forward process ``dx = f(x, t) dt + g(x, t) dW`` (``process.sde``) has the
reverse-time SDE (Anderson 1982), run from t = t_max down to the data end:

    dx = [f - d/dx(g^2) - g^2 grad log p_t(x)] dt + g dW_bar          (dt < 0)

``g`` is the elementwise (diagonal) diffusion that ``process.sde`` returns; the
divergence term ``d/dx(g^2)`` vanishes for every linear Gaussian process and is
found by autograd only when ``g`` depends on the state (probed once per call).
Each sampler takes ``times`` (a decreasing grid) and, when the grid ends at the
data end ``process.t_lo``, makes the LAST interval an explicit denoising step
``x = alpha(t_lo) E[x_0 | x_t] + offset(t_lo)`` (= ``pred.x0``: alpha = 1, offset = 0
there), so no noise of size sigma(t_min) is left.
(A process without ``alpha``/``sigma`` has no x0 prediction; there the last
interval is the same reverse step without its noise term.)

Samplers (registered names):

* ``"euler-maruyama"``  Euler–Maruyama on the reverse SDE.
* ``"reverse-diffusion"``  score SDE's reverse-diffusion predictor: discretize the
  forward SDE over each interval (for linear processes the exact Gaussian
  transition ``x_t = r x_s + c + G z``, r = alpha_t/alpha_s, which is DDPM's
  discretization for VP and SMLD's for VE) and reverse it:
  ``x <- x - f_i + G_i^2 score + G_i z``.
* ``"pc"``  predictor-corrector: Langevin corrector step(s) at each time, then a
  predictor step (``"reverse-diffusion"`` or ``"euler-maruyama"``).
* ``"sde"``  the reverse SDE through ``torchsde.sdeint`` in the forward time
  variable ``s = -t``; fixed steps on the grid (``method`` "euler", "milstein",
  "srk") or ``adaptive=True`` with ``rtol``/``atol``.

The default grid is ``log_snr`` (equal steps in lambda = log(alpha/sigma)): for VE
it is score SDE's uniform-in-t grid, for VP it is close to it, and unlike a grid
uniform in t it stays sensible for EDM (t = sigma up to 80). Processes without
lambda (GBM) need ``grid="uniform"``.

:func:`langevin_correct` is the corrector on its own (usable by any sampler).
All noise comes from ``generator`` (torchsde's Brownian motion is seeded from it).
"""
from __future__ import annotations

import math

import torch

from ..processes.simulate import brownian_entropy
from .kernel import (check_cond, check_times, coefficients, diffusion_depends_on_state, randn_like as _randn_like,
                     scalar_t as _scalar_t, sde_coefficients as _sde_coeffs)
from .registry import register

__all__ = ["langevin_correct", "euler_maruyama", "reverse_diffusion", "pc", "sde_solve",
           "reverse_diffusion_step", "euler_maruyama_step"]


# --- helpers shared by the SDE samplers (the common ones live in kernel.py) ----------------

def _at_data_end(process, t) -> bool:
    """True when ``t`` is the data end ``t_lo`` of the process (the grid's appended last point)."""
    lo = float(process.t_lo)
    return float(t) <= lo + 1e-12 * max(1.0, abs(lo))


def _is_linear(process) -> bool:
    """Does the process answer the linear-Gaussian protocol (alpha, sigma)?"""
    return callable(getattr(process, "alpha", None)) and callable(getattr(process, "sigma", None))


def _alpha_sigma(process, t) -> tuple[float, float]:
    return coefficients(process, t)[:2]


def _offset(process, t, x, cond):
    """offset(t) (the x_0-independent part of the mean) as a tensor/float broadcastable to x."""
    fn = getattr(process, "offset", None)
    if fn is None:
        return 0.0
    off = fn(torch.as_tensor(t, dtype=x.dtype, device=x.device), **cond)
    return off.to(x.dtype) if torch.is_tensor(off) else off


def _reverse_drift(process, pred, x, t, cond, state_dependent: bool):
    """Drift f - d/dx g^2 - g^2 score of the reverse SDE, and the diffusion g."""
    drift, diff, div = _sde_coeffs(process, x, t, cond, state_dependent)
    score = pred.score(x, t)
    corr = diff**2 * score if div is None else diff**2 * score + div
    return drift - corr, diff


def _denoise_or_mean_step(process, pred, x, t, s, cond, state_dependent):
    """Last interval to the data end: x0 prediction when the process has one, else a noise-free reverse step."""
    if _is_linear(process):
        a_lo, _ = _alpha_sigma(process, s)  # 1 (and offset 0) at the data end of every current process
        return a_lo * pred.x0(x, t) + _offset(process, s, x, cond)
    rdrift, _ = _reverse_drift(process, pred, x, t, cond, state_dependent)
    return x - (float(t) - float(s)) * rdrift


# --- predictor steps ----------------------------------------------------------------------

def euler_maruyama_step(process, pred, x, t, s, *, generator=None, noise: bool = True, state_dependent=None):
    """One Euler–Maruyama step of the reverse SDE from time ``t`` down to ``s < t``."""
    cond = pred.cond
    if state_dependent is None:
        state_dependent = diffusion_depends_on_state(process, x, t, cond)
    h = float(t) - float(s)
    rdrift, diff = _reverse_drift(process, pred, x, t, cond, state_dependent)
    x_mean = x - h * rdrift
    if not noise:
        return x_mean
    return x_mean + diff * math.sqrt(h) * _randn_like(x, generator)


def _forward_discretization(process, x, t, s, cond, state_dependent):
    """Forward step s -> t written as x_t = x_s + f_i + G_i z, evaluated at the current state x (score SDE).

    Returns (f_i, G_i, extra) where ``extra`` is the divergence correction h * d/dx g^2 (or None).
    """
    if _is_linear(process):
        a_t, sig_t = _alpha_sigma(process, t)
        a_s, sig_s = _alpha_sigma(process, s)
        r = a_t / a_s
        G2 = max(sig_t**2 - r**2 * sig_s**2, 0.0)
        f = (r - 1.0) * x + (_offset(process, t, x, cond) - r * _offset(process, s, x, cond))
        return f, math.sqrt(G2), None
    h = float(t) - float(s)
    drift, diff, div = _sde_coeffs(process, x, t, cond, state_dependent)
    return drift * h, diff * math.sqrt(h), (None if div is None else div * h)


def reverse_diffusion_step(process, pred, x, t, s, *, generator=None, noise: bool = True, state_dependent=None):
    """score SDE's reverse-diffusion predictor from ``t`` down to ``s``: x - f_i + G_i^2 score + G_i z."""
    cond = pred.cond
    if state_dependent is None:
        state_dependent = (not _is_linear(process)) and diffusion_depends_on_state(process, x, t, cond)
    f, G, extra = _forward_discretization(process, x, t, s, cond, state_dependent)
    score = pred.score(x, t)
    x_mean = x - f + G**2 * score
    if extra is not None:
        x_mean = x_mean + extra
    if not noise:
        return x_mean
    return x_mean + G * _randn_like(x, generator)


_PREDICTORS = {"euler-maruyama": euler_maruyama_step, "reverse-diffusion": reverse_diffusion_step}


# --- Langevin corrector -------------------------------------------------------------------

def langevin_correct(process, pred, x, t, *, snr: float = 0.16, n_steps: int = 1, rule: str = "langevin",
                     norm: str = "batch", alpha: float = 1.0, generator=None) -> torch.Tensor:
    """Langevin MCMC steps targeting p_t at fixed time ``t``: ``x <- x + eps score + sqrt(2 eps) z``.

    ``rule="langevin"`` is score SDE's signal-to-noise rule
    ``eps = 2 alpha (snr ||z|| / ||score||)^2``; ``norm="batch"`` uses the batch
    means of the norms (as score SDE does), ``norm="sample"`` each sample's own norms,
    which keeps samples independent of the batch but makes the step depend on
    the state, so the chain's stationary law becomes ~ p ||score||^2 / ||z||^2-weighted:
    negligible for high-dimensional states (images), a visible bias in a few
    dimensions. ``rule="ald"`` is annealed Langevin dynamics (SGMSE's default
    corrector): ``eps = 2 alpha (snr sigma(t))^2`` with the process's marginal
    std sigma(t), state-independent and per sample. ``alpha`` is score SDE's
    step factor (1 - beta_i for VP; the sampler passes (alpha_t/alpha_s)^2).
    """
    if rule not in ("langevin", "ald"):
        raise ValueError(f"unknown corrector rule {rule!r}; choose 'langevin' or 'ald'")
    if norm not in ("batch", "sample"):
        raise ValueError(f"norm must be 'batch' or 'sample', got {norm!r}")
    if not snr > 0:
        raise ValueError(f"snr must be positive, got {snr}")
    if not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"the number of corrector steps must be a non-negative integer, got {n_steps!r}")
    if rule == "ald" and not _is_linear(process):
        raise ValueError(f"the 'ald' corrector needs the process's marginal std sigma(t); "
                         f"{type(process).__name__} has none (use rule='langevin')")
    bshape = (x.shape[0],) + (1,) * (x.dim() - 1)
    for _ in range(n_steps):
        grad = pred.score(x, t)
        z = _randn_like(x, generator)
        if rule == "ald":
            std = _alpha_sigma(process, t)[1]
            step = 2.0 * alpha * (snr * std) ** 2
        else:
            gn = grad.reshape(x.shape[0], -1).norm(dim=-1)
            zn = z.reshape(x.shape[0], -1).norm(dim=-1)
            if norm == "batch":
                gn, zn = gn.mean(), zn.mean()
            else:
                gn, zn = gn.reshape(bshape), zn.reshape(bshape)
            gn = torch.clamp(gn, min=torch.finfo(x.dtype).tiny ** 0.5)
            step = 2.0 * alpha * (snr * zn / gn) ** 2
        x = x + step * grad + torch.sqrt(2.0 * torch.as_tensor(step, dtype=x.dtype, device=x.device)) * z
    return x


# --- registered samplers ------------------------------------------------------------------

def _at_prior_end(process, t) -> bool:
    """alpha(t) = 0: an interpolant's prior end, where the SDE's drift alpha'/alpha is infinite."""
    return _is_linear(process) and float(process.alpha(torch.as_tensor(t, dtype=torch.float64))) == 0.0


def ancestral_step(process, pred, x, t, s, *, generator=None):
    """The exact reverse transition given x0_hat (DDPM's posterior; DDIM with eta = 1) from ``t`` to ``s``.

    ``x_s = alpha_s x0 + offset_s + sqrt(sigma_s^2 - c^2) eps + c z``, ``c^2 = sigma_s^2 (1 - e^{-2h})``,
    ``h = lambda_s - lambda_t``. From alpha_t = 0 (h = inf) it is ``alpha_s x0 + offset_s + sigma_s z``:
    the Euler-Maruyama samplers take the first interval from an interpolant's prior end this way.
    """
    cond = pred.cond
    x0, eps = pred.both(x, t)
    _, _, lam_t, _ = coefficients(process, t, like=x, cond=cond)
    a_s, s_s, lam_s, off_s = coefficients(process, s, like=x, cond=cond)
    c2 = s_s**2 * (-torch.expm1(-2.0 * (lam_s - lam_t)))
    keep = torch.sqrt(torch.clamp(s_s**2 - c2, min=0.0))
    out = a_s.to(x.dtype) * x0 + (off_s.to(x.dtype) if torch.is_tensor(off_s) else off_s) + torch.sqrt(c2).to(x.dtype) * _randn_like(x, generator)
    return out if bool((keep == 0).all()) else out + keep.to(x.dtype) * eps


def _loop(process, pred, x, times, step_fn, *, generator, callback, corrector=None, name=None):
    times0 = check_times(times)
    times = check_times(times0, process=process, pred=pred)  # eps / score at alpha = 0: start just inside
    cond = pred.cond
    em = step_fn is euler_maruyama_step  # reverse-diffusion copes with alpha(t) = 0
    first_ancestral = em and _at_prior_end(process, times0[0]) and times.numel() > 2
    state_dependent = diffusion_depends_on_state(process, x, times[1 if first_ancestral else 0], cond,
                                                 name if em else None)
    n = times.numel() - 1
    for i in range(n):
        t, s = times[i], times[i + 1]
        if corrector is not None:
            x = corrector(x, t, s)
        if i == n - 1 and _at_data_end(process, s):
            x = _denoise_or_mean_step(process, pred, x, t, s, cond, state_dependent)
        elif i == 0 and first_ancestral:
            x = ancestral_step(process, pred, x, t, s, generator=generator)
        else:
            x = step_fn(process, pred, x, t, s, generator=generator, state_dependent=state_dependent)
        if callback is not None:
            callback(i, s, x)
    return x


@register("euler-maruyama", kind="sde", default_grid="log_snr", requires="sde")
def euler_maruyama(process, pred, x, times, *, generator=None, callback=None):
    """Euler–Maruyama on the reverse-time SDE (any diffusion; last interval denoises with x0)."""
    check_cond(process, pred, "euler-maruyama")
    return _loop(process, pred, x, times, euler_maruyama_step, generator=generator, callback=callback,
                 name="euler-maruyama")


@register("reverse-diffusion", kind="sde", default_grid="log_snr", requires="sde")
def reverse_diffusion(process, pred, x, times, *, generator=None, callback=None):
    """score SDE's reverse-diffusion predictor: reverse the per-interval forward discretization."""
    check_cond(process, pred, "reverse-diffusion")
    return _loop(process, pred, x, times, reverse_diffusion_step, generator=generator, callback=callback)


@register("pc", kind="sde", default_grid="log_snr", requires="sde")
def pc(process, pred, x, times, *, generator=None, callback=None, predictor: str = "reverse-diffusion",
       corrector: str = "langevin", snr: float = 0.16, n_corrector: int = 1, norm: str = "batch"):
    """Predictor–corrector (score SDE): Langevin corrector then a reverse-diffusion / Euler–Maruyama predictor."""
    return predictor_corrector(process, pred, x, times, generator=generator, callback=callback, predictor=predictor,
                               corrector=corrector, snr=snr, n_corrector=n_corrector, norm=norm, name="pc")


def predictor_corrector(process, pred, x, times, *, generator=None, callback=None, predictor="reverse-diffusion",
                        corrector="langevin", snr=0.16, n_corrector=1, norm="batch", name="pc"):
    """``pc`` and ``mr-pc``: the conditioning checked once, errors naming the sampler ``name``."""
    check_cond(process, pred, name)
    if predictor not in _PREDICTORS:
        raise ValueError(f"unknown predictor {predictor!r}; choose one of {', '.join(_PREDICTORS)}")
    # validate the corrector options once, before any model call
    langevin_correct(process, pred, x, times[0], snr=snr, n_steps=0, rule=corrector, norm=norm)
    if diffusion_depends_on_state(process, x, times[0], pred.cond):
        raise ValueError(f"sampler {name!r}: its Langevin corrector takes additive steps, which need a diffusion that "
                         f"does not depend on the state; {type(process).__name__}'s noise does (multiplicative; "
                         f"its additive steps leave the state space) -- use 'gbm-euler', which steps in log space, "
                         f"or 'euler-maruyama' / 'ode'")
    linear = _is_linear(process)

    def correct(x, t, s):
        a = 1.0
        if linear:  # score SDE's alpha_i = 1 - beta_i, i.e. (alpha_t / alpha_s)^2
            a = (_alpha_sigma(process, t)[0] / _alpha_sigma(process, s)[0]) ** 2
        return langevin_correct(process, pred, x, t, snr=snr, n_steps=n_corrector, rule=corrector, norm=norm,
                                alpha=a, generator=generator)

    return _loop(process, pred, x, times, _PREDICTORS[predictor], generator=generator, callback=callback,
                 corrector=correct, name=name)


class _ReverseSDE(torch.nn.Module):
    """The reverse SDE in the forward variable s = -t on flat (batch, d) states, for torchsde."""

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, process, pred, event_shape, state_dependent):
        super().__init__()
        self.process, self.pred, self.event_shape = process, pred, tuple(event_shape)
        self.state_dependent = state_dependent
        self._last = None

    def _x(self, y):
        return y.reshape((y.shape[0],) + self.event_shape)

    def f(self, s, y):
        # torchsde's contract check evaluates f at (ts[0], y0), where the first step evaluates it again:
        # a one-entry cache keeps that to one model call
        key = float(s)
        if self._last is not None and self._last[0] == key and (self._last[1] is y or torch.equal(self._last[1], y)):
            return self._last[2]
        x = self._x(y)
        rdrift, _ = _reverse_drift(self.process, self.pred, x, -s, self.pred.cond, self.state_dependent)
        out = (-rdrift).reshape(y.shape)  # dx = rdrift dt + g dW_bar with dt = -ds
        self._last = (key, y, out)
        return out

    def g(self, s, y):
        x = self._x(y)
        _, diff = self.process.sde(x, _scalar_t(-s, x), **self.pred.cond)
        return diff.reshape(y.shape)


@register("sde", kind="sde", default_grid="log_snr", requires="sde")
def sde_solve(process, pred, x, times, *, generator=None, callback=None, method: str | None = None,
              adaptive: bool = False, rtol: float = 1e-3, atol: float = 1e-3, dt: float | None = None,
              dt_min: float = 1e-5):
    """The reverse SDE through torchsde.sdeint (fixed steps on the grid, or adaptive with rtol/atol).

    ``method``: a torchsde Ito method for diagonal noise ("euler", "milstein",
    "srk"); default "euler" for fixed steps and "milstein" when ``adaptive``
    (strong order 1 for diagonal noise, the same cost as Euler when the noise is
    additive; torchsde warns that adaptive Euler need not converge, and "srk"
    costs ~9 model calls per step). Fixed steps land exactly on the grid (one ``sdeint`` call per
    interval, one Brownian motion for the whole path). Adaptive runs integrate
    ``times[0] -> times[-2]`` in one call (``dt`` = initial step, default the
    first grid interval) and report only the end point to ``callback``.
    """
    import torchsde

    check_cond(process, pred, "sde")
    times0 = check_times(times)
    times = check_times(times0, process=process, pred=pred)  # eps / score at alpha = 0: start just inside
    if _at_prior_end(process, times0[0]) and times.numel() > 2:  # the SDE is singular there
        x = ancestral_step(process, pred, x, times[0], times[1], generator=generator)
        if callback is not None:
            callback(0, times[1], x)
        cb = None if callback is None else (lambda i, t, y: callback(i + 1, t, y))
        return sde_solve(process, pred, x, times[1:], generator=generator, callback=cb, method=method,
                         adaptive=adaptive, rtol=rtol, atol=atol, dt=dt, dt_min=dt_min)
    method = method or ("milstein" if adaptive else "euler")
    cond = pred.cond
    state_dependent = diffusion_depends_on_state(process, x, times[0], cond, "sde")
    n = times.numel() - 1
    denoise_last = _at_data_end(process, times[-1])
    t_end_idx = n - 1 if denoise_last else n  # integrate times[0] -> times[t_end_idx] with torchsde
    event_shape = x.shape[1:]
    y = x.reshape(x.shape[0], -1)
    if t_end_idx > 0:
        s_all = (-times[: t_end_idx + 1]).to(dtype=x.dtype, device=x.device)
        bm = torchsde.BrownianInterval(t0=float(s_all[0]), t1=float(s_all[-1]), size=y.shape, dtype=x.dtype,
                                       device=x.device, entropy=brownian_entropy(generator),
                                       levy_area_approximation="space-time" if method == "srk" else "none")
        rsde = _ReverseSDE(process, pred, event_shape, state_dependent)
        if adaptive:
            dt0 = float(s_all[1] - s_all[0]) if dt is None else float(dt)
            ys = torchsde.sdeint(rsde, y, s_all[[0, -1]], bm=bm, method=method, dt=dt0, adaptive=True,
                                 rtol=rtol, atol=atol, dt_min=dt_min)
            y = ys[-1]
            if callback is not None:
                callback(t_end_idx - 1, times[t_end_idx], y.reshape(x.shape))
        else:
            for i in range(t_end_idx):
                seg = s_all[i: i + 2]
                # a step a hair longer than the interval: torchsde clamps it to the interval's end, so
                # round-off never adds a spurious tiny step
                y = torchsde.sdeint(rsde, y, seg, bm=bm, method=method, dt=float(seg[1] - seg[0]) * (1 + 1e-9))[-1]
                if callback is not None:
                    callback(i, times[i + 1], y.reshape(x.shape))
    x = y.reshape(x.shape)
    if denoise_last:
        x = _denoise_or_mean_step(process, pred, x, times[-2], times[-1], cond, state_dependent)
        if callback is not None:
            callback(n - 1, times[-1], x)
    return x
