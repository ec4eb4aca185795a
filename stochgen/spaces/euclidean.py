"""Flat space R^d: exp and log are addition and subtraction."""
from __future__ import annotations

import torch

from .._validate import check_batched, check_finite
from .base import Space


class Euclidean(Space):
    """R^d (any event shape). ``dim`` is ``None`` until data fix it, so the same space serves images and vectors."""

    def __init__(self, event_shape: tuple | None = None):
        self.event_shape = tuple(event_shape) if event_shape is not None else None

    @property
    def dim(self) -> int | None:
        if self.event_shape is None:
            return None
        n = 1
        for s in self.event_shape:
            n *= s
        return n

    def check(self, x, name="x"):
        check_batched(x, name)
        if self.event_shape is not None and tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"{name} must have shape (batch, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        return check_finite(x, name)

    def noise(self, shape, generator=None, dtype=None, device=None):
        return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)

    def exp(self, x, v):
        return x + v

    def log(self, x, y):
        return y - x

    def __repr__(self):
        return f"Euclidean({self.event_shape!r})" if self.event_shape is not None else "Euclidean()"
