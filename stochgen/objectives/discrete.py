"""Discrete diffusion: training jump processes (CTMCs) by denoising, objective ``"discrete"``.

The network predicts the denoising law ``p(x_0 | x_t)`` of every position over the ``S`` data
values (``process.num_states``; an absorbing chain's mask is no data value): ``"logits"``
(default) or ``"probs"``, shape ``(*x_t.shape, S)``. The samplers (``ctmc-euler``,
``tau-leaping``) turn it into reverse rates through ``process.reverse_rates``.

Training batch (``draw``): times ``t`` in ``[t_min, t_max]`` (``t_min`` floored at ``1e-5``),
by default low-discrepancy (``times="stratified"``: ``t_i = lo + (hi - lo) ((u + i / n) mod 1)``
with one uniform ``u`` per batch, MDLM's antithetic sampler; ``times="uniform"`` draws them
independently), and ``x_t ~ P(0, t)[x_0, .]`` from ``process.marginal``. All row-sliceable.

Losses (per sample: a sum over positions divided by their number, i.e. nats per position):

* ``loss="cross_entropy"`` (default):

  - **absorbing chain** (``process.mask_index`` set): MDLM's continuous-time ELBO,
    ``w(t) * sum_{i masked in x_t} -log p(x_0^i | x_t)`` with ``w(t) = -alpha'(t) / (1 - alpha(t))``,
    ``alpha(t) = exp(-B(t))`` the chance that a token is still unmasked at ``t`` (``B`` the
    integrated rate of ``process.schedule``). So ``w(t) = beta(t) / expm1(B(t))``: ``1 / t`` for the
    log-linear schedule. Unmasked positions carry no loss (their ``x_0`` is known).
  - **uniform and generic chains**: ``sum_i -log p(x_0^i | x_t)`` over every position with weight
    1 at every time. Cross-entropy is a proper scoring rule for every ``t``, so its minimiser is the
    exact posterior whatever the time weighting; weight 1 is a surrogate, not the ELBO.

* ``loss="score_entropy"``: the continuous-time ELBO of the reverse chain (Campbell et al.
  2022), i.e. SEDD's denoising score entropy (Lou et al. 2024) with the concrete score
  ``p_t(y) / p_t(x_t)`` taken from the x0 prediction
  (``s_y = sum_x0 p(x0 | x_t) q_t(y | x0) / q_t(x_t | x0)``, so the model stays an x0 model that
  every jump sampler reads). Per position, with the model's reverse rates ``R(x -> y)`` and the
  rates ``R*`` of the exact posterior given the true ``x_0`` (both from
  ``process.reverse_rates``)::

      sum_{y != x_t} R(x_t -> y) - R*(x_t -> y) + R*(x_t -> y) log(R*(x_t -> y) / R(x_t -> y))

  which is ``sum_y Q_t(y -> x_t) [s_y - r_y log s_y + r_y (log r_y - 1)]`` in SEDD's form. It is
  exact for any CTMC; for the absorbing chain it equals the MDLM loss above term by term.

``default_network`` (reading the labels and the floating conditions), chosen by the domain
setting ``token_network``: ``"transformer"`` -- a :class:`stochgen.nets.tokens.TokenTransformer`
(width 64, 2 blocks, MLP ratio 2 unless the settings give ``hidden`` / ``depth`` / ``mlp_ratio``);
``"mlp"`` -- a :class:`stochgen.nets.tokens.TokenMLP` over the one-hot sequence (hidden 128, 2 blocks);
``"auto"`` (default) -- the MLP while ``length * num_categories <= 1024`` (short sequences of few
values, where it learns several times faster per CPU second), else the transformer.
"""
from __future__ import annotations

import math

import torch

from ..parameterization import register_converter
from ..nets.tokens import TokenMLP, TokenTransformer
from .base import Objective, flat_cond_sizes, register

__all__ = ["DiscreteDiffusion", "LOSSES", "TIMES", "sample_times", "mdlm_weight"]

LOSSES = ("cross_entropy", "score_entropy")
TIMES = ("stratified", "uniform")
_T_FLOOR = 1e-5  # reverse rates and the MDLM weight are singular at t = 0
_MLP_MAX_FEATURES = 1024  # default network: a TokenMLP up to this many one-hot input features


def _jump_convert(out, kind, to, process, x, t, cond):
    """Conversions of the jump family beyond logits -> probs (which ``convert`` does itself)."""
    if kind == "probs" and to == "logits":
        return torch.log(out.clamp_min(torch.finfo(out.dtype).tiny))
    raise ValueError(f"a {kind!r} prediction cannot be converted to {to!r} for {type(process).__name__} "
                     f"(a jump process's models predict 'logits' or 'probs')")


register_converter("jump", _jump_convert)


def sample_times(process, n: int, generator: torch.Generator | None = None, kind: str = "stratified",
                 dtype=None, device=None) -> torch.Tensor:
    """Training times ``(n,)`` in ``[max(t_min, 1e-5), t_max]`` (``kind``: ``"stratified"`` or ``"uniform"``)."""
    if kind not in TIMES:
        raise ValueError(f"times must be one of {', '.join(map(repr, TIMES))}, got {kind!r}")
    dtype = dtype or torch.get_default_dtype()
    lo, hi = max(float(process.t_min), _T_FLOOR), float(process.t_max)
    if kind == "stratified":
        u = torch.rand(1, generator=generator, dtype=torch.float64)
        u = torch.remainder(u + torch.arange(n, dtype=torch.float64) / max(n, 1), 1.0)
    else:
        u = torch.rand(n, generator=generator, dtype=torch.float64)
    return (lo + (hi - lo) * u).to(dtype=dtype, device=device)


def mdlm_weight(process, t: torch.Tensor) -> torch.Tensor:
    """``-alpha'(t) / (1 - alpha(t)) = beta(t) / expm1(B(t))`` with ``alpha = exp(-B)`` (float64)."""
    t = t.double()
    return process.schedule.beta(t) / torch.expm1(process.schedule.integral(t))


@register("discrete")
class DiscreteDiffusion(Objective):
    """Masked / uniform discrete diffusion (module docstring); trains ``logits`` or ``probs``.

    Options: ``loss`` (``"cross_entropy"`` or ``"score_entropy"``), ``times``
    (``"stratified"`` or ``"uniform"``).
    """

    predictions = ("logits", "probs")

    def __init__(self, process, prediction: str = "logits", precondition: str | None = None,
                 loss: str = "cross_entropy", times: str = "stratified"):
        super().__init__(process, prediction, precondition)
        if precondition is not None:
            raise ValueError(f"the discrete objective has no preconditioning, got precondition={precondition!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
        if times not in TIMES:
            raise ValueError(f"times must be one of {', '.join(map(repr, TIMES))}, got {times!r}")
        self.loss_kind, self.times = loss, times

    # --- batch ---------------------------------------------------------------------------------
    def draw(self, x0, generator, **proc_cond):
        x0 = self.process.space.check(x0, "x0").long()
        t = sample_times(self.process, x0.shape[0], generator, self.times, device=x0.device)
        x_t = self.process.marginal(x0, t, generator=generator).x_t
        return {"x0": x0, "t": t, "x_t": x_t}

    # --- loss ------------------------------------------------------------------------------------
    def _log_probs(self, out: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        S = self.process.num_states
        if not torch.is_tensor(out) or tuple(out.shape) != tuple(x_t.shape) + (S,):
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(f"a {type(self.process).__name__} model predicts {self.prediction} over the "
                             f"{S} data values: shape {tuple(x_t.shape) + (S,)}, got {got}")
        out = out.float()
        if self.prediction == "logits":
            return torch.log_softmax(out, dim=-1)
        return torch.log(out.clamp_min(torch.finfo(out.dtype).tiny))

    def loss(self, denoiser, batch, cond=None, autocast=None, reduce=True):
        x0, t, x_t = batch["x0"], batch["t"], batch["x_t"]
        logp = self._log_probs(self._call(denoiser, x_t, t, cond, autocast), x_t)
        if self.loss_kind == "score_entropy":
            per_pos = self._score_entropy(logp, x0, x_t, t)
        else:
            nll = -logp.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
            M = self.process.mask_index
            if M is not None:
                w = mdlm_weight(self.process, t).float().reshape((-1,) + (1,) * (x_t.dim() - 1))
                per_pos = w * nll * (x_t == M)
            else:
                per_pos = nll
        per = per_pos.reshape(per_pos.shape[0], -1).mean(1)
        return per.mean() if reduce else per

    def _score_entropy(self, logp, x0, x_t, t):
        proc, S = self.process, self.process.num_states
        p = logp.exp()
        R = proc.reverse_rates(x_t, t, p)
        target = torch.nn.functional.one_hot(x0, S).to(p.dtype)
        with torch.no_grad():
            R_star = proc.reverse_rates(x_t, t, target)
        off = torch.ones_like(R, dtype=torch.bool).scatter(-1, x_t.unsqueeze(-1), False)
        R = torch.where(off, R, torch.zeros_like(R)).clamp_min(0.0)
        R_star = torch.where(off, R_star, torch.zeros_like(R_star)).clamp_min(0.0)
        tiny = torch.finfo(R.dtype).tiny
        pos = R_star > 0
        log_ratio = torch.where(pos, torch.log(R_star.clamp_min(tiny)) - torch.log(R.clamp_min(tiny)),
                                torch.zeros_like(R))
        return (R - R_star + R_star * log_ratio).sum(-1)

    # --- network ---------------------------------------------------------------------------------
    def default_network(self, example, num_classes, cond, settings):
        if not torch.is_tensor(example) or example.dim() < 2:
            shape = tuple(example.shape) if torch.is_tensor(example) else type(example).__name__
            raise ValueError(f"the default network for {type(self.process).__name__} takes integer tokens "
                             f"(B, L) or (B, *event_shape); got {shape} (pass network=)")
        length = math.prod(example.shape[1:])
        kind = settings.get("token_network", "auto")
        if kind == "auto":  # a one-hot MLP is the cheaper learner for short sequences of few values
            kind = "mlp" if length * self.process.num_categories <= _MLP_MAX_FEATURES else "transformer"
        common = dict(num_tokens=self.process.num_categories, num_outputs=self.process.num_states,
                      length=length, num_classes=num_classes, cond_inputs=flat_cond_sizes(cond),
                      output="probs" if self.prediction == "probs" else "logits")
        if kind == "transformer":
            return TokenTransformer(width=int(settings.get("hidden", 64)), depth=int(settings.get("depth", 2)),
                                    mlp_ratio=float(settings.get("mlp_ratio", 2.0)), **common)
        if kind == "mlp":
            return TokenMLP(hidden=int(settings.get("hidden", 128)), depth=int(settings.get("depth", 2)), **common)
        raise ValueError(f"the domain setting token_network must be 'auto', 'transformer' or 'mlp', got {kind!r}")
