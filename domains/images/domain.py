"""The images domain: grey or colour images as states ``(N, C, H, W)`` with pixels in [-1, 1].

Raw images are integer levels ``k = 0 .. L - 1`` (``L`` = ``levels``: 17 for scikit-learn's
digits, 256 for 8-bit files); the state of a pixel is ``x = 2 k / (L - 1) - 1``, so
``decode`` (``round((x + 1) (L - 1) / 2)``, clipped) inverts ``encode`` exactly, and the
states sit on the grid that ``stochgen.bits_per_dim(num_bins=L)`` expects.

Settings (all JSON, stored in checkpoints; ``load`` fills in what it learns from the data):

* ``process``: ``"edm"`` (default; ``EDM(sigma_data=0.5)``, x0 prediction with EDM
  preconditioning, Heun 18 steps), ``"vp"`` (linear VP, eps prediction, DPM-Solver++(2M)
  18 steps) or ``"ve"`` (VE, eps prediction, Heun 18 steps);
* ``sigma_data`` (0.5), ``net_channels`` (``[32, 64]``: U-Net widths per level);
* ``levels``, ``channels``, ``height``, ``width``, ``num_classes``, ``source``,
  ``class_names``: what the training data were (set by :meth:`ImagesDomain.load`).

Data (:meth:`ImagesDomain.load`): ``"digits"`` (default demo data), ``"mnist5k"``, a
folder of images, an array ``(N, H, W)`` / ``(N, C, H, W)``, a pair ``(images, labels)``,
or a ``.pt`` / ``.npy`` / ``.npz`` file of such arrays (see :mod:`domains.images.data`).
"""
from __future__ import annotations

import os

import numpy as np
import torch

import stochgen
from stochgen import nets, processes
from stochgen.domain import Domain, DomainData

from . import data as _data
from . import metrics as _metrics

__all__ = ["ImagesDomain", "PROCESSES"]

#: process setting -> (sampler, steps, prediction)
PROCESSES = {"edm": ("heun", 18, "x0"), "vp": ("dpm++2m", 18, "eps"), "ve": ("heun", 18, "eps")}
_SHAPE_KEYS = ("channels", "height", "width")


class ImagesDomain(Domain):
    """Images as ``(N, C, H, W)`` states in [-1, 1]; U-Net, EDM, classifier-free guidance, inpainting."""

    name = "images"
    state_ndim = 4

    def __init__(self, **settings):
        settings.setdefault("process", "edm")
        if settings["process"] not in PROCESSES:
            raise ValueError(f"unknown process {settings['process']!r} for the images domain; "
                             f"choose one of {', '.join(PROCESSES)}")
        if settings.get("levels") is not None:
            settings["levels"] = _data._check_levels(settings["levels"])
        super().__init__(**settings)
        self.default_sampler, self.default_steps, self.default_prediction = PROCESSES[settings["process"]]

    # --- what the domain knows about its data --------------------------------------------------
    @property
    def levels(self) -> int:
        """Grey levels per channel (the bins of bits/dim); 256 until data say otherwise."""
        return int(self.settings.get("levels") or 256)

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """``(C, H, W)`` of the training images, or None before any data were loaded."""
        if any(self.settings.get(k) is None for k in _SHAPE_KEYS):
            return None
        return tuple(int(self.settings[k]) for k in _SHAPE_KEYS)

    @property
    def num_classes(self) -> int | None:
        n = self.settings.get("num_classes")
        return None if n is None else int(n)

    # --- data ----------------------------------------------------------------------------------
    def raw(self, data) -> _data.RawImages:
        """Any supported source -> :class:`~domains.images.data.RawImages` (integer levels), unencoded."""
        if isinstance(data, (str, os.PathLike)):
            path = os.fspath(data)
            ext = os.path.splitext(path)[1].lower()
            if ext in (".pt", ".npy", ".npz") and not os.path.isdir(path):
                if not os.path.exists(path):
                    raise FileNotFoundError(f"data file not found: {path}")
                arr, labels = self._load_file(path)
                return _data.from_array(arr, labels, levels=self.settings.get("levels"), name=path)
        elif isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.Tensor):
            from stochgen.domain import _from_dataset

            arr, labels = _from_dataset(data)
            return _data.from_array(arr, labels, levels=self.settings.get("levels"), name=type(data).__name__)
        return _data.load_source(data, levels=self.settings.get("levels"))

    def load(self, data="digits") -> DomainData:
        """Load and encode images; records levels, image shape and classes in the settings.

        A domain that already knows its data (e.g. rebuilt from a checkpoint) refuses images
        of another shape or number of levels.
        """
        if isinstance(data, DomainData):
            return data
        raw = self.raw(data)
        shape = tuple(int(s) for s in raw.pixels.shape[1:])
        have = self.image_shape
        if have is not None and have != shape:
            raise ValueError(f"these images have shape (C, H, W) = {shape}, but the domain (model) expects {have}")
        if self.settings.get("levels") is not None and int(self.settings["levels"]) != raw.levels:
            raise ValueError(f"these images have {raw.levels} grey levels, but the domain (model) expects "
                             f"{self.settings['levels']}")
        self.settings.update(levels=raw.levels, channels=shape[0], height=shape[1], width=shape[2])
        if isinstance(data, (str, os.PathLike)):
            self.settings.setdefault("source", os.fspath(data))
        if raw.labels is not None:
            k = int(raw.labels.max()) + 1
            if self.num_classes is None or self.num_classes < k:
                self.settings["num_classes"] = k
            if raw.class_names is not None and self.settings.get("class_names") is None:
                self.settings["class_names"] = list(raw.class_names)
        x = self.check_states(self.encode(raw.pixels))
        info = {"levels": raw.levels, "source": raw.name, "shape": shape}
        if raw.labels is not None:
            info["num_classes"] = self.num_classes
        return DomainData(x, raw.labels, info)

    def split(self, data, held_out: float = 0.2, seed: int = 0) -> tuple[DomainData, DomainData]:
        """A fixed random split ``(train, held_out)`` of loaded data (same seed -> same split)."""
        d = self.load(data)
        if not 0 < held_out < 1:
            raise ValueError(f"held_out must be a fraction in (0, 1), got {held_out}")
        n = len(d)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        k = max(1, int(round(n * held_out)))
        if k >= n:
            raise ValueError(f"cannot hold out {k} of {n} images")
        return d.subset(perm[k:]), d.subset(perm[:k])

    def encode(self, raw) -> torch.Tensor:
        """Integer levels ``(N, C, H, W)`` or ``(N, H, W)`` (or :class:`RawImages`) -> states in [-1, 1] (float32)."""
        if isinstance(raw, _data.RawImages):
            levels, pixels = raw.levels, raw.pixels
        else:
            r = _data.from_array(raw, levels=self.levels)
            levels, pixels = r.levels, r.pixels
        return pixels.to(torch.float32) * (2.0 / (levels - 1)) - 1.0

    def decode(self, x) -> torch.Tensor:
        """States -> integer levels ``0 .. levels - 1`` (int64, same shape); exact inverse of :meth:`encode`."""
        x = torch.as_tensor(x)
        if not x.is_floating_point():
            raise ValueError(f"states must be floating point, got dtype {x.dtype}")
        if bool(torch.isnan(x).any()):
            raise ValueError("states contain NaN")
        L = self.levels
        return torch.round((x.double().clamp(-1, 1) + 1) * ((L - 1) / 2)).to(torch.int64)

    # --- model defaults ------------------------------------------------------------------------
    def default_process(self):
        kind = self.settings.get("process", "edm")
        if kind == "vp":
            return processes.VP()
        if kind == "ve":
            return processes.VE(sigma_min=0.01, sigma_max=50.0)
        return processes.EDM(sigma_data=float(self.settings.get("sigma_data", 0.5)))

    def default_network(self, example: torch.Tensor, num_classes: int | None = None) -> torch.nn.Module:
        if example.dim() != 4:
            raise ValueError(f"the images domain's network takes (B, C, H, W) states, got shape {tuple(example.shape)}")
        channels = tuple(int(c) for c in self.settings.get("net_channels", (32, 64)))
        return nets.UNet(in_channels=int(example.shape[1]), channels=channels, num_classes=num_classes)

    def clip_states(self, x: torch.Tensor) -> torch.Tensor:
        """Samples clipped to the pixel range [-1, 1]."""
        return x.clamp(-1, 1)

    # --- outputs ---------------------------------------------------------------------------------
    def save_grid(self, x, path, nrow: int | None = None) -> str:
        """Write states ``(N, C, H, W)`` as a PNG grid (``nrow`` images per row)."""
        from .plots import save_grid

        return save_grid(self.decode(x), path, levels=self.levels, nrow=nrow)

    def save_inpainting(self, known, mask, filled, path) -> str:
        """Write an (original | masked | inpainted) figure of states ``known`` and ``filled``."""
        from .plots import save_inpainting

        return save_inpainting(self.decode(known), mask, self.decode(filled), path, levels=self.levels)

    def mask(self, kind: str = "right") -> torch.Tensor:
        """Known-pixel mask (C, H, W) with the ``kind`` region (left/right/top/bottom/center) missing."""
        if self.image_shape is None:
            raise ValueError("the domain does not know the image shape yet; load data first")
        return _metrics.make_mask(self.image_shape, kind)

    def sample(self, model, n: int, label=None, guidance_scale: float | None = None, **kw) -> torch.Tensor:
        """``n`` images (states), optionally of class ``label`` with classifier-free guidance."""
        if self.image_shape is None:
            raise ValueError("the domain does not know the image shape; load data or a checkpoint first")
        return _metrics.generate(model, n, self.image_shape, label, guidance_scale, **kw)

    def inpaint(self, model, known, kind: str = "right", **kw) -> tuple[torch.Tensor, torch.Tensor]:
        """Inpaint the ``kind`` region of ``known`` (states); returns ``(inpainted, mask)``."""
        m = self.mask(kind)
        return _metrics.inpaint(model, known, m, **kw), m

    # --- metrics -----------------------------------------------------------------------------------
    def reference_classifier(self, data: DomainData | None = None, seed: int = 0) -> _metrics.PixelClassifier:
        """Logistic regression trained on real images: the training split of the named source
        (``digits`` / ``mnist5k``) when the domain was trained on one, else on ``data``."""
        src = self.settings.get("source")
        if src in _data.SOURCES:
            train, _ = self.split(ImagesDomain(**self.settings).load(src), seed=seed)
        elif data is not None and data.labels is not None:
            train = data
        else:
            raise ValueError("the classifier metric needs labelled real images")
        return _metrics.PixelClassifier(seed=seed).fit(train.x, train.labels)

    def metrics(self, model, data: DomainData, n_bpd: int | None = 256, n_per_class: int = 50, n_uncond: int = 500,
                guidance_scale: float = 2.0, seed: int = 0, bpd: bool = True, samples: bool = True,
                progress: bool = False) -> dict:
        """Held-out ``bits_per_dim``; with labels: ``classifier_real_accuracy`` (the judge on real
        ``data``), ``cond_accuracy`` (class-conditional samples at ``guidance_scale``) and
        ``share_<k>`` (predicted class shares of unconditional samples). ``progress``: one line
        per stage and tqdm bars for the likelihood ODE and the samplers."""
        data = self.load(data)
        out: dict[str, float] = {}

        def stage(text):
            if progress:
                print(f"  evaluating: {text}", flush=True)

        if bpd:
            stage(f"bits/dim of {min(len(data), n_bpd or len(data))} images (probability-flow ODE)")
            out["bits_per_dim"] = _metrics.held_out_bits_per_dim(model, data.x, self.levels, n=n_bpd, seed=seed,
                                                                 progress=progress)
        if not samples or data.labels is None:
            return out
        clf = self.reference_classifier(data, seed=seed)
        out["classifier_real_accuracy"] = clf.score(data.x, data.labels)
        g = torch.Generator().manual_seed(seed)
        conditional = "label" in getattr(model.net, "cond_keys", ())
        if conditional:
            k = len(clf.classes)
            stage(f"{n_per_class * k} class-conditional samples ({n_per_class} per class, guidance "
                  f"{guidance_scale:g}) read by a classifier")
            r = _metrics.conditional_accuracy(model, clf, self.image_shape, n_per_class=n_per_class,
                                              guidance_scale=guidance_scale, generator=g, progress=progress)
            out["cond_accuracy"] = r["accuracy"]
        stage(f"{n_uncond} unconditional samples: class shares")
        r = _metrics.class_shares(model, clf, self.image_shape, n=n_uncond, generator=g, progress=progress)
        for k, s in enumerate(r["shares"]):
            out[f"share_{k}"] = float(s)
        return out
