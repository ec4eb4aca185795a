"""Finite discrete state space: every position holds one of ``num_categories`` labels.

Conventions
-----------
* A state is an **integer index tensor** of shape ``(batch, *event_shape)``;
  ``event_shape`` is, for example, ``(L,)`` for sequences of length ``L`` or
  ``(H, W)`` for images of labels. Every position is one categorical variable.
* The data states are ``0, ..., num_states - 1``. With ``absorbing=True`` one
  extra *mask* state with index ``mask_index == num_states`` is appended, so
  ``num_categories == num_states + 1``; otherwise
  ``num_categories == num_states`` and ``mask_index is None``.
* One-hot encodings put the category on the **last** axis:
  ``(batch, *event_shape, num_categories)``.
* ``dim`` is the number of positions (the product of ``event_shape``), or
  ``None`` when ``event_shape`` is left open.

A finite set has no tangent space: ``noise``, ``exp`` and ``log`` raise
``TypeError``; use :meth:`Discrete.uniform` for random states.
"""
from __future__ import annotations

import math

import torch

from .base import Space

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class Discrete(Space):
    """Finite state set of ``num_states`` labels per position (plus a mask label if ``absorbing``).

    Parameters
    ----------
    num_states: number of data states ``S`` (at least 1; at least 2 without a mask).
    event_shape: shape of one state without the batch axis, e.g. ``(L,)``;
        ``None`` (default) accepts any shape, ``None`` entries accept any size
        on that axis.
    absorbing: add one mask state with index ``S`` (``num_categories = S + 1``).
    """

    def __init__(self, num_states: int, event_shape: tuple | None = None, absorbing: bool = False):
        if isinstance(num_states, bool) or not isinstance(num_states, int):
            try:
                ok = float(num_states) == int(num_states)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"num_states must be an integer, got {num_states!r}")
            num_states = int(num_states)
        minimum = 1 if absorbing else 2
        if num_states < minimum:
            raise ValueError(
                f"num_states must be at least {minimum}{' (a chain needs two states)' if not absorbing else ''}, "
                f"got {num_states}"
            )
        self.num_states: int = num_states
        self.absorbing: bool = bool(absorbing)
        self.num_categories: int = num_states + 1 if absorbing else num_states
        self.mask_index: int | None = num_states if absorbing else None
        if event_shape is not None:
            event_shape = tuple(None if s is None else int(s) for s in event_shape)
            if any(s is not None and s < 1 for s in event_shape):
                raise ValueError(f"event_shape entries must be positive, got {event_shape}")
        self.event_shape = event_shape

    # --- size -------------------------------------------------------------
    @property
    def dim(self) -> int | None:
        """Number of positions in one state (product of ``event_shape``), ``None`` if not fixed."""
        if self.event_shape is None or any(s is None for s in self.event_shape):
            return None
        return math.prod(self.event_shape)

    # --- validation ---------------------------------------------------------
    def coerce(self, x: torch.Tensor, name: str = "data") -> torch.Tensor:
        """Training data as integer state indices: floating tensors must hold whole numbers."""
        if torch.is_tensor(x) and x.is_floating_point():
            if not bool(torch.isfinite(x).all()) or not bool((x == torch.round(x)).all()):
                raise ValueError(f"{name} must hold integer state indices (tokens) for {self!r}; got non-integer "
                                 "or non-finite values")
            x = x.long()
        elif torch.is_tensor(x):
            x = x.long()
        x = self.check(x, name)
        if self.mask_index is not None and bool((x == self.mask_index).any()):
            raise ValueError(f"{name} holds the mask state {self.mask_index}, which is no data value")
        return x

    def check(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Raise ``ValueError`` unless ``x`` is an integer tensor ``(batch, *event_shape)`` of valid indices."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be an integer torch.Tensor of state indices, got {type(x).__name__}")
        if x.dtype not in _INT_DTYPES:
            raise ValueError(
                f"{name} must hold integer state indices (e.g. torch.long), got dtype {x.dtype}; "
                f"convert one-hot or probability vectors with Discrete.index()"
            )
        if x.dim() < 1:
            raise ValueError(f"{name} must have a leading batch dimension, got a scalar")
        if self.event_shape is not None:
            ev = tuple(x.shape[1:])
            if len(ev) != len(self.event_shape) or any(
                want is not None and have != want for have, want in zip(ev, self.event_shape)
            ):
                want = ", ".join("*" if w is None else str(w) for w in self.event_shape)
                raise ValueError(f"{name} must have shape (batch{', ' if want else ''}{want}), got {tuple(x.shape)}")
        if x.numel() > 0:
            lo, hi = int(x.min()), int(x.max())
            if lo < 0 or hi >= self.num_categories:
                raise ValueError(
                    f"{name} holds out-of-range state indices (found values in [{lo}, {hi}]); "
                    f"valid indices are 0..{self.num_categories - 1}"
                    + (f" (index {self.mask_index} is the mask)" if self.absorbing else "")
                )
        return x

    # --- encodings ----------------------------------------------------------
    def one_hot(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Float one-hot encoding ``(..., num_categories)`` of index tensor ``x``."""
        self.check(x)
        return torch.nn.functional.one_hot(x.long(), self.num_categories).to(dtype or torch.get_default_dtype())

    def index(self, p: torch.Tensor) -> torch.Tensor:
        """Indices (``torch.long``) of the largest entry along the last axis of one-hot / probability / logit vectors."""
        if not isinstance(p, torch.Tensor):
            p = torch.as_tensor(p)
        if p.dim() < 1 or p.shape[-1] != self.num_categories:
            raise ValueError(
                f"expected vectors with a last axis of size num_categories={self.num_categories}, "
                f"got shape {tuple(p.shape)}"
            )
        if p.is_floating_point() and bool(torch.isnan(p).any()):
            raise ValueError(f"cannot take the index of vectors containing NaN (shape {tuple(p.shape)})")
        return p.argmax(dim=-1)

    from_one_hot = index

    def is_masked(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean tensor, ``True`` where ``x`` holds the mask state (all ``False`` without a mask)."""
        self.check(x)
        if self.mask_index is None:
            return torch.zeros_like(x, dtype=torch.bool)
        return x == self.mask_index

    # --- random states ------------------------------------------------------
    def uniform(
        self,
        shape,
        generator: torch.Generator | None = None,
        device=None,
        include_mask: bool = False,
    ) -> torch.Tensor:
        """Independent uniformly random states (``torch.long``) of the given full shape.

        Draws from the data states ``0..num_states-1``; with ``include_mask``
        the mask state is one more equally likely option.
        """
        high = self.num_categories if include_mask else self.num_states
        x = torch.randint(0, high, tuple(shape), generator=generator, device=device)
        return self.check(x, "uniform(shape)") if len(tuple(shape)) >= 1 else x

    def mask(self, shape, device=None) -> torch.Tensor:
        """The all-mask state of the given full shape (only for ``absorbing=True``)."""
        if self.mask_index is None:
            raise ValueError("this Discrete space has no mask state (construct it with absorbing=True)")
        return torch.full(tuple(shape), self.mask_index, dtype=torch.long, device=device)

    # --- no tangent space ----------------------------------------------------
    def noise(self, shape, generator=None, dtype=None, device=None):
        raise TypeError(
            "Discrete has no tangent space, so there is no Gaussian noise; "
            "use Discrete.uniform(shape, generator) for random states"
        )

    def exp(self, x, v):
        raise TypeError("Discrete has no tangent space: the exponential map is undefined on a finite set")

    def log(self, x, y):
        raise TypeError("Discrete has no tangent space: the logarithm map is undefined on a finite set")

    def __repr__(self) -> str:
        args = [str(self.num_states)]
        if self.event_shape is not None:
            args.append(f"event_shape={self.event_shape!r}")
        if self.absorbing:
            args.append("absorbing=True")
        return f"Discrete({', '.join(args)})"
