"""Denoising score matching for linear Gaussian processes, and the denoiser it trains.

* :func:`sample_time` draws training times: EDM's log-normal noise levels
  (``ln sigma ~ N(P_mean, P_std^2)``, -1.2 and 1.2) for processes with EDM
  preconditioning, uniform in ``[t_min, t_max]`` otherwise.
* :class:`Denoiser` wraps a raw network ``F`` and returns the declared prediction kind
  for ``(x, t, **cond)``. With EDM preconditioning it is Karras et al.'s
  ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` (an ``"x0"`` prediction);
  otherwise ``F(x, t)`` itself. Training, ``Model.denoise`` and the samplers all call it.
* :func:`dsm_loss` regresses the prediction on its target
  (``x0`` -> x_0, ``eps`` -> the noise, ``v`` -> alpha eps - sigma x_0,
  ``score`` -> -eps / sigma) with weight ``lambda(t)``: EDM's
  ``(sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` with preconditioning, ``sigma^2``
  for the score (so it matches eps matching), 1 otherwise. The loss is the mean over
  the state's dimensions of the weighted squared error, averaged over the batch.
"""
from __future__ import annotations

import torch
from torch import nn

from ._validate import batch_time
from .parameterization import check_kind

P_MEAN, P_STD = -1.2, 1.2

__all__ = ["Denoiser", "sample_time", "draw_training_batch", "dsm_loss", "supports_preconditioning",
           "P_MEAN", "P_STD"]


def supports_preconditioning(process) -> bool:
    return callable(getattr(process, "precondition", None)) and callable(getattr(process, "loss_weight", None))


def check_trainable(process) -> None:
    if not all(callable(getattr(process, name, None)) for name in ("alpha", "sigma", "marginal")):
        raise ValueError(f"stochgen.fit trains linear Gaussian processes (x_t = alpha x_0 + sigma eps); "
                         f"{type(process).__name__} is not one")


class Denoiser(nn.Module):
    """``Denoiser(net, process, prediction, precondition)(x, t, **cond)`` -> the ``prediction``.

    ``precondition="edm"`` needs ``prediction="x0"`` and a process with ``precondition``
    (``processes.EDM``); ``None`` feeds the process time straight to the network.
    """

    def __init__(self, net: nn.Module, process, prediction: str = "x0", precondition: str | None = None):
        super().__init__()
        check_kind(prediction)
        if precondition not in (None, "edm"):
            raise ValueError(f"unknown preconditioning {precondition!r}; choose 'edm' or None")
        if precondition == "edm":
            if prediction != "x0":
                raise ValueError(f"EDM preconditioning makes an 'x0' prediction, not {prediction!r}")
            if not supports_preconditioning(process):
                raise ValueError(f"EDM preconditioning needs a process with precondition(); "
                                 f"{type(process).__name__} has none")
        self.net, self.process, self.prediction, self.precondition = net, process, prediction, precondition

    def forward(self, x: torch.Tensor, t, **cond) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if self.precondition is None:
            return self.net(x, t, **cond)
        sigma = t.to(x.dtype)
        c_skip, c_out, c_in, c_noise = self.process.precondition(sigma)
        c_skip, c_out, c_in = (batch_time(c, x) for c in (c_skip, c_out, c_in))
        f = self.net(c_in * x, c_noise, **cond)
        return c_skip * x + c_out * f.to(x.dtype)


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


def dsm_loss(denoiser: Denoiser, batch: dict, cond: dict | None = None, autocast: torch.dtype | None = None,
             reduce: bool = True) -> torch.Tensor:
    """Weighted denoising loss on a batch from :func:`draw_training_batch` (per-sample if not ``reduce``)."""
    cond = cond or {}
    x0, t, x_t, noise = batch["x0"], batch["t"], batch["x_t"], batch["noise"]
    if autocast is not None:
        with torch.autocast(device_type=x_t.device.type, dtype=autocast):
            out = denoiser(x_t, t, **cond)
    else:
        out = denoiser(x_t, t, **cond)
    out = out.float()
    target, w = target_and_weight(denoiser.process, denoiser.prediction, denoiser.precondition, x0, noise, t)
    err = (out - target.float()) ** 2
    per = w.float() * err.reshape(err.shape[0], -1).mean(1)
    return per.mean() if reduce else per
