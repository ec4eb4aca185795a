"""Generic score networks ``net(x, t, **cond) -> tensor of x's shape``, rebuilt from a spec.

``net.spec()`` is ``{"type": class name, "config": constructor kwargs}`` (JSON-serialisable);
``build(spec)`` rebuilds the network (with fresh weights; load the state dict separately),
``names()`` lists the known types. Domains can add their own with :func:`register`.

Conditioning keys shared by all networks here: ``label`` (integer class indices; ``-1`` or
``None`` = the reserved null class for classifier-free guidance; needs ``num_classes``) and
``y`` (a conditioning signal concatenated to ``x``; needs ``cond_dim`` / ``cond_channels``).
A network ignores keys it does not read; ``net.cond_keys`` lists the ones it reads.
"""
from __future__ import annotations

from .._validate import build_from_spec

from .embedding import (FourierEmbedding, LabelEmbedding, ScoreNet, SinusoidalEmbedding, TimeEmbedding,
                        drop_labels)
from .mlp import MLP
from .unet import UNet, UNet1d

__all__ = ["ScoreNet", "MLP", "UNet", "UNet1d", "PoseMLP", "TokenTransformer", "TokenMLP", "CompositeNet",
           "SinusoidalEmbedding", "FourierEmbedding", "TimeEmbedding", "LabelEmbedding", "drop_labels", "build",
           "names", "register"]

_REGISTRY: dict[str, type] = {"MLP": MLP, "UNet": UNet, "UNet1d": UNet1d}


def names() -> list[str]:
    """Network types that :func:`build` knows."""
    return sorted(_REGISTRY)


def register(cls: type) -> type:
    """Add a :class:`ScoreNet` subclass under its class name (usable as a decorator).

    ``cls(**net.config())`` must rebuild ``net``. Registering another class under a taken
    name is an error; registering the same class again is a no-op.
    """
    if not (isinstance(cls, type) and issubclass(cls, ScoreNet)):
        raise TypeError(f"only ScoreNet subclasses can be registered, got {cls!r}")
    have = _REGISTRY.get(cls.__name__)
    if have is not None and have is not cls:
        raise ValueError(f"a network type named {cls.__name__!r} is already registered ({have.__module__})")
    _REGISTRY[cls.__name__] = cls
    return cls


def build(spec: dict) -> ScoreNet:
    """Build a network from ``{"type": name, "config": {...}}`` (what ``net.spec()`` returns)."""
    return build_from_spec(spec, _REGISTRY, "network", names(), base=ScoreNet)


# the family networks register themselves with the decorator above
from .pose import PoseMLP  # noqa: E402
from .tokens import TokenMLP, TokenTransformer  # noqa: E402
from .composite import CompositeNet  # noqa: E402
