"""Stochastic interpolants and flow matching (Albergo & Vanden-Eijnden; Lipman et al.; Liu et al.).

    x_t = a(t) x_0 + b(t) x_1 + gamma(t) z,     t in [0, 1],

with x_0 the data, x_1 the other end (standard Gaussian noise unless given),
z ~ N(0, I) optional latent noise. Paths: ``"linear"`` a = 1 - t, b = t
(rectified flow / conditional OT flow matching); ``"trig"`` a = cos(pi t/2),
b = sin(pi t/2) (a computed as sin(pi (1 - t)/2), exactly 0 at t = 1). Latent noise: gamma(t) = gamma_scale * sqrt(t (1 - t))
(``gamma_shape="sqrt"``, as in the stochastic-interpolant papers; its
derivative is unbounded at the ends) or gamma_scale * t (1 - t)
(``"quadratic"``, smooth; the default shape).

The training target is the velocity d x_t / dt = a' x_0 + b' x_1 + gamma' z.
When x_1 is Gaussian noise the path is a linear Gaussian process with
alpha(t) = a(t) and sigma(t) = sqrt(b^2 + gamma^2), so every sampler that
speaks alpha/sigma works on it. Its SDE drift a'/a is singular at t = 1 where
a = 0 (the prior N(0, I) is reached exactly there; lambda(1) = -inf): the samplers start
there from x0 / v / velocity predictions and just inside it from eps / score ones, and the
Euler-Maruyama samplers take their first step there as the exact ancestral step
(:func:`stochgen.samplers.kernel.start_inside`, :func:`stochgen.samplers.sde.ancestral_step`).
"""
from __future__ import annotations

import math

import torch

from .._validate import as_tensor
from .. import families
from .base import LinearGaussian, Marginal, _randn


class Interpolant(LinearGaussian):
    family = families.INTERPOLANT
    def __init__(self, path: str = "linear", gamma_scale: float = 0.0, gamma_shape: str = "quadratic",
                 t_min: float = 1e-3, t_max: float = 1.0):
        if path not in ("linear", "trig"):
            raise ValueError(f"unknown interpolant path {path!r}; choose 'linear' or 'trig'")
        if gamma_shape not in ("quadratic", "sqrt"):
            raise ValueError(f"unknown gamma_shape {gamma_shape!r}; choose 'quadratic' or 'sqrt'")
        if gamma_scale < 0:
            raise ValueError(f"gamma_scale must be >= 0, got {gamma_scale}")
        if not 0 <= t_min < t_max <= 1:
            raise ValueError(f"need 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
        self.path, self.gamma_scale, self.gamma_shape = path, float(gamma_scale), gamma_shape
        self.t_min, self.t_max = float(t_min), float(t_max)

    def config(self):
        return dict(path=self.path, gamma_scale=self.gamma_scale, gamma_shape=self.gamma_shape,
                    t_min=self.t_min, t_max=self.t_max)

    # --- path coefficients and their derivatives ---------------------------------
    def a(self, t):
        t = as_tensor(t, "t")
        # sin(pi (1 - t)/2) rather than cos(pi t/2): exactly 0 at t = 1 (cos(pi/2) is 6e-17, which made
        # lambda(1) = -37 instead of -inf and the karras grid repeat t = 1)
        return 1.0 - t if self.path == "linear" else torch.sin(0.5 * math.pi * (1.0 - t))

    def b(self, t):
        t = as_tensor(t, "t")
        return t.clone() if self.path == "linear" else torch.sin(0.5 * math.pi * t)

    def da(self, t):
        t = as_tensor(t, "t")
        return -torch.ones_like(t) if self.path == "linear" else -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def db(self, t):
        t = as_tensor(t, "t")
        return torch.ones_like(t) if self.path == "linear" else 0.5 * math.pi * torch.sin(0.5 * math.pi * (1.0 - t))

    def gamma(self, t):
        t = as_tensor(t, "t")
        if self.gamma_shape == "quadratic":
            return self.gamma_scale * t * (1.0 - t)
        return self.gamma_scale * torch.sqrt(torch.clamp(t * (1.0 - t), min=0.0))

    def dgamma(self, t):
        t = as_tensor(t, "t")
        if self.gamma_shape == "quadratic":
            return self.gamma_scale * (1.0 - 2.0 * t)
        tt = torch.clamp(t * (1.0 - t), min=torch.finfo(t.dtype).tiny)
        return self.gamma_scale * (1.0 - 2.0 * t) / (2.0 * torch.sqrt(tt))

    # --- linear-Gaussian view (x_1 Gaussian) --------------------------------------
    def alpha(self, t):
        return self.a(t)

    def log_alpha(self, t):
        return torch.log(self.a(t))

    def sigma(self, t):
        return torch.sqrt(self.b(t) ** 2 + self.gamma(t) ** 2)

    def f(self, t):
        return self.da(t) / self.a(t)

    def dalpha(self, t):
        return self.da(t)

    def dsigma(self, t):
        if self.gamma_scale == 0:
            return self.db(t)
        return (self.b(t) * self.db(t) + self.gamma(t) * self.dgamma(t)) / self.sigma(t)

    def g2(self, t):
        s = self.sigma(t)
        ds = (self.b(t) * self.db(t) + self.gamma(t) * self.dgamma(t)) / s
        return 2.0 * s * ds - 2.0 * self.f(t) * s**2

    def lambda_(self, t):
        return torch.log(self.a(t)) - torch.log(self.sigma(t))

    def t_of_lambda(self, lam):
        if self.gamma_scale > 0:
            return super().t_of_lambda(lam)
        lam = as_tensor(lam, "lambda")
        if self.path == "linear":
            return torch.sigmoid(-lam)
        return 2.0 / math.pi * torch.atan(torch.exp(-lam))

    def marginal(self, x0, t, generator=None, x1=None, **cond) -> Marginal:
        """Draw x_t; ``x1`` defaults to standard Gaussian noise (then ``noise`` is the combined eps)."""
        x0, t, tb = self._prep(x0, t)
        gaussian_end = x1 is None
        if gaussian_end:
            x1 = _randn(x0.shape, generator, x0.dtype, x0.device)
        else:
            x1 = as_tensor(x1, "x1", dtype=x0.dtype, device=x0.device)
            if x1.shape != x0.shape:
                raise ValueError(f"x1 must have the shape of x0 {tuple(x0.shape)}, got {tuple(x1.shape)}")
        z = _randn(x0.shape, generator, x0.dtype, x0.device) if self.gamma_scale > 0 else torch.zeros_like(x0)
        a, b, g = self.a(tb), self.b(tb), self.gamma(tb)
        x_t = a * x0 + b * x1 + g * z
        velocity = self.da(tb) * x0 + self.db(tb) * x1 + self.dgamma(tb) * z
        if not gaussian_end:
            return Marginal(x_t=x_t, t=t, velocity=velocity, extra={"x1": x1, "z": z})
        s = self.sigma(tb)
        eps = (b * x1 + g * z) / s
        return Marginal(x_t=x_t, t=t, noise=eps, mean=a * x0, std=s.expand_as(x0), score=-eps / s,
                        velocity=velocity, extra={"x1": x1, "z": z})
