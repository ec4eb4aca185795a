"""The speech domain: enhancement and dereverberation in the compressed complex STFT domain (SGMSE-class).

States are clean spectrograms ``x`` as real channels ``(N, 2, F, T)`` (F = 256 bins, T STFT
frames, see :mod:`domains.speech.stft`); the condition ``y`` is the noisy (or reverberant)
spectrogram of the same shape. Both waves of a training pair are scaled by the noisy wave's
peak before the STFT (SGMSE's normalisation; :meth:`SpeechDomain.enhance` does the same per
chunk and undoes it).

Settings (JSON, stored in checkpoints):

* ``task``: ``"enhance"`` (additive noise, default) or ``"dereverb"``: which shipped default
  model :meth:`SpeechDomain.enhance` uses when none is given;
* ``process``: ``"ouve"`` (default; SGMSE+'s OU-VE, ``theta`` 1.5, ``sigma_min`` 0.05,
  ``sigma_max`` 0.5), ``"irsde"`` (IR-SDE, ``lam`` 0.1 / ``theta_bar`` 5 unless given), or
  ``"predictive"``: the same network trained by plain regression of the clean spectrogram on
  the noisy one (:class:`Predictive`, the predictive baseline; no sampling, one evaluation);
* ``theta``, ``sigma_min``, ``sigma_max`` (OU-VE), ``lam``, ``theta_bar`` (IR-SDE);
* ``segment`` (128 frames, ~1 s): training crops; ``segments_per_clip`` (None: about one per
  ``segment`` frames of the clip); ``crop_seed`` (0): the crop offsets;
* ``n_fft``, ``hop``, ``alpha``, ``beta``: the STFT codec;
* ``net_channels`` ([32, 64, 64, 128]), ``patch`` ([4, 2]): the :class:`SpeechUNet`;
* ``sampler_options``: options of the default sampler (``mr-exact``: ``order``,
  ``stochastic``), used by :meth:`enhance` when the caller gives none;
* ``warm_start`` / ``predictive``: the default StoRM warm start of :meth:`enhance` (a time and a
  predictive model file, relative to ``domains/speech/weights`` unless absolute), used when the
  caller gives no ``sampler``, ``steps`` or ``warm_start`` (``warm_start=None`` turns it off).

Samplers (``enhance(..., sampler=...)``): ``"mr-exact"`` (default; the semi-analytic
mean-reverting solver, MR-Sampler style: the linear part integrated exactly, second order
multistep in data prediction, deterministic), ``"mr-pc"`` (SGMSE+'s reverse diffusion +
annealed Langevin, snr 0.5; SGMSE uses 30 steps = 60 evaluations) and ``"ode"`` (probability
flow). ``warm_start=t`` (StoRM style): start the reverse process at time ``t`` from the
marginal around a predictive estimate (``predictive=`` a predictive model) instead of at the
prior.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

import stochgen
from stochgen import processes
from stochgen.domain import Domain, DomainData, register_domain
from stochgen.processes import OUVE, Marginal

from .audio import SAMPLE_RATE, load_pairs, resample
from .stft import SpecCodec, from_channels, to_channels

__all__ = ["SpeechDomain", "Predictive", "WEIGHTS_DIR", "TASKS", "PROCESSES", "default_weights"]

TASKS = ("enhance", "dereverb")
PROCESSES = ("ouve", "irsde", "predictive")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_CODEC_KEYS = ("n_fft", "hop", "alpha", "beta")
#: the default sampler's options (mr-exact: stochastic, first order; measured best at 1-6 steps)
DEFAULT_SAMPLER_OPTIONS = {"order": 1, "stochastic": True}
#: frames per enhancement chunk (4.1 s) and overlap between chunks (0.5 s, cross-faded)
CHUNK_FRAMES, OVERLAP_FRAMES = 512, 64


@processes.register
class Predictive(OUVE):
    """The predictive baseline as a (degenerate) process: ``x_t = y`` at every ``t``.

    Trained with the ``x0`` prediction by the core's DSM objective, the loss is the plain
    regression ``|net(y, t, y=y) - x_0|^2`` of the clean spectrogram on the noisy one (``t`` is
    drawn in [0.999, 1], where the network is then used). It keeps OU-VE's coefficients only
    so the family's machinery (samplers, conditions) accepts it; sampling it is one evaluation
    (:meth:`SpeechDomain.enhance` calls the network at ``t_max``).
    """

    def __init__(self, theta: float = 1.5, sigma_min: float = 0.05, sigma_max: float = 0.5,
                 t_min: float = 0.999, t_max: float = 1.0):
        super().__init__(theta=theta, sigma_min=sigma_min, sigma_max=sigma_max, t_min=t_min, t_max=t_max)

    def marginal(self, x0, t, generator=None, y=None, **cond) -> Marginal:
        x0, t, tb = self._prep(x0, t)
        self.check_cond({"y": y}, x0)
        y = y.to(x0.dtype).expand_as(x0)
        zero = torch.zeros_like(x0)
        return Marginal(x_t=y, t=t, noise=zero, mean=y, std=zero + self.sigma(tb), score=zero)


def default_weights(task: str) -> Path:
    """Path of the shipped default model of ``task`` (``domains/speech/weights/<task>.safetensors``)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return WEIGHTS_DIR / f"{task}.safetensors"


class SpeechDomain(Domain):
    """Speech as compressed complex spectrograms ``(N, 2, 256, T)`` with the noisy spectrogram ``y`` as condition."""

    name = "speech"
    state_ndim = 4
    default_sampler = "mr-exact"
    default_steps = 2
    default_prediction = "x0"

    def __init__(self, **settings):
        settings.setdefault("task", "enhance")
        settings.setdefault("process", "ouve")
        if settings["task"] not in TASKS:
            raise ValueError(f"unknown task {settings['task']!r} for the speech domain; choose one of {', '.join(TASKS)}")
        if settings["process"] not in PROCESSES:
            raise ValueError(f"unknown process {settings['process']!r} for the speech domain; "
                             f"choose one of {', '.join(PROCESSES)}")
        seg = settings.get("segment", 128)
        if isinstance(seg, bool) or int(seg) != seg or seg < 8:
            raise ValueError(f"segment must be a whole number of STFT frames >= 8, got {seg!r}")
        super().__init__(**settings)
        self.codec = SpecCodec(**{k: settings[k] for k in _CODEC_KEYS if k in settings})
        if settings["process"] == "predictive":
            self.default_steps = 1

    # --- encoding ---------------------------------------------------------------------------------
    @property
    def segment(self) -> int:
        return int(self.settings.get("segment", 128))

    def encode(self, raw) -> torch.Tensor:
        """Waves ``(L,)`` / ``(B, L)`` (float, 16 kHz) -> spectrogram channels ``(B, 2, F, 1 + L // hop)`` (float32)."""
        if isinstance(raw, torch.Tensor) and raw.dim() == 4:
            return raw.to(torch.float32)  # already states
        w = torch.as_tensor(np.asarray(raw, dtype=np.float32)) if not isinstance(raw, torch.Tensor) else raw.float()
        if w.dim() == 1:
            w = w[None]
        return to_channels(self.codec.encode(w)).to(torch.float32)

    def decode(self, x, length: int | None = None) -> torch.Tensor:
        """Spectrogram channels ``(B, 2, F, T)`` -> waves ``(B, length)`` (default ``(T - 1) * hop``)."""
        x = torch.as_tensor(x)
        if length is None:
            length = (x.shape[-1] - 1) * self.codec.hop
        return self.codec.decode(from_channels(x.to(torch.float32)), int(length))

    # --- data ---------------------------------------------------------------------------------------
    def load(self, data="train") -> DomainData:
        """Paired clips -> ``DomainData(x=clean (N, 2, F, segment), cond={"y": noisy})``.

        ``data``: a corpus root (``ROOT/train/{clean,noisy}`` is used), a split folder holding
        ``clean/`` and ``noisy/``, a list of ``(noisy_wave, clean_wave)`` pairs at 16 kHz, a
        dict ``{"x": states, "y": states}`` or a :class:`DomainData`. Every clip is scaled by its
        noisy wave's peak, cut into ``segment``-frame crops (offsets drawn with ``crop_seed``;
        short clips zero-padded) and encoded.
        """
        if isinstance(data, DomainData):
            return data
        if isinstance(data, dict):
            return super().load(data)
        if isinstance(data, (str, os.PathLike)):
            pairs, source = self._read_folder(Path(data))
        elif isinstance(data, (list, tuple)):
            pairs, source = [(f"pair{i}", np.asarray(n, np.float32), np.asarray(c, np.float32))
                             for i, (n, c) in enumerate(data)], "pairs"
        else:
            raise ValueError(f"the speech domain loads a corpus folder, a split folder with clean/ and noisy/, or a "
                             f"list of (noisy, clean) waves; got {type(data).__name__}")
        if not pairs:
            raise ValueError("no paired clips to load")
        xs, ys = self.segments(pairs)
        self.settings.setdefault("source", source)
        return DomainData(self.check_states(xs), None, {"source": source, "clips": len(pairs)}, {"y": ys})

    def _read_folder(self, path: Path):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such folder")
        if (path / "clean").is_dir() and (path / "noisy").is_dir():
            return load_pairs(path.parent, path.name) if path.name in ("train", "valid", "test") else \
                self._pairs_of(path), str(path)
        if (path / "train").is_dir():
            return load_pairs(path, "train"), str(path / "train")
        raise FileNotFoundError(f"{path}: expected a corpus root with train/{{clean,noisy}} or a folder with clean/ and "
                                "noisy/ sub-folders of .wav files")

    @staticmethod
    def _pairs_of(path: Path):
        from .audio import pair_files, read_wav

        out = []
        for noisy_path, clean_path in pair_files(path / "clean", path / "noisy"):
            n, c = read_wav(noisy_path), read_wav(clean_path)
            if n.shape != c.shape:
                raise ValueError(f"{noisy_path}: {n.size} samples but its clean partner {clean_path} has {c.size}")
            out.append((noisy_path.name, n, c))
        return out

    def segments(self, pairs) -> tuple[torch.Tensor, torch.Tensor]:
        """``[(name, noisy, clean), ...]`` -> (clean, noisy) spectrogram crops ``(N, 2, F, segment)``."""
        seg, hop = self.segment, self.codec.hop
        L = (seg - 1) * hop  # samples giving exactly `seg` frames
        rng = np.random.default_rng(int(self.settings.get("crop_seed", 0)))
        per = self.settings.get("segments_per_clip")
        cs, ns = [], []
        for name, noisy, clean in pairs:
            if noisy.shape != clean.shape:
                raise ValueError(f"{name}: noisy and clean waves differ in length ({noisy.size} vs {clean.size})")
            peak = float(np.abs(noisy).max())
            g = 1.0 / peak if peak > 0 else 1.0
            noisy, clean = noisy * g, clean * g
            if noisy.size < L:
                pad = L - noisy.size
                noisy, clean = np.pad(noisy, (0, pad)), np.pad(clean, (0, pad))
            k = int(per) if per else max(1, int(round(noisy.size / L)))
            for _ in range(k):
                o = int(rng.integers(0, noisy.size - L + 1))
                cs.append(clean[o:o + L])
                ns.append(noisy[o:o + L])
        c = np.stack(cs).astype(np.float32)
        n = np.stack(ns).astype(np.float32)
        out_c, out_n = [], []
        for i in range(0, len(c), 256):  # encode in blocks (bounded memory)
            out_c.append(self.encode(c[i:i + 256]))
            out_n.append(self.encode(n[i:i + 256]))
        return torch.cat(out_c), torch.cat(out_n)

    # --- model defaults -----------------------------------------------------------------------------
    def default_process(self):
        kind = self.settings.get("process", "ouve")
        s = self.settings
        if kind == "irsde":
            return processes.IRSDE(lam=float(s.get("lam", 0.1)), theta_bar=float(s.get("theta_bar", 5.0)))
        cls = Predictive if kind == "predictive" else processes.OUVE
        return cls(theta=float(s.get("theta", 1.5)), sigma_min=float(s.get("sigma_min", 0.05)),
                   sigma_max=float(s.get("sigma_max", 0.5)))

    def default_network(self, example: torch.Tensor, num_classes: int | None = None) -> torch.nn.Module:
        from .nets import SpeechUNet

        if example.dim() != 4 or example.shape[1] != 2:
            raise ValueError(f"the speech domain's network takes (B, 2, F, T) spectrograms, got {tuple(example.shape)}")
        return SpeechUNet(channels=tuple(int(c) for c in self.settings.get("net_channels", (32, 64, 64, 128))),
                          patch=tuple(int(p) for p in self.settings.get("patch", (4, 2))), residual=True)

    def default_sampler_for(self, process) -> tuple[str, int]:
        if isinstance(process, Predictive):
            return "mr-exact", 1
        return self.default_sampler, self.default_steps

    # --- enhancement ---------------------------------------------------------------------------------
    def enhance_states(self, model, y: torch.Tensor, sampler: str | None = None, steps: int | None = None,
                       generator: torch.Generator | None = None, warm_start: float | None = None, predictive=None,
                       return_info: bool = False, **opts):
        """Clean spectrogram channels from noisy ones ``y`` ``(B, 2, F, T)`` with ``model``."""
        proc = model.process
        dev = model.device
        y = y.to(dev, torch.float32)
        if isinstance(proc, Predictive):
            with torch.no_grad():
                out = model.denoise(y, torch.full((y.shape[0],), proc.t_max, device=dev), y=y)
            return (out, {"nfe": 1}) if return_info else out
        sampler = sampler or model.sampler
        steps = int(steps or model.steps)
        if sampler == "mr-exact" and not opts:
            opts = dict(model.domain.settings.get("sampler_options") or DEFAULT_SAMPLER_OPTIONS)
        if sampler in ("mr-pc", "pc") and "snr" not in opts:
            opts["snr"] = 0.5
        grid_options = opts.pop("grid_options", None)
        nfe0 = 0
        if warm_start is not None:
            t0 = float(warm_start)
            if not proc.t_min < t0 <= proc.t_max:
                raise ValueError(f"warm_start must be a time in ({proc.t_min}, {proc.t_max}], got {warm_start!r}")
            if predictive is None:
                raise ValueError("warm_start needs predictive=<a predictive model> (process 'predictive')")
            x0_hat = self.enhance_states(predictive, y)
            x_T = proc.marginal(x0_hat, torch.full((y.shape[0],), t0, device=dev), generator=generator, y=y).x_t
            grid_options = dict(grid_options or {}, t_start=t0)
            nfe0 = 1
        else:
            x_T = proc.prior_sample(tuple(y.shape), generator=generator, y=y)
        with torch.no_grad():
            out, info = stochgen.sample(proc, model.denoise, x_T=x_T, sampler=sampler, steps=steps,
                                        prediction=model.prediction, generator=generator, cond={"y": y},
                                        grid_options=grid_options, return_info=True, **opts)
        info = dict(info)
        info["nfe"] = int(info.get("nfe", 0)) + nfe0
        return (out, info) if return_info else out

    def _with_model_defaults(self, model, opts: dict, task: str = "enhance") -> dict:
        """``opts`` plus the model's default warm start (settings ``warm_start`` / ``predictive``) when the
        caller gives no ``sampler``, ``steps`` or ``warm_start``; a ``predictive`` path loaded."""
        opts = dict(opts)
        ms = model.domain.settings if isinstance(model.domain, SpeechDomain) else {}
        if ms.get("warm_start") is not None and not {"warm_start", "sampler", "steps"} & opts.keys():
            opts["warm_start"] = float(ms["warm_start"])
            if ms.get("predictive"):
                opts.setdefault("predictive", str(WEIGHTS_DIR / ms["predictive"]))
        if isinstance(opts.get("predictive"), (str, os.PathLike)):  # a checkpoint path of the warm start's model
            opts["predictive"] = self.resolve_model(opts["predictive"], task)
        return opts

    def evaluations(self, model, wave: np.ndarray, **opts) -> int:
        """Network evaluations per chunk that :meth:`enhance` makes with ``opts``, counted on one call
        over the first 64 frames of ``wave`` (16 kHz)."""
        opts = self._with_model_defaults(self.resolve_model(model, self.settings.get("task", "enhance")), opts)
        for key in ("seed", "batch", "progress"):
            opts.pop(key, None)
        w = np.asarray(wave, dtype=np.float32)
        y = self.encode(w[None] / max(1e-9, float(np.abs(w).max())))[..., :64]
        return int(self.enhance_states(model, y, return_info=True, **opts)[1]["nfe"])

    def resolve_model(self, model=None, task: str = "enhance"):
        """``model`` (a :class:`stochgen.Model` or a checkpoint path), else the shipped default of ``task``."""
        return stochgen.resolve_model(model, default_weights(task) if model is None else None,
                                      f"train one with examples/speech/train_speech.py --task {task} or give "
                                      f"model=<checkpoint>")

    def enhance(self, wave: np.ndarray, sr: int, model=None, task: str = "enhance", **sampler_opts) -> np.ndarray:
        """The enhanced (or dereverberated) ``wave`` at its own rate ``sr`` and length.

        Resampled to 16 kHz, cut into chunks of ``CHUNK_FRAMES`` STFT frames (4.1 s) that
        overlap by ``OVERLAP_FRAMES`` (0.5 s), each scaled by its peak, enhanced, scaled back and
        cross-faded (overlap-add with complementary raised-cosine ramps), then resampled back:
        memory is bounded by one batch of chunks whatever the length. ``model``: a Model or a
        checkpoint path (default: the shipped model of ``task``). ``sampler_opts``: ``sampler``,
        ``steps``, ``seed`` (or ``generator``), ``batch`` (chunks per network call, default 1),
        ``warm_start`` / ``predictive`` (a Model or checkpoint path), ``progress`` (a tqdm bar over chunks), and options of the
        sampler (``order``, ``stochastic``, ``snr`` ...).
        """
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        w = np.asarray(wave)
        if w.ndim != 1:
            raise ValueError(f"enhance takes a mono wave (L,), got shape {w.shape}")
        if w.size == 0:
            raise ValueError("enhance got an empty wave")
        if not np.issubdtype(w.dtype, np.floating):
            raise ValueError(f"enhance takes a float wave in [-1, 1], got dtype {w.dtype}")
        if not np.isfinite(w).all():
            raise ValueError("the wave holds NaN or infinite samples")
        if isinstance(sr, bool) or int(sr) != sr or sr <= 0:
            raise ValueError(f"sr must be a positive integer sample rate, got {sr!r}")
        sr = int(sr)
        model = self.resolve_model(model, task)
        dom = model.domain if isinstance(model.domain, SpeechDomain) else self
        opts = dict(sampler_opts)
        seed = opts.pop("seed", 0)
        generator = opts.pop("generator", None) or torch.Generator(device=model.device).manual_seed(int(seed))
        batch = int(opts.pop("batch", 1))
        progress = bool(opts.pop("progress", False))
        opts = self._with_model_defaults(model, opts, task)
        x = resample(w.astype(np.float32), sr, SAMPLE_RATE)
        out = dom._enhance_16k(model, x, generator, batch, progress, opts)
        out = resample(out, SAMPLE_RATE, sr)
        if out.size < w.size:
            out = np.pad(out, (0, w.size - out.size))
        return out[:w.size].astype(np.float32)

    def chunk_plan(self, n: int) -> list[int]:
        """Start samples of the chunks that cover ``n`` samples at 16 kHz."""
        hop = self.codec.hop
        L = (CHUNK_FRAMES - 1) * hop
        step = (CHUNK_FRAMES - OVERLAP_FRAMES) * hop
        if n <= L:
            return [0]
        starts = list(range(0, n - L, step)) + [n - L]
        return sorted(set(starts))

    def _enhance_16k(self, model, x: np.ndarray, generator, batch: int, progress: bool, opts: dict) -> np.ndarray:
        hop = self.codec.hop
        L = (CHUNK_FRAMES - 1) * hop
        n = x.size
        if n <= L:  # one chunk of the wave's own length (frames padded to a multiple of 16)
            frames = 1 + int(math.ceil(max(n, hop * 8) / hop))  # (frames - 1) * hop >= n
            frames = int(math.ceil(frames / 16) * 16)
            Ls = (frames - 1) * hop
            return self._chunks(model, [np.pad(x, (0, Ls - n))], generator, opts)[0][:n]
        starts = self.chunk_plan(n)
        ov = OVERLAP_FRAMES * hop
        out = np.zeros(n, np.float32)
        weight = np.zeros(n, np.float32)
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(ov) + 0.5) / ov)).astype(np.float32)
        win = np.ones(L, np.float32)
        win[:ov], win[-ov:] = ramp, ramp[::-1]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(starts), desc="chunks", unit="chunk", leave=False)
        for i in range(0, len(starts), batch):
            group = starts[i:i + batch]
            res = self._chunks(model, [x[s:s + L] for s in group], generator, opts)
            for s, r in zip(group, res):
                wv = win.copy()
                if s == 0:
                    wv[:ov] = 1.0
                if s + L >= n:
                    wv[-ov:] = 1.0
                out[s:s + L] += r * wv
                weight[s:s + L] += wv
            if bar is not None:
                bar.update(len(group))
        if bar is not None:
            bar.close()
        return out / np.maximum(weight, 1e-8)

    def _chunks(self, model, waves: list, generator, opts: dict) -> list[np.ndarray]:
        """Enhance equal-length 16 kHz chunks (each scaled by its own peak and back)."""
        arr = np.stack(waves).astype(np.float32)
        peak = np.abs(arr).max(axis=1)
        g = np.where(peak > 0, 1.0 / np.maximum(peak, 1e-12), 1.0).astype(np.float32)
        y = self.encode(arr * g[:, None])
        est = self.enhance_states(model, y, generator=generator, **dict(opts))
        w = self.decode(est.cpu(), arr.shape[1]).numpy()
        return list(w / g[:, None])

    # --- demo ------------------------------------------------------------------------------------------
    def demo(self, out: str, quick: bool = False, seed: int = 0, device: str = "cpu",
             progress: bool = True) -> list[str]:
        """``stochgen demo``: enhance an embedded clip with pink noise by the shipped model (domains/speech/demo.py)."""
        from .demo import run

        return run(self, out, quick=quick, seed=seed, device=device, progress=progress)

    # --- metrics ---------------------------------------------------------------------------------------
    def metrics(self, model, data: DomainData, n: int = 8, **opts) -> dict:
        """SI-SDR, ESTOI and PESQ-wb of the first ``n`` validation crops enhanced with the model's defaults."""
        from .metrics import evaluate_pair

        data = self.load(data)
        k = min(int(n), len(data))
        x, y = data.x[:k], data.cond["y"][:k]
        est = self.enhance_states(model, y, generator=torch.Generator(device=model.device).manual_seed(0), **opts)
        length = (x.shape[-1] - 1) * self.codec.hop
        ref, out = self.decode(x, length).numpy(), self.decode(est.cpu(), length).numpy()
        rows = [evaluate_pair(r, e) for r, e in zip(ref, out)]
        return {m: float(np.mean([r[m] for r in rows])) for m in ("si_sdr", "estoi", "pesq")}


register_domain("speech", SpeechDomain)
