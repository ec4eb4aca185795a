"""The EDM process of Karras et al. (2022): time is the noise level.

x_t = x_0 + t * eps with t = sigma in [sigma_min, sigma_max]; the SDE is
dx = sqrt(2 t) dW. ``sigma_data`` is the data standard deviation used by the
EDM preconditioning (c_in, c_skip, c_out, c_noise) and the loss weight; the
marginal itself does not depend on it. ``marginal`` is defined for every
sigma >= 0 because training draws sigma from a log-normal that can leave the
sampling range.
"""
from __future__ import annotations

import math

import torch

from .._validate import as_tensor
from .base import LinearGaussian


class EDM(LinearGaussian):
    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5, rho: float = 7.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        self.sigma_min, self.sigma_max, self.sigma_data, self.rho = float(sigma_min), float(sigma_max), float(sigma_data), float(rho)
        self.t_min, self.t_max = self.sigma_min, self.sigma_max

    def config(self):
        return dict(sigma_min=self.sigma_min, sigma_max=self.sigma_max, sigma_data=self.sigma_data, rho=self.rho)

    @property
    def t_hi(self):
        return math.inf

    def log_alpha(self, t):
        return torch.zeros_like(as_tensor(t, "t"))

    def sigma(self, t):
        return as_tensor(t, "t").clone()

    def f(self, t):
        return torch.zeros_like(as_tensor(t, "t"))

    def g2(self, t):
        return 2.0 * as_tensor(t, "t")

    def lambda_(self, t):
        return -torch.log(as_tensor(t, "t"))

    def t_of_lambda(self, lam):
        return torch.exp(-as_tensor(lam, "lambda"))

    # EDM preconditioning, kept beside the schedule it belongs to
    def precondition(self, sigma):
        """(c_skip, c_out, c_in, c_noise) of the EDM denoiser D = c_skip x + c_out F(c_in x, c_noise)."""
        s = as_tensor(sigma, "sigma")
        sd2 = self.sigma_data**2
        c_skip = sd2 / (s**2 + sd2)
        c_out = s * self.sigma_data / torch.sqrt(s**2 + sd2)
        c_in = 1.0 / torch.sqrt(s**2 + sd2)
        c_noise = 0.25 * torch.log(s)
        return c_skip, c_out, c_in, c_noise

    def loss_weight(self, sigma):
        s = as_tensor(sigma, "sigma")
        return (s**2 + self.sigma_data**2) / (s * self.sigma_data) ** 2
