"""Denoising score matching for linear Gaussian and mean-reverting processes (objective ``"dsm"``).

* Training times: EDM's log-normal noise levels (``ln sigma ~ N(P_mean, P_std^2)``, -1.2 and
  1.2) for processes with EDM preconditioning, uniform in ``[t_min, t_max]`` otherwise.
* The prediction is regressed on its target (``x0`` -> x_0, ``eps`` -> the noise,
  ``v`` -> alpha eps - sigma x_0, ``score`` -> -eps / sigma) with weight ``lambda(t)``:
  EDM's ``(sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` with preconditioning, ``sigma^2``
  for the score (so it matches eps matching), 1 otherwise. The loss is the mean over the
  state's dimensions of the weighted squared error, averaged over the batch.
* A mean-reverting process (OU-VE, IR-SDE) receives its conditioning signal ``y`` per sample
  (``proc_cond``) when the noisy state is drawn, and the network receives it as a condition:
  SGMSE+'s objective. ``x0`` is then the clean signal, ``eps`` the noise around the mean
  ``y + (x0 - y) alpha(t)``.
"""
from __future__ import annotations

import torch

from .._validate import batch_time
from .base import Objective, register

P_MEAN, P_STD = -1.2, 1.2

__all__ = ["DSM", "sample_time", "draw_training_batch", "dsm_loss", "target_and_weight", "P_MEAN", "P_STD"]


def sample_time(process, n: int, generator: torch.Generator | None = None, dtype=torch.float32, device=None,
                precondition: str | None = None) -> torch.Tensor:
    """Training times ``(n,)``: log-normal sigma for EDM preconditioning, else uniform in [t_min, t_max]."""
    if precondition == "edm":
        z = torch.randn(n, generator=generator, dtype=dtype, device=device)
        return torch.exp(P_MEAN + P_STD * z)
    u = torch.rand(n, generator=generator, dtype=dtype, device=device)
    return process.t_min + (process.t_max - process.t_min) * u


def draw_training_batch(process, x0: torch.Tensor, generator: torch.Generator | None, precondition: str | None,
                        **proc_cond) -> dict:
    """All the random draws of one training batch: ``t``, ``x_t``, ``noise`` (row-sliceable)."""
    t = sample_time(process, x0.shape[0], generator, x0.dtype, x0.device, precondition)
    m = process.marginal(x0, t, generator=generator, **proc_cond)
    return {"x0": x0, "t": t, "x_t": m.x_t, "noise": m.noise}


def target_and_weight(process, prediction: str, precondition, x0, noise, t):
    tb = batch_time(t, x0)
    a, s = process.alpha(tb), process.sigma(tb)
    if prediction == "x0":
        target = x0
    elif prediction == "eps":
        target = noise
    elif prediction == "v":
        target = a * noise - s * x0
    else:
        target = -noise / s
    if precondition == "edm":
        w = process.loss_weight(t)
    elif prediction == "score":
        w = (s**2).reshape(-1)
    else:
        w = torch.ones_like(t)
    return target, w


def dsm_loss(denoiser, batch: dict, cond: dict | None = None, autocast: torch.dtype | None = None,
             reduce: bool = True) -> torch.Tensor:
    """Weighted denoising loss on a batch from :func:`draw_training_batch` (per-sample if not ``reduce``)."""
    x0, t, x_t, noise = batch["x0"], batch["t"], batch["x_t"], batch["noise"]
    out = Objective._call(denoiser, x_t, t, cond, autocast).float()
    target, w = target_and_weight(denoiser.process, denoiser.prediction, denoiser.precondition, x0, noise, t)
    err = (out - target.float()) ** 2
    per = w.float() * err.reshape(err.shape[0], -1).mean(1)
    return per.mean() if reduce else per


@register("dsm")
class DSM(Objective):
    """Denoising score matching (module docstring); trains x0 / eps / score / v."""

    predictions = ("x0", "eps", "score", "v")

    def draw(self, x0, generator, **proc_cond):
        return draw_training_batch(self.process, x0, generator, self.precondition, **proc_cond)

    def loss(self, denoiser, batch, cond=None, autocast=None, reduce=True):
        return dsm_loss(denoiser, batch, cond, autocast, reduce)
