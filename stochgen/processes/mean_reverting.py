"""Mean-reverting diffusions toward a conditioning signal ``y``.

Both processes drift the state toward ``y`` (the noisy speech spectrogram, the
degraded image) and are Gaussian given x_0 and y:

    x_t = y + (x_0 - y) * m(t) + sigma(t) * eps,   m(t) = exp(-int_0^t theta_s ds).

``alpha(t)`` below is m(t), the weight of x_0, so a sampler that knows the
linear protocol can integrate the linear part exactly.

* ``OUVE`` (SGMSE+, Richter et al. 2023): dx = theta (y - x) dt + g(t) dW with
  g(t) = sigma_min (sigma_max/sigma_min)^t sqrt(2 log(sigma_max/sigma_min)).
  Defaults theta = 1.5, sigma_min = 0.05, sigma_max = 0.5.
* ``IRSDE`` (Luo et al. 2023): dx = theta_t (y - x) dt + sigma_t dW with
  sigma_t^2 = 2 lam^2 theta_t, so that the stationary law is N(y, lam^2) and
  Var(t) = lam^2 (1 - m(t)^2). ``theta_bar`` is the total int_0^1 theta_s ds;
  ``theta_schedule`` is ``"constant"`` or ``"cosine"`` (theta_t ∝ sin(pi t)).

The prior at t_max is N(y, sigma(t_max)^2): it neglects the residual
m(t_max) (x_0 - y), as both papers do.
"""
from __future__ import annotations

import math

import torch

from .._validate import as_tensor, batch_time, sum_except_batch
from .. import families
from .base import LinearGaussian, Marginal, _randn


class MeanReverting(LinearGaussian):
    family = families.MEAN_REVERTING
    cond_keys = ("y",)

    def theta_bar(self, t) -> torch.Tensor:  # int_0^t theta_s ds
        raise NotImplementedError

    def theta(self, t) -> torch.Tensor:
        raise NotImplementedError

    def log_alpha(self, t):
        return -self.theta_bar(t)

    def f(self, t):
        return -self.theta(t)

    def offset(self, t, y=None, **cond):
        if y is None:
            raise ValueError(f"{type(self).__name__} needs the conditioning signal y")
        return (1.0 - self.alpha(t)) * y

    def mean(self, x0, t, y):
        tb = batch_time(as_tensor(t, "t", dtype=x0.dtype, device=x0.device), x0)
        a = self.alpha(tb)
        return y + (x0 - y) * a

    def marginal(self, x0, t, generator=None, y=None, **cond) -> Marginal:
        x0, t, tb = self._prep(x0, t)
        self.check_cond({"y": y}, x0)
        a, s = self.alpha(tb), self.sigma(tb)
        eps = _randn(x0.shape, generator, x0.dtype, x0.device)
        mean = y + (x0 - y) * a
        return Marginal(x_t=mean + s * eps, t=t, noise=eps, mean=mean, std=s.expand_as(x0), score=-eps / s)

    def sde(self, x, t, y=None, **cond):
        x = as_tensor(x)
        self.check_cond({"y": y}, x)
        t = self.check_t(t, like=x)
        tb = batch_time(t, x)
        return self.theta(tb) * (y - x), torch.sqrt(torch.clamp(self.g2(tb), min=0.0)).expand_as(x)

    def prior_sample(self, shape=None, generator=None, dtype=None, device=None, y=None, **cond):
        if y is None:
            raise ValueError(f"{type(self).__name__}.prior_sample needs the conditioning signal y")
        y = as_tensor(y, "y")
        shape = tuple(shape) if shape is not None else tuple(y.shape)
        return y + self.prior_std * _randn(shape, generator, dtype or y.dtype, device or y.device)

    def prior_log_prob(self, x, y=None, **cond):
        if y is None:
            raise ValueError(f"{type(self).__name__}.prior_log_prob needs the conditioning signal y")
        x = as_tensor(x)
        s = self.prior_std
        d = x[0].numel()
        return -0.5 * sum_except_batch((x - y) ** 2) / s**2 - d * (math.log(s) + 0.5 * math.log(2 * math.pi))


class OUVE(MeanReverting):
    def __init__(self, theta: float = 1.5, sigma_min: float = 0.05, sigma_max: float = 0.5,
                 t_min: float = 0.03, t_max: float = 1.0):
        if not theta > 0:
            raise ValueError(f"theta must be positive, got {theta}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        if not 0 <= t_min < t_max:
            raise ValueError(f"need 0 <= t_min < t_max, got {t_min}, {t_max}")
        self.theta_, self.sigma_min, self.sigma_max = float(theta), float(sigma_min), float(sigma_max)
        self.t_min, self.t_max = float(t_min), float(t_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def config(self):
        return dict(theta=self.theta_, sigma_min=self.sigma_min, sigma_max=self.sigma_max, t_min=self.t_min, t_max=self.t_max)

    def theta_bar(self, t):
        return self.theta_ * as_tensor(t, "t")

    def theta(self, t):
        return torch.full_like(as_tensor(t, "t"), self.theta_)

    def g2(self, t):
        t = as_tensor(t, "t")
        return self.sigma_min**2 * torch.exp(2.0 * t * self._log_ratio) * (2.0 * self._log_ratio)

    def sigma(self, t):
        t = as_tensor(t, "t")
        lr, th = self._log_ratio, self.theta_
        # Var = sigma_min^2 log r (r^{2t} - e^{-2 theta t}) / (theta + log r), written with expm1 for small t
        var = self.sigma_min**2 * lr / (th + lr) * torch.exp(-2.0 * th * t) * torch.expm1(2.0 * t * (th + lr))
        return torch.sqrt(var)


class IRSDE(MeanReverting):
    def __init__(self, lam: float = 0.1, theta_bar: float = 5.0, theta_schedule: str = "cosine",
                 t_min: float = 1e-3, t_max: float = 1.0):
        if theta_schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown theta_schedule {theta_schedule!r}; choose 'constant' or 'cosine'")
        if not lam > 0 or not theta_bar > 0:
            raise ValueError(f"lam and theta_bar must be positive, got lam={lam}, theta_bar={theta_bar}")
        if not 0 <= t_min < t_max <= 1:
            raise ValueError(f"need 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
        self.lam, self.total, self.theta_schedule = float(lam), float(theta_bar), theta_schedule
        self.t_min, self.t_max = float(t_min), float(t_max)

    def config(self):
        return dict(lam=self.lam, theta_bar=self.total, theta_schedule=self.theta_schedule, t_min=self.t_min, t_max=self.t_max)

    def theta_bar(self, t):
        t = as_tensor(t, "t")
        if self.theta_schedule == "constant":
            return self.total * t
        return 0.5 * self.total * (1.0 - torch.cos(math.pi * t))

    def theta(self, t):
        t = as_tensor(t, "t")
        if self.theta_schedule == "constant":
            return torch.full_like(t, self.total)
        return 0.5 * math.pi * self.total * torch.sin(math.pi * t)

    def g2(self, t):
        return 2.0 * self.lam**2 * self.theta(t)

    def sigma(self, t):
        return self.lam * torch.sqrt(-torch.expm1(-2.0 * self.theta_bar(t)))
