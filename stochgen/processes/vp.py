"""Variance-preserving (VP) and sub-VP diffusions (Song et al., score SDE).

VP:     dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW,  alpha = exp(-1/2 int beta), sigma^2 = 1 - alpha^2.
sub-VP: same drift, g^2 = beta(t) (1 - alpha^4), sigma = 1 - alpha^2.

``schedule="linear"``: beta(t) = beta_min + t (beta_max - beta_min).
``schedule="cosine"``: alpha(t) = cos(pi/2 (t+s)/(1+s)) / cos(pi/2 s/(1+s)) (Nichol & Dhariwal);
its ``t_max`` stays below 1 so that alpha(t_max) > 0 (DPM-Solver uses 0.9946).
"""
from __future__ import annotations

import math

import torch

from .._validate import as_tensor
from .base import LinearGaussian


class VP(LinearGaussian):
    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, schedule: str = "linear",
                 cosine_s: float = 0.008, t_min: float = 1e-3, t_max: float | None = None):
        if schedule not in ("linear", "cosine"):
            raise ValueError(f"unknown VP schedule {schedule!r}; choose 'linear' or 'cosine'")
        if schedule == "linear" and not (0 <= beta_min < beta_max):
            raise ValueError(f"need 0 <= beta_min < beta_max, got beta_min={beta_min}, beta_max={beta_max}")
        if schedule == "cosine" and not cosine_s > 0:
            raise ValueError(f"cosine_s must be positive, got {cosine_s}")
        self.beta_min, self.beta_max, self.schedule, self.cosine_s = float(beta_min), float(beta_max), schedule, float(cosine_s)
        if t_max is None:
            t_max = 1.0 if schedule == "linear" else 0.9946
        if not 0 < t_min < t_max <= 1:
            raise ValueError(f"need 0 < t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}")
        self.t_min, self.t_max = float(t_min), float(t_max)
        self._log_cos0 = math.log(math.cos(0.5 * math.pi * self.cosine_s / (1 + self.cosine_s)))

    def config(self):
        return dict(beta_min=self.beta_min, beta_max=self.beta_max, schedule=self.schedule,
                    cosine_s=self.cosine_s, t_min=self.t_min, t_max=self.t_max)

    def _phase(self, t):
        return 0.5 * math.pi * (t + self.cosine_s) / (1 + self.cosine_s)

    def log_alpha(self, t):
        t = as_tensor(t, "t")
        if self.schedule == "linear":
            return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min
        # clamp: round-off would give log alpha(0) = +1e-20 and a NaN sigma at the data end
        return torch.clamp(torch.log(torch.cos(self._phase(t))) - self._log_cos0, max=0.0)

    def beta(self, t):
        t = as_tensor(t, "t")
        if self.schedule == "linear":
            return self.beta_min + t * (self.beta_max - self.beta_min)
        return math.pi / (1 + self.cosine_s) * torch.tan(self._phase(t))

    def f(self, t):
        return -0.5 * self.beta(t)

    def sigma(self, t):
        # sigma^2 = 1 - alpha^2 = -expm1(2 log alpha): accurate for small t
        return torch.sqrt(-torch.expm1(2.0 * self.log_alpha(t)))

    def g2(self, t):
        return self.beta(t)

    def lambda_(self, t):
        la = self.log_alpha(t)
        return la - 0.5 * torch.log(-torch.expm1(2.0 * la))

    def _t_of_neg2_log_alpha(self, L):
        # solve -2 log alpha(t) = L for t
        if self.schedule == "linear":
            d = self.beta_max - self.beta_min
            return 2.0 * L / (torch.sqrt(self.beta_min**2 + 2.0 * d * L) + self.beta_min)
        phase = torch.arccos(torch.exp(-0.5 * L + self._log_cos0))
        return 2.0 * (1 + self.cosine_s) / math.pi * phase - self.cosine_s

    def t_of_lambda(self, lam):
        lam = as_tensor(lam, "lambda")
        L = torch.nn.functional.softplus(-2.0 * lam)  # log(1 + e^{-2 lambda}) = -2 log alpha
        return self._t_of_neg2_log_alpha(L)


class SubVP(VP):
    """sub-VP SDE: the VP drift with diffusion beta(t)(1 - alpha^4); its variance stays below the VP's."""

    def sigma(self, t):
        return -torch.expm1(2.0 * self.log_alpha(t))

    def g2(self, t):
        return self.beta(t) * (-torch.expm1(4.0 * self.log_alpha(t)))

    def lambda_(self, t):
        la = self.log_alpha(t)
        return la - torch.log(-torch.expm1(2.0 * la))

    def t_of_lambda(self, lam):
        lam = as_tensor(lam, "lambda")
        # alpha / (1 - alpha^2) = r  =>  alpha = 2 r / (1 + sqrt(1 + 4 r^2))
        r = torch.exp(lam)
        a = 2.0 * r / (1.0 + torch.sqrt(1.0 + 4.0 * r**2))
        return self._t_of_neg2_log_alpha(-2.0 * torch.log(a))
