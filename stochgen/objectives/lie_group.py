"""Training of the Lie-group families: ``"lie-dsm"`` (SE3Diffusion) and ``"lie-flow-matching"`` (SE3Interpolation).

States are poses ``(B, 4, 4)`` or products of frames ``(B, *frames, 4, 4)``; the network returns
one 6-vector per frame ``(B, *frames, 6)``, translation part first, rotation part last.

``"lie-dsm"`` (prediction ``"tangent_score"``): denoising score matching on SO(3) x R^3
(FrameDiff, Yim et al. 2023). Times uniform in ``[t_min, t_max]``; ``x_t`` from the exact
marginal. The translation part regresses ``trans_score = -eps / sigma`` with weight ``sigma^2``
(eps matching); the rotation part regresses the IGSO(3) score ``rot_score`` (body frame at
``x_t``) with weight ``1 / rot_score_scale(t)^2``, its expected squared norm. The loss of a
sample is the mean over its frames of (mean squared weighted error of the 3 translation
components + that of the 3 rotation components).

``"lie-flow-matching"`` (prediction ``"velocity"``): geodesic flow matching. Times uniform in
``[t_min, t_max]``; the network regresses the exact body-frame path velocity
``marginal(...).velocity = x_t^{-1} dx_t/dt``; the loss is its mean squared error over frames
and the 6 components.

The default network of both is :class:`stochgen.nets.pose.PoseMLP`; for ``"lie-dsm"`` it scales
its output to the score's size (``score_process``), so its raw output regresses targets of
order one. :func:`rot_score_scale_fn` is the tabulated ``rot_score_scale`` both use (the
quadrature behind ``process.rot_score_scale`` costs ~5 ms per time).
"""
from __future__ import annotations

import math
import threading

import torch

from ..spaces import igso3
from .base import Objective, flat_cond_sizes, register
from .dsm import sample_time

__all__ = ["LieDSM", "LieFlowMatching", "rot_score_scale_fn"]

_TABLE_NODES = 96
_TABLES: dict = {}
_LOCK = threading.Lock()


def _table(lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(log sigma nodes, log score_norm) on ``_TABLE_NODES`` log-spaced concentrations in ``[lo, hi]``."""
    key = (round(lo, 12), round(hi, 12))
    with _LOCK:
        if key not in _TABLES:
            if hi <= lo * (1 + 1e-9):
                hi = lo * 1.001
            ls = torch.linspace(math.log(lo), math.log(hi), _TABLE_NODES, dtype=torch.float64)
            _TABLES[key] = (ls, torch.log(igso3.score_norm(torch.exp(ls))))
        return _TABLES[key]


def rot_score_scale_fn(process):
    """``t -> process.rot_score_scale(t)`` from a table: linear in ``log sigma`` of ``log score_norm``
    on 96 nodes between ``rot_sigma(t_lo)`` and ``rot_sigma(t_max)`` (relative error < 1e-3)."""
    lo = float(process.rot_sigma(torch.tensor(float(process.t_lo), dtype=torch.float64)))
    hi = float(process.rot_sigma(torch.tensor(float(process.t_max), dtype=torch.float64)))
    nodes, values = _table(lo, hi)
    step = float(nodes[1] - nodes[0])

    def scale(t) -> torch.Tensor:
        t = torch.as_tensor(t)
        s = process.rot_sigma(t.to(torch.float64))
        pos = ((torch.log(s) - nodes[0]) / step).clamp(0.0, _TABLE_NODES - 1.0)
        i = pos.floor().long().clamp(max=_TABLE_NODES - 2)
        w = pos - i
        v = values.to(s.device)
        return torch.exp(v[i] + w * (v[i + 1] - v[i]))

    return scale


def _check_out(out, x_t, what: str) -> torch.Tensor:
    want = tuple(x_t.shape[:-2]) + (6,)
    if not torch.is_tensor(out) or tuple(out.shape) != want:
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(f"the network returned {got} for poses of shape {tuple(x_t.shape)}; a {what} has one "
                         f"6-vector per pose, shape {want}")
    return out.float()


def _per_sample(err: torch.Tensor) -> torch.Tensor:
    """Mean of a per-pose error ``(B, *frames)`` over the frames: ``(B,)``."""
    return err.reshape(err.shape[0], -1).mean(1)


class _PoseObjective(Objective):
    """What the two Lie-group objectives share: uniform times, the pose network."""

    target_name = "?"

    def _times(self, x0, generator):
        if not torch.is_tensor(x0) or x0.dim() < 3 or tuple(x0.shape[-2:]) != (4, 4):
            shape = tuple(x0.shape) if torch.is_tensor(x0) else type(x0).__name__
            raise ValueError(f"{type(self.process).__name__} trains on poses (B, 4, 4) or (B, *frames, 4, 4), "
                             f"got {shape}")
        return sample_time(self.process, x0.shape[0], generator, x0.dtype, x0.device)

    def _score_process(self):
        return None

    def default_network(self, example, num_classes, cond, settings):
        from ..nets.pose import PoseMLP

        if not torch.is_tensor(example) or example.dim() < 3 or tuple(example.shape[-2:]) != (4, 4):
            shape = tuple(example.shape) if torch.is_tensor(example) else type(example).__name__
            raise ValueError(f"the default network for {type(self.process).__name__} reads poses (B, 4, 4) or "
                             f"(B, *frames, 4, 4); got {shape} (pass network=)")
        return PoseMLP(frames=list(example.shape[1:-2]) or None, hidden=int(settings.get("hidden", 128)),
                       depth=int(settings.get("depth", 3)), num_classes=num_classes,
                       cond_inputs=flat_cond_sizes(cond),
                       trans_scale=float(getattr(self.process, "trans_scale", 1.0)),
                       score_process=self._score_process())


@register("lie-dsm")
class LieDSM(_PoseObjective):
    """IGSO(3) + R^3 denoising score matching (module docstring); trains ``tangent_score``."""

    predictions = ("tangent_score",)

    def __init__(self, process, prediction, precondition=None, **options):
        super().__init__(process, prediction, precondition, **options)
        self._rot_scale = rot_score_scale_fn(process)

    def _score_process(self):
        return self.process.spec()

    def draw(self, x0, generator, **proc_cond):
        return self.draw_at(x0, self._times(x0, generator), generator, **proc_cond)

    def draw_at(self, x0, t, generator, **proc_cond):
        """The batch of :meth:`draw` at given times ``t`` (``(B,)``; a composite state's shared clock)."""
        m = self.process.marginal(x0, t, generator=generator, **proc_cond)
        ex = m.extra
        return {"t": t, "x_t": m.x_t, "trans_score": ex["trans_score"], "rot_score": ex["rot_score"],
                "trans_sigma": ex["trans_sigma"], "rot_scale": self._rot_scale(t).to(x0.dtype)}

    def loss(self, denoiser, batch, cond=None, autocast=None, reduce=True):
        x_t, t = batch["x_t"], batch["t"]
        out = _check_out(self._call(denoiser, x_t, t, cond, autocast), x_t, "tangent score")
        sd = batch["trans_sigma"].float()[..., None]
        rs = batch["rot_scale"].float().reshape((-1,) + (1,) * (out.dim() - 1))
        trans = ((sd * (out[..., :3] - batch["trans_score"].float())) ** 2).mean(-1)
        rot = (((out[..., 3:] - batch["rot_score"].float()) / rs) ** 2).mean(-1)
        per = _per_sample(trans + rot)
        return per.mean() if reduce else per


@register("lie-flow-matching")
class LieFlowMatching(_PoseObjective):
    """Geodesic flow matching on SE(3) (module docstring); trains the Lie-algebra ``velocity``."""

    predictions = ("velocity",)

    def draw(self, x0, generator, **proc_cond):
        return self.draw_at(x0, self._times(x0, generator), generator, **proc_cond)

    def draw_at(self, x0, t, generator, **proc_cond):
        """The batch of :meth:`draw` at given times ``t`` (``(B,)``; a composite state's shared clock)."""
        m = self.process.marginal(x0, t, generator=generator, **proc_cond)
        return {"t": t, "x_t": m.x_t, "velocity": m.velocity}

    def loss(self, denoiser, batch, cond=None, autocast=None, reduce=True):
        x_t, t = batch["x_t"], batch["t"]
        out = _check_out(self._call(denoiser, x_t, t, cond, autocast), x_t, "Lie-algebra velocity")
        per = _per_sample(((out - batch["velocity"].float()) ** 2).mean(-1))
        return per.mean() if reduce else per
