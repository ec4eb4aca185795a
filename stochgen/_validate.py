"""Input checks shared by every layer: clear errors instead of silent garbage."""
from __future__ import annotations

import math
from typing import Sequence

import torch


def as_tensor(x, name: str = "x", dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """Convert ``x`` to a floating tensor, naming ``name`` in any error."""
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            # build in the requested dtype directly: going through float32 would round 0.3 to 0.30000001
            t = torch.as_tensor(x, dtype=dtype) if dtype is not None and dtype.is_floating_point else torch.as_tensor(x)
        except Exception as exc:  # pragma: no cover - depends on the foreign type
            raise TypeError(f"{name} must be a tensor or array-like, got {type(x).__name__}") from exc
    if dtype is not None or device is not None:
        t = t.to(dtype=dtype or t.dtype, device=device or t.device)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype() if dtype is None else dtype)
    return t


def check_finite(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Raise ``ValueError`` if ``x`` holds NaN or infinity, saying how many."""
    if x.is_floating_point() or x.is_complex():
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            n = int(bad.sum())
            kind = "NaN" if bool(torch.isnan(x).any()) else "infinite"
            raise ValueError(f"{name} contains {n} {kind} value(s) (shape {tuple(x.shape)})")
    return x


def check_shape(x: torch.Tensor, tail: Sequence[int | None], name: str = "x") -> torch.Tensor:
    """Check that the trailing dimensions of ``x`` equal ``tail`` (``None`` = any size)."""
    tail = tuple(tail)
    if x.dim() < len(tail) or any(
        want is not None and have != want for have, want in zip(x.shape[x.dim() - len(tail):], tail)
    ):
        want = "(..., " + ", ".join("*" if w is None else str(w) for w in tail) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    return x


def check_batched(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    if x.dim() < 1:
        raise ValueError(f"{name} must have a leading batch dimension, got a scalar")
    return x


def check_time(t, lo: float, hi: float, like: torch.Tensor | None = None, name: str = "t") -> torch.Tensor:
    """Return ``t`` as a tensor (dtype/device of ``like``) after checking ``lo <= t <= hi``.

    A relative slack of 1e-6 is allowed at both ends so that grids built in
    float32 do not fail on round-off.
    """
    if like is not None:
        t = as_tensor(t, name, dtype=like.dtype if like.is_floating_point() else None, device=like.device)
    else:
        t = as_tensor(t, name)
    check_finite(t, name)
    slack_lo = 1e-6 * max(1.0, abs(lo))
    slack_hi = 1e-6 * max(1.0, abs(hi)) if math.isfinite(hi) else 0.0
    if bool((t < lo - slack_lo).any()) or bool((t > hi + slack_hi).any()):
        raise ValueError(
            f"{name} must lie in the process's time range [{lo:g}, {hi:g}], "
            f"got values in [{float(t.min()):g}, {float(t.max()):g}]"
        )
    return t


def batch_time(t: torch.Tensor, x: torch.Tensor, name: str = "t") -> torch.Tensor:
    """Shape a scalar or per-sample time ``t`` so that it broadcasts against ``x`` (batch first)."""
    if t.dim() == 0:
        return t.reshape((1,) * max(x.dim(), 1))
    if t.dim() == 1 and x.dim() >= 1 and t.shape[0] in (1, x.shape[0]):
        return t.reshape((t.shape[0],) + (1,) * (x.dim() - 1))
    if t.shape == x.shape:
        return t
    raise ValueError(
        f"{name} must be a scalar or have one entry per sample ({x.shape[0] if x.dim() else 1}), "
        f"got shape {tuple(t.shape)}"
    )


def sum_except_batch(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).sum(dim=1) if x.dim() > 1 else x


def broadcastable_to(shape, target) -> bool:
    """Whether an array of ``shape`` broadcasts to exactly ``target`` (without importing sympy)."""
    shape, target = tuple(shape), tuple(target)
    if len(shape) > len(target):
        return False
    return all(a in (1, b) for a, b in zip(shape[::-1], target[::-1]))


def build_from_spec(spec, registry: dict, what: str, known: Sequence[str], base: type | None = None):
    """``registry[spec["type"]](**spec["config"])`` with errors that name the problem.

    ``spec`` is ``{"type": name, "config": {...}, "module": "pkg.mod"}`` (``config`` and ``module``
    optional); ``what`` names the kind of object in the messages ("network", "process") and
    ``known`` lists valid types. When the type is not registered in this Python process and the
    spec names its ``module``, that module is imported and the class taken from it (it must be a
    subclass of ``base``), so a third-party class rebuilds in a fresh process; it is registered
    on the way.
    """
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"a {what} spec is a dict with 'type' and 'config', got {spec!r}")
    name = spec["type"]
    cls = registry.get(name) if name in known else None
    if cls is None and registry.get(name) is None and spec.get("module"):
        cls = import_class(spec["module"], name, what, base)
        registry[name] = cls
    if cls is None:
        raise ValueError(f"unknown {what} type {name!r}; known: {', '.join(known)}")
    config = spec.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"the config of a {name} spec must be a dict, got {type(config).__name__}")
    try:
        return cls(**config)
    except TypeError as exc:
        raise ValueError(f"bad config for {what} type {name!r}: {exc}") from exc


def import_class(module: str, qualname: str, what: str, base: type | None = None) -> type:
    """``module.qualname`` imported, with a clear error when the module is not installed."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except Exception as exc:
        raise ValueError(f"the {what} {qualname!r} lives in module {module!r}, which cannot be imported here "
                         f"({type(exc).__name__}: {exc}); install the package that provides it") from exc
    obj = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"module {module!r} has no {what} {qualname!r}")
    if not isinstance(obj, type) or (base is not None and not issubclass(obj, base)):
        raise ValueError(f"{module}.{qualname} is not a {what} class"
                         + (f" (a subclass of {base.__name__})" if base is not None else ""))
    return obj
