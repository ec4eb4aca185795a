"""The pose domain's network: rotation-invariant point features, soft matching and weighted Procrustes.

:class:`RegistrationNet` ``(x, t, source=..., target=...)`` takes the current relative poses ``x``
``(B, 4, 4)`` of an SE(3) diffusion (the pose that maps ``source (B, N, 3)`` onto ``target (B, M, 3)``)
and returns their tangent score ``(B, 6)`` (translation first), as the core's ``"lie-dsm"`` objective
and the ``se3-euler`` sampler expect. Inside, it *predicts a pose* and converts it:

1. **Invariant features** of each cloud (computed once per cloud, independent of ``x``): normals by
   PCA of the ``k`` nearest neighbours; for each point ``i`` and neighbour ``j`` the point-pair
   features ``(|d| / r, |n_i . d^|, |n_j . d^|, |n_i . n_j|)`` (``d = p_j - p_i``, ``r`` the cloud's
   mean neighbour distance; absolute values make them independent of the normals' signs) go
   through an MLP and are max-pooled over the neighbours; a second round pools the features of a
   wider neighbourhood (``k2`` neighbours), and the cloud's max-pooled feature is appended. Every
   input is a distance or an angle, so the features do not change under any rotation or
   translation of the cloud: rotations of 180 degrees are as learnable as small ones (the reason
   for this choice over a PointNet on raw coordinates, which must learn every orientation).
2. **Soft matching at the current pose**: every target point ``j`` attends over the source points
   with logits ``tau(t) <h_j, W h_i> - lambda(t) |y_j - T_t s_i|^2 / r^2``: feature similarity
   dominates at high noise (global matching), the distance under the current pose at low noise
   (ICP-like); ``tau, lambda`` are learned functions of ``t``. The matched point ``s^_j`` is the
   attention-weighted source point, its weight ``w_j`` a learned confidence (sharpness of the match).
3. **Weighted Procrustes** (``roma.rigid_points_registration``): the pose ``T^`` minimising
   ``sum_j w_j |y_j - T^ s^_j|^2``, differentiable.
4. **Skip to the current pose**: ``x0^ = T_t Exp(g(t) Log(T_t^{-1} T^))`` with a learned ``g(t)`` in
   (0, 1) (at small ``t`` the posterior mean of the pose is the current pose itself).
5. The tangent score is ``process.conditional_score(x0^, T_t, t)`` of the SE(3) diffusion whose spec
   the network was built with (``score_process``).

Registered in :mod:`stochgen.nets` as ``"RegistrationNet"`` (importing :mod:`domains.pose.nets`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from stochgen import nets, processes
from stochgen.nets import ScoreNet
from stochgen.spaces import se3

__all__ = ["RegistrationNet", "FEATURES", "fpfh", "knn", "normals", "oriented_normals", "point_pair_features"]

FEATURES = ("ppf", "fpfh", "both")
_DENSE_NEIGHBOUR_SUM = 1 << 22  # fpfh: entries of a (B, N, N) weight matrix below which a product beats a gather


def knn(p: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(B, N, k)`` of the ``k`` nearest neighbours of every point of ``p (B, N, 3)`` (itself first)."""
    d = torch.cdist(p, p)
    return d.topk(min(k, p.shape[1]), dim=-1, largest=False).indices


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x (B, N, C)`` at ``idx (B, N, k)`` -> ``(B, N, k, C)``."""
    b, n, k = idx.shape
    flat = idx.reshape(b, n * k, 1).expand(-1, -1, x.shape[-1])
    return x.gather(1, flat).reshape(b, n, k, x.shape[-1])


def normals(p: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Unit normals ``(B, N, 3)``: the smallest principal axis of each neighbourhood ``idx`` (sign arbitrary)."""
    nb = _gather(p, idx)
    c = nb - nb.mean(2, keepdim=True)
    cov = c.transpose(-1, -2) @ c / idx.shape[-1]
    cov = cov + 1e-9 * torch.eye(3, dtype=p.dtype, device=p.device)
    _, vec = torch.linalg.eigh(cov)
    return vec[..., 0]


def point_pair_features(p: torch.Tensor, n: torch.Tensor, idx: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``(B, N, k, 4)``: ``(|d| / scale, |n_i . d^|, |n_j . d^|, |n_i . n_j|)`` for the neighbours ``idx``."""
    d = _gather(p, idx) - p[:, :, None]
    dist = d.norm(dim=-1, keepdim=True)
    dh = d / dist.clamp_min(1e-12)
    nj = _gather(n, idx)
    ni = n[:, :, None].expand_as(nj)
    return torch.cat([dist / scale[:, None, None, None], (ni * dh).sum(-1, keepdim=True).abs(),
                      (nj * dh).sum(-1, keepdim=True).abs(), (ni * nj).sum(-1, keepdim=True).abs()], dim=-1)


def oriented_normals(p: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """:func:`normals` signed to point away from each cloud's centroid (consistent on star-shaped surfaces)."""
    n = normals(p, idx)
    out = ((p - p.mean(1, keepdim=True)) * n).sum(-1, keepdim=True) < 0
    return torch.where(out, -n, n)


def fpfh(p: torch.Tensor, n: torch.Tensor, idx: torch.Tensor, radius: float, bins: int = 11) -> torch.Tensor:
    """Fast point feature histograms ``(B, N, 3 * bins)`` (Rusu et al., ICRA 2009) of clouds ``p (B, N, 3)``
    with oriented normals ``n``, over the neighbours ``idx (B, N, k)`` (itself first) within ``radius``.

    For a pair ``(s, t)`` of points with ``d = p_t - p_s`` (``s`` the point whose normal is closer to the
    line), the Darboux frame ``u = n_s, v = u x d^, w = u x v`` gives ``alpha = v . n_t``,
    ``phi = u . d^`` and ``theta = atan2(w . n_t, u . n_t)``; each point's simplified histogram (SPFH)
    counts them in ``bins`` bins each (as fractions), and the FPFH adds the neighbours' SPFH weighted by
    ``1 / distance``, averaged. Rotation- and translation-invariant (distances and angles only); not
    differentiable (a fixed input feature).
    """
    with torch.no_grad():
        nb = _gather(p, idx[..., 1:])                       # (B, N, k, 3)
        d = nb - p[:, :, None]
        dist = d.norm(dim=-1)
        dh = d / dist[..., None].clamp_min(1e-12)
        ni = n[:, :, None].expand_as(nb)
        nj = _gather(n, idx[..., 1:])
        # ties (equal normals: neighbours with the same PCA neighbourhood) keep the order, so round-off
        # cannot decide the sign of phi differently in two frames
        swap = ((ni * dh).sum(-1).abs() < (nj * dh).sum(-1).abs() - 1e-9)[..., None]
        u = torch.where(swap, nj, ni)
        nt = torch.where(swap, ni, nj)
        dh = torch.where(swap, -dh, dh)
        v = torch.linalg.cross(u, dh)
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        w = torch.linalg.cross(u, v)
        alpha = (v * nt).sum(-1)
        phi = (u * dh).sum(-1)
        theta = torch.atan2((w * nt).sum(-1), (u * nt).sum(-1))
        valid = (dist <= radius).to(p.dtype)                 # (B, N, k)
        b, n_pts, k = dist.shape
        # bin codes of the three angles (offset per angle), counted into one (B*N, 3 bins) histogram
        codes = torch.cat([((val - lo) / (hi - lo) * bins).long().clamp(0, bins - 1) + j * bins for j, (val, lo, hi)
                           in enumerate(((alpha, -1.0, 1.0), (phi, -1.0, 1.0), (theta, -math.pi, math.pi)))], dim=-1)
        hist = torch.zeros(b * n_pts, 3 * bins, dtype=p.dtype, device=p.device)
        hist.scatter_add_(1, codes.reshape(b * n_pts, 3 * k), valid.reshape(b * n_pts, k).repeat(1, 3))
        count = valid.sum(-1, keepdim=True).clamp_min(1.0)
        spfh = hist.reshape(b, n_pts, 3 * bins) / count      # (B, N, 3 bins)
        wgt = valid / dist.clamp_min(1e-6)
        wgt = wgt / wgt.sum(-1, keepdim=True).clamp_min(1e-12)
        if b * n_pts * n_pts <= _DENSE_NEIGHBOUR_SUM:
            # the 1/distance-weighted sum of the neighbours' SPFH as one (N, N) sparse-as-dense product
            wmat = torch.zeros(b, n_pts, n_pts, dtype=p.dtype, device=p.device).scatter_add_(2, idx[..., 1:], wgt)
            nbr = wmat @ spfh
        else:
            nbr = (wgt[..., None] * _gather(spfh, idx[..., 1:])).sum(2)
        return (spfh + nbr) / 2.0


def _mlp(sizes) -> nn.Sequential:
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


class _TimeHead(nn.Module):
    """Scalars of ``t``: a small MLP on ``log t`` features."""

    def __init__(self, out: int, hidden: int = 32):
        super().__init__()
        self.net = _mlp([4, hidden, hidden, out])

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        lt = torch.log(t.clamp_min(1e-6))
        return self.net(torch.stack([t, lt / 7.0, torch.sqrt(t), torch.ones_like(t)], dim=-1))


@nets.register
class RegistrationNet(ScoreNet):
    """See the module docstring.

    * ``score_process``: spec of the :class:`stochgen.processes.SE3Diffusion` being trained (required).
    * ``k`` / ``k2``: neighbours of the point-pair features and of the second pooling round.
    * ``width``: feature size; ``hidden``: the MLPs' width.
    """

    def __init__(self, score_process: dict, k: int = 16, k2: int = 32, width: int = 64, hidden: int = 64,
                 features: str = "ppf", fpfh_radius: float = 0.15, fpfh_k: int = 64):
        super().__init__()
        self.score_process = dict(score_process)
        proc = processes.from_spec(self.score_process)
        if not callable(getattr(proc, "conditional_score", None)):
            raise ValueError(f"RegistrationNet needs a diffusion on SO(3) x R^3 with conditional_score "
                             f"(SE3Diffusion), got {type(proc).__name__}")
        self._proc = proc
        self.k, self.k2, self.width, self.hidden = int(k), int(k2), int(width), int(hidden)
        if self.k < 3 or self.k2 < 2 or self.width < 4 or self.hidden < 4:
            raise ValueError(f"RegistrationNet needs k >= 3, k2 >= 2, width, hidden >= 4; got k={k}, k2={k2}, "
                             f"width={width}, hidden={hidden}")
        if features not in FEATURES:
            raise ValueError(f"RegistrationNet features must be one of {', '.join(FEATURES)}, got {features!r}")
        if not fpfh_radius > 0 or int(fpfh_k) < 2:
            raise ValueError(f"fpfh_radius must be > 0 and fpfh_k >= 2, got {fpfh_radius!r}, {fpfh_k!r}")
        self.features_kind, self.fpfh_radius, self.fpfh_k = features, float(fpfh_radius), int(fpfh_k)
        w, h = self.width, self.hidden
        if features in ("ppf", "both"):
            self.edge1 = _mlp([4, h, h, w])
        if features in ("fpfh", "both"):
            self.hist = _mlp([33, h, h, w])
        n1 = 2 * w if features == "both" else w
        self.edge2 = _mlp([n1 + 1, h, w])
        self.point = _mlp([n1 + 2 * w, h, h, w])
        self.bilinear = nn.Linear(w, w, bias=False)
        self.time = _TimeHead(3)
        self.conf = _mlp([3, 16, 1])
        self._cache: dict = {}
        #: at inference, match only this many (evenly spaced) target points; None: all (not part of the spec)
        self.match_rows: int | None = None

    def config(self) -> dict:
        return {"score_process": self.score_process, "k": self.k, "k2": self.k2, "width": self.width,
                "hidden": self.hidden, "features": self.features_kind, "fpfh_radius": self.fpfh_radius,
                "fpfh_k": self.fpfh_k}

    @property
    def cond_keys(self) -> tuple[str, ...]:
        return ("source", "target")

    # --- pieces -----------------------------------------------------------------------------------
    def features(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Invariant features ``(B, N, width)`` and the length scale ``(B,)`` of clouds ``p (B, N, 3)``."""
        kinds = self.features_kind
        kmax = max(self.k, self.k2, self.fpfh_k if kinds != "ppf" else 0)
        idx = knn(p, kmax)
        i1 = idx[..., : self.k]
        scale = (_gather(p, i1[..., 1:]) - p[:, :, None]).norm(dim=-1).mean((1, 2)).clamp_min(1e-9)
        parts = []
        if kinds in ("ppf", "both"):
            parts.append(self.edge1(point_pair_features(p, normals(p, i1), i1, scale)).amax(2))
        if kinds in ("fpfh", "both"):
            n = oriented_normals(p, i1)
            parts.append(self.hist(fpfh(p, n, idx[..., : self.fpfh_k], self.fpfh_radius) * 5.0))
        f1 = torch.cat(parts, dim=-1)
        # context: the first features of a wider neighbourhood (k2 points), with their distances
        i2 = idx[..., : self.k2]
        d2 = (_gather(p, i2) - p[:, :, None]).norm(dim=-1, keepdim=True) / (4 * scale[:, None, None, None])
        # edge2's first (linear) layer on cat([f1_j, d2_ij]) split in two: f1's part once per point, then
        # gathered (k2 times fewer products than on every (point, neighbour) row; the same function)
        lin, rest = self.edge2[0], self.edge2[1:]
        n1 = f1.shape[-1]
        pre = _gather(f1 @ lin.weight[:, :n1].T, i2) + d2 * lin.weight[:, n1] + lin.bias
        f2 = rest(pre).amax(2)
        g = f2.amax(1, keepdim=True).expand_as(f2)
        parts = [f1, f2, g]
        return self.point(torch.cat(parts, dim=-1)), scale

    def _cached_features(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`features`, remembered between calls on the same cloud while not training (a sampler
        evaluates the network many times on one pair; the features do not depend on the pose)."""
        if self.training or torch.is_grad_enabled():
            return self.features(p)
        key = (p.data_ptr(), p._version, tuple(p.shape), p.dtype, p.device)
        hit = self._cache.get(key)
        if hit is None or hit[0] is not p:
            if len(self._cache) > 8:
                self._cache.clear()
            hit = self._cache[key] = (p, self.features(p))
        return hit[1]

    def denoised_pose(self, x: torch.Tensor, t: torch.Tensor, source: torch.Tensor, target: torch.Tensor):
        """The predicted clean pose ``(B, 4, 4)`` at poses ``x`` and times ``t (B,)``."""
        hs, scale = self._cached_features(source)
        ht, _ = self._cached_features(target)
        b = x.shape[0]
        rows = self.match_rows
        if rows and not self.training and target.shape[1] > rows:
            # inference shortcut: match only every k-th target point (features still from the whole cloud)
            keep = torch.linspace(0, target.shape[1] - 1, int(rows), device=target.device).round().long()
            ht, target = ht[:, keep], target[:, keep]
        # feature similarity: once per pair of clouds (one pair shared by many poses: computed once)
        sim = ht @ self.bilinear(hs).transpose(1, 2) / math.sqrt(self.width)  # (B or 1, M, N)
        scale = scale.expand(b)
        head = self.time(t)
        tau = nn.functional.softplus(head[:, 0]) + 1e-3
        lam = nn.functional.softplus(head[:, 1] - 4.0)
        gate = torch.sigmoid(head[:, 2] + 2.0)
        source, target = source.expand(b, -1, -1), target.expand(b, -1, -1)
        moved = se3.apply(x, source)  # (B, N, 3)
        # squared distances |y_j - m_i|^2 = |y|^2 + |m|^2 - 2 y.m (no square root), in units of the scale
        dist2 = torch.baddbmm((target * target).sum(-1, keepdim=True) + (moved * moved).sum(-1)[:, None, :],
                              target, moved.transpose(1, 2), alpha=-2.0).clamp_min(0.0)
        logits = tau[:, None, None] * sim - (lam / scale ** 2)[:, None, None] * dist2
        logp = torch.log_softmax(logits, dim=-1)
        att = logp.exp()
        matched = att @ source  # (B, M, 3) in source coordinates
        top = att.amax(-1)
        ent = -(att * logp).sum(-1) / math.log(att.shape[-1])
        w = torch.sigmoid(self.conf(torch.stack([top, ent, t[:, None].expand_as(top)], dim=-1))[..., 0]) + 1e-4
        import roma

        R, p = roma.rigid_points_registration(matched, target, weights=w)
        T_hat = se3.from_rt(R, p)
        rel = se3.log(se3.compose(se3.inverse(x), T_hat))
        return se3.compose(x, se3.exp(gate[:, None] * rel))

    def forward(self, x: torch.Tensor, t, source=None, target=None, **cond) -> torch.Tensor:
        if not torch.is_tensor(x) or x.dim() != 3 or tuple(x.shape[1:]) != (4, 4):
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"RegistrationNet takes poses (B, 4, 4), got {got}")
        b = x.shape[0]
        for name, c in (("source", source), ("target", target)):
            if not torch.is_tensor(c) or c.dim() != 3 or c.shape[-1] != 3 or c.shape[0] not in (1, b):
                got = tuple(c.shape) if torch.is_tensor(c) else type(c).__name__
                raise ValueError(f"RegistrationNet needs {name}= clouds (B, N, 3) for {b} poses, got {got}")
        dtype = next(self.parameters()).dtype
        xd = x.to(dtype)
        source, target = source.to(dtype), target.to(dtype)
        tb = self._batch_time(t, x).to(dtype).reshape(b).clamp_min(float(self._proc.t_min))
        x0 = self.denoised_pose(xd, tb, source, target)
        return self._proc.conditional_score(x0, xd, tb).to(x.dtype)
