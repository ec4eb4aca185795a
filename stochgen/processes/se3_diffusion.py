"""Forward processes on rigid-body poses SE(3) (4x4 matrices).

Two processes, both with states ``(batch, ..., 4, 4)`` (for example
``(batch, residues, 4, 4)`` for protein frames):

* :class:`SE3Diffusion` -- FrameDiff-style diffusion on SO(3) x R^3: a
  variance-preserving SDE on the translations and Brownian motion on the
  rotations (IGSO(3) marginals). Exact marginals, exact conditional scores.
* :class:`SE3Interpolation` -- a Lie-algebra interpolant: the one-parameter
  subgroup from the data pose to the identity, composed with Lie-algebra
  noise; exact path velocity as the regression target.

Tangent 6-vectors always put the **translation part first** and the
**rotation part last**; how they act on a pose is the state space's
``exp`` (``process.space.exp(x, v)``), documented per process below.
Times: a Python number, a 0-d tensor, one per sample ``(batch,)`` or one per
pose (the batch shape ``x.shape[:-2]``).
"""
from __future__ import annotations

import math

import torch

from .._validate import as_tensor, check_finite, check_shape
from ..spaces import igso3 as _igso3
from ..spaces import se3 as _se3
from ..spaces import so3 as _so3
from ..spaces.se3 import SE3
from .. import families
from .base import Marginal, Process

__all__ = ["SE3Diffusion", "SE3Interpolation"]

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_SO3_VOLUME = math.log(8.0 * math.pi**2)  # Riemannian volume of SO(3) (geodesic distance = rotation angle)


def _number(value, name: str, positive: bool = True) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or (positive and v <= 0) or (not positive and v < 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'} and finite, got {value!r}")
    return v


def _batch_time(t: torch.Tensor, batch: tuple, name: str = "t") -> torch.Tensor:
    """Shape ``t`` (scalar, ``(batch[0],)`` or ``batch``) so that it broadcasts against the batch shape."""
    if t.dim() == 0:
        return t
    if t.dim() == 1 and len(batch) >= 1 and t.shape[0] in (1, batch[0]):
        return t.reshape((t.shape[0],) + (1,) * (len(batch) - 1))
    if tuple(t.shape) == tuple(batch):
        return t
    raise ValueError(
        f"{name} must be a scalar, have one entry per sample ({batch[0] if batch else 1}) or one per pose "
        f"{tuple(batch)}, got shape {tuple(t.shape)}"
    )


def _pose_shape(shape) -> tuple:
    """Full state shape from a batch shape or a shape that already ends in (4, 4)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return shape if shape[-2:] == (4, 4) else shape + (4, 4)


def _sum_poses(v: torch.Tensor) -> torch.Tensor:
    """Sum a per-pose quantity ``(batch, ...)`` over everything but the first axis."""
    return v.reshape(v.shape[0], -1).sum(-1) if v.dim() > 1 else v


class _PoseProcess(Process):
    """Shared input handling of the SE(3) processes."""

    def _states(self, x, name: str, full_check: bool = True) -> torch.Tensor:
        x = as_tensor(x, name)
        check_shape(x, (4, 4), name)
        if x.dim() < 3:
            raise ValueError(
                f"{name} must have a leading batch dimension: shape (batch, ..., 4, 4), got {tuple(x.shape)} "
                f"(use {name}[None] for a single pose)"
            )
        if full_check:
            self.space.check(x, name)
        else:
            check_finite(x, name)
        return x

    def _times(self, t, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(t, torch.Tensor):  # Python numbers straight to x's dtype (no float32 round-off)
            t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        t = self.check_t(t, like=x)
        return t, _batch_time(t, tuple(x.shape[:-2]))


# ================================================================================================
# SE(3) diffusion
# ================================================================================================
class SE3Diffusion(_PoseProcess):
    r"""Diffusion on SO(3) x R^3 (FrameDiff, Yim et al. 2023): VP translations, Brownian rotations.

    A pose ``x = [[R, p], [0, 1]]`` is noised independently in its two parts:

    * translation: ``dp = -beta(t)/2 p dt + c sqrt(beta(t)) dW`` with
      ``beta(t) = beta_min + t (beta_max - beta_min)`` and ``c = trans_scale``;
      marginal ``p_t = alpha(t) p_0 + sigma(t) eps``, ``alpha = exp(-t beta_min/2 -
      t^2 (beta_max - beta_min)/4)``, ``sigma(t) = c sqrt(1 - alpha^2)`` (:meth:`alpha`,
      :meth:`sigma`; ``trans_scale`` is the prior's standard deviation, in data units);
    * rotation: Brownian motion ``R <- R Exp(sqrt(d rot_sigma^2) z)``, so that
      ``R_t = R_0 Exp(v)`` with ``v`` the rotation vector of IGSO3(rot_sigma(t))
      (:class:`stochgen.spaces.IGSO3`). ``rot_schedule="logarithmic"`` (FrameDiff):
      ``rot_sigma(t) = log((1 - t) e^{rot_sigma_min} + t e^{rot_sigma_max})``;
      ``"geometric"``: ``rot_sigma_min^{1-t} rot_sigma_max^t``.
      As in FrameDiff, ``rot_sigma(0) = rot_sigma_min > 0``: the marginal at ``t``
      is what the rotation SDE produces from IGSO3(``R_0``, ``rot_sigma(s)``) at any
      ``s < t``; at ``t = 0`` it is IGSO3(``R_0``, ``rot_sigma_min``), not ``R_0``.

    Tangent convention (``space = SE3(tangent="product")``): a 6-vector
    ``(v, w)`` moves a pose to ``[[R Exp(w), p + v], [0, 1]]`` -- translation
    increments in the world frame, rotation increments in the body frame.
    ``sde`` returns drift and diffusion in these coordinates (rotation drift is 0,
    ``g_trans = trans_scale sqrt(beta)``, ``g_rot = sqrt(d rot_sigma^2 / dt)``) and
    ``marginal(...).score`` is the conditional score in them: translation
    ``-(p_t - alpha p_0) / sigma^2 = -eps / sigma``, rotation
    ``grad_w log IGSO3(R_0 Exp(v) Exp(w))|_{w=0} = (f'/f)(|v|) v / |v|`` (body frame at ``x_t``).

    Prior: Haar-uniform rotations times ``N(0, trans_scale^2 I)`` translations.
    It equals the ``t = 1`` marginal only approximately: translations keep a
    fraction ``alpha(1) ~= 6.6e-3`` of the data (defaults), and IGSO3(1.5) is
    not uniform (its density w.r.t. Haar ranges from 0.69 at angle pi to 1.98 at 0).
    ``prior_log_prob`` is w.r.t. Lebesgue measure on R^3 times the Riemannian
    volume of SO(3) (total ``8 pi^2``), summed over the poses of a sample.
    """
    family = families.LIE_GROUP

    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        trans_scale: float = 1.0,
        rot_sigma_min: float = 0.1,
        rot_sigma_max: float = 1.5,
        rot_schedule: str = "logarithmic",
        t_min: float = 1e-3,
        t_max: float = 1.0,
    ):
        self.beta_min = _number(beta_min, "beta_min", positive=False)
        self.beta_max = _number(beta_max, "beta_max")
        if self.beta_max < self.beta_min:
            raise ValueError(f"beta_max ({beta_max}) must be >= beta_min ({beta_min})")
        self.trans_scale = _number(trans_scale, "trans_scale")
        self.rot_sigma_min = _number(rot_sigma_min, "rot_sigma_min")
        self.rot_sigma_max = _number(rot_sigma_max, "rot_sigma_max")
        if self.rot_sigma_max < self.rot_sigma_min:
            raise ValueError(f"rot_sigma_max ({rot_sigma_max}) must be >= rot_sigma_min ({rot_sigma_min})")
        if rot_schedule not in ("logarithmic", "geometric"):
            raise ValueError(f"rot_schedule must be 'logarithmic' or 'geometric', got {rot_schedule!r}")
        self.rot_schedule = rot_schedule
        self.t_min = _number(t_min, "t_min")
        self.t_max = _number(t_max, "t_max")
        if not self.t_min < self.t_max:
            raise ValueError(f"t_min ({t_min}) must be smaller than t_max ({t_max})")
        self.space = SE3(tangent="product")

    # --- translation schedule --------------------------------------------------------------
    def beta(self, t) -> torch.Tensor:
        t = as_tensor(t, "t")
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_alpha(self, t) -> torch.Tensor:
        t = as_tensor(t, "t")
        return -0.25 * t * t * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha(self, t) -> torch.Tensor:
        """Translation signal coefficient ``alpha(t)``."""
        return torch.exp(self.log_alpha(t))

    def sigma(self, t) -> torch.Tensor:
        """Translation noise standard deviation ``trans_scale * sqrt(1 - alpha(t)^2)`` (data units)."""
        return self.trans_scale * torch.sqrt(-torch.expm1(2.0 * self.log_alpha(t)))

    # --- rotation schedule -------------------------------------------------------------------
    def rot_sigma(self, t) -> torch.Tensor:
        """IGSO(3) concentration of the rotation marginal at ``t``."""
        t = as_tensor(t, "t")
        lo, hi = self.rot_sigma_min, self.rot_sigma_max
        if self.rot_schedule == "geometric":
            return lo * torch.exp(t * math.log(hi / lo))
        return torch.log((1.0 - t) * math.exp(lo) + t * math.exp(hi))

    def rot_g2(self, t) -> torch.Tensor:
        """``d rot_sigma(t)^2 / dt``: the squared rotation diffusion coefficient."""
        t = as_tensor(t, "t")
        lo, hi = self.rot_sigma_min, self.rot_sigma_max
        s = self.rot_sigma(t)
        if self.rot_schedule == "geometric":
            ds = s * math.log(hi / lo)
        else:
            ds = (math.exp(hi) - math.exp(lo)) / ((1.0 - t) * math.exp(lo) + t * math.exp(hi))
        return 2.0 * s * ds

    def rot_score_scale(self, t) -> torch.Tensor:
        """RMS norm of the rotation score at ``t`` (FrameDiff's loss normaliser): ``sqrt(E|score_rot|^2)``."""
        t = as_tensor(t, "t")
        return _igso3.score_norm(self.rot_sigma(t.to(torch.float64))).to(t.dtype)

    # --- protocol --------------------------------------------------------------------------------
    def marginal(self, x0, t, generator: torch.Generator | None = None, **cond) -> Marginal:
        """Draw ``x_t`` given poses ``x0`` ``(batch, ..., 4, 4)``.

        Returns a :class:`Marginal` with ``x_t`` (poses), ``noise`` =
        ``(eps, v)`` (the standard normal translation draw and the IGSO(3)
        rotation vector ``v = Log(R_0^T R_t)``, which is *not* standard normal),
        ``score`` (6-vector, see the class docstring), ``mean``/``std`` ``None``
        (the law is not Gaussian in the pose) and ``extra`` with
        ``trans_alpha``, ``trans_sigma``, ``trans_mean`` (``alpha p_0``),
        ``trans_noise`` (``eps``), ``trans_score``, ``rot_sigma``, ``rotvec`` (``v``)
        and ``rot_score``.
        """
        x0 = self._states(x0, "x0")
        t, tb = self._times(t, x0)
        batch = tuple(x0.shape[:-2])
        R0, p0 = _se3.to_rt(x0)
        a = self.alpha(tb).expand(batch)
        sd = self.sigma(tb).expand(batch)
        eps = torch.randn(batch + (3,), generator=generator, dtype=x0.dtype, device=x0.device)
        mean_p = a[..., None] * p0
        p_t = mean_p + sd[..., None] * eps
        rs = self.rot_sigma(tb.to(torch.float64)).expand(batch)
        v = _igso3.sample_rotvec(rs, generator=generator, dtype=torch.float64)
        R_t = (R0.to(torch.float64) @ _so3.exp(v)).to(x0.dtype)
        trans_score = -eps / sd[..., None]
        rot_score = _igso3.score_rotvec(v, rs).to(x0.dtype)
        v = v.to(x0.dtype)
        return Marginal(
            x_t=_se3.from_rt(R_t, p_t),
            t=t,
            noise=torch.cat([eps, v], dim=-1),
            score=torch.cat([trans_score, rot_score], dim=-1),
            extra={
                "trans_alpha": a,
                "trans_sigma": sd,
                "trans_mean": mean_p,
                "trans_noise": eps,
                "trans_score": trans_score,
                "rot_sigma": rs.to(x0.dtype),
                "rotvec": v,
                "rot_score": rot_score,
            },
        )

    def conditional_score(self, x0, x_t, t) -> torch.Tensor:
        """Score of the marginal at ``x_t`` given ``x0``: ``(..., 6)`` (translation first), differentiable.

        Translation ``-(p_t - alpha p_0) / sigma^2``; rotation ``score_rotvec(Log(R_0^T R_t), rot_sigma)``
        (body frame at ``x_t``). It is ``marginal(x0, t).score`` evaluated at a given ``x_t``, the
        conversion from a denoised pose to the tangent score (a network may predict poses).
        """
        x0 = self._states(x0, "x0", full_check=False)
        x_t = self._states(x_t, "x_t", full_check=False)
        t, tb = self._times(t, x_t)
        R0, p0 = _se3.to_rt(x0)
        Rt, pt = _se3.to_rt(x_t)
        a, sd = self.alpha(tb)[..., None], self.sigma(tb)[..., None]
        trans = -(pt - a * p0) / sd**2
        v = _so3.log(R0.transpose(-1, -2) @ Rt)
        rot = _igso3.score_rotvec(v, self.rot_sigma(tb.to(torch.float64)).expand(v.shape[:-1]))
        return torch.cat([trans, rot.to(trans.dtype)], dim=-1)

    def sde(self, x, t, **cond) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward SDE at poses ``x``: ``(drift, diffusion)``, each ``(..., 6)`` in the product tangent convention.

        ``drift = (-beta/2 p, 0)``, ``diffusion = (trans_scale sqrt(beta) 1_3, sqrt(d rot_sigma^2/dt) 1_3)``
        (diagonal): ``p <- p + drift dt + g dW`` and ``R <- R Exp(g_rot dW_rot)``.
        """
        x = self._states(x, "x", full_check=False)
        _, tb = self._times(t, x)
        batch = tuple(x.shape[:-2])
        _, p = _se3.to_rt(x)
        beta = self.beta(tb).expand(batch)[..., None]
        drift = torch.cat([-0.5 * beta * p, torch.zeros_like(p)], dim=-1)
        g_t = (self.trans_scale * torch.sqrt(beta)).expand(batch + (3,))
        g_r = torch.sqrt(self.rot_g2(tb).clamp(min=0.0)).expand(batch)[..., None].expand(batch + (3,))
        return drift, torch.cat([g_t, g_r.to(x.dtype)], dim=-1)

    def prior_sample(self, shape, generator: torch.Generator | None = None, dtype=None, device=None, **cond):
        """Uniform rotations, ``N(0, trans_scale^2 I)`` translations.

        ``shape`` is the batch shape, or the full state shape ending in ``(4, 4)``.
        """
        full = _pose_shape(shape)
        batch = full[:-2]
        dtype = dtype or torch.get_default_dtype()
        R = _so3.random(batch, generator, dtype, device)
        p = self.trans_scale * torch.randn(batch + (3,), generator=generator, dtype=dtype, device=device)
        return _se3.from_rt(R, p)

    def prior_log_prob(self, x, **cond) -> torch.Tensor:
        """Log prior density per sample (sum over poses) w.r.t. Lebesgue(R^3) x Riemannian volume of SO(3)."""
        x = self._states(x, "x")
        _, p = _se3.to_rt(x)
        c = self.trans_scale
        per_pose = -0.5 * (p * p).sum(-1) / c**2 - 3.0 * math.log(c) - 1.5 * _LOG_2PI - _LOG_SO3_VOLUME
        return _sum_poses(per_pose)

    def config(self) -> dict:
        return {
            "beta_min": self.beta_min,
            "beta_max": self.beta_max,
            "trans_scale": self.trans_scale,
            "rot_sigma_min": self.rot_sigma_min,
            "rot_sigma_max": self.rot_sigma_max,
            "rot_schedule": self.rot_schedule,
            "t_min": self.t_min,
            "t_max": self.t_max,
        }


# ================================================================================================
# Lie-algebra interpolation
# ================================================================================================
def _adjoint(T: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
    """``Ad_T xi`` for twists ``(rho, phi)``: ``(R rho + p x (R phi), R phi)`` (``T hat(xi) T^-1 = hat(Ad_T xi)``)."""
    R, p = _se3.to_rt(T)
    r_phi = (R @ xi[..., 3:, None])[..., 0]
    r_rho = (R @ xi[..., :3, None])[..., 0]
    return torch.cat([r_rho + torch.cross(p, r_phi, dim=-1), r_phi], dim=-1)


class SE3Interpolation(_PoseProcess):
    r"""Lie-algebra interpolant on SE(3): ``x_t = Exp((1 - t) Log(x_0)) Exp(s(t) xi)``, ``xi ~ N(0, I_6)``.

    The first factor runs along the one-parameter subgroup (screw motion) from
    the data pose at ``t = 0`` to the identity at ``t = 1``; the second adds
    Gaussian noise in the Lie algebra (twists ``(rho, phi)``, translation first),
    with ``s(t) = sigma_max t`` (``schedule="linear"``) or ``sigma_max sqrt(t)``
    (``"sqrt"``; its velocity is singular at ``t = 0``, so then ``marginal``
    needs ``t >= t_min``). ``Log`` is the principal logarithm (rotation angle
    ``<= pi``), so the path is the shortest screw motion.

    Tangent convention: the group one (``space = SE3()``), ``x <- x Exp(v dt)``.

    What is exact
    -------------
    * ``marginal`` draws ``x_t`` exactly from the interpolant's law.
    * ``marginal(...).velocity`` is the exact body-frame time derivative of the
      path, ``x_t^{-1} dx_t/dt = s'(t) xi - Ad_{Exp(-s(t) xi)} Log(x_0)``; its
      conditional expectation given ``x_t`` is a velocity field whose ODE
      ``dx/dt = x hat(v)`` transports the marginals, so a network can regress
      it. ``extra["clean_velocity"] = -Log(x_0)`` is the noise-free direction of
      the geodesic (equal to the velocity when ``s = 0``).
    * The process has no SDE and no closed-form score (``score`` is ``None``).

    What is not
    -----------
    * ``prior_log_prob(x)`` is the Gaussian density ``N(Log(x); 0, s(1)^2 I_6)``
      of the *Lie-algebra coordinate* ``Log(x)``, summed over poses. The density
      of the pose ``Exp(s(1) xi)`` itself (w.r.t. the Haar measure of SE(3))
      differs by the Jacobian of ``Exp`` and by the contributions of rotation
      vectors longer than ``pi`` (which ``Log`` folds back); both corrections
      are small only when ``s(1)`` is well below 1.
    * ``prior_sample`` is the exact ``t = 1`` marginal (independent of the data).
    """
    family = families.LIE_INTERPOLANT

    def __init__(self, sigma_max: float = 1.0, schedule: str = "linear", t_min: float = 1e-3, t_max: float = 1.0):
        self.sigma_max = _number(sigma_max, "sigma_max")
        if schedule not in ("linear", "sqrt"):
            raise ValueError(f"schedule must be 'linear' or 'sqrt', got {schedule!r}")
        self.schedule = schedule
        self.t_min = _number(t_min, "t_min")
        self.t_max = _number(t_max, "t_max")
        if not self.t_min < self.t_max:
            raise ValueError(f"t_min ({t_min}) must be smaller than t_max ({t_max})")
        self.space = SE3()

    @property
    def t_lo(self) -> float:
        return 0.0 if self.schedule == "linear" else self.t_min

    def noise_scale(self, t) -> torch.Tensor:
        """``s(t)``, the standard deviation of the Lie-algebra noise."""
        t = as_tensor(t, "t")
        return self.sigma_max * (t if self.schedule == "linear" else torch.sqrt(t))

    def noise_scale_rate(self, t) -> torch.Tensor:
        """``s'(t)``."""
        t = as_tensor(t, "t")
        if self.schedule == "linear":
            return torch.full_like(t, self.sigma_max)
        return 0.5 * self.sigma_max / torch.sqrt(t)

    def marginal(self, x0, t, generator: torch.Generator | None = None, **cond) -> Marginal:
        """Draw ``x_t`` given poses ``x0`` ``(batch, ..., 4, 4)``.

        Returns ``x_t``, ``noise = xi`` ``(..., 6)``, ``velocity`` (exact body-frame
        path derivative, ``(..., 6)``), ``score = None`` and ``extra`` with
        ``log_x0`` (``Log(x_0)``), ``clean_velocity`` (``-Log(x_0)``),
        ``noise_scale`` (``s(t)``) and ``noise_scale_rate`` (``s'(t)``).
        """
        x0 = self._states(x0, "x0")
        t, tb = self._times(t, x0)
        batch = tuple(x0.shape[:-2])
        dt64 = torch.float64
        zeta = _se3.log(x0.to(dt64))
        xi = torch.randn(batch + (6,), generator=generator, dtype=x0.dtype, device=x0.device)
        tb64 = tb.to(dt64)
        s = self.noise_scale(tb64).expand(batch)
        ds = self.noise_scale_rate(tb64).expand(batch)
        geo = _se3.exp((1.0 - tb64).expand(batch)[..., None] * zeta)
        noise_pose = _se3.exp(s[..., None] * xi.to(dt64))
        x_t = geo @ noise_pose
        velocity = ds[..., None] * xi.to(dt64) - _adjoint(_se3.inverse(noise_pose), zeta)
        dtype = x0.dtype
        return Marginal(
            x_t=x_t.to(dtype),
            t=t,
            noise=xi,
            velocity=velocity.to(dtype),
            extra={
                "log_x0": zeta.to(dtype),
                "clean_velocity": (-zeta).to(dtype),
                "noise_scale": s.to(dtype),
                "noise_scale_rate": ds.to(dtype),
            },
        )

    @property
    def prior_std(self) -> float:
        return float(self.noise_scale(torch.tensor(self.t_max, dtype=torch.float64)))

    def prior_sample(self, shape, generator: torch.Generator | None = None, dtype=None, device=None, **cond):
        """``Exp(s(t_max) xi)``, ``xi ~ N(0, I_6)``; ``shape``: the batch shape, or the state shape ending in (4, 4)."""
        batch = _pose_shape(shape)[:-2]
        dtype = dtype or torch.get_default_dtype()
        xi = torch.randn(batch + (6,), generator=generator, dtype=dtype, device=device)
        return _se3.exp(self.prior_std * xi)

    def prior_log_prob(self, x, **cond) -> torch.Tensor:
        """``log N(Log(x); 0, s(t_max)^2 I_6)`` summed over poses (density of the Lie-algebra coordinate; class doc)."""
        x = self._states(x, "x")
        zeta = _se3.log(x)
        s = self.prior_std
        per_pose = -0.5 * (zeta * zeta).sum(-1) / s**2 - 6.0 * math.log(s) - 3.0 * _LOG_2PI
        return _sum_poses(per_pose)

    def config(self) -> dict:
        return {"sigma_max": self.sigma_max, "schedule": self.schedule, "t_min": self.t_min, "t_max": self.t_max}
