"""The objective of composite states (``"composite"``): one weighted loss over named parts.

For ``process = Composite(parts={name: part}, weights={name: w}, predictions={name: kind})``:

* every part gets its own family's objective, ``objectives.build(part, kind)`` (``"dsm"`` for a
  linear Gaussian part, ``"discrete"`` for a jump part, ...);
* **one time for all parts.** The part objectives would draw their own times, so the composite
  draws ``t`` once per sample (uniform in ``[process.t_min, process.t_max]``) and hands it to
  every part: a part objective that defines ``draw_at(x0, t, generator, **cond) -> dict`` is
  asked for its batch at that ``t``; for one that does not, the batch is built here from the
  part's own marginal, ``{"x0", "t", "x_t", "noise"}`` (the layout of the ``"dsm"`` batches;
  ``noise`` only where the marginal has one). A part batch must hold ``"x_t"``, the noisy part
  that the network reads;
* the network is called **once**, on the dict of noisy parts ``{name: x_t}`` at the shared
  ``t``; it returns the dict of per-part predictions (prediction kind ``"parts"``);
* each part's loss is its own objective's ``loss``, computed on that part's prediction (a
  stand-in denoiser hands the already computed output to the part's ``loss``), and the
  composite loss is ``sum_k w_k loss_k`` (per sample; averaged over the batch when ``reduce``).

The batch of a draw is ``{"t": (N,), "parts": {name: part batch}}``: batch-first tensors in
nested dicts, so ``fit`` shards it by rows like any other.
"""
from __future__ import annotations

import torch
from torch import nn

from ..families import family_of
from .base import Objective, build, flat_cond_sizes, register, tree_rows

__all__ = ["CompositeObjective", "shared_time"]


def shared_time(process, n: int, generator: torch.Generator | None, dtype=torch.float32, device=None) -> torch.Tensor:
    """Training times ``(n,)`` shared by every part: uniform in ``[process.t_min, process.t_max]``."""
    u = torch.rand(n, generator=generator, dtype=dtype, device=device)
    return process.t_min + (process.t_max - process.t_min) * u


def _float_dtype(x: dict) -> torch.dtype:
    for v in x.values():
        if torch.is_tensor(v) and v.is_floating_point():
            return v.dtype
    return torch.get_default_dtype()


def _device(x: dict):
    for v in x.values():
        if torch.is_tensor(v):
            return v.device
    return None


class _Given(nn.Module):
    """A stand-in denoiser for one part: returns the prediction the composite network already made.

    Carries what part objectives read from a denoiser (``process``, ``prediction``, ``precondition``).
    """

    def __init__(self, out, process, prediction: str):
        super().__init__()
        self.out, self.process, self.prediction, self.precondition = out, process, prediction, None

    def forward(self, x, t, **cond):
        return self.out


@register("composite")
class CompositeObjective(Objective):
    """One weighted loss over the parts of a :class:`~stochgen.processes.Composite` (module docstring)."""

    predictions = ("parts",)

    def __init__(self, process, prediction: str = "parts", precondition: str | None = None, **options):
        super().__init__(process, prediction, precondition, **options)
        if precondition is not None:
            raise ValueError(f"a composite model takes no preconditioning (got {precondition!r}); its parts are "
                             "trained without it")
        self.part_objectives = {}
        for k, p in process.parts.items():
            try:
                self.part_objectives[k] = build(p, process.predictions[k])
            except ValueError as exc:
                raise ValueError(f"part {k!r} of the composite cannot be trained: {exc}") from None

    # --- draws ----------------------------------------------------------------------------
    def _draw_part(self, name, x0, t, generator, cond) -> dict:
        obj, part = self.part_objectives[name], self.process.parts[name]
        draw_at = getattr(obj, "draw_at", None)
        if callable(draw_at):
            batch = draw_at(x0, t, generator, **cond)
        else:
            m = part.marginal(x0, t, generator=generator, **cond)
            batch = {"x0": x0, "t": t, "x_t": m.x_t}
            if m.noise is not None:
                batch["noise"] = m.noise
        if not isinstance(batch, dict) or "x_t" not in batch:
            raise ValueError(f"the {obj.name!r} objective of part {name!r} drew a batch without 'x_t' (the noisy "
                             "part the network reads); a composite needs it")
        return batch

    def draw(self, x0, generator, **proc_cond) -> dict:
        x0 = self.process.check_states(x0, "x0")
        n = tree_rows(x0)
        t = shared_time(self.process, n, generator, _float_dtype(x0), _device(x0))
        parts = {}
        for k, p in self.process.parts.items():
            cond = {c: proc_cond[c] for c in p.cond_keys if c in proc_cond}
            parts[k] = self._draw_part(k, x0[k], t, generator, cond)
        return {"t": t, "parts": parts}

    # --- loss -----------------------------------------------------------------------------
    def predict(self, denoiser, batch: dict, cond: dict | None = None, autocast: torch.dtype | None = None) -> dict:
        """The network's dict of per-part predictions on the noisy parts of ``batch`` (one call)."""
        x_t = {k: batch["parts"][k]["x_t"] for k in self.process.parts}
        cond = cond or {}
        if autocast is not None:
            dev = _device(x_t)
            with torch.autocast(device_type=dev.type if dev is not None else "cpu", dtype=autocast):
                out = denoiser(x_t, batch["t"], **cond)
        else:
            out = denoiser(x_t, batch["t"], **cond)
        if not isinstance(out, dict):
            raise ValueError(f"a composite model returns a dict of per-part predictions {{part: tensor}}, got "
                             f"{type(out).__name__}")
        missing = [k for k in self.process.parts if k not in out]
        if missing:
            raise ValueError(f"the composite model returned no prediction for the part(s) {missing} "
                             f"(it returned {list(out)})")
        return out

    def part_losses(self, denoiser, batch: dict, cond: dict | None = None,
                    autocast: torch.dtype | None = None) -> dict:
        """``{part: per-sample loss (N,)}`` (unweighted), from one network call."""
        out = self.predict(denoiser, batch, cond, autocast)
        losses = {}
        for k, p in self.process.parts.items():
            given = _Given(out[k], p, self.process.predictions[k])
            per = self.part_objectives[k].loss(given, batch["parts"][k], cond, None, reduce=False)
            losses[k] = per.float().reshape(-1)
        return losses

    def loss(self, denoiser, batch, cond=None, autocast=None, reduce=True):
        losses = self.part_losses(denoiser, batch, cond, autocast)
        total = None
        for k, per in losses.items():
            w = self.process.weights[k]
            total = w * per if total is None else total + w * per
        return total.mean() if reduce else total

    # --- default network -------------------------------------------------------------------
    def default_network(self, example, num_classes, cond, settings) -> nn.Module:
        """:class:`~stochgen.nets.composite.CompositeNet` over the parts of ``example`` (module docstring there)."""
        from ..nets.composite import CompositeNet

        example = self.process.check_states(example, "the example state")
        parts = {}
        for k, p in self.process.parts.items():
            parts[k] = part_layout(p, self.process.predictions[k], example[k])
        return CompositeNet(parts, hidden=int(settings.get("hidden", 128)), depth=int(settings.get("depth", 3)),
                            num_classes=num_classes, cond_inputs=flat_cond_sizes(cond))


def part_layout(process, prediction: str, x: torch.Tensor) -> dict:
    """What :class:`~stochgen.nets.composite.CompositeNet` needs to know about one part.

    ``{"input": "tokens", "shape": event shape, "categories": K}`` for a jump part (integer states,
    ``K = process.num_categories``, the mask included) or ``{"input": "floats", "shape": event shape}``;
    and ``"output"``: the per-sample shape of the prediction (``shape + (S,)`` for logits / probs over
    the ``S = process.num_states`` data values, as the ``"discrete"`` objective expects;
    ``(..., space.dim)`` for tangent predictions of Lie-group parts; ``shape`` otherwise) and
    ``"probs"`` (a softmax output).
    """
    fam = family_of(process)
    shape = [int(v) for v in x.shape[1:]]
    if fam.has("jump"):  # reads every category (an absorbing chain's mask too), predicts the data values
        return {"input": "tokens", "shape": shape, "categories": int(process.num_categories),
                "output": shape + [int(process.num_states)], "probs": prediction == "probs"}
    if x.is_floating_point() is False:
        raise ValueError(f"the composite default network reads floating or token parts; got dtype {x.dtype}")
    out = shape
    if fam.has("lie-sde") or fam.has("lie-flow"):
        ev = len(getattr(process.space, "event_shape", None) or ())
        out = shape[: len(shape) - ev] + [int(process.space.dim)]
    return {"input": "floats", "shape": shape, "output": out, "probs": False}
