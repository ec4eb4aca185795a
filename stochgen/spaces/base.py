"""The state-space protocol.

A space says where a state lives. Every space answers the same few questions:
its dimension, how to check and project a point onto it, and -- for continuous
spaces -- how to draw noise in the tangent space and move along it
(exponential map / retraction) or back (logarithm map). Processes and samplers
only talk to a space through these methods.
"""
from __future__ import annotations

import torch


class Space:
    """Base class of all state spaces.

    Attributes
    ----------
    event_shape: shape of one state (without batch dimensions), ``None`` entries mean "any".
    """

    event_shape: tuple = ()

    @property
    def dim(self) -> int:
        """Intrinsic (manifold) dimension of one state."""
        raise NotImplementedError

    def check(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Raise a clear ``ValueError`` if ``x`` is not a batch of points of this space."""
        raise NotImplementedError

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest point of the space (identity on spaces without constraints)."""
        return x

    def coerce(self, x: torch.Tensor, name: str = "data") -> torch.Tensor:
        """Training data as points of this space (floating tensors here), checked by :meth:`check`."""
        if not torch.is_tensor(x):
            raise ValueError(f"{name} must be a tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        return self.check(x, name)

    def noise(self, shape, generator: torch.Generator | None = None, dtype=None, device=None) -> torch.Tensor:
        """Standard Gaussian noise in the tangent space, for a batch of the given shape."""
        raise TypeError(f"{type(self).__name__} has no tangent-space noise")

    def exp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Exponential map (or retraction): move from ``x`` along tangent vector ``v``."""
        raise TypeError(f"{type(self).__name__} has no exponential map")

    def log(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Logarithm map: the tangent vector at ``x`` that ``exp`` takes to ``y``."""
        raise TypeError(f"{type(self).__name__} has no logarithm map")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
