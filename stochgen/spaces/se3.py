"""Rigid motions SE(3) as 4x4 homogeneous matrices, and their Lie algebra se(3).

Conventions
-----------
* A pose is ``T = [[R, t], [0, 0, 0, 1]]`` of shape ``(..., 4, 4)``; it maps a
  point ``p`` to ``R p + t`` (:func:`apply`, points ``(..., N, 3)``).
  :func:`from_rt` / :func:`to_rt` build and split it.
* A twist is a 6-vector ``xi = (rho, phi)``: **translation part first**
  (``xi[..., :3] = rho``), **rotation vector last** (``xi[..., 3:] = phi``).
  :func:`hat` maps it to the 4x4 matrix ``[[hat(phi), rho], [0, 0]]``.
* ``Exp(xi) = [[Exp_SO3(phi), J_l(phi) rho], [0, 1]]`` with the left Jacobian
  of SO(3) (:func:`stochgen.spaces.so3.left_jacobian`); :func:`log` inverts it
  with ``rho = J_l(phi)^{-1} t`` and the principal rotation vector
  (``|phi| <= pi``). Both are stable near the identity and at ``|phi| = pi``;
  at exactly ``pi`` the rotation axis sign is arbitrary, so then only
  ``exp(log(T)) == T`` holds, not ``log(exp(xi)) == xi``.
* :class:`SE3` offers two tangent conventions (both 6-vectors, translation first):
  ``"group"`` (default): ``exp(T, xi) = T @ Exp(xi)`` -- the Lie-group
  exponential in the body frame; ``"product"``: SO(3) x R^3 with
  ``exp(T, (v, w)) = [[R Exp(w), t + v], [0, 1]]`` -- world-frame translation
  increments and body-frame rotation increments, as used by SE(3) diffusion
  models that noise rotations and translations independently.
"""
from __future__ import annotations

import torch

from .._validate import check_finite, check_shape
from . import so3
from .base import Space

__all__ = ["hat", "vee", "exp", "log", "compose", "inverse", "apply", "from_rt", "to_rt", "random", "check_pose", "SE3"]


def from_rt(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """4x4 poses ``(..., 4, 4)`` from rotations ``(..., 3, 3)`` and translations ``(..., 3)`` (batches broadcast)."""
    batch = torch.broadcast_tensors(R[..., 0, 0], t[..., 0])[0].shape  # (torch.broadcast_shapes imports sympy)
    R = R.expand(batch + (3, 3))
    t = t.expand(batch + (3,))
    top = torch.cat([R, t[..., None]], dim=-1)
    bottom = torch.zeros(batch + (1, 4), dtype=R.dtype, device=R.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def to_rt(T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split poses into rotations ``(..., 3, 3)`` and translations ``(..., 3)``."""
    return T[..., :3, :3], T[..., :3, 3]


def hat(xi: torch.Tensor) -> torch.Tensor:
    """``(..., 6) -> (..., 4, 4)``: ``[[hat(phi), rho], [0, 0]]`` with ``xi = (rho, phi)``."""
    top = torch.cat([so3.hat(xi[..., 3:]), xi[..., :3, None]], dim=-1)
    return torch.cat([top, torch.zeros(xi.shape[:-1] + (1, 4), dtype=xi.dtype, device=xi.device)], dim=-2)


def vee(X: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hat`: ``(..., 4, 4) -> (..., 6)`` ordered ``(rho, phi)``."""
    return torch.cat([X[..., :3, 3], so3.vee(X[..., :3, :3])], dim=-1)


def exp(xi: torch.Tensor) -> torch.Tensor:
    """Group exponential: ``Exp(rho, phi) = [[Exp(phi), J_l(phi) rho], [0, 1]]``."""
    rho, phi = xi[..., :3], xi[..., 3:]
    a, b, c = so3._exp_coefficients(so3._norm(phi))  # one sine / cosine for R and J_l
    K = so3.hat(phi)
    R = so3._eye(phi) + a[..., None, None] * K + b[..., None, None] * (K @ K)
    pr = torch.linalg.cross(phi, rho, dim=-1)  # J_l rho = rho + b phi x rho + c phi x (phi x rho)
    t = rho + b[..., None] * pr + c[..., None] * torch.linalg.cross(phi, pr, dim=-1)
    return from_rt(R, t)


def log(T: torch.Tensor) -> torch.Tensor:
    """Group logarithm ``(..., 4, 4) -> (..., 6)``: ``phi = Log(R)``, ``rho = J_l(phi)^{-1} t``."""
    R, t = to_rt(T)
    phi = so3.log(R)
    rho = (so3.left_jacobian_inverse(phi) @ t[..., None])[..., 0]
    return torch.cat([rho, phi], dim=-1)


def compose(T1: torch.Tensor, T2: torch.Tensor) -> torch.Tensor:
    """``T1 @ T2`` (apply ``T2`` first)."""
    return T1 @ T2


def inverse(T: torch.Tensor) -> torch.Tensor:
    """``T^{-1} = [[R^T, -R^T t], [0, 1]]`` (exact, no matrix inversion)."""
    R, t = to_rt(T)
    Rt = R.transpose(-1, -2)
    return from_rt(Rt, -(Rt @ t[..., None])[..., 0])


def apply(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Transform points ``(..., N, 3)`` by poses ``(..., 4, 4)``: ``R p + t`` (batch shapes broadcast)."""
    R, t = to_rt(T)
    return points @ R.transpose(-1, -2) + t[..., None, :]


def random(shape=(), generator: torch.Generator | None = None, dtype=None, device=None, translation_std: float = 1.0):
    """Random poses ``(*shape, 4, 4)``: Haar-uniform rotations, ``N(0, translation_std^2 I)`` translations."""
    shape = tuple(shape) if not isinstance(shape, int) else (shape,)
    R = so3.random(shape, generator, dtype, device)
    t = translation_std * torch.randn(shape + (3,), generator=generator, dtype=R.dtype, device=device)
    return from_rt(R, t)


def check_pose(T: torch.Tensor, name: str = "T", atol: float | None = None) -> torch.Tensor:
    """Raise ``ValueError`` unless ``T`` is a batch ``(..., 4, 4)`` of finite homogeneous rigid motions.

    Checks the shape, finiteness, the last row ``[0, 0, 0, 1]`` and that the
    upper-left block is a rotation (tolerance as in :func:`so3.check_rotation`).
    """
    if not isinstance(T, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of 4x4 poses (..., 4, 4), got {type(T).__name__}")
    check_shape(T, (4, 4), name)
    if not T.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of 4x4 poses, got dtype {T.dtype}")
    check_finite(T, name)
    if T.numel() == 0:
        return T
    tol = so3._default_atol(T.dtype) if atol is None else float(atol)
    want = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=T.dtype, device=T.device)
    err = (T[..., 3, :] - want).abs().amax(dim=-1)
    if bool((err > tol).any()):
        raise ValueError(
            f"{name} must be homogeneous 4x4 poses with last row [0, 0, 0, 1]: {int((err > tol).sum())} "
            f"pose(s) deviate by up to {float(err.max()):.3g}"
        )
    so3.check_rotation(T[..., :3, :3], f"the rotation block {name}[..., :3, :3]", atol)
    return T


class SE3(Space):
    """Rigid motions as 4x4 matrices ``(..., 4, 4)``; intrinsic dimension 6.

    Tangent vectors are 6-vectors ``(translation part, rotation part)``.

    Parameters
    ----------
    tangent: ``"group"`` (default) -- ``exp(T, xi) = T @ Exp(xi)`` and
        ``log(T, S) = Log(T^{-1} S)`` with the SE(3) group exponential (body
        frame); ``"product"`` -- the SO(3) x R^3 product structure,
        ``exp(T, (v, w)) = (R Exp(w), t + v)`` and
        ``log(T, S) = (t_S - t_T, Log(R_T^T R_S))``: translations move in the
        world frame, rotations in the body frame. Both are exact inverses of
        each other (for rotation angles below ``pi``).
    atol: tolerance of :meth:`check` (``None``: 1e-6 in float64, 1e-4 in float32).
    """

    event_shape = (4, 4)

    def __init__(self, tangent: str = "group", atol: float | None = None):
        if tangent not in ("group", "product"):
            raise ValueError(f"tangent must be 'group' or 'product', got {tangent!r}")
        self.tangent = tangent
        self.atol = atol

    @property
    def dim(self) -> int:
        return 6

    def check(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Raise ``ValueError`` for a wrong trailing shape, NaN/inf, a bad last row or a non-rotation block."""
        return check_pose(x, name, self.atol)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest pose: the rotation block projected onto SO(3), the last row reset to ``[0, 0, 0, 1]``."""
        check_shape(x, (4, 4), "x")
        R, t = to_rt(x)
        return from_rt(so3.SO3().project(R), t)

    def noise(self, shape, generator=None, dtype=None, device=None) -> torch.Tensor:
        """Standard normal tangent 6-vectors of shape ``(*shape, 6)`` (``shape`` is the batch shape)."""
        shape = tuple(shape) if not isinstance(shape, int) else (shape,)
        return torch.randn(shape + (6,), generator=generator, dtype=dtype, device=device)

    def random(self, shape, generator=None, dtype=None, device=None) -> torch.Tensor:
        """Uniform rotations with standard normal translations, ``(*shape, 4, 4)``."""
        return random(shape, generator, dtype, device)

    def exp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Move from ``x`` along the tangent 6-vector ``v`` (see the ``tangent`` convention)."""
        if self.tangent == "group":
            return x @ exp(v)
        R, t = to_rt(x)
        return from_rt(R @ so3.exp(v[..., 3:]), t + v[..., :3])

    def log(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The tangent 6-vector at ``x`` that :meth:`exp` takes to ``y``."""
        if self.tangent == "group":
            return log(inverse(x) @ y)
        Rx, tx = to_rt(x)
        Ry, ty = to_rt(y)
        return torch.cat([ty - tx, so3.log(Rx.transpose(-1, -2) @ Ry)], dim=-1)

    def __repr__(self) -> str:
        args = []
        if self.tangent != "group":
            args.append(f"tangent={self.tangent!r}")
        if self.atol is not None:
            args.append(f"atol={self.atol!r}")
        return f"SE3({', '.join(args)})"
