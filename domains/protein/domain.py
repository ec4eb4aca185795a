"""The ``protein`` domain: backbone frames x sequence, segment co-design and conformational ensembles.

Two tasks share the domain (setting ``task``):

* ``"design"`` (default): segment co-design (DiffAb's task on general proteins). The state is the
  composite ``{"frames": SE(3)^16, "seq": 21 tokens}`` of a window
  (:mod:`domains.protein.design`), conditioned on the fixed context; trained on windows of the
  training chains (:meth:`ProteinDomain.load` with ``None`` / ``"chains"``, a folder of structure
  files, or a list of :class:`~domains.protein.structure.Backbone`). :meth:`ProteinDomain.design`
  generates a segment's backbone and sequence jointly (``mode="joint"``), the sequence for the
  given backbone (``"sequence"``) or the backbone for the given sequence (``"structure"``): the
  fixed part is held by the composite sampler's ``fixed`` option.
* ``"ensemble"``: the frames of one protein's conformations (a multi-model PDB / mmCIF, or a
  trajectory with its topology). Every conformation is superposed on the first by its CA atoms
  (Kabsch); the state is the frame of every residue relative to the mean structure's frame
  ``(N, 4, 4)`` (small rigid deviations, translations in Angstrom), the process an
  ``SE3Diffusion`` whose translation scale is the deviations' RMS. The mean frames, sequence and
  residue numbers are domain settings, so a checkpoint rebuilds the protein.
  :meth:`ProteinDomain.ensemble` draws new conformations.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

import stochgen
from stochgen import processes
from stochgen.domain import Domain, DomainData, register_domain
from stochgen.spaces import so3

from . import design as D
from .frames import backbone_from_frames, frames_from_backbone, idealize_ca, superpose
from .structure import STRUCTURE_SUFFIXES, Backbone, decode_sequence, read_chains, read_models, read_trajectory

__all__ = ["ProteinDomain", "default_weights", "DEFAULT_SETTINGS"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_SETTINGS = {"task": "design", "corpus": "dssp", "trans_scale": 1.0, "seed": 0, "lengths_per_start": 2,
                    "hidden": 128,
                    "depth": 4, "heads": 4, "test_share": 0.2}
_TRAJ_SUFFIXES = (".dcd", ".xtc", ".trr", ".nc", ".h5", ".netcdf")


def default_weights() -> Path:
    """Path of the shipped segment-design model (``domains/protein/weights/design.safetensors``)."""
    return WEIGHTS_DIR / "design.safetensors"


def _windows(chains: list[Backbone], per_start: int, rng: np.random.Generator) -> list[dict]:
    from .data import chain_breaks

    rows = []
    for bb in chains:
        n = len(bb)
        breaks = chain_breaks(bb)
        for s in range(1, n - D.MIN_LENGTH):
            top = min(D.SLOTS, n - 1 - s)
            if top < D.MIN_LENGTH:
                continue
            for L in rng.choice(np.arange(D.MIN_LENGTH, top + 1), size=min(per_start, top - D.MIN_LENGTH + 1),
                                replace=False):
                if breaks[s - 1:s + L].any():
                    continue
                rows.append(D.window(bb, s, int(L)))
    return rows


class ProteinDomain(Domain):
    """Protein backbones and sequences; see the module docstring for the two tasks."""

    name = "protein"
    default_sampler = "composite"
    default_steps = 100

    def setting(self, key: str):
        return self.settings.get(key, DEFAULT_SETTINGS.get(key))

    # --- data ------------------------------------------------------------------------------------
    def training_chains(self, split: str = "train") -> list[Backbone]:
        """The chains of one side (``"train"`` / ``"test"``) of the 40%-identity split of the offline corpus;
        with the setting ``corpus="extended"`` the training side adds :func:`domains.protein.data.extra_chains`
        (none above 40% identity to a test chain, none above 90% to a chain already in)."""
        from .data import dssp_chains, identity, identity_split

        chains = dssp_chains()
        tr, te = identity_split([c[1].sequence for c in chains], float(self.setting("test_share")), 0.4, 0)
        out = [chains[i][1] for i in (tr if split == "train" else te)]
        if split == "train" and self.setting("corpus") == "extended":
            from .data import extra_chains

            known = [c.sequence for c in out]
            out += [c for _, c in extra_chains([chains[i][1].sequence for i in te])
                    if not any(identity(c.sequence, k) > 0.9 for k in known)]
        return out

    def load(self, data=None) -> DomainData:
        """Design windows (``None`` / ``"chains"``: the training split; a folder of structures; a list of
        backbones) or an ensemble (a multi-model ``.pdb`` / ``.cif``; a trajectory ``TRAJ.dcd`` whose
        topology ``TRAJ.pdb`` / ``.psf`` lies beside it, or ``"TRAJ.dcd:TOPOLOGY"``)."""
        if isinstance(data, DomainData):
            return data
        if isinstance(data, (str, os.PathLike)) and str(data) != "chains":
            path = os.fspath(data)
            low = path.lower()[:-3] if path.lower().endswith(".gz") else path.lower()
            if os.path.isdir(path):
                files = sorted(f for f in os.listdir(path) if f.lower().replace(".gz", "").endswith(STRUCTURE_SUFFIXES))
                if not files:
                    raise ValueError(f"{path!r} holds no structure files ({', '.join(STRUCTURE_SUFFIXES)})")
                return self._design_data([c for f in files for c in read_chains(os.path.join(path, f))], path)
            if low.endswith(STRUCTURE_SUFFIXES):
                return self._ensemble_data(read_models(path), path)
            traj, _, top = path.partition(":") if ":" in path and not os.path.exists(path) else (path, "", "")
            if traj.lower().endswith(_TRAJ_SUFFIXES):
                if not top:
                    stem = os.path.splitext(traj)[0]
                    top = next((stem + e for e in (".pdb", ".psf", ".gro", ".prmtop") if os.path.exists(stem + e)), "")
                    if not top:
                        raise ValueError(f"{traj!r}: give the trajectory's topology as {traj}:TOPOLOGY.pdb (or put "
                                         f"{os.path.basename(stem)}.pdb / .psf beside it)")
                return self._ensemble_data(read_trajectory(traj, top), traj)
            raise ValueError(f"the protein domain loads structure files ({', '.join(STRUCTURE_SUFFIXES)}), "
                             f"trajectories ({', '.join(_TRAJ_SUFFIXES)}) or a folder of structures; got {path!r}")
        if data is None or data == "chains":
            return self._design_data(self.training_chains("train"), "MDAnalysisTests chains (train split)")
        if isinstance(data, (list, tuple)) and data and all(isinstance(c, Backbone) for c in data):
            return self._design_data(list(data), "backbones")
        raise ValueError(f"the protein domain cannot load {type(data).__name__}; see ProteinDomain.load")

    def _design_data(self, chains: list[Backbone], source: str) -> DomainData:
        self.settings["task"] = "design"
        rng = np.random.default_rng(int(self.setting("seed")))
        rows = _windows(chains, int(self.setting("lengths_per_start")), rng)
        if not rows:
            raise ValueError(f"{source}: no designable window (chains need at least {D.MIN_LENGTH + 2} bonded "
                             "residues)")
        x = {"frames": D.frames_tensor(rows, "frames"), "seq": torch.as_tensor(np.stack([r["seq"] for r in rows]))}
        cond = {"context": D.frames_tensor(rows, "context"), "slots": D.frames_tensor(rows, "slots")}
        return DomainData(x, None, {"source": source, "chains": len(chains), "windows": len(rows)}, cond)

    @property
    def fit_defaults(self) -> dict:
        """``stochgen.fit``'s settings where the call gives none (ensembles: 3000 steps, measured at about 16
        minutes for 76 residues on 2 threads; design: the shipped model's recipe)."""
        if self.setting("task") == "ensemble":
            steps = int(self.settings.get("train_steps", 3000))
            return {"steps": steps, "batch_size": 64, "lr": 1e-3, "warmup": 100, "lr_schedule": "cosine",
                    "lr_min": 1e-5, "ema": 0.995}
        return {"steps": int(self.settings.get("train_steps", 6000)), "batch_size": 64, "lr": 5e-4, "warmup": 300,
                "lr_schedule": "cosine", "ema": 0.999}

    def ensemble_data(self, models: list[Backbone], source: str = "backbones") -> DomainData:
        """Ensemble training data from conformations in memory (the same residues in each); see the module
        docstring. Sets the domain's ``task`` to ``"ensemble"`` and records the mean structure."""
        return self._ensemble_data(list(models), source)

    def _ensemble_data(self, models: list[Backbone], source: str) -> DomainData:
        if len(models) < 2:
            raise ValueError(f"{source}: an ensemble needs at least 2 models / frames, got {len(models)}")
        ref = models[0]
        aligned = []
        for m in models:
            R, t, _ = superpose(m.ca, ref.ca)
            aligned.append(m.coords @ R.T + t)
        X = np.stack(aligned)
        center = X[:, :, 1].mean((0, 1))
        X = X - center
        T = frames_from_backbone(X)  # (M, N, 4, 4)
        mean = _mean_frames(T)
        dev = np.linalg.inv(mean)[None] @ T
        scale = float(np.sqrt((dev[..., :3, 3] ** 2).sum(-1).mean() / 3.0))
        self.settings.update({"task": "ensemble", "trans_scale": max(scale, 1e-3), "sequence": ref.sequence,
                              "resnums": [int(v) for v in ref.resnums], "chain": ref.chain,
                              "mean_frames": np.round(mean[:, :3, :], 6).tolist()})
        x = torch.as_tensor(dev, dtype=torch.float32)
        return DomainData(x, None, {"source": source, "models": len(models), "residues": len(ref)}, {})

    # --- model -----------------------------------------------------------------------------------
    def default_process(self):
        if self.setting("task") == "ensemble":
            return processes.SE3Diffusion(trans_scale=float(self.setting("trans_scale")))
        return D.make_process(float(self.setting("trans_scale")))

    def default_network_for(self, process, example, num_classes=None, cond=None, prediction=None):
        from .nets import EnsembleNet, SegmentNet

        if self.setting("task") == "ensemble":
            return EnsembleNet(process.spec(), int(example.shape[1]), hidden=int(self.settings.get("hidden", 64)),
                               depth=int(self.settings.get("depth", 3)), heads=int(self.setting("heads")))

        frames = process.parts["frames"]
        seq = process.parts["seq"]
        return SegmentNet(frames.spec(), D.SLOTS, D.CONTEXT_FEATURES, D.SLOT_FEATURES, int(seq.num_categories),
                          int(seq.num_states), hidden=int(self.setting("hidden")), depth=int(self.setting("depth")),
                          heads=int(self.setting("heads")))

    def default_sampler_for(self, process):
        if self.setting("task") == "ensemble":
            return "se3-euler", 100
        return "composite", self.default_steps

    def resolve_model(self, model=None):
        """``model`` (a :class:`stochgen.Model` or a checkpoint path), else the shipped design model."""
        return stochgen.resolve_model(model, default_weights() if model is None else None,
                                      "train one with examples/protein/train_design.py and pass model=<checkpoint>")

    # --- segment design --------------------------------------------------------------------------
    def design(self, path, segment: str, n: int = 10, model=None, mode: str = "joint", steps: int | None = None,
               seed: int = 0, close: bool = True, temperature: float = 0.1) -> list[dict]:
        """Designs of ``segment`` (``"CHAIN:START-END"``, residue numbers inclusive) of the chain in ``path``.

        Returns ``n`` dicts: ``coords`` ``(L, 4, 3)`` N, CA, C, O of the whole chain (the designed
        segment rebuilt with ideal geometry, everything else as in the input), ``sequence`` (the
        whole chain's), ``segment_sequence``, ``backbone`` (a :class:`Backbone`), the segment's
        ``start`` / ``length`` (positions in the chain) and geometry scores (``ca_ca_max_dev``,
        ``min_contact``, ``valid``) and ``rmsd_to_input`` (CA, segment, Angstrom: how far the
        design is from the input's own segment). ``mode``: ``"joint"`` (backbone and sequence),
        ``"sequence"`` (the input's backbone kept) or ``"structure"`` (the input's sequence kept).
        ``temperature``: of the amino-acid distributions the sampler draws from (0.1, as ProteinMPNN's
        usual setting: near the most likely residues; 1 samples the model's own distribution, more
        diverse). ``close``: the CA closure and contact clean-up (module docstring of
        :mod:`domains.protein.design`)."""
        if mode not in ("joint", "sequence", "structure"):
            raise ValueError(f"mode must be 'joint', 'sequence' or 'structure', got {mode!r}")
        if int(n) < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        chain, a, b = D.parse_segment(segment)
        bb = read_chains(path, chain)[0]
        start = bb.index_of(a)
        length = bb.index_of(b) - start + 1
        D.check_window(bb, start, length, f"segment {segment}")
        return self.design_window(bb, start, length, n=n, model=model, mode=mode, steps=steps, seed=seed, close=close,
                                  temperature=temperature)

    def design_window(self, bb: Backbone, start: int, length: int, n: int = 10, model=None, mode: str = "joint",
                      steps: int | None = None, seed: int = 0, close: bool = True, final: str = "sample",
                      temperature: float = 0.1) -> list[dict]:
        """:meth:`design` on positions ``start .. start + length - 1`` (0-based) of a backbone in memory."""
        m = self.resolve_model(model)
        if m.domain.settings.get("task", "design") != "design":
            raise ValueError("this checkpoint is an ensemble model; segment design needs a design model")
        w = D.window(bb, start, length)
        proc = m.process
        dev = m.device
        g = torch.Generator(device=dev).manual_seed(int(seed))
        n = int(n)
        cond = {"context": torch.as_tensor(w["context"], dtype=torch.float32, device=dev)[None].expand(n, -1, -1),
                "slots": torch.as_tensor(w["slots"], dtype=torch.float32, device=dev)[None].expand(n, -1, -1)}
        x_T = proc.prior_sample({"frames": (n, D.SLOTS, 4, 4), "seq": (n, D.SLOTS)}, generator=g,
                                dtype=torch.float32, device=dev)
        fixed = {}
        if mode == "sequence":
            fixed["frames"] = torch.as_tensor(w["frames"], dtype=torch.float32, device=dev)[None].expand(n, -1, -1, -1)
        if mode == "structure":
            fixed["seq"] = torch.as_tensor(w["seq"], device=dev)[None].expand(n, -1)
        temperature = float(temperature)
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")

        def denoise(x, t, **c):  # the sequence logits at the sampling temperature
            out = m.denoise(x, t, **c)
            return dict(out, seq=out["seq"] / temperature) if temperature != 1.0 else out

        with torch.no_grad():
            out = stochgen.sample(proc, denoise, x_T=x_T, sampler="composite", steps=int(steps or m.steps or 100),
                                  prediction=m.prediction, generator=g, cond=cond, fixed=fixed or None,
                                  final=final)
        frames = out["frames"].double().cpu().numpy()
        toks = out["seq"].cpu().numpy()
        world = D.to_world(frames, w["T0"], length)
        if mode == "sequence":
            world = frames_from_backbone(bb.coords[start:start + length])[None].repeat(n, 0)
        results = []
        ref_ca = bb.ca[start:start + length]
        keep = np.r_[0:start, start + length:len(bb)]
        others = bb.ca[keep]  # the fixed chain; contacts count with residues 2 or more positions away
        pairs = np.abs(np.arange(start, start + length)[:, None] - keep[None]) >= 2
        for i in range(n):
            f = _orthonormal(world[i])
            if close and mode != "sequence":
                f[:, :3, 3] = D.close_segment(bb.ca[start - 1], f[:, :3, 3], bb.ca[start + length], others=others,
                                              pairs=pairs)
            tk = toks[i, :length].copy()
            tk[tk >= D.PAD] = 0  # a padding token inside the segment (rare): alanine
            seg_seq = decode_sequence(tk) if mode != "structure" else bb.sequence[start:start + length]
            new = D.splice(bb, start, length, f, seg_seq)
            if mode == "sequence":
                new = bb.replace(sequence=new.sequence)
            geo = D.geometry_report(new, start, length)
            rmsd = float(np.sqrt(((new.ca[start:start + length] - ref_ca) ** 2).sum(-1).mean()))
            results.append({"coords": new.coords, "sequence": new.sequence, "segment_sequence": seg_seq,
                            "backbone": new, "start": start, "length": length, "rmsd_to_input": rmsd, **geo})
        return results

    def demo(self, out: str, quick: bool = False, seed: int = 0, device: str = "cpu",
             progress: bool = True) -> list[str]:
        """``stochgen demo``: co-design a segment of the embedded held-out chain (domains/protein/demo.py)."""
        from .demo import run

        return run(self, out, quick=quick, seed=seed, device=device, progress=progress)

    # --- ensembles -------------------------------------------------------------------------------
    def ensemble(self, model, n: int = 10, steps: int | None = None, seed: int = 0,
                 idealize: bool = True) -> list[Backbone]:
        """``n`` new conformations (backbones) from an ensemble checkpoint. ``idealize``: move the CA atoms
        the least it takes to make every consecutive CA-CA distance 3.80 A
        (:func:`domains.protein.frames.idealize_ca`; the frames keep their rotations)."""
        m = stochgen.resolve_model(model, None, "train one with: stochgen train protein ENSEMBLE.pdb --out m.ckpt")
        s = m.domain.settings
        if s.get("task") != "ensemble":
            raise ValueError("this checkpoint is a segment-design model; ensembles need one trained on an ensemble "
                             "(stochgen train protein ENSEMBLE.pdb --out m.ckpt)")
        mean = np.zeros((len(s["mean_frames"]), 4, 4))
        mean[:, :3, :] = np.asarray(s["mean_frames"])
        mean[:, 3, 3] = 1.0
        g = torch.Generator(device=m.device).manual_seed(int(seed))
        with torch.no_grad():
            dev = m.sample(int(n), generator=g, steps=steps).double().cpu().numpy()
        T = mean[None] @ _orthonormal(dev)
        if idealize:
            T[..., :3, 3] = idealize_ca(T[..., :3, 3], iters=200)
        coords = backbone_from_frames(T)
        return [Backbone(c, s["sequence"], s.get("chain", "A"), np.asarray(s["resnums"])) for c in coords]


def _orthonormal(T: np.ndarray) -> np.ndarray:
    """Frames with their rotation parts projected to the nearest rotation (float32 round-off removed)."""
    T = np.array(T, dtype=np.float64)
    T[..., :3, :3] = so3.project(torch.as_tensor(T[..., :3, :3])).numpy()
    return T


def _mean_frames(T: np.ndarray) -> np.ndarray:
    """Per residue the mean frame of ``(M, N, 4, 4)``: mean translation, chordal mean rotation."""
    out = np.zeros(T.shape[1:])
    out[..., :3, 3] = T[..., :3, 3].mean(0)
    out[..., :3, :3] = T[..., :3, :3].mean(0)
    out[..., 3, 3] = 1.0
    return _orthonormal(out)


register_domain("protein", ProteinDomain)
