"""Exact oracles: data distributions whose denoiser, score and densities are closed form.

For data x_0 ~ sum_k w_k N(m_k, diag(s_k^2)) and any linear Gaussian process
(``alpha``, ``sigma``; plus the offset (1 - alpha) y of mean-reverting ones) the
marginal at t is sum_k w_k N(alpha m_k + off, diag(alpha^2 s_k^2 + sigma^2)), and
E[x_0 | x_t] is the responsibility-weighted posterior mean. These oracles turn
"is the sampler right?" into a measurable error, and serve the benchmarks.
"""
from __future__ import annotations

import math

import torch

from ._validate import as_tensor, batch_time
from .parameterization import check_kind, convert


class GaussianMixture:
    """Mixture with weights (K,), means (K, d) and per-component diagonal stds (K, d) or (K,)."""

    def __init__(self, weights, means, stds):
        self.means = as_tensor(means, "means", dtype=torch.float64)
        if self.means.dim() != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(self.means.shape)}")
        K, d = self.means.shape
        self.weights = as_tensor(weights, "weights", dtype=torch.float64).reshape(K)
        if bool((self.weights < 0).any()) or not math.isclose(float(self.weights.sum()), 1.0, rel_tol=1e-9):
            raise ValueError("weights must be non-negative and sum to 1")
        stds = as_tensor(stds, "stds", dtype=torch.float64)
        self.stds = (stds.reshape(K, 1) if stds.dim() == 1 else stds).expand(K, d).clone()
        if bool((self.stds <= 0).any()):
            raise ValueError("stds must be positive")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @classmethod
    def random(cls, K: int, d: int, seed: int = 0, spread: float = 2.0, std_range=(0.2, 0.6)):
        g = torch.Generator().manual_seed(seed)
        w = torch.rand(K, generator=g, dtype=torch.float64) + 0.5
        means = spread * torch.randn(K, d, generator=g, dtype=torch.float64)
        stds = std_range[0] + (std_range[1] - std_range[0]) * torch.rand(K, generator=g, dtype=torch.float64)
        return cls(w / w.sum(), means, stds)

    # --- data distribution ----------------------------------------------------------
    def sample(self, n: int, generator=None, return_labels: bool = False):
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        x = self.means[k] + self.stds[k] * torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (x, k) if return_labels else x

    def log_prob(self, x):
        return self.marginal_log_prob(x, torch.tensor(1.0), torch.tensor(0.0))

    # --- marginals under a linear process ---------------------------------------------
    def _ats(self, process, x, t, cond):
        x = as_tensor(x, "x", dtype=torch.float64)
        tb = batch_time(torch.as_tensor(t, dtype=torch.float64), x)
        a, s = process.alpha(tb), process.sigma(tb)
        off = process.offset(tb, **{k: as_tensor(v, k, dtype=torch.float64) for k, v in cond.items()})
        return x, a, s, torch.zeros_like(x) + off

    def marginal_log_prob(self, x, a, s, off=0.0):
        """log p_t(x) for x_t = a x0 + off + s eps (a, s broadcastable to (n, 1))."""
        x = as_tensor(x, "x", dtype=torch.float64)
        a = torch.as_tensor(a, dtype=torch.float64).reshape(-1, 1, 1) if torch.as_tensor(a).dim() else torch.as_tensor(a, dtype=torch.float64)
        s = torch.as_tensor(s, dtype=torch.float64).reshape(-1, 1, 1) if torch.as_tensor(s).dim() else torch.as_tensor(s, dtype=torch.float64)
        xc = (x - off)[:, None, :]  # (n, 1, d)
        var = a**2 * self.stds[None] ** 2 + s**2  # (n|1, K, d)
        lp = -0.5 * ((xc - a * self.means[None]) ** 2 / var + torch.log(2 * math.pi * var)).sum(-1)
        return torch.logsumexp(lp + torch.log(self.weights)[None], dim=1)

    def x0_mean(self, process, x, t, **cond):
        """E[x_0 | x_t = x] under ``process`` (float64)."""
        x, a, s, off = self._ats(process, x, t, cond)
        a3, s3 = a[..., None], s[..., None]  # (n|1, 1, 1)
        xc = (x - off)[:, None, :]
        var = a3**2 * self.stds[None] ** 2 + s3**2  # (n, K, d)
        lp = -0.5 * ((xc - a3 * self.means[None]) ** 2 / var + torch.log(var)).sum(-1)
        r = torch.softmax(lp + torch.log(self.weights)[None], dim=1)  # (n, K)
        post = self.means[None] + a3 * self.stds[None] ** 2 / var * (xc - a3 * self.means[None])
        return (r[..., None] * post).sum(1)

    def model(self, process, kind: str = "x0", dtype=None):
        """A model ``f(x, t, **cond)`` that returns the exact prediction of kind ``kind``."""
        check_kind(kind)

        def f(x, t, **cond):
            x0 = self.x0_mean(process, x, t, **cond)
            x64 = x.to(torch.float64)
            c64 = {k: v.to(torch.float64) if torch.is_tensor(v) else v for k, v in cond.items()}
            out = convert(x0, "x0", kind, process, x64, t.to(torch.float64) if torch.is_tensor(t) else t, **c64)
            return out.to(dtype or x.dtype)

        return f

    def score(self, process, x, t, **cond):
        x0 = self.x0_mean(process, x, t, **cond)
        x64 = as_tensor(x, dtype=torch.float64)
        return convert(x0, "x0", "score", process, x64, t, **cond)


class Gaussian(GaussianMixture):
    """N(mean, diag(std^2)): its probability-flow ODE has a closed-form solution."""

    def __init__(self, mean, std):
        mean = as_tensor(mean, "mean", dtype=torch.float64).reshape(1, -1)
        super().__init__(torch.ones(1, dtype=torch.float64), mean, as_tensor(std, "std", dtype=torch.float64).reshape(1, -1).expand_as(mean))

    def flow(self, process, x, t_from, t_to, **cond):
        """Exact probability-flow ODE map from time ``t_from`` to ``t_to`` (either direction)."""
        x, a1, s1, o1 = self._ats(process, x, t_from, cond)
        _, a2, s2, o2 = self._ats(process, x, t_to, cond)
        m, sd = self.means[0], self.stds[0]
        z = (x - o1 - a1 * m) / torch.sqrt(a1**2 * sd**2 + s1**2)
        return a2 * m + o2 + torch.sqrt(a2**2 * sd**2 + s2**2) * z
