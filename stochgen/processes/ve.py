"""Variance-exploding (VE) diffusion (Song et al., SMLD as an SDE).

sigma(t) = sigma_min (sigma_max / sigma_min)^t, alpha = 1, and
dx = sigma(t) sqrt(2 log(sigma_max/sigma_min)) dW.

The SDE started at t = 0 adds variance sigma(t)^2 - sigma_min^2; like score SDE
we take the marginal std to be sigma(t) itself, i.e. data at t = 0 already
carry noise of scale sigma_min (negligible for the usual sigma_min = 0.01).
Starting the SDE at any s > 0 from the marginal at s reproduces the marginal
at t exactly.
"""
from __future__ import annotations

import math

import torch

from .._validate import as_tensor
from .base import LinearGaussian


class VE(LinearGaussian):
    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, t_min: float = 1e-5, t_max: float = 1.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        if not 0 <= t_min < t_max:
            raise ValueError(f"need 0 <= t_min < t_max, got {t_min}, {t_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.t_min, self.t_max = float(t_min), float(t_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def config(self):
        return dict(sigma_min=self.sigma_min, sigma_max=self.sigma_max, t_min=self.t_min, t_max=self.t_max)

    def log_alpha(self, t):
        return torch.zeros_like(as_tensor(t, "t"))

    def sigma(self, t):
        t = as_tensor(t, "t")
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def f(self, t):
        return torch.zeros_like(as_tensor(t, "t"))

    def g2(self, t):
        return self.sigma(t) ** 2 * (2.0 * self._log_ratio)

    def lambda_(self, t):
        return -torch.log(self.sigma(t))

    def t_of_lambda(self, lam):
        lam = as_tensor(lam, "lambda")
        return (-lam - math.log(self.sigma_min)) / self._log_ratio
