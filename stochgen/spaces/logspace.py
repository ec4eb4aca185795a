"""Strictly positive data in log coordinates.

A point ``x > 0`` has coordinates ``log x``; a tangent vector ``v`` moves it
multiplicatively, ``exp(x, v) = x * e^v``. A linear SDE in these coordinates is
geometric Brownian motion in the data (multiplicative noise), and a sample
mapped back through ``from_coords`` is positive by construction.
"""
from __future__ import annotations

import torch

from .._validate import check_batched, check_finite
from .base import Space


class LogSpace(Space):
    def __init__(self, event_shape: tuple | None = None):
        self.event_shape = tuple(event_shape) if event_shape is not None else None

    @property
    def dim(self):
        if self.event_shape is None:
            return None
        n = 1
        for s in self.event_shape:
            n *= s
        return n

    def check(self, x, name="x"):
        check_batched(x, name)
        check_finite(x, name)
        if self.event_shape is not None and tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"{name} must have shape (batch, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        bad = x <= 0
        if bool(bad.any()):
            raise ValueError(
                f"{name} must be strictly positive for LogSpace: {int(bad.sum())} value(s) <= 0 "
                f"(smallest {float(x.min()):g}); shift or clip the data first"
            )
        return x

    def to_coords(self, x: torch.Tensor) -> torch.Tensor:
        """Log coordinates of positive data."""
        return torch.log(self.check(x))

    def from_coords(self, y: torch.Tensor) -> torch.Tensor:
        return torch.exp(y)

    def project(self, x):
        return torch.clamp(x, min=torch.finfo(x.dtype).tiny)

    def noise(self, shape, generator=None, dtype=None, device=None):
        return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)

    def exp(self, x, v):
        return x * torch.exp(v)

    def log(self, x, y):
        return torch.log(y) - torch.log(x)
