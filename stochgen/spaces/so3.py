"""The rotation group SO(3): maps between rotation vectors and rotation matrices.

Conventions
-----------
* A rotation is a ``(..., 3, 3)`` matrix ``R`` acting on column vectors,
  ``p' = R p``; a batch of points is ``(..., N, 3)`` and is rotated as
  ``p @ R^T`` (:func:`apply`).
* A tangent vector (element of the Lie algebra so(3)) is a rotation vector
  ``phi = theta * axis`` of shape ``(..., 3)``; :func:`hat` makes the skew
  matrix ``[phi]_x`` with ``[phi]_x v = phi x v`` and :func:`vee` inverts it.
* :func:`exp` is Rodrigues' formula, :func:`log` returns the principal rotation
  vector with angle in ``[0, pi]``. At exactly ``pi`` the sign of the axis is
  not determined by ``R`` (``Exp(pi a) = Exp(-pi a)``); :func:`log` then picks
  one of the two, so ``exp(log(R)) == R`` always holds but
  ``log(exp(phi)) == phi`` only for angles below ``pi``.
* The *left* Jacobian ``J_l(phi)`` satisfies
  ``Exp(phi + d) ~= Exp(J_l(phi) d) Exp(phi)`` to first order in ``d``; the right
  Jacobian is ``J_r(phi) = J_l(-phi)`` with ``Exp(phi + d) ~= Exp(phi) Exp(J_r(phi) d)``.
* The Riemannian metric is the one in which the geodesic distance between two
  rotations is the angle of ``R1^T R2`` (:func:`distance`), i.e. ``|phi|`` is the
  length of the geodesic ``Exp(s phi), s in [0, 1]``.

Every function works on any batch shape, dtype and device, and is stable at
the angles ``0`` (Taylor series) and ``pi`` (axis from the symmetric part).
Functions do not validate their inputs (they are inner-loop maths);
:class:`SO3` ``.check`` does.
"""
from __future__ import annotations

import torch

from .._validate import check_finite, check_shape
from .base import Space

__all__ = [
    "hat", "vee", "exp", "log", "angle", "left_jacobian", "left_jacobian_inverse", "right_jacobian",
    "right_jacobian_inverse", "compose", "inverse", "apply", "random", "project", "distance", "from_quaternion",
    "check_rotation", "SO3",
]

# Below these angles the closed forms lose accuracy (or are 0/0) and Taylor series are used instead.
_SMALL = 1e-4        # for sin(x)/x and (1 - cos x)/x^2 (their closed forms are exact up to here)
_SMALL_CANCEL = 5e-2  # for (x - sin x)/x^3 and (1 - (x/2) cot(x/2))/x^2, which cancel catastrophically


# ----------------------------------------------------------------------------------------------
# scalar coefficient functions (stable everywhere on [0, pi], autograd-safe at 0)
# ----------------------------------------------------------------------------------------------
def _safe(x: torch.Tensor, small: bool | torch.Tensor) -> torch.Tensor:
    """``x`` with entries flagged ``small`` replaced by 1 (keeps unused ``where`` branches finite)."""
    return torch.where(small, torch.ones_like(x), x)


def _sinc(x: torch.Tensor) -> torch.Tensor:
    """``sin(x) / x`` (1 at 0)."""
    small = x.abs() < _SMALL
    x2 = x * x
    xs = _safe(x, small)
    return torch.where(small, 1.0 - x2 / 6.0 + x2 * x2 / 120.0, torch.sin(xs) / xs)


def _one_minus_cos_over_x2(x: torch.Tensor) -> torch.Tensor:
    """``(1 - cos x) / x^2 = sinc(x/2)^2 / 2`` (no cancellation)."""
    return 0.5 * _sinc(0.5 * x) ** 2


def _x_minus_sin_over_x3(x: torch.Tensor) -> torch.Tensor:
    """``(x - sin x) / x^3`` (1/6 at 0)."""
    small = x.abs() < _SMALL_CANCEL
    x2 = x * x
    xs = _safe(x, small)
    taylor = 1.0 / 6.0 - x2 / 120.0 + x2 * x2 / 5040.0 - x2 * x2 * x2 / 362880.0
    return torch.where(small, taylor, (xs - torch.sin(xs)) / (xs * xs * xs))


def _inv_jacobian_coeff(x: torch.Tensor) -> torch.Tensor:
    """``(1 - (x/2) cot(x/2)) / x^2`` (1/12 at 0, singular at ``2 pi``): the ``K^2`` coefficient of ``J_l^{-1}``."""
    small = x.abs() < _SMALL_CANCEL
    x2 = x * x
    xs = _safe(x, small)
    taylor = 1.0 / 12.0 + x2 / 720.0 + x2 * x2 / 30240.0 + x2 * x2 * x2 / 1209600.0
    half = 0.5 * xs
    return torch.where(small, taylor, (1.0 - half * torch.cos(half) / torch.sin(half)) / (xs * xs))


def _exp_coefficients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``sin(x)/x``, ``(1 - cos x)/x^2`` and ``(x - sin x)/x^3`` from one sine and cosine of ``x/2``.

    The three coefficients of the exponential and the left Jacobian, computed together (the
    exponentials on SO(3) / SE(3) are called per step in batched ICP and samplers, where the
    number of small tensor operations is the cost). With ``s, c = sin(x/2), cos(x/2)``:
    ``sin x = 2 s c`` and ``1 - cos x = 2 s^2`` (no cancellation); below ``_SMALL_CANCEL``
    Taylor series to ``x^8`` (truncation below 1e-16 relative there).
    """
    small = x.abs() < _SMALL_CANCEL
    xs = _safe(x, small)
    sh, ch = torch.sin(0.5 * xs), torch.cos(0.5 * xs)
    sin = 2.0 * sh * ch
    x2 = x * x
    x4 = x2 * x2
    a_t = 1.0 - x2 / 6.0 + x4 / 120.0 - x4 * x2 / 5040.0 + x4 * x4 / 362880.0
    b_t = 0.5 - x2 / 24.0 + x4 / 720.0 - x4 * x2 / 40320.0 + x4 * x4 / 3628800.0
    c_t = 1.0 / 6.0 - x2 / 120.0 + x4 / 5040.0 - x4 * x2 / 362880.0 + x4 * x4 / 39916800.0
    a = torch.where(small, a_t, sin / xs)
    b = torch.where(small, b_t, 2.0 * sh * sh / (xs * xs))
    c = torch.where(small, c_t, (xs - sin) / (xs * xs * xs))
    return a, b, c


def _norm(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last axis whose gradient is 0 (not NaN) at the zero vector."""
    sq = (v * v).sum(-1)
    zero = sq == 0
    return torch.where(zero, torch.zeros_like(sq), torch.sqrt(_safe(sq, zero)))


# ----------------------------------------------------------------------------------------------
# Lie algebra
# ----------------------------------------------------------------------------------------------
def hat(phi: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric matrix ``[phi]_x`` of shape ``(..., 3, 3)`` from a rotation vector ``(..., 3)``."""
    x, y, z = phi.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(phi.shape[:-1] + (3, 3))


def vee(omega: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hat`: ``(..., 3, 3) -> (..., 3)``, reading the antisymmetric part of ``omega``."""
    return 0.5 * torch.stack(
        [omega[..., 2, 1] - omega[..., 1, 2], omega[..., 0, 2] - omega[..., 2, 0], omega[..., 1, 0] - omega[..., 0, 1]],
        dim=-1,
    )


def _eye(like: torch.Tensor) -> torch.Tensor:
    return torch.eye(3, dtype=like.dtype, device=like.device)


# ----------------------------------------------------------------------------------------------
# exponential and logarithm
# ----------------------------------------------------------------------------------------------
def exp(phi: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``Exp(phi) = I + sinc(th) K + (1 - cos th)/th^2 K^2`` with ``K = [phi]_x``, ``th = |phi|``."""
    theta = _norm(phi)
    K = hat(phi)
    a = _sinc(theta)[..., None, None]
    b = _one_minus_cos_over_x2(theta)[..., None, None]
    return _eye(phi) + a * K + b * (K @ K)


def angle(R: torch.Tensor) -> torch.Tensor:
    """Rotation angle in ``[0, pi]`` as ``atan2(|sin th|, cos th)`` (accurate at 0 and at pi, unlike ``acos``)."""
    c = 0.5 * (R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1.0)
    return torch.atan2(_norm(vee(R)), c)


def log(R: torch.Tensor) -> torch.Tensor:
    """Principal rotation vector ``(..., 3)`` of ``R``, angle in ``[0, pi]``.

    The angle comes from ``atan2(|s|, c)`` with ``s = vee(R - R^T)/2 = sin(th) axis``
    and ``c = (tr R - 1)/2``. For ``c >= 0`` (angle below ``pi/2``) the rotation
    vector is ``th / sin(th) * s``; otherwise the axis is the normalised largest
    column of the symmetric part ``(R + R^T)/2 - c I = (1 - c) axis axis^T``,
    with its sign taken from ``s`` (arbitrary when ``s = 0``, i.e. at exactly ``pi``).
    """
    s = vee(R)
    sn = _norm(s)
    c = 0.5 * (R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1.0)
    theta = torch.atan2(sn, c)
    # small / moderate angles: theta / |s| * s  (|s| = sin theta)
    tiny = sn < 1e-6  # Taylor of th / sin th (keeps autograd finite at the identity)
    t2 = theta * theta
    ratio = torch.where(tiny, 1.0 + t2 / 6.0 + 7.0 * t2 * t2 / 360.0, theta / _safe(sn, tiny))
    phi_small = ratio[..., None] * s
    # large angles: axis from the symmetric part
    sym = 0.5 * (R + R.transpose(-1, -2)) - c[..., None, None] * _eye(R)
    diag = torch.diagonal(sym, dim1=-2, dim2=-1)
    k = diag.argmax(dim=-1, keepdim=True)
    col = torch.gather(sym, -1, k[..., None, :].expand(sym.shape[:-1] + (1,))).squeeze(-1)
    cn = _norm(col)
    axis = col / _safe(cn, cn == 0)[..., None]
    sign = torch.where((axis * s).sum(-1) < 0, -torch.ones_like(c), torch.ones_like(c))
    phi_large = (sign * theta)[..., None] * axis
    return torch.where((c < 0)[..., None], phi_large, phi_small)


# ----------------------------------------------------------------------------------------------
# Jacobians
# ----------------------------------------------------------------------------------------------
def left_jacobian(phi: torch.Tensor) -> torch.Tensor:
    """``J_l(phi) = I + (1 - cos th)/th^2 K + (th - sin th)/th^3 K^2``; ``Exp(phi + d) ~= Exp(J_l d) Exp(phi)``."""
    theta = _norm(phi)
    K = hat(phi)
    b = _one_minus_cos_over_x2(theta)[..., None, None]
    c = _x_minus_sin_over_x3(theta)[..., None, None]
    return _eye(phi) + b * K + c * (K @ K)


def left_jacobian_inverse(phi: torch.Tensor) -> torch.Tensor:
    """``J_l(phi)^{-1} = I - K/2 + (1 - (th/2) cot(th/2))/th^2 K^2`` (singular only at ``th = 2 pi``)."""
    theta = _norm(phi)
    K = hat(phi)
    d = _inv_jacobian_coeff(theta)[..., None, None]
    return _eye(phi) - 0.5 * K + d * (K @ K)


def right_jacobian(phi: torch.Tensor) -> torch.Tensor:
    """``J_r(phi) = J_l(-phi)``; ``Exp(phi + d) ~= Exp(phi) Exp(J_r d)``."""
    return left_jacobian(-phi)


def right_jacobian_inverse(phi: torch.Tensor) -> torch.Tensor:
    """``J_r(phi)^{-1} = J_l(-phi)^{-1}``."""
    return left_jacobian_inverse(-phi)


# ----------------------------------------------------------------------------------------------
# group operations
# ----------------------------------------------------------------------------------------------
def compose(R1: torch.Tensor, R2: torch.Tensor) -> torch.Tensor:
    """``R1 @ R2`` (apply ``R2`` first), broadcasting batch shapes."""
    return R1 @ R2


def inverse(R: torch.Tensor) -> torch.Tensor:
    """``R^{-1} = R^T``."""
    return R.transpose(-1, -2)


def apply(R: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Rotate points ``(..., N, 3)`` by ``R`` ``(..., 3, 3)``: ``R p`` for every point (batch shapes broadcast).

    For a single point per rotation pass ``p[..., None, :]`` and take ``[..., 0, :]``.
    """
    return points @ R.transpose(-1, -2)


def distance(R1: torch.Tensor, R2: torch.Tensor) -> torch.Tensor:
    """Geodesic distance: the angle in ``[0, pi]`` of ``R1^T R2``."""
    return angle(R1.transpose(-1, -2) @ R2)


def from_quaternion(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrix of a quaternion ``(..., 4)`` in scalar-last order ``(x, y, z, w)`` (normalised first)."""
    q = q / _norm(q)[..., None]
    x, y, z, w = q.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz, wx, wy, wz = x * y, x * z, y * z, w * x, w * y, w * z
    R = torch.stack(
        [
            1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
            2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
            2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
        ],
        dim=-1,
    )
    return R.reshape(q.shape[:-1] + (3, 3))


def random(shape=(), generator: torch.Generator | None = None, dtype=None, device=None) -> torch.Tensor:
    """Haar-uniform random rotations of shape ``(*shape, 3, 3)`` (normalised Gaussian quaternions)."""
    shape = tuple(shape) if not isinstance(shape, int) else (shape,)
    q = torch.randn(shape + (4,), generator=generator, dtype=dtype or torch.get_default_dtype(), device=device)
    # a quaternion of exactly zero norm has probability zero; guard anyway
    q = torch.where(_norm(q)[..., None] == 0, torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=q.dtype, device=q.device), q)
    return from_quaternion(q)


def project(M: torch.Tensor) -> torch.Tensor:
    """Rotation nearest to ``M`` ``(..., 3, 3)`` in Frobenius norm, via the SVD ``M = U S V^T``.

    Returns ``U diag(1, 1, d) V^T`` with ``d = det(U V^T) = +-1`` (so reflections
    are turned into the nearest proper rotation). Half precision is computed in float32.
    """
    Mc = M if M.dtype in (torch.float32, torch.float64) else M.float()
    U, _, Vh = torch.linalg.svd(Mc)
    d = torch.linalg.det(U @ Vh)
    U = torch.cat([U[..., :2], U[..., 2:] * d[..., None, None]], dim=-1)
    return (U @ Vh).to(M.dtype)


# ----------------------------------------------------------------------------------------------
# the space
# ----------------------------------------------------------------------------------------------
def _default_atol(dtype: torch.dtype) -> float:
    if dtype == torch.float64:
        return 1e-6
    if dtype == torch.float32:
        return 1e-4
    return 1e-2


def check_rotation(R: torch.Tensor, name: str = "R", atol: float | None = None) -> torch.Tensor:
    """Raise ``ValueError`` unless ``R`` is a batch ``(..., 3, 3)`` of finite rotation matrices.

    ``atol`` bounds ``max |R^T R - I|`` and ``|det R - 1|``; by default 1e-6
    for float64, 1e-4 for float32 and 1e-2 for half precision.
    """
    if not isinstance(R, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of rotation matrices (..., 3, 3), got {type(R).__name__}")
    check_shape(R, (3, 3), name)
    if not R.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of rotation matrices, got dtype {R.dtype}")
    check_finite(R, name)
    if R.numel() == 0:
        return R
    tol = _default_atol(R.dtype) if atol is None else float(atol)
    Rc = R if R.dtype in (torch.float32, torch.float64) else R.float()
    err = (Rc.transpose(-1, -2) @ Rc - _eye(Rc)).abs().amax(dim=(-1, -2))
    if bool((err > tol).any()):
        n = int((err > tol).sum())
        raise ValueError(
            f"{name} must hold rotation matrices: {n} matri(ces) are not orthonormal "
            f"(max |R^T R - I| = {float(err.max()):.3g} > tolerance {tol:g}); use SO3().project to fix them"
        )
    det = torch.linalg.det(Rc)
    bad = (det - 1.0).abs() > tol
    if bool(bad.any()):
        raise ValueError(
            f"{name} must hold rotation matrices with det = +1: {int(bad.sum())} matri(ces) have "
            f"det = {float(det[bad].flatten()[0]):.3g} (reflections); use SO3().project to fix them"
        )
    return R


class SO3(Space):
    """Rotation matrices ``(..., 3, 3)``; intrinsic dimension 3.

    Tangent vectors are rotation vectors ``(..., 3)`` in the **body frame**
    (right perturbation): ``exp(R, v) = R @ Exp(v)`` and
    ``log(R, S) = Log(R^T S)``, so ``exp(R, log(R, S)) == S``. A body-frame
    vector ``v`` at ``R`` equals the space-frame vector ``R v``
    (``R Exp(v) = Exp(R v) R``).

    Parameters
    ----------
    atol: tolerance of :meth:`check` (see :func:`check_rotation`; ``None`` picks one per dtype).
    """

    event_shape = (3, 3)

    def __init__(self, atol: float | None = None):
        self.atol = atol

    @property
    def dim(self) -> int:
        return 3

    def check(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Raise ``ValueError`` for a wrong trailing shape, NaN/inf, non-orthonormal or det != 1 matrices."""
        return check_rotation(x, name, self.atol)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest rotation in Frobenius norm (special orthogonal Procrustes): ``U diag(1, 1, det(U V^T)) V^T``."""
        check_shape(x, (3, 3), "x")
        return project(x)

    def noise(self, shape, generator=None, dtype=None, device=None) -> torch.Tensor:
        """Standard normal rotation vectors of shape ``(*shape, 3)`` (``shape`` is the batch shape)."""
        shape = tuple(shape) if not isinstance(shape, int) else (shape,)
        return torch.randn(shape + (3,), generator=generator, dtype=dtype, device=device)

    def random(self, shape, generator=None, dtype=None, device=None) -> torch.Tensor:
        """Haar-uniform rotations ``(*shape, 3, 3)``."""
        return random(shape, generator, dtype, device)

    def exp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``x @ Exp(v)``: move from ``x`` along the body-frame rotation vector ``v``."""
        return x @ exp(v)

    def log(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``Log(x^T y)``: the body-frame rotation vector at ``x`` that :meth:`exp` takes to ``y``."""
        return log(x.transpose(-1, -2) @ y)

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Geodesic distance (rotation angle of ``x^T y``)."""
        return distance(x, y)

    def __repr__(self) -> str:
        return "SO3()" if self.atol is None else f"SO3(atol={self.atol!r})"

