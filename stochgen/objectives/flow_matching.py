"""Flow matching for interpolants (objective ``"flow-matching"``, family INTERPOLANT).

For ``x_t = a(t) x_0 + b(t) x_1 + gamma(t) z`` with Gaussian ``x_1`` and ``z``
(:class:`stochgen.processes.Interpolant`) a model is trained to predict one of

* ``"velocity"`` (the default): the flow-matching velocity ``E[d x_t / dt | x_t]``
  (Lipman et al. 2023; Liu et al. 2023; Albergo & Vanden-Eijnden 2023). The regression
  target is ``a' x_0 + sigma' eps`` with ``eps = (b x_1 + gamma z) / sigma`` the combined
  noise and ``sigma = sqrt(b^2 + gamma^2)``. Without latent noise (``gamma = 0``) this *is*
  the path's own velocity ``marginal(...).velocity = a' x_0 + b' x_1``. With latent noise
  it is that velocity's conditional mean given ``(x_0, x_t)`` (the part of
  ``b' x_1 + gamma' z`` orthogonal to ``eps`` is independent of ``x_t`` and has mean zero):
  the same minimiser, a smaller variance, and finite where ``gamma'`` is not (the
  ``"sqrt"`` shape at the ends);
* ``"x0"``, ``"eps"``, ``"score"``, ``"v"``: the denoising targets of :mod:`.dsm`, with
  its weights (``sigma^2`` for the score, so that it matches eps matching; 1 otherwise).
  These are what the stochastic sampler ``si-euler`` needs besides the velocity when the
  interpolant has latent noise; every kind converts into every other through
  :mod:`stochgen.parameterization`.

Training times are uniform in ``[t_min, t_max]``, up to the prior end ``t = 1`` (``a = 0``),
where every target is finite (there the ``"x0"`` kind learns ``E[x_0]``, and the velocity of
the linear path ``x_1 - E[x_0]``).
The loss is the mean over the state's dimensions of the weighted squared error, averaged
over the batch (per sample with ``reduce=False``).
"""
from __future__ import annotations

import torch

from .._validate import batch_time
from .base import Objective, register
from .dsm import sample_time, target_and_weight

__all__ = ["FlowMatching", "velocity_target"]


def velocity_target(process, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The flow-matching regression target ``a'(t) x_0 + sigma'(t) eps`` (module docstring)."""
    tb = batch_time(t, x0)
    return process.dalpha(tb) * x0 + process.dsigma(tb) * noise


@register("flow-matching")
class FlowMatching(Objective):
    """Velocity (or denoiser) regression for interpolants; see the module docstring."""

    predictions = ("velocity", "x0", "eps", "score", "v")

    preconditionings = (None,)

    def draw(self, x0, generator, **proc_cond):
        t = sample_time(self.process, x0.shape[0], generator, x0.dtype, x0.device)
        m = self.process.marginal(x0, t, generator=generator, **proc_cond)
        return {"x0": x0, "t": t, "x_t": m.x_t, "noise": m.noise}

    def target_and_weight(self, batch: dict):
        x0, t, noise = batch["x0"], batch["t"], batch["noise"]
        if self.prediction == "velocity":
            return velocity_target(self.process, x0, noise, t), torch.ones_like(t)
        return target_and_weight(self.process, self.prediction, None, x0, noise, t)

    def loss(self, denoiser, batch, cond=None, autocast=None, reduce=True):
        out = self._call(denoiser, batch["x_t"], batch["t"], cond, autocast).float()
        target, w = self.target_and_weight(batch)
        err = (out - target.float()) ** 2
        per = w.float() * err.reshape(err.shape[0], -1).mean(1)
        return per.mean() if reduce else per
