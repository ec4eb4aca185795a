"""``stochgen.Model``: a trained network with everything needed to use it, and ``stochgen.load``.

A model is a domain, a process, a network (plus its EMA copy), the prediction kind the
network's denoiser returns and its preconditioning. ``model.save(path)`` writes one
checkpoint whose spec rebuilds all of it through ``stochgen.domain(name, **settings)``,
``processes.from_spec`` and ``nets.build``, so ``stochgen.load(path)`` needs no script.
Training checkpoints written by ``stochgen.fit`` load the same way.
"""
from __future__ import annotations

import copy
import math
import os

import torch
from torch import nn

from . import checkpoint as _ckpt
from .objectives import Denoiser

SPEC_KIND = "stochgen.model"

__all__ = ["Model", "load", "SPEC_KIND"]


def _version() -> str:
    from . import __version__

    return __version__


class Model:
    """Use a trained model: ``denoise``, ``sample``, ``log_likelihood``, ``save``.

    Attributes: ``domain``, ``process``, ``net`` (trained weights), ``ema`` (the EMA copy or
    None), ``prediction``, ``precondition`` (``"edm"`` or None), ``spec``, ``history``
    (``{"loss": [...per step], "val": [[step, loss], ...]}`` after ``fit``).
    """

    def __init__(self, domain, process, net: nn.Module, prediction: str = "x0", precondition: str | None = None,
                 ema: nn.Module | None = None, ema_decay: float | None = None, state_shape=None,
                 num_classes: int | None = None, sampler: str | None = None, steps: int | None = None,
                 extra_spec: dict | None = None):
        self.domain, self.process, self.net, self.ema = domain, process, net, ema
        self.prediction, self.precondition = prediction, precondition
        self.ema_decay = ema_decay
        self.state_shape = _shape(state_shape)
        self.num_classes = num_classes
        self.sampler = sampler or domain.default_sampler
        self.steps = int(steps or domain.default_steps)
        self.extra_spec = dict(extra_spec or {})
        self.history: dict = {"loss": [], "val": []}
        #: int64 hashes of the training rows (DomainData.row_hashes), recorded by fit; None if unknown
        self.train_rows: torch.Tensor | None = None
        self._denoiser = Denoiser(self.weights, process, prediction, precondition)

    # --- pieces ---------------------------------------------------------------------------
    @property
    def weights(self) -> nn.Module:
        """The network used for inference: the EMA copy when there is one."""
        return self.ema if self.ema is not None else self.net

    @property
    def device(self) -> torch.device:
        return next(self.weights.parameters()).device

    def to(self, device) -> "Model":
        self.net.to(device)
        if self.ema is not None:
            self.ema.to(device)
        return self

    @property
    def spec(self) -> dict:
        from .domain import registered_name

        spec_fn = getattr(self.net, "spec", None)
        if not callable(spec_fn):
            raise TypeError(f"the network {type(self.net).__name__} has no spec(); a checkpoint can only hold networks "
                            "from stochgen.nets (or registered with stochgen.nets.register)")
        return {
            "kind": SPEC_KIND,
            "stochgen_version": _version(),
            "domain": {"name": registered_name(self.domain), "settings": dict(self.domain.settings),
                       "module": type(self.domain).__module__, "class": type(self.domain).__qualname__},
            "process": self.process.spec(),
            "net": spec_fn(),
            "prediction": self.prediction,
            "preconditioning": self.precondition,
            "ema_decay": self.ema_decay,
            "sampler": self.sampler,
            "steps": self.steps,
            "state_shape": _shape_json(self.state_shape),
            "num_classes": self.num_classes,
            **self.extra_spec,
        }

    def state_dicts(self) -> dict:
        out = {"net": self.net.state_dict()}
        if self.ema is not None:
            out["ema"] = self.ema.state_dict()
        if self.train_rows is not None:
            out["data"] = {"train_rows": self.train_rows.to(torch.int64).cpu()}
        return out

    def held_out(self, data):
        """``(rows of data the model was not trained on, number skipped)``; ``(data, None)`` when the
        model recorded no training rows (a model not made by ``fit``, or one of stochgen < 0.1.1)."""
        if self.train_rows is None:
            return data, None
        seen = torch.isin(data.row_hashes(), self.train_rows.cpu())
        return data.subset(torch.nonzero(~seen).reshape(-1)), int(seen.sum())

    # --- use ------------------------------------------------------------------------------
    def denoise(self, x: torch.Tensor, t, **cond) -> torch.Tensor:
        """The declared prediction at ``(x, t)`` (EMA weights, eval mode, EDM preconditioning if any)."""
        if self.weights.training:  # eval() walks every submodule: only when fit (or a user) left it training
            self.weights.eval()
        return self._denoiser(x, t, **cond)

    __call__ = denoise

    @property
    def conditions(self) -> dict:
        """The named conditions the model was trained with: ``{name: {"shape": [...], "dtype": ...}}``."""
        return dict(self.extra_spec.get("conditions") or {})

    def _cond(self, n: int | None, cond: dict | None) -> dict:
        """``cond`` checked against what the model was trained with (names, per-sample shapes), on its device."""
        cond = dict(cond or {})
        lab = cond.get("label")
        if lab is not None:
            lab = torch.as_tensor(lab, dtype=torch.long, device=self.device)
            if n is not None and lab.numel() not in (1, n):
                raise ValueError(f"label must be one class or one per sample ({n}), got {lab.numel()} labels")
            cond["label"] = lab.reshape(1).expand(n) if (lab.numel() == 1 and n is not None) else lab.reshape(-1)
        want = self.conditions
        missing = [k for k in want if cond.get(k) is None]
        if missing:
            shapes = ", ".join(f"{k}: (n, {', '.join(map(str, want[k]['shape']))})" for k in missing)
            raise ValueError(f"this model was trained with the condition(s) {missing}; pass cond={{...}} with {shapes}")
        for k, spec in want.items():
            v = torch.as_tensor(cond[k], device=self.device)
            per = tuple(spec["shape"])
            if tuple(v.shape) == per and n is not None:  # one condition for every sample
                v = v.unsqueeze(0).expand((n,) + per)
            if v.dim() == 0 or tuple(v.shape[1:]) != per or (n is not None and v.shape[0] != n):
                raise ValueError(f"condition {k!r} must have shape ({n if n is not None else 'n'}, "
                                 f"{', '.join(map(str, per))}) (one per sample) or {per}, got {tuple(v.shape)}")
            if v.is_floating_point():
                if not bool(torch.isfinite(v).all()):
                    raise ValueError(f"condition {k!r} holds NaN or infinite values")
                v = v.to(torch.get_default_dtype() if spec.get("dtype", "float32").startswith("float") else v.dtype)
            cond[k] = v
        return cond

    def sample(self, n: int, sampler: str | None = None, steps: int | None = None, cond: dict | None = None,
               generator: torch.Generator | None = None, guidance_scale=None, decode: bool = False,
               progress: bool = False, **options):
        """Draw ``n`` samples (states, or the domain's raw data with ``decode=True``).

        ``cond={"label": k}`` (an int or ``(n,)`` tensor) asks for a class;
        ``guidance_scale`` w applies classifier-free guidance (unconditional branch: label -1).
        ``options`` go to ``stochgen.sample`` (``x_T``, ``dtype``, ``grid``, ``return_info`` ...).
        """
        from .guidance import cfg
        from .sampling import sample as _sample

        pred = options.pop("prediction", None)
        if pred is not None and pred != self.prediction:
            raise ValueError(f"this model predicts {self.prediction!r}; prediction={pred!r} cannot change what its "
                             "network returns (leave it out)")
        if self.state_shape is None and "x_T" not in options:
            raise ValueError("this model does not know its state shape; pass x_T=... to stochgen.sample instead")
        if isinstance(n, bool) or not float(n).is_integer() or int(n) < 1:
            raise ValueError(f"n must be a positive whole number of samples, got {n!r}")
        n = int(n)
        if steps is not None and (isinstance(steps, bool) or not float(steps).is_integer() or int(steps) < 1):
            raise ValueError(f"steps must be a positive whole number, got {steps!r}")
        if self.state_shape is not None:
            _check_fits_in_memory(n, self.state_shape)
        cond = self._cond(n, cond)
        fn = self.denoise
        if guidance_scale is not None:
            uncond = self._null_cond(cond)
            if not uncond:
                if self.num_classes is not None:
                    raise ValueError("guidance_scale needs cond={'label': ...}")
                raise ValueError("classifier-free guidance needs a model trained with condition dropout (labels with "
                                 "cond_drop > 0, or cond_drop={name: p}) and cond={...} for those conditions")
            fn = cfg(self.denoise, guidance_scale, uncond=uncond)
        shape = None
        if "x_T" not in options:
            shape = ({k: (n,) + tuple(v) for k, v in self.state_shape.items()} if isinstance(self.state_shape, dict)
                     else (n,) + self.state_shape)
        steps = int(self.steps if steps is None else steps)
        out = _sample(self.process, fn, shape, sampler=sampler or self.sampler, steps=steps,
                      prediction=self.prediction, generator=generator, cond=cond, device=self.device,
                      progress=progress, **options)
        if decode:
            if isinstance(out, tuple):
                return self.domain.decode(out[0]), out[1]
            return self.domain.decode(out)
        return out

    def _null_cond(self, cond: dict) -> dict:
        """The unconditional branch of classifier-free guidance: label -1, dropped conditions zero."""
        uncond = {}
        if self.num_classes is not None and cond.get("label") is not None:
            uncond["label"] = -1
        for k in (self.extra_spec.get("cond_drop") or {}):
            if cond.get(k) is not None:
                uncond[k] = torch.zeros_like(cond[k])
        return uncond

    def _check_likelihood(self):
        from .families import describe, family_of

        if not family_of(self.process).likelihood:
            raise ValueError(f"the exact likelihood is not defined here: {describe(self.process)}")

    def log_likelihood(self, x, cond: dict | None = None, **kw) -> torch.Tensor:
        """log p(x) in nats per sample by the probability-flow ODE (``stochgen.log_likelihood``)."""
        from .likelihood import log_likelihood

        self._check_likelihood()
        x = torch.as_tensor(x)
        return log_likelihood(self.process, self.denoise, x, prediction=self.prediction,
                              cond=self._cond(int(x.shape[0]) if x.dim() else None, cond), **kw)

    def bits_per_dim(self, x, cond: dict | None = None, **kw) -> torch.Tensor:
        from .likelihood import bits_per_dim

        self._check_likelihood()
        x = torch.as_tensor(x)
        return bits_per_dim(self.process, self.denoise, x, prediction=self.prediction,
                            cond=self._cond(int(x.shape[0]) if x.dim() else None, cond), **kw)

    def for_sampling(self, steps: int | None = None) -> "Model":
        """A model holding only the network used for inference (the EMA copy when there is one,
        then as its plain network): what a domain ships, about half a training checkpoint's size.
        Shares that network with this model. ``steps``: its default sampler steps (default: this
        model's)."""
        out = Model(self.domain, self.process, self.weights, prediction=self.prediction,
                    precondition=self.precondition, ema=None, ema_decay=None, state_shape=self.state_shape,
                    num_classes=self.num_classes, sampler=self.sampler, steps=int(steps or self.steps),
                    extra_spec=self.extra_spec)
        out.history, out.train_rows = self.history, self.train_rows
        return out

    def save(self, path) -> str:
        """Write the model (weights, EMA, spec) to one checkpoint file, atomically."""
        return _ckpt.save(path, self.state_dicts(), self.spec)

    def __repr__(self) -> str:
        return (f"Model(domain={self.domain!r}, process={self.process!r}, net={type(self.net).__name__}, "
                f"prediction={self.prediction!r}, precondition={self.precondition!r}, ema={self.ema is not None})")


def _check_fits_in_memory(n: int, state_shape, copies: int = 4) -> None:
    """Refuse ``n`` samples whose states alone (a few working copies in float32) exceed this machine's memory."""
    shapes = state_shape.values() if isinstance(state_shape, dict) else [state_shape]
    per = sum(math.prod(s) for s in shapes) * 4 * copies
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux / macOS
        return
    if n * per > ram:
        raise ValueError(f"{n} samples need about {n * per / 2**30:.3g} GiB for their states alone, more than this "
                         f"machine's {ram / 2**30:.3g} GiB; draw fewer at a time")


def _shape(s):
    if s is None:
        return None
    if isinstance(s, dict):
        return {k: _shape(v) for k, v in s.items()}
    return tuple(int(v) for v in s)


def _shape_json(s):
    if s is None:
        return None
    if isinstance(s, dict):
        return {k: _shape_json(v) for k, v in s.items()}
    return list(s)


def _rebuild_domain(d: dict):
    """The domain of a checkpoint: by its registered name, else by importing the module it recorded."""
    from ._validate import import_class
    from .domain import Domain, names, register_domain
    from .domain import domain as _domain

    if d.get("name") not in names() and d.get("module") and d.get("class"):
        cls = import_class(d["module"], d["class"], "domain", Domain)
        if d["name"] not in names():
            register_domain(d["name"], cls)
    return _domain(d["name"], **(d.get("settings") or {}))


def model_from_spec(spec: dict, domain=None) -> Model:
    """Rebuild a :class:`Model` (fresh weights) from a checkpoint spec."""
    from . import nets, processes

    if not isinstance(spec, dict) or spec.get("kind") != SPEC_KIND:
        raise ValueError("the checkpoint is not a stochgen model (its spec has no kind "
                         f"{SPEC_KIND!r}; was it written by Model.save or stochgen.fit?)")
    for key in ("domain", "process", "net", "prediction"):
        if key not in spec:
            raise ValueError(f"the model spec lacks {key!r}")
    if domain is None:
        d = spec["domain"]
        domain = _rebuild_domain(d)
    process = processes.from_spec(spec["process"])
    net = nets.build(spec["net"])
    ema = copy.deepcopy(net).float() if spec.get("ema_decay") else None
    if ema is not None:
        ema.requires_grad_(False)
    known = {"kind", "stochgen_version", "domain", "process", "net", "prediction", "preconditioning", "ema_decay",
             "sampler", "steps", "state_shape", "num_classes"}
    return Model(domain, process, net, prediction=spec["prediction"], precondition=spec.get("preconditioning"),
                 ema=ema, ema_decay=spec.get("ema_decay"), state_shape=spec.get("state_shape"),
                 num_classes=spec.get("num_classes"), sampler=spec.get("sampler"), steps=spec.get("steps"),
                 extra_spec={k: v for k, v in spec.items() if k not in known})


def load(path, device="cpu") -> Model:
    """Load a model saved by ``Model.save`` or a training checkpoint of ``stochgen.fit``."""
    states, spec = _ckpt.load(path, device="cpu")
    try:
        model = model_from_spec(spec)
    except ValueError as exc:
        raise ValueError(f"cannot load {os.fspath(path)!r}: {exc}") from exc
    if "net" not in states:
        raise ValueError(f"{os.fspath(path)!r} holds no network weights (group 'net')")
    try:
        model.net.load_state_dict(states["net"])
        if model.ema is not None:
            model.ema.load_state_dict(states.get("ema", states["net"]))
    except RuntimeError as exc:
        raise ValueError(f"{os.fspath(path)!r}: the stored weights do not fit the network its spec describes: "
                         f"{exc}") from exc
    rows = (states.get("data") or {}).get("train_rows")
    model.train_rows = rows.to(torch.int64) if torch.is_tensor(rows) else None
    model.net.eval()
    return model.to(device)


_RESOLVED: dict = {}


def resolve_model(model=None, default=None, missing_hint: str = "") -> Model:
    """A :class:`Model` from what a domain's command or API was given.

    ``model``: a Model (returned as is) or a checkpoint path (loaded); ``None``: the file
    ``default`` (a domain's shipped weights). Files are loaded once and remembered by path and
    modification time, so repeated calls (one per file of a folder) do not reload them. A path
    that does not exist is a ``FileNotFoundError`` naming it (plus ``missing_hint`` for the
    default); anything else a ``TypeError``.
    """
    if model is not None and not isinstance(model, (str, os.PathLike)):
        if not hasattr(model, "process") or not hasattr(model, "denoise"):
            raise TypeError(f"model must be a stochgen.Model or a checkpoint path, got {type(model).__name__}")
        return model
    path = model if model is not None else default
    if path is None:
        raise FileNotFoundError(f"no model given{'; ' + missing_hint if missing_hint else ''}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        if model is None:
            raise FileNotFoundError(f"no shipped model at {path}{'; ' + missing_hint if missing_hint else ''}")
        raise FileNotFoundError(f"checkpoint not found: {path}")
    key = (os.path.abspath(path), os.stat(path).st_mtime_ns)
    if key not in _RESOLVED:
        if len(_RESOLVED) >= 4:
            _RESOLVED.pop(next(iter(_RESOLVED)))
        _RESOLVED[key] = load(path)
    return _RESOLVED[key]
