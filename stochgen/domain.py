"""Domains: the plug-in layer that turns real data into states of the core and back.

A domain subclasses :class:`Domain` and is found by name through :func:`domain`:
in-process registrations (:func:`register_domain`) first, then the entry-point group
``stochgen.domains`` (``[project.entry-points."stochgen.domains"] images =
"domains.images:ImagesDomain"``). The base domain (name ``"base"``) handles plain
batch-first float tensors of shape ``(N, d)`` with an MLP and the EDM process.

A domain is rebuilt from ``(name, settings)``: ``stochgen.domain(d.name, **d.settings)``
must give an equivalent domain, which is how checkpoints restore it. So settings are
JSON-serialisable keyword arguments and a domain keeps no other state that matters
for using a trained model.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

ENTRY_POINT_GROUP = "stochgen.domains"

__all__ = ["Domain", "DomainData", "domain", "register_domain", "names", "ENTRY_POINT_GROUP"]


@dataclass
class DomainData:
    """Encoded data: ``x`` (states, N first), optional integer ``labels`` ``(N,)``, named
    conditions ``cond`` and ``info``.

    ``x`` is a tensor, or for a composite state a dict of named parts (each N first).
    ``cond`` maps names to tensors of any shape ``(N, ...)``: conditioning data sliced with ``x``
    in every batch (and under data parallelism) and handed to the network -- and to the process
    where it uses one (OU-VE's ``y``). ``info`` may hold ``num_classes`` (otherwise
    ``labels.max() + 1``) and anything a domain wants to remember about where the data came from.
    """

    x: Any
    labels: torch.Tensor | None = None
    info: dict = field(default_factory=dict)
    cond: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self)
        if not isinstance(self.cond, dict):
            raise ValueError(f"DomainData.cond must be a dict of named tensors, got {type(self.cond).__name__}")
        for k, v in self.cond.items():
            if k == "label":
                raise ValueError("the condition name 'label' is reserved for DomainData.labels")
            if not torch.is_tensor(v):
                raise ValueError(f"condition {k!r} must be a tensor with the samples first, got {type(v).__name__}")
            if v.dim() == 0 or v.shape[0] != n:
                raise ValueError(f"condition {k!r} has shape {tuple(v.shape)}: it needs one entry per sample "
                                 f"({n} samples), i.e. shape ({n}, ...)")
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise ValueError(f"condition {k!r} holds NaN or infinite values")

    def __len__(self) -> int:
        x = self.x
        while isinstance(x, dict):
            if not x:
                raise ValueError("a composite state needs at least one part")
            x = next(iter(x.values()))
        return int(x.shape[0])

    @property
    def num_classes(self) -> int | None:
        if self.labels is None:
            return None
        n = self.info.get("num_classes")
        return int(n) if n is not None else int(self.labels.max()) + 1

    def row_hashes(self) -> torch.Tensor:
        """One 63-bit hash per sample of its state (all parts) and conditions, as int64 ``(N,)``.

        ``fit`` records the hashes of the training rows in the model, so held-out evaluation
        (``stochgen likelihood``) can skip samples the model was trained on.
        """
        import hashlib

        parts = [self.x[k] for k in sorted(self.x)] if isinstance(self.x, dict) else [self.x]
        parts += [self.cond[k] for k in sorted(self.cond)]
        rows = [p.detach().cpu().reshape(p.shape[0], -1).contiguous() for p in parts]
        rows = [(r.to(torch.float32) if r.is_floating_point() else r.to(torch.int64)).numpy() for r in rows]
        out = np.empty(len(self), dtype=np.int64)
        for i in range(len(self)):
            h = hashlib.blake2b(digest_size=8)
            for r in rows:
                h.update(r[i].tobytes())
            out[i] = int.from_bytes(h.digest(), "little") >> 1
        return torch.from_numpy(out)

    def subset(self, idx) -> "DomainData":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return DomainData(_rows(self.x, idx), None if self.labels is None else self.labels[idx], dict(self.info),
                          {k: v[idx] for k, v in self.cond.items()})


def _rows(x, idx):
    if isinstance(x, dict):
        return {k: _rows(v, idx) for k, v in x.items()}
    return x[idx]


class Domain:
    """Base class of every domain; also the domain of plain ``(N, d)`` float tensors (name ``"base"``).

    Subclasses override what differs: ``load`` (their file formats / named data sets),
    ``encode`` / ``decode`` (raw data <-> states), ``default_process``,
    ``default_network``, ``metrics``. Base-domain settings: ``sigma_data`` (EDM data
    scale, default 0.5), ``hidden`` / ``depth`` (MLP width / blocks, default 128 / 3).

    The base domain trains any built-in process (``stochgen.fit("base", data, process=P)``):
    the state layout comes from the process's space (integer tokens ``(N, L)`` for jump
    processes, poses ``(N, 4, 4)`` or ``(N, K, 4, 4)`` for Lie-group processes, positive floats
    for log-space, floats for the rest) and the default network from the process's family.

    Hooks the command line and ``fit`` call: ``load``, ``prepare`` (states checked against the
    process), ``default_process``, ``default_prediction_for``, ``default_network_for``,
    ``default_sampler_for``, ``cond_from_batch``, ``decode``, ``metrics`` (after training,
    on the validation split, and by ``stochgen metrics``), ``save_samples`` (``stochgen sample -o``).
    """

    name: str = "base"
    default_sampler: str = "heun"
    default_steps: int = 18
    #: the prediction a model of this domain makes; None: the family's rule (default_prediction_for)
    default_prediction: str | None = None
    #: number of dimensions of an encoded batch (batch included); None: any >= 2 (the process decides)
    state_ndim: int | None = None
    #: training settings ``stochgen.fit`` uses when the call leaves them out (``steps`` / ``epochs``,
    #: ``batch_size``, ``lr``, ``warmup``, ``lr_schedule``, ``lr_min``, ``ema``); empty: the core's defaults
    fit_defaults: dict = {}

    def __init__(self, **settings):
        try:
            json.dumps(settings)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{type(self).__name__} settings must be JSON-serialisable (checkpoints store them): "
                            f"{exc}") from exc
        self.settings: dict = dict(settings)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({args})"

    # --- data -----------------------------------------------------------------------------
    def load(self, data) -> DomainData:
        """Turn ``data`` into :class:`DomainData`.

        Accepts a tensor or array of raw data, a pair ``(data, labels)``, a
        :class:`DomainData` (returned as is), a ``torch.utils.data.Dataset`` whose items are
        ``x`` or ``(x, label)``, or a path to a ``.pt`` / ``.npy`` / ``.npz`` file holding
        such data (``.pt``: a tensor or a dict with ``x`` and optional ``labels``; ``.npz``:
        arrays ``x`` and optional ``labels``). Raw data go through :meth:`encode`.
        Problems raise ``ValueError`` naming them.
        """
        if isinstance(data, DomainData):
            return data
        labels, cond = None, {}
        if isinstance(data, (str, os.PathLike)):
            data, labels, cond = self._load_file(os.fspath(data))
        elif isinstance(data, dict):
            data, labels, cond = _split_dict(data, "the data dict")
        elif isinstance(data, tuple) and len(data) == 2:
            data, labels = data
        elif isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.Tensor):
            data, labels = _from_dataset(data)
        source = type(data).__name__
        if isinstance(data, dict):  # a composite state: named parts
            if not data:
                raise ValueError("a composite state needs at least one part")
            x = {}
            for k, v in data.items():
                if not isinstance(v, (torch.Tensor, np.ndarray)):
                    raise ValueError(f"part {k!r} of the state must be a tensor or array, got {type(v).__name__}")
                x[k] = self.check_states(self.encode(v), f"part {k!r}")
            ns = {k: v.shape[0] for k, v in x.items()}
            if len(set(ns.values())) != 1:
                raise ValueError(f"the parts of a composite state must have the same number of samples, got {ns}")
        elif not isinstance(data, (torch.Tensor, np.ndarray)):
            raise ValueError(f"{type(self).__name__} cannot load data of type {type(data).__name__}; give a tensor, "
                             "an array, (data, labels), a dict {'x': ..., 'labels': ..., <condition>: ...}, "
                             "a torch Dataset or a .pt/.npy/.npz path")
        else:
            x = self.check_states(self.encode(data))
        n = next(iter(x.values())).shape[0] if isinstance(x, dict) else x.shape[0]
        if labels is not None:
            labels = _check_labels(labels, n)
        return DomainData(x, labels, {"source": source}, _check_conds(cond, n))

    def _load_file(self, path: str):
        if not os.path.exists(path):
            raise ValueError(f"{type(self).__name__} does not know the data {path!r} (no such file, and not a "
                             "data set name this domain knows)")
        ext = os.path.splitext(path)[1].lower()
        if ext == ".pt":
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise ValueError(f"cannot read {path!r} as a torch file: {exc}") from exc
            if isinstance(obj, dict):
                return _split_dict(obj, repr(path))
            return obj, None, {}
        if ext == ".npy":
            try:
                return np.load(path, allow_pickle=False), None, {}
            except Exception as exc:
                raise ValueError(f"cannot read {path!r} as a .npy array: {exc}") from exc
        if ext == ".npz":
            try:
                with np.load(path, allow_pickle=False) as z:
                    return _split_dict({k: z[k] for k in z.files}, repr(path))
            except ValueError:
                raise
            except Exception as exc:
                raise ValueError(f"cannot read {path!r} as a .npz archive: {exc}") from exc
        raise ValueError(f"{type(self).__name__} cannot read {path!r}: unsupported file type {ext or '(none)'!r} "
                         "(use .pt, .npy or .npz)")

    def check_states(self, x, what: str = "data") -> torch.Tensor:
        """Check encoded states: a floating, finite, batch-first tensor with the expected number of dims."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{type(self).__name__}.encode must return a tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"states must be floating point, got dtype {x.dtype}")
        if x.dim() < 2:
            raise ValueError(f"{what} must be batch-first with at least 2 dims (N, ...), got shape {tuple(x.shape)}")
        if self.state_ndim is not None and x.dim() != self.state_ndim:
            raise ValueError(f"{type(self).__name__} expects data with {self.state_ndim} dims (N, d), got shape "
                             f"{tuple(x.shape)}")
        if x.shape[0] < 1:
            raise ValueError("the data set is empty")
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            n = int(bad.reshape(x.shape[0], -1).any(1).sum())
            raise ValueError(f"the data hold NaN or infinite values ({n} of {x.shape[0]} samples affected)")
        return x

    def encode(self, raw) -> torch.Tensor:
        """Raw data -> states (batch-first float tensor). Base: identity (arrays become float32 tensors)."""
        if isinstance(raw, np.ndarray):
            if raw.dtype == object:
                raise ValueError("cannot encode an object array; give a numeric array")
            raw = torch.from_numpy(np.ascontiguousarray(raw))
        if not isinstance(raw, torch.Tensor):
            raise ValueError(f"{type(self).__name__}.encode takes a tensor or array, got {type(raw).__name__}")
        if raw.is_complex() or raw.dtype == torch.bool:
            raise ValueError(f"cannot use data of dtype {raw.dtype}")
        if not raw.is_floating_point():
            raw = raw.to(torch.get_default_dtype())
        return raw

    def decode(self, x):
        """States -> raw data. Base: identity."""
        return x

    def prepare(self, data: DomainData, process) -> DomainData:
        """``data`` made ready for ``process``: states checked against (and cast to) the process's
        space -- integer tokens for jump processes, poses for Lie groups -- and the conditions the
        process needs (OU-VE's ``y``) present and of the right shape. Clear errors otherwise."""
        from .families import family_of

        composite = family_of(process).has("composite")
        if isinstance(data.x, dict) != composite:
            raise ValueError(f"the data hold a composite state (a dict of parts) but {type(process).__name__} is not "
                             "a composite process; use processes.Composite({part: process, ...})"
                             if isinstance(data.x, dict) else
                             f"{type(process).__name__} is a composite process: give the state as a dict of parts "
                             f"{{'x': {{part: tensor, ...}}}}")
        x = process.coerce_states(data.x)
        missing = [k for k in process.cond_keys if k not in data.cond]
        if missing:
            raise ValueError(f"{type(process).__name__} needs the condition(s) {missing} in the data: give "
                             f"{{'x': states, {missing[0]!r}: tensor}} (or DomainData(x, cond={{{missing[0]!r}: ...}}))")
        if process.cond_keys and not isinstance(x, dict):
            process.check_cond({k: data.cond[k] for k in process.cond_keys}, x)
        return DomainData(x, data.labels, dict(data.info), dict(data.cond))

    # --- model defaults -------------------------------------------------------------------
    def default_process(self):
        from . import processes

        return processes.EDM(sigma_data=float(self.settings.get("sigma_data", 0.5)))

    def default_prediction_for(self, process) -> str:
        """What a model of ``process`` predicts by default: the domain's ``default_prediction``
        where the family allows it, else ``"x0"`` with EDM preconditioning where the process has
        it, else the family's default (``"v"`` for a linear Gaussian process without
        preconditioning: an unpreconditioned ``x0`` network makes the score, and so the likelihood,
        blow up near the data end; see :mod:`stochgen.families`)."""
        from .families import family_of
        from .objectives import supports_preconditioning

        fam = family_of(process)
        if self.default_prediction is not None and self.default_prediction in fam.predictions:
            return self.default_prediction
        if fam.has("linear") and "x0" in fam.predictions and supports_preconditioning(process):
            return "x0"
        return fam.default_prediction

    def default_network_for(self, process, example, num_classes: int | None = None, cond: dict | None = None,
                            prediction: str | None = None) -> torch.nn.Module:
        """The network ``fit`` builds when none is given: the domain's own ``default_network`` where a
        subclass overrides it, else the one the process family's objective proposes (an MLP over
        flat states reading the data's conditions, a pose network for Lie groups, a token network
        for jump processes, ...)."""
        from .objectives import build

        if type(self).default_network is not Domain.default_network:
            return self.default_network(example, num_classes)
        obj = build(process, prediction or self.default_prediction_for(process))
        return obj.default_network(example, num_classes, dict(cond or {}), self.settings)

    def default_sampler_for(self, process) -> tuple[str, int]:
        """(sampler, steps) a model of ``process`` uses by default: the domain's where it applies."""
        from .families import family_of, samplers_for
        from .samplers import registry

        fam = family_of(process)
        if fam.has(registry.get(self.default_sampler).requires):
            return self.default_sampler, self.default_steps
        preferred = {"linear": "heun", "log-space": "gbm-euler", "lie-sde": "se3-euler", "lie-flow": "se3-flow",
                     "jump": "ctmc-euler", "composite": "composite", "interpolant": "heun", "flow": "ode"}
        ok = samplers_for(process)
        for trait, name in preferred.items():
            if fam.has(trait) and name in ok:
                return name, (100 if trait in ("log-space", "lie-sde", "composite") else self.default_steps if trait == "linear"
                              else 50)
        if not ok:
            raise ValueError(f"no sampler applies to {type(process).__name__}")
        return ok[0], 50

    def default_network(self, example: torch.Tensor, num_classes: int | None = None) -> torch.nn.Module:
        from . import nets

        if example.dim() != 2:
            raise ValueError(f"the base domain's default network is an MLP for states (B, d); got shape "
                             f"{tuple(example.shape)} (override default_network or pass network=)")
        return nets.MLP(dim=int(example.shape[1]), hidden=int(self.settings.get("hidden", 128)),
                        depth=int(self.settings.get("depth", 3)), num_classes=num_classes)

    def cond_from_batch(self, batch) -> tuple[torch.Tensor, dict]:
        """``batch = (x, labels_or_None)`` -> ``(x, cond)``; the labels go to cond key ``"label"``."""
        x, labels = batch
        return x, ({} if labels is None else {"label": labels})

    def metrics(self, model, data: DomainData) -> dict[str, float]:
        """The domain's own quality figures of ``model`` on ``data`` (called by ``fit(metrics_every=)``,
        ``stochgen train --val-split`` and ``stochgen metrics``). Base: none."""
        return {}

    # --- hooks of the command line ------------------------------------------------------------
    #: quantisation levels of the data (bits/dim in ``stochgen likelihood``); None: continuous data
    levels: int | None = None

    def clip_states(self, x):
        """Samples put back into the data's range before they are written (``stochgen sample``). Base: as is."""
        return x

    #: a domain with a shipped model shows it in ``stochgen demo`` by overriding :meth:`demo`
    def demo(self, out: str, quick: bool = False, seed: int = 0, device: str = "cpu",
             progress: bool = True) -> list[str] | None:
        """Show the domain's shipped model in seconds on embedded data: write files (a figure among
        them) into the folder ``out`` and return the lines to print. Base: None (nothing to show).
        Raise ImportError (naming the extra to install) when an optional package is missing."""
        return None

    def save_grid(self, x, path, nrow: int | None = None) -> str:
        """Draw samples into a PNG (``stochgen sample -o out.png``). Base: not an image domain."""
        raise ValueError(f"the {self.name} domain cannot draw a PNG; write the samples to a .pt or .npy file")


# --- helpers ----------------------------------------------------------------------------------

def _split_dict(obj: dict, where: str):
    """``{"x": states, "labels": ..., <condition>: ...}`` -> (x, labels, conditions)."""
    if "x" not in obj:
        raise ValueError(f"{where} holds a dict without an 'x' entry (the states); it has {', '.join(map(str, obj))}")
    cond = {k: v for k, v in obj.items() if k not in ("x", "labels")}
    return obj["x"], obj.get("labels"), cond


def _check_conds(cond: dict, n: int) -> dict:
    out = {}
    for k, v in cond.items():
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                raise ValueError(f"condition {k!r} is an object array; give a numeric array")
            v = torch.from_numpy(np.ascontiguousarray(v))
        if not torch.is_tensor(v):
            try:
                v = torch.as_tensor(v)
            except Exception as exc:
                raise ValueError(f"condition {k!r} must be a tensor or array, got {type(v).__name__}") from exc
        if v.is_floating_point() and v.dtype == torch.float64:
            v = v.to(torch.get_default_dtype())
        out[str(k)] = v
    return out



def _from_dataset(ds):
    try:
        n = len(ds)
    except TypeError as exc:
        raise ValueError("a Dataset without len() cannot be loaded; materialise it first") from exc
    if n == 0:
        raise ValueError("the data set is empty")
    xs, ys = [], []
    for i in range(n):
        item = ds[i]
        if isinstance(item, (tuple, list)):
            if len(item) != 2:
                raise ValueError(f"dataset items must be x or (x, label), got a {len(item)}-tuple")
            xs.append(torch.as_tensor(item[0]))
            ys.append(int(item[1]))
        else:
            xs.append(torch.as_tensor(item))
    if ys and len(ys) != len(xs):
        raise ValueError("either every dataset item has a label or none has")
    return torch.stack(xs), (torch.tensor(ys, dtype=torch.long) if ys else None)


def _check_labels(labels, n: int) -> torch.Tensor:
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    if labels.is_floating_point():
        if not bool((labels == labels.round()).all()):
            raise ValueError("labels must be integer class indices")
    elif labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    labels = labels.long().reshape(-1)
    if labels.shape[0] != n:
        raise ValueError(f"got {labels.shape[0]} labels for {n} samples")
    if bool((labels < 0).any()):
        raise ValueError("labels must be >= 0 (-1 is reserved for the null class of classifier-free guidance)")
    return labels


# --- registry ---------------------------------------------------------------------------------

_REGISTRY: dict[str, type] = {"base": Domain}


def register_domain(name: str, cls: type) -> type:
    """Register a :class:`Domain` subclass under ``name`` in this process (no packaging needed).

    Registering the same class again is a no-op; another class under a taken name is an error.
    """
    if not (isinstance(cls, type) and issubclass(cls, Domain)):
        raise TypeError(f"only Domain subclasses can be registered, got {cls!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a domain name is a non-empty string, got {name!r}")
    have = _REGISTRY.get(name)
    if have is not None and have is not cls:
        raise ValueError(f"a domain named {name!r} is already registered ({have.__module__}.{have.__qualname__})")
    _REGISTRY[name] = cls
    return cls


def _entry_points():
    from importlib.metadata import entry_points

    try:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # pragma: no cover - broken metadata should not break the registry
        return {}


def names() -> list[str]:
    """Every domain name :func:`domain` can resolve."""
    return sorted(set(_REGISTRY) | set(_entry_points()))


def domain(name: str, **settings) -> Domain:
    """The domain registered as ``name`` (in-process or entry point ``stochgen.domains``), built with ``settings``."""
    if isinstance(name, Domain):
        return name
    cls = _REGISTRY.get(name)
    if cls is None:
        ep = _entry_points().get(name)
        if ep is None:
            raise ValueError(f"unknown domain {name!r}; known domains: {', '.join(names())}")
        try:
            cls = ep.load()
        except Exception as exc:
            raise ValueError(f"the domain {name!r} is registered by {ep.value!r} but could not be imported: "
                             f"{exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Domain)):
            raise ValueError(f"the entry point {name!r} = {ep.value!r} is not a stochgen.Domain subclass")
    return cls(**settings)


def registered_name(dom: Domain) -> str:
    """The name under which ``type(dom)`` resolves (its ``name`` attribute when that resolves to it)."""
    cls = type(dom)
    if _REGISTRY.get(dom.name) is cls:
        return dom.name
    for n, c in _REGISTRY.items():
        if c is cls:
            return n
    return dom.name
