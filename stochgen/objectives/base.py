"""The training side of a process family: the :class:`Objective` protocol and the :class:`Denoiser`.

An objective is built for one model (``Objective(process, prediction, precondition)``) and
answers three questions for ``stochgen.fit``:

* ``draw(x0, generator, **proc_cond) -> dict``: every random draw of one training batch
  (times, noisy states, targets ...). Every value is a tensor -- or a dict of them, for
  composite states -- with the batch first, so ``fit`` can shard the global batch over
  data-parallel ranks by slicing rows, and resuming reproduces the draws exactly.
* ``loss(denoiser, batch, cond, autocast=None, reduce=True)``: the weighted loss of the
  model's prediction on such a batch (per sample when ``reduce`` is false).
* ``default_network(example, num_classes, cond, settings)``: a small network that fits
  the family's states and prediction (what the base domain uses when none is given).

Each family names its objective (``family.objective``, :mod:`stochgen.families`); the
module that implements it registers it here with :func:`register`.
"""
from __future__ import annotations

import importlib

import torch
from torch import nn

from .._validate import batch_time
from ..families import check_prediction, family_of
from ..parameterization import check_kind

__all__ = ["Objective", "Denoiser", "register", "build", "names", "supports_preconditioning", "check_trainable",
           "tree_map", "tree_rows"]

#: objective name -> module under stochgen.objectives that registers it (imported on first use)
_MODULES = {"dsm": "dsm", "flow-matching": "flow_matching", "log-dsm": "log_space", "lie-dsm": "lie_group",
            "lie-flow-matching": "lie_group", "discrete": "discrete", "composite": "composite"}
_REGISTRY: dict[str, type] = {}


def register(name: str):
    """Class decorator: make an :class:`Objective` subclass the objective called ``name``."""
    def deco(cls):
        have = _REGISTRY.get(name)
        if have is not None and have is not cls:
            raise ValueError(f"objective {name!r} is registered twice ({have.__qualname__}, {cls.__qualname__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _lookup(name: str) -> type:
    if name not in _REGISTRY and name in _MODULES:
        try:
            importlib.import_module(f"{__package__}.{_MODULES[name]}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{_MODULES[name]}":
                raise
            raise ValueError(f"the {name!r} objective is not available in this installation") from exc
    if name not in _REGISTRY:
        raise ValueError(f"no objective named {name!r} is available; known: {', '.join(names())}")
    return _REGISTRY[name]


def names() -> list[str]:
    return sorted(set(_REGISTRY) | set(_MODULES))


def supports_preconditioning(process) -> bool:
    return callable(getattr(process, "precondition", None)) and callable(getattr(process, "loss_weight", None))


def check_trainable(process) -> None:
    """A clear error unless ``stochgen.fit`` can train ``process`` (its family has an objective)."""
    fam = family_of(process)
    _lookup(fam.objective)


def build(process, prediction: str, precondition: str | None = None, **options) -> "Objective":
    """The objective of ``process``'s family for a model that predicts ``prediction``."""
    fam = family_of(process)
    return _lookup(fam.objective)(process, prediction, precondition, **options)


def tree_map(fn, obj):
    """Apply ``fn`` to every tensor of a (nested) dict of tensors."""
    if isinstance(obj, dict):
        return {k: tree_map(fn, v) for k, v in obj.items()}
    return fn(obj) if torch.is_tensor(obj) else obj


def tree_rows(obj) -> int:
    """The batch size of a (nested) dict of batch-first tensors."""
    if isinstance(obj, dict):
        for v in obj.values():
            n = tree_rows(v)
            if n is not None:
                return n
        return None
    return int(obj.shape[0]) if torch.is_tensor(obj) and obj.dim() > 0 else None


class Objective:
    """Base class; see the module docstring. ``predictions``: the kinds this objective can train
    (``None``: every kind the family allows)."""

    name: str = "?"
    predictions: tuple | None = None
    #: the preconditionings this objective accepts (``None``: the network's output as is; ``"edm"``: EDM's)
    preconditionings: tuple = (None, "edm")

    def __init__(self, process, prediction: str, precondition: str | None = None, **options):
        if options:
            raise TypeError(f"objective {self.name!r} got unknown option(s): {', '.join(sorted(options))}")
        check_prediction(process, check_kind(prediction))
        if self.predictions is not None and prediction not in self.predictions:
            raise ValueError(f"the {self.name!r} objective trains predictions {', '.join(map(repr, self.predictions))}, "
                             f"not {prediction!r} (for {type(process).__name__})")
        if precondition not in self.preconditionings:
            raise ValueError(f"the {self.name} objective takes no preconditioning, got {precondition!r}")
        self.process, self.prediction, self.precondition = process, prediction, precondition

    def draw(self, x0, generator: torch.Generator | None, **proc_cond) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, denoiser, batch: dict, cond: dict | None = None, autocast: torch.dtype | None = None,
             reduce: bool = True) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def default_network(self, example, num_classes: int | None, cond: dict, settings: dict) -> nn.Module:
        """An MLP over flat states ``(B, d)`` reading the data's conditions (base-domain default)."""
        from .. import nets

        if not torch.is_tensor(example) or example.dim() != 2:
            shape = tuple(example.shape) if torch.is_tensor(example) else type(example).__name__
            raise ValueError(f"the base domain's default network for {type(self.process).__name__} is an MLP for "
                             f"states (B, d); got {shape} (pass network= or override default_network)")
        return nets.MLP(dim=int(example.shape[1]), hidden=int(settings.get("hidden", 128)),
                        depth=int(settings.get("depth", 3)), num_classes=num_classes,
                        cond_inputs=flat_cond_sizes(cond))

    # shared helper: run the denoiser under autocast
    @staticmethod
    def _call(denoiser, x, t, cond, autocast):
        cond = cond or {}
        if autocast is not None:
            dev = x.device.type if torch.is_tensor(x) else "cpu"
            with torch.autocast(device_type=dev, dtype=autocast):
                return denoiser(x, t, **cond)
        return denoiser(x, t, **cond)


def flat_cond_sizes(cond: dict) -> dict | None:
    """``{name: number of features per sample}`` of the floating conditions (labels excluded)."""
    out = {}
    for k, v in (cond or {}).items():
        if k == "label" or not torch.is_tensor(v) or not v.is_floating_point():
            continue
        out[k] = int(v[0].numel()) if v.dim() > 1 else 1
    return out or None


class Denoiser(nn.Module):
    """``Denoiser(net, process, prediction, precondition)(x, t, **cond)`` -> the ``prediction``.

    ``prediction`` must be a kind the process's family produces. ``precondition="edm"`` needs
    ``prediction="x0"`` and a process with ``precondition`` (``processes.EDM``): then it is
    Karras et al.'s ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)``; ``None`` feeds the
    process time straight to the network and returns its output.
    """

    def __init__(self, net: nn.Module, process, prediction: str = "x0", precondition: str | None = None):
        super().__init__()
        check_prediction(process, check_kind(prediction))
        if precondition not in (None, "edm"):
            raise ValueError(f"unknown preconditioning {precondition!r}; choose 'edm' or None")
        if precondition == "edm":
            if prediction != "x0":
                raise ValueError(f"EDM preconditioning makes an 'x0' prediction, not {prediction!r}")
            if not supports_preconditioning(process):
                raise ValueError(f"EDM preconditioning needs a process with precondition(); "
                                 f"{type(process).__name__} has none")
        self.net, self.process, self.prediction, self.precondition = net, process, prediction, precondition

    def forward(self, x, t, **cond):
        dev = x.device if torch.is_tensor(x) else None
        t = torch.as_tensor(t, device=dev)
        if t.dim() == 0:
            t = t.expand(tree_rows(x))
        if self.precondition is None:
            return self.net(x, t, **cond)
        sigma = t.to(x.dtype)
        c_skip, c_out, c_in, c_noise = self.process.precondition(sigma)
        c_skip, c_out, c_in = (batch_time(c, x) for c in (c_skip, c_out, c_in))
        f = self.net(c_in * x, c_noise, **cond)
        return c_skip * x + c_out * f.to(x.dtype)
