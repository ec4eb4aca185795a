"""Geometric Brownian motion on strictly positive data (``LogSpace``).

In the data:        dX = mu X dt + s X dW          (multiplicative noise)
In log coordinates: d log X = (mu - s^2/2) dt + s dW   (a linear SDE)

so given x_0 the marginal is log-normal,
log X_t ~ N(log x_0 + (mu - s^2/2) t, s^2 t), with E[X_t] = x_0 e^{mu t} and
Var[X_t] = x_0^2 e^{2 mu t} (e^{s^2 t} - 1). Every state stays positive.

GBM has no stationary law, so the prior is the log-normal that the marginal
approaches when the noise dominates the spread of the data:
log X_T ~ N(log x_ref + (mu - s^2/2) T, s^2 T), with ``x_ref`` the data's
typical scale (geometric mean; default 1). Choose ``s`` so that s^2 T is large
against the variance of log data.
"""
from __future__ import annotations

import math

import torch

from .._validate import as_tensor, batch_time, sum_except_batch
from ..spaces import LogSpace
from .. import families
from .base import Marginal, Process, _randn


class GBM(Process):
    family = families.LOG_SPACE
    def __init__(self, mu: float = 0.0, sigma: float = 2.0, x_ref: float = 1.0, t_min: float = 1e-3, t_max: float = 1.0):
        if not sigma > 0:
            raise ValueError(f"sigma (volatility) must be positive, got {sigma}")
        if not x_ref > 0:
            raise ValueError(f"x_ref must be positive, got {x_ref}")
        if not 0 <= t_min < t_max:
            raise ValueError(f"need 0 <= t_min < t_max, got {t_min}, {t_max}")
        self.mu, self.vol, self.x_ref = float(mu), float(sigma), float(x_ref)
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.space = LogSpace()

    def config(self):
        return dict(mu=self.mu, sigma=self.vol, x_ref=self.x_ref, t_min=self.t_min, t_max=self.t_max)

    # log-coordinate description (what samplers use for the additive step in log space)
    def log_drift(self) -> float:
        """Constant drift of log X: mu - s^2/2."""
        return self.mu - 0.5 * self.vol**2

    def log_mean(self, x0, t):
        """Mean of log X_t given x_0."""
        x0 = as_tensor(x0, "x0")
        tb = batch_time(as_tensor(t, "t", dtype=x0.dtype, device=x0.device), x0)
        return torch.log(x0) + self.log_drift() * tb

    def log_std(self, t):
        return self.vol * torch.sqrt(as_tensor(t, "t"))

    # the noise level of log X as a half log-SNR (unit signal in log coordinates), so the time grids
    # "log_snr" / "karras" apply: equal steps in lambda are geometric in t, dense near the data end
    def lambda_(self, t):
        """``-log(s sqrt(t))``: minus the log of the log-coordinate noise level."""
        return -torch.log(self.log_std(t))

    def t_of_lambda(self, lam):
        return torch.exp(-2.0 * as_tensor(lam, "lambda")) / self.vol**2

    def mean(self, x0, t):
        """E[X_t | x_0] = x_0 e^{mu t}."""
        x0 = as_tensor(x0, "x0")
        tb = batch_time(as_tensor(t, "t", dtype=x0.dtype, device=x0.device), x0)
        return x0 * torch.exp(self.mu * tb)

    def variance(self, x0, t):
        """Var[X_t | x_0] = x_0^2 e^{2 mu t} (e^{s^2 t} - 1)."""
        x0 = as_tensor(x0, "x0")
        tb = batch_time(as_tensor(t, "t", dtype=x0.dtype, device=x0.device), x0)
        return x0**2 * torch.exp(2 * self.mu * tb) * torch.expm1(self.vol**2 * tb)

    def marginal(self, x0, t, generator=None, **cond) -> Marginal:
        x0, t, tb = self._prep(x0, t)
        z = _randn(x0.shape, generator, x0.dtype, x0.device)
        s = self.log_std(tb)
        log_xt = torch.log(x0) + self.log_drift() * tb + s * z
        x_t = torch.exp(log_xt)
        score_log = -z / s  # grad of log p(log x_t | x_0) in log coordinates
        # data-space score: d/dx [log N(log x; m, v) - log x] = (score_log - 1) / x
        return Marginal(x_t=x_t, t=t, noise=z, mean=self.mean(x0, t), std=torch.sqrt(self.variance(x0, t)),
                        score=(score_log - 1.0) / x_t, extra={"log_x_t": log_xt, "log_std": s.expand_as(x0),
                                                              "score_log": score_log})

    def sde(self, x, t, **cond):
        x = as_tensor(x)
        self.space.check(x)
        t = self.check_t(t, like=x)
        return self.mu * x, self.vol * x

    def _prior_log_params(self):
        return math.log(self.x_ref) + self.log_drift() * self.t_max, self.vol * math.sqrt(self.t_max)

    def prior_sample(self, shape, generator=None, dtype=None, device=None, **cond):
        m, s = self._prior_log_params()
        return torch.exp(m + s * _randn(tuple(shape), generator, dtype or torch.get_default_dtype(), device))

    def prior_log_prob(self, x, **cond):
        x = self.space.check(as_tensor(x))
        m, s = self._prior_log_params()
        lx = torch.log(x)
        d = x[0].numel()
        return sum_except_batch(-0.5 * ((lx - m) / s) ** 2 - lx) - d * (math.log(s) + 0.5 * math.log(2 * math.pi))
