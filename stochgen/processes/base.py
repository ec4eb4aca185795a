"""The forward-process protocol.

Every forward process -- Gaussian SDEs, processes on Lie groups, jump
processes -- answers the same questions, and samplers, the likelihood and
training talk to a process only through them:

* ``t_min``, ``t_max``: the time range used for sampling (``t_min`` is the
  data end, ``t_max`` the prior end); ``t_lo``, ``t_hi``: where ``marginal`` is
  defined (usually ``[0, t_max]``).
* ``marginal(x0, t, generator=None, **cond) -> Marginal``: draw ``x_t`` given
  ``x_0`` together with the training targets (noise, score, velocity ...).
* ``sde(x, t, **cond) -> (drift, diffusion)`` for diffusions, or
  ``rates(x, t)`` for jump processes.
* ``prior_sample(shape, generator=None, **cond)`` and ``prior_log_prob(x, **cond)``.

Conditioning signals (for example the noisy speech ``y`` of a mean-reverting
process) are keyword arguments, the same name at every method.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import families
from .._validate import as_tensor, batch_time, broadcastable_to, check_finite, check_time, sum_except_batch
from ..spaces import Euclidean
from ..spaces.base import Space


@dataclass
class Marginal:
    """A draw ``x_t`` from the forward marginal with what training needs to regress on.

    ``noise`` is the standard normal draw that produced ``x_t`` (``eps``),
    ``mean``/``std`` the Gaussian marginal's parameters when it has them,
    ``score`` the conditional score grad log p(x_t | x_0), ``velocity`` the time
    derivative of an interpolant path. Fields a process cannot supply are ``None``.
    """

    x_t: torch.Tensor
    t: torch.Tensor
    noise: torch.Tensor | None = None
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    score: torch.Tensor | None = None
    velocity: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _randn(shape, generator, dtype, device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=dtype, device=device)


class Process:
    """Base class of every forward process."""

    space: Space = Euclidean()
    t_min: float = 0.0
    t_max: float = 1.0
    #: names of the conditioning keyword arguments the process needs (e.g. ``("y",)``)
    cond_keys: tuple[str, ...] = ()
    #: the process family (:mod:`stochgen.families`): what samples, trains and scores it
    family: "families.Family | None" = None

    # --- time range -----------------------------------------------------
    @property
    def t_lo(self) -> float:
        return 0.0

    @property
    def t_hi(self) -> float:
        return self.t_max

    def check_t(self, t, like: torch.Tensor | None = None) -> torch.Tensor:
        return check_time(t, self.t_lo, self.t_hi, like=like)

    def check_cond(self, cond: dict, x: torch.Tensor | None = None) -> None:
        missing = [k for k in self.cond_keys if cond.get(k) is None]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs the conditioning signal(s) {missing} "
                f"(pass them as keyword arguments, e.g. {missing[0]}=tensor)"
            )
        for k in self.cond_keys:
            c = cond[k]
            check_finite(as_tensor(c, k), k)
            if x is not None and not broadcastable_to(c.shape, x.shape):
                raise ValueError(f"{k} must broadcast to the state shape {tuple(x.shape)}, got {tuple(c.shape)}")

    # --- protocol ---------------------------------------------------------
    def coerce_states(self, x) -> torch.Tensor:
        """Training data as states of this process (``space.coerce``: tokens for jump processes, checked
        poses for Lie groups, floats otherwise), with a clear error naming what is wrong."""
        return self.space.coerce(x, "data")

    def marginal(self, x0: torch.Tensor, t, generator: torch.Generator | None = None, **cond) -> Marginal:
        raise NotImplementedError

    def sde(self, x: torch.Tensor, t, **cond) -> tuple[torch.Tensor, torch.Tensor]:
        raise TypeError(f"{type(self).__name__} is not a diffusion (it has no SDE)")

    def prior_sample(self, shape, generator: torch.Generator | None = None, dtype=None, device=None, **cond):
        raise NotImplementedError

    def prior_log_prob(self, x: torch.Tensor, **cond) -> torch.Tensor:
        raise NotImplementedError

    # --- spec (checkpoints store it) -----------------------------------------
    def config(self) -> dict:
        """Constructor arguments; ``type(self)(**self.config())`` rebuilds the process."""
        return {}

    def spec(self) -> dict:
        """``{"type", "config", "module"}``: ``processes.from_spec`` rebuilds the process (importing
        ``module`` first when the type is not registered in this Python process)."""
        return {"type": type(self).__name__, "config": self.config(), "module": type(self).__module__}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # helpers shared by subclasses
    def _prep(self, x0, t, name="x0"):
        x0 = as_tensor(x0, name)
        if x0.dim() < 1:
            raise ValueError(f"{name} must have a leading batch dimension, got a scalar")
        check_finite(x0, name)
        self.space.check(x0, name)
        t = self.check_t(t, like=x0)
        return x0, t, batch_time(t, x0)


class LinearGaussian(Process):
    """Processes whose marginal is ``x_t = alpha(t) * x_0 + sigma(t) * eps``.

    Subclasses give ``log_alpha(t)`` and ``sigma(t)`` (and closed-form
    derivatives where they have them). The forward SDE
    ``dx = f(t) x dt + g(t) dW`` follows: ``f = d log alpha / dt`` and
    ``g^2 = d sigma^2/dt - 2 f sigma^2``.

    ``lambda_(t) = log(alpha/sigma)`` is the half log-SNR of DPM-Solver
    (``log_snr(t) = 2 * lambda_(t)``); ``t_of_lambda`` inverts it.
    """
    family = families.LINEAR_GAUSSIAN

    def alpha(self, t) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def log_alpha(self, t) -> torch.Tensor:
        raise NotImplementedError

    def sigma(self, t) -> torch.Tensor:
        raise NotImplementedError

    def offset(self, t, **cond):
        """The part of the mean that does not depend on x_0: E[x_t | x_0] = alpha(t) x_0 + offset(t).

        Zero here; mean-reverting processes return (1 - alpha(t)) y.
        """
        return 0.0

    def lambda_(self, t) -> torch.Tensor:
        """Half log signal-to-noise ratio ``log(alpha(t) / sigma(t))`` (DPM-Solver's lambda)."""
        return self.log_alpha(t) - torch.log(self.sigma(t))

    def log_snr(self, t) -> torch.Tensor:
        """``log(alpha^2 / sigma^2) = 2 * lambda_(t)``."""
        return 2.0 * self.lambda_(t)

    def t_of_lambda(self, lam) -> torch.Tensor:
        """Inverse of ``lambda_`` (bisection in float64 unless a subclass has a closed form)."""
        lam = as_tensor(lam, "lambda")
        lo = torch.full_like(lam, self.t_lo, dtype=torch.float64)
        hi = torch.full_like(lam, self.t_hi, dtype=torch.float64)
        target = lam.double()
        for _ in range(200):  # lambda is decreasing in t
            mid = 0.5 * (lo + hi)
            go_right = self.lambda_(mid) > target
            lo = torch.where(go_right, mid, lo)
            hi = torch.where(go_right, hi, mid)
        return (0.5 * (lo + hi)).to(lam.dtype)

    def f(self, t) -> torch.Tensor:
        """Drift coefficient ``d log alpha / dt`` (autograd unless overridden)."""
        return _ddt(self.log_alpha, t)

    def dalpha(self, t) -> torch.Tensor:
        """``d alpha / dt`` (``alpha * f`` unless overridden)."""
        return self.alpha(t) * self.f(t)

    def dsigma(self, t) -> torch.Tensor:
        """``d sigma / dt`` (autograd unless overridden)."""
        return _ddt(self.sigma, t)

    def g2(self, t) -> torch.Tensor:
        """Squared diffusion coefficient ``d sigma^2/dt - 2 f sigma^2``."""
        return _ddt(lambda s: self.sigma(s) ** 2, t) - 2.0 * self.f(t) * self.sigma(t) ** 2

    # --- protocol -------------------------------------------------------------
    def marginal(self, x0, t, generator=None, **cond) -> Marginal:
        x0, t, tb = self._prep(x0, t)
        a, s = self.alpha(tb), self.sigma(tb)
        eps = _randn(x0.shape, generator, x0.dtype, x0.device)
        mean = a * x0
        x_t = mean + s * eps
        return Marginal(x_t=x_t, t=t, noise=eps, mean=mean, std=s.expand_as(x0), score=-eps / s)

    def sde(self, x, t, **cond):
        x = as_tensor(x)
        t = self.check_t(t, like=x)
        tb = batch_time(t, x)
        return self.f(tb) * x, torch.sqrt(torch.clamp(self.g2(tb), min=0.0)).expand_as(x)

    @property
    def prior_std(self) -> float:
        return float(self.sigma(torch.tensor(self.t_max, dtype=torch.float64)))

    def prior_sample(self, shape, generator=None, dtype=None, device=None, **cond):
        return self.prior_std * _randn(tuple(shape), generator, dtype or torch.get_default_dtype(), device)

    def prior_log_prob(self, x, **cond):
        x = as_tensor(x)
        s = self.prior_std
        d = x[0].numel() if x.dim() > 0 else 1
        return -0.5 * sum_except_batch(x**2) / s**2 - d * (math.log(s) + 0.5 * math.log(2 * math.pi))


def _ddt(fn, t) -> torch.Tensor:
    """Derivative of a scalar-in-time function by autograd (works under no_grad too)."""
    t = as_tensor(t, "t")
    with torch.enable_grad():
        tt = t.detach().clone().requires_grad_(True)
        y = fn(tt)
        if not y.requires_grad:  # constant in time
            return torch.zeros_like(t)
        (g,) = torch.autograd.grad(y.sum(), tt, allow_unused=True)
    return torch.zeros_like(t) if g is None else g
