"""The ``pose`` domain: rigid registration of two point clouds by SE(3) diffusion.

State: the relative pose ``T`` (4x4) that maps the SOURCE cloud onto the TARGET
(``target ~= source @ R.T + t``) of a *normalised* pair: both clouds centred at their own
centroids and scaled by the source's bounding-box diagonal, so one model serves clouds of any
size and place (:meth:`PoseDomain.normalise`; :meth:`PoseDomain.register` maps the answer back).
Process: the core's :class:`~stochgen.processes.SE3Diffusion` (IGSO(3) rotations x VP translations);
network: :class:`domains.pose.nets.RegistrationNet` (rotation-invariant features, soft matching,
weighted Procrustes), conditioned on the two clouds (named conditions ``source`` / ``target``).

Registration (:meth:`PoseDomain.register`): ``particles`` poses drawn from the prior (uniform
rotations) run the geodesic reverse sampler ``se3-euler`` for ``steps`` steps, ``uniform`` more
uniform rotations join them as they are, a few coarse ICP iterations move each; every pose
is scored by the fraction of target points with a moved source point within ``inlier``
(:func:`domains.pose.geometry.fit_score`, robust when the target is a partial view), the best
few are refined by trimmed point-to-plane ICP on the full clouds
(:func:`domains.pose.geometry.refine`) and the best refined one is returned.

Training data (:meth:`PoseDomain.load`): pairs of :func:`domains.pose.shapes.random_training_pair`
(surface samples of the training shapes, independent resampling, 60-90% crops, noise, rotations
over all of SO(3)); or a dict of arrays ``{"source": (P, N, 3), "target": (P, M, 3), "T": (P, 4, 4)}``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import stochgen
from stochgen import processes
from stochgen.domain import Domain, DomainData, register_domain
from stochgen.spaces import se3, so3

from . import geometry
from .io import check_points, check_transform

__all__ = ["PoseDomain", "default_weights", "DEFAULT_SETTINGS"]

_COARSE_POINTS = (384, 192)  # source / target points of the coarse ICP stage (the target ones also rank)
# ICP iterations of every kept hypothesis; in all for those within the score margin of the best
_REFINE_ITERS = (8, 30, 0.02)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_SETTINGS = {"n_points": 256, "trans_scale": 0.25, "pairs": 3000, "seed": 0, "features": "fpfh",
                    "fpfh_radius": 0.2, "fpfh_k": 64}


def default_weights() -> Path:
    """Path of the shipped registration model (``domains/pose/weights/register.safetensors``)."""
    return WEIGHTS_DIR / "register.safetensors"


def _subsample(p: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``n`` rows of ``p``: a random subset, or all rows plus random repeats when there are fewer."""
    if len(p) >= n:
        return p[np.sort(rng.choice(len(p), n, replace=False))]
    return np.concatenate([p, p[rng.choice(len(p), n - len(p), replace=True)]])


class PoseDomain(Domain):
    """Relative poses ``(N, 4, 4)`` of normalised cloud pairs, the clouds as conditions; see the module docstring.

    Settings: ``n_points`` (points of each cloud the network sees, default 256), ``trans_scale``
    (the prior's translation std in normalised units, 0.25), ``pairs`` / ``seed`` (the generated
    training set of :meth:`load`), ``k`` / ``k2`` / ``width`` / ``hidden`` (the network).
    """

    name = "pose"
    state_ndim = 3
    default_sampler = "se3-euler"
    default_steps = 10
    default_prediction = "tangent_score"

    def setting(self, key: str):
        return self.settings.get(key, DEFAULT_SETTINGS.get(key))

    # --- normalisation ---------------------------------------------------------------------------
    @staticmethod
    def normalise(source, target) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(source_n, target_n, A, B)``: clouds centred at their centroids and scaled by the source's
        bounding-box diagonal, with the similarity maps ``A, B`` (4x4) that took them there
        (``source_n = A(source)``, ``target_n = B(target)``). A pose ``Tn`` of the normalised pair is
        ``B^-1 Tn A`` for the original one (:meth:`denormalise`)."""
        s = check_points(source, "source")
        t = check_points(target, "target")
        diag = float(np.linalg.norm(s.max(0) - s.min(0)))
        if not diag > 0:
            raise ValueError("source: all points coincide; registration needs an extended cloud")
        cs, ct = s.mean(0), t.mean(0)
        A, B = np.eye(4), np.eye(4)
        A[:3, :3] = B[:3, :3] = np.eye(3) / diag
        A[:3, 3], B[:3, 3] = -cs / diag, -ct / diag
        return (s - cs) / diag, (t - ct) / diag, A, B

    @staticmethod
    def denormalise(Tn: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """The pose of the original clouds from the pose ``Tn`` of the normalised pair: ``B^-1 Tn A``."""
        T = np.linalg.inv(B) @ np.asarray(Tn, dtype=np.float64) @ A
        T[3] = (0.0, 0.0, 0.0, 1.0)
        return T

    # --- data ------------------------------------------------------------------------------------
    def encode_pair(self, source, target, T, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A training row: normalised, subsampled clouds (``n_points`` each) and the normalised pose."""
        s, t, A, B = self.normalise(source, target)
        n = int(self.setting("n_points"))
        Tn = B @ np.asarray(T, dtype=np.float64) @ np.linalg.inv(A)
        return _subsample(s, n, rng), _subsample(t, n, rng), Tn

    def load(self, data=None) -> DomainData:
        """Training pairs as :class:`DomainData` (``x`` the normalised poses, ``cond`` the clouds).

        ``data``: ``None`` or ``"shapes"`` (``pairs`` generated pairs of the training shapes, seed
        ``seed``), an int (that many generated pairs), a :class:`DomainData`, or a dict
        ``{"source": (P, N, 3), "target": (P, M, 3), "T": (P, 4, 4)}`` of arrays.
        """
        if isinstance(data, DomainData):
            return data
        rng = np.random.default_rng(int(self.setting("seed")))
        rows = []
        if data is None or data == "shapes" or (isinstance(data, int) and not isinstance(data, bool)):
            from .shapes import random_training_pair

            count = int(self.setting("pairs")) if data in (None, "shapes") else int(data)
            if count < 1:
                raise ValueError(f"need at least one training pair, got {count}")
            from tqdm.auto import tqdm

            for _ in tqdm(range(count), desc="pose pairs", unit="pair", disable=count < 200):
                rows.append(self.encode_pair(*random_training_pair(rng), rng))
        elif isinstance(data, dict):
            missing = [k for k in ("source", "target", "T") if k not in data]
            if missing:
                raise ValueError(f"a pose data dict needs keys source, target and T; missing {', '.join(missing)}")
            Ts = np.asarray(data["T"], dtype=np.float64)
            if Ts.ndim != 3 or Ts.shape[1:] != (4, 4):
                raise ValueError(f"T must have shape (P, 4, 4), got {Ts.shape}")
            if len(data["source"]) != len(Ts) or len(data["target"]) != len(Ts):
                raise ValueError(f"source, target and T must hold the same number of pairs, got "
                                 f"{len(data['source'])}, {len(data['target'])}, {len(Ts)}")
            for s, t, T in zip(data["source"], data["target"], Ts):
                rows.append(self.encode_pair(s, t, check_transform(T, "T"), rng))
        else:
            raise ValueError(f"the pose domain loads None / 'shapes', a number of pairs, or a dict of source, "
                             f"target and T arrays; got {type(data).__name__}")
        src = torch.tensor(np.stack([r[0] for r in rows]), dtype=torch.float32)
        tgt = torch.tensor(np.stack([r[1] for r in rows]), dtype=torch.float32)
        T64 = torch.tensor(np.stack([r[2] for r in rows]), dtype=torch.float64)
        x = se3.from_rt(so3.project(T64[:, :3, :3]), T64[:, :3, 3]).float()  # rigid to float32 round-off
        return DomainData(x, None, {"source": "pose pairs", "pairs": len(rows)}, {"source": src, "target": tgt})

    # --- model -----------------------------------------------------------------------------------
    def default_process(self):
        return processes.SE3Diffusion(trans_scale=float(self.setting("trans_scale")))

    def default_network_for(self, process, example, num_classes=None, cond=None, prediction=None):
        from .nets import RegistrationNet

        s = self.settings
        return RegistrationNet(process.spec(), k=int(s.get("k", 16)), k2=int(s.get("k2", 32)),
                               width=int(s.get("width", 64)), hidden=int(s.get("hidden", 64)),
                               features=str(self.setting("features")), fpfh_radius=float(self.setting("fpfh_radius")),
                               fpfh_k=int(self.setting("fpfh_k")))

    def resolve_model(self, model=None):
        """``model`` (a :class:`stochgen.Model` or a checkpoint path), else the shipped default."""
        return stochgen.resolve_model(model, default_weights() if model is None else None,
                                      "train one with examples/pose/train_pose.py and pass model=<checkpoint>")

    # --- registration ----------------------------------------------------------------------------
    def hypotheses(self, model, source_n: np.ndarray, target_n: np.ndarray, particles: int = 16,
                   steps: int | None = None, seed: int = 0, match_rows: int | None = None) -> torch.Tensor:
        """``(particles, 4, 4)`` poses of the normalised pair from the reverse diffusion (prior starts).

        ``match_rows``: the network matches only that many evenly spaced target points (its features
        still come from the whole cloud): cheaper sampling, for many particles."""
        rng = np.random.default_rng(seed)
        n = int(model.domain.settings.get("n_points", DEFAULT_SETTINGS["n_points"]))
        dev = model.device
        src = torch.tensor(_subsample(source_n, n, rng), dtype=torch.float32, device=dev)[None]
        tgt = torch.tensor(_subsample(target_n, n, rng), dtype=torch.float32, device=dev)[None]
        g = torch.Generator(device=dev).manual_seed(int(seed))
        proc = model.process
        x_T = proc.prior_sample((int(particles), 4, 4), generator=g)
        net = model.weights
        before = getattr(net, "match_rows", None)
        if hasattr(net, "match_rows"):
            net.match_rows = match_rows
        try:
            with torch.no_grad():
                out = stochgen.sample(proc, model.denoise, x_T=x_T.to(dev, torch.float32), sampler=model.sampler,
                                      steps=int(steps or model.steps), prediction=model.prediction, generator=g,
                                      cond={"source": src, "target": tgt})
        finally:
            if hasattr(net, "match_rows"):
                net.match_rows = before
        out = out.double().cpu()
        return se3.from_rt(so3.project(out[:, :3, :3]), out[:, :3, 3])  # float32 round-off off the rotations

    def register(self, source, target, model=None, particles: int = 8, steps: int | None = None,
                 refine: bool = True, seed: int = 0, inlier: float = 0.02, keep: int = 4, coarse: int = 8,
                 proposals: str = "diffusion", match_rows: int | None = 64, uniform: int = 32,
                 return_info: bool = False, **opts):
        """The 4x4 pose ``T`` with ``target ~= source @ R.T + t`` (float64 numpy).

        ``source (N, 3)`` and ``target (M, 3)`` need no correspondences (``N != M`` is fine).
        ``particles`` reverse-diffusion hypotheses of ``steps`` steps (default: the model's; the shipped
        model's is 5) and ``uniform`` uniform rotations go through the coarse stage (only with
        ``refine``): ``coarse`` ICP iterations on every hypothesis against sub-sampled clouds (384 source
        and 192 target points; cheap, and it moves hypotheses near a basin into it). The ``keep`` best by
        the target inlier fraction (within ``inlier`` of the normalised scale) are refined by ICP on
        the full clouds (``refine=False``: none is): 8 iterations each, then only those scoring within
        0.02 of the best go on to 30 in all, and the best is returned. ``proposals``:
        ``"diffusion"`` (the model's reverse diffusion) or ``"prior"`` (``particles + uniform`` uniform
        rotations with zero translation as they are, no network: the multi-start ICP the diffusion is
        measured against). ``return_info``: also a dict with the ``score`` of the answer and every
        hypothesis' score. ``match_rows``: see :meth:`hypotheses`. ``uniform``: that many extra
        hypotheses, uniform rotations with zero translation, join the proposals before the coarse stage.
        """
        if opts:
            raise TypeError(f"unknown registration options: {', '.join(sorted(opts))}")
        if int(particles) < 1 or int(keep) < 1:
            raise ValueError(f"particles and keep must be >= 1, got {particles}, {keep}")
        if proposals not in ("diffusion", "prior"):
            raise ValueError(f"proposals must be 'diffusion' or 'prior', got {proposals!r}")
        s, t, A, B = self.normalise(source, target)
        if int(uniform) < 0:
            raise ValueError(f"uniform (extra uniform-rotation starts) must be >= 0, got {uniform!r}")
        n_uniform = int(uniform) + (int(particles) if proposals == "prior" else 0)
        S, Tt = torch.from_numpy(s), torch.from_numpy(t)
        rng = np.random.default_rng(seed + 1)
        ns, nt = _COARSE_POINTS
        sub_s = torch.from_numpy(_subsample(s, min(len(s), ns), rng))
        sub_t = torch.from_numpy(_subsample(t, min(len(t), nt), rng))
        coarse = int(coarse) if refine else 0
        parts = []
        if proposals == "diffusion":
            net = self.resolve_model(model)
            parts.append(self.hypotheses(net, s, t, particles, steps, seed, match_rows=match_rows))
        if n_uniform:
            g = torch.Generator().manual_seed(int(seed))
            parts.append(se3.from_rt(so3.random((n_uniform,), generator=g, dtype=torch.float64),
                                     torch.zeros(n_uniform, 3, dtype=torch.float64)))
        hyp = torch.cat(parts)
        if coarse > 0:
            hyp = geometry.refine(sub_s, sub_t, hyp, iters=coarse)
        # rank by the target inlier fraction of the sub-sampled target against the full source
        score = geometry.fit_score(S, sub_t, hyp, inlier=inlier, directions="target")[geometry.SELECT_SCORE]
        order = torch.argsort(score, descending=True)[: int(keep)]
        best = hyp[order]
        if refine:
            first, total, margin = _REFINE_ITERS
            n_full = geometry.estimate_normals(S)
            best = geometry.refine(S, Tt, best, iters=first, source_normals=n_full)
            # after the first iterations, only hypotheses scoring within `margin` of the best go on
            sel = geometry.fit_score(S, Tt, best, inlier=inlier, directions="target")[geometry.SELECT_SCORE]
            best = geometry.refine(S, Tt, best[sel >= sel.max() - margin], iters=total - first, source_normals=n_full)
        final = geometry.fit_score(S, Tt, best, inlier=inlier, directions="target")[geometry.SELECT_SCORE]
        i = int(torch.argmax(final))
        T = self.denormalise(best[i].numpy(), A, B)
        if return_info:
            return T, {"score": float(final[i]), "hypothesis_scores": score.tolist(), "particles": int(particles)}
        return T

    # --- demo ------------------------------------------------------------------------------------
    def demo(self, out: str, quick: bool = False, seed: int = 0, device: str = "cpu",
             progress: bool = True) -> list[str]:
        """``stochgen demo``: register the embedded shape turned by 150 degrees (domains/pose/demo.py)."""
        from .demo import run

        return run(self, out, quick=quick, seed=seed, device=device, progress=progress)

    @staticmethod
    def errors(T_est, T_true):
        """``(rotation error in degrees, translation error)`` of an estimate against the truth."""
        return geometry.errors(T_est, T_true)


register_domain("pose", PoseDomain)
