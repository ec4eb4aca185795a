"""Denoising score matching in log coordinates for log-space processes (objective ``"log-dsm"``).

For geometric Brownian motion (:class:`stochgen.processes.GBM`, family LOG_SPACE) the state
is positive and its logarithm is a linear Gaussian process given x_0:

    log x_t = log x_0 + (mu - s^2/2) t + s sqrt(t) z,     z ~ N(0, I)

(``marginal(...).noise`` is z, ``marginal(...).extra["log_std"]`` is ``s sqrt(t)``, the
process's ``log_std(t)``). A model predicts

* ``"eps"`` (the family's default): the log-coordinate noise z, regressed with weight 1;
* ``"score"``: the data-space score ``grad_x log p_t(x)`` that the ``gbm-euler`` sampler
  steps with. Its error is measured in the units of z, ``(s sqrt(t) x)^2 (score_hat - score)^2``
  (eps matching, so neither kind is weighted towards small x or small t).

The two are the same information (:func:`log_space_convert`, registered for the family
``"log-space"`` in :mod:`stochgen.parameterization`):

    score_log = -z / log_std(t),        score_data = (score_log - 1) / x

(``p_X(x) = p_Y(log x) / x``). Training times are uniform in ``[t_min, t_max]``.

The default network (:class:`LogMLP`) works in log coordinates with EDM's preconditioning
(centred at ``log x_ref``, log-data spread ``settings["log_scale"]``, default 1): its input and
output have unit scale at every t and for every order of magnitude of the data; for a
``"score"`` model it also turns its noise estimate into the data-space score by the conversion
above.
"""
from __future__ import annotations

import math

import torch

from .._validate import batch_time
from .. import nets
from ..nets.mlp import MLP
from ..parameterization import register_converter
from .base import Objective, flat_cond_sizes, register

__all__ = ["LogDSM", "LogMLP", "log_space_convert"]


def log_uniform_time(process, n: int, generator=None, dtype=torch.float32, device=None) -> torch.Tensor:
    """Training times ``(n,)`` log-uniform in ``[t_min, t_max]`` (uniform in ``log_std``), uniform if t_min = 0."""
    u = torch.rand(n, generator=generator, dtype=dtype, device=device)
    lo, hi = float(process.t_min), float(process.t_max)
    if lo <= 0:
        return lo + (hi - lo) * u
    return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)


def _log_std(process, x, t):
    tb = batch_time(torch.as_tensor(t, dtype=x.dtype, device=x.device), x)
    return process.log_std(tb).to(x.dtype)


def log_space_convert(out, kind: str, to: str, process, x, t, cond=None):
    """Convert between the log-coordinate noise ``"eps"`` and the data-space ``"score"`` at (x, t)."""
    if kind not in ("eps", "score") or to not in ("eps", "score"):
        raise ValueError(f"a {kind!r} prediction cannot be converted to {to!r} for {type(process).__name__}: "
                         "log-space models predict 'eps' (log-coordinate noise) or 'score' (data-space score)")
    if kind == to:
        return out
    s = _log_std(process, x, t)
    if to == "score":
        return (-out / s - 1.0) / x
    return -s * (x * out + 1.0)


register_converter("log-space", log_space_convert)


@nets.register
class LogMLP(MLP):
    """An :class:`~stochgen.nets.MLP` over log coordinates, for positive states ``(B, dim)``.

    Without ``vol`` the MLP reads ``(log x - log_shift) / log_scale`` and its output is the
    prediction. With ``vol`` (and ``drift``: a GBM's volatility s and log drift mu - s^2/2) it
    is EDM's preconditioning (Karras et al. 2022) written in log coordinates, for the noise z
    of ``log x_t = log x_0 + drift t + sigma z``, ``sigma = vol sqrt(t)``: with the centred state
    ``y = log x - log_shift - drift t``, a log-data spread ``d = log_scale`` and
    ``c = 1 / sqrt(d^2 + sigma^2)``,

        z_hat = sigma c^2 y + d c F(c y, t)

    (``F`` the MLP): the first term is the exact answer for Gaussian log data of spread ``d``
    around ``log_shift``, so the MLP only learns the correction, at unit input and output
    scale for every t and every order of magnitude of the data. ``output="score"`` (needs
    ``vol``) returns the data-space score ``(-z_hat / sigma - 1) / x`` instead of z_hat.
    Other keyword arguments are the MLP's.
    """

    def __init__(self, dim: int, log_shift: float = 0.0, log_scale: float = 1.0, vol: float | None = None,
                 drift: float = 0.0, output: str = "eps", **kw):
        super().__init__(dim, **kw)
        if not all(math.isfinite(v) for v in (log_shift, log_scale, drift)) or not log_scale > 0:
            raise ValueError(f"LogMLP needs finite log_shift, drift and log_scale > 0, got {log_shift}, {drift}, "
                             f"{log_scale}")
        if vol is not None and not (math.isfinite(vol) and vol > 0):
            raise ValueError(f"vol must be a positive volatility or None, got {vol}")
        if output not in ("eps", "score"):
            raise ValueError(f"LogMLP output must be 'eps' or 'score', got {output!r}")
        if output == "score" and vol is None:
            raise ValueError("LogMLP(output='score') needs vol (the volatility that turns noise into a score)")
        self.log_shift, self.log_scale, self.drift, self.output = float(log_shift), float(log_scale), float(drift), output
        self.vol = None if vol is None else float(vol)

    def config(self) -> dict:
        return {**super().config(), "log_shift": self.log_shift, "log_scale": self.log_scale, "vol": self.vol,
                "drift": self.drift, "output": self.output}

    def forward(self, x: torch.Tensor, t, **cond) -> torch.Tensor:
        if not bool((x > 0).all()):
            raise ValueError(f"LogMLP takes strictly positive states; {int((x <= 0).sum())} value(s) are <= 0")
        if self.vol is None:
            return super().forward((torch.log(x) - self.log_shift) / self.log_scale, t, **cond)
        tb = self._batch_time(t, x).to(x.dtype).reshape((-1,) + (1,) * (x.dim() - 1))
        sigma = self.vol * torch.sqrt(tb)
        y = torch.log(x) - self.log_shift - self.drift * tb
        c = torch.rsqrt(self.log_scale**2 + sigma**2)
        z = sigma * c**2 * y + self.log_scale * c * super().forward(c * y, 0.25 * torch.log(sigma).reshape(-1), **cond)
        if self.output == "eps":
            return z
        return (-z / sigma - 1.0) / x


@register("log-dsm")
class LogDSM(Objective):
    """Log-coordinate noise matching for log-space processes; see the module docstring."""

    predictions = ("eps", "score")

    preconditionings = (None,)

    def draw(self, x0, generator, **proc_cond):
        t = log_uniform_time(self.process, x0.shape[0], generator, x0.dtype, x0.device)
        m = self.process.marginal(x0, t, generator=generator, **proc_cond)
        return {"t": t, "x_t": m.x_t, "noise": m.noise}

    def loss(self, denoiser, batch, cond=None, autocast=None, reduce=True):
        x_t, t, z = batch["x_t"], batch["t"], batch["noise"]
        out = self._call(denoiser, x_t, t, cond, autocast).float()
        z_hat = log_space_convert(out, self.prediction, "eps", self.process, x_t.float(), t)
        err = (z_hat - z.float()) ** 2
        per = err.reshape(err.shape[0], -1).mean(1)
        return per.mean() if reduce else per

    def default_network(self, example, num_classes, cond, settings):
        if not torch.is_tensor(example) or example.dim() != 2:
            shape = tuple(example.shape) if torch.is_tensor(example) else type(example).__name__
            raise ValueError(f"the base domain's default network for {type(self.process).__name__} is an MLP over "
                             f"log states (B, d); got {shape} (pass network=)")
        proc = self.process
        vol = getattr(proc, "vol", None)
        return LogMLP(dim=int(example.shape[1]), log_shift=math.log(float(getattr(proc, "x_ref", 1.0))),
                      log_scale=float(settings.get("log_scale", 1.0)), vol=None if vol is None else float(vol),
                      drift=float(proc.log_drift()) if vol is not None else 0.0, output=self.prediction,
                      hidden=int(settings.get("hidden", 128)), depth=int(settings.get("depth", 3)),
                      num_classes=num_classes, cond_inputs=flat_cond_sizes(cond))
