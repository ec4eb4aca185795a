"""Image metrics: held-out bits/dim, and sample quality judged by a classifier trained on real images.

* :func:`held_out_bits_per_dim`: ``stochgen.bits_per_dim`` of real held-out images under the
  model (uniform dequantization over the data's own ``levels``: 17 bins for the digits'
  0..16 grey levels, 256 for 8-bit images), averaged over the images.
* :class:`PixelClassifier`: multinomial logistic regression on the raw pixels in [-1, 1]
  (torch L-BFGS); on the 8x8 digits it reaches ~0.97 held-out accuracy in a fraction of a second,
  so it is a meaningful judge of whether a generated image looks like the digit it should.
* :func:`conditional_accuracy`: draw ``n_per_class`` samples for each requested label
  (classifier-free guidance at ``guidance_scale``) and report how often the classifier reads
  back the requested label.
* :func:`class_shares`: draw unconditional samples and report the share of each predicted
  class (a model that covers the data gives ~1/K each; mode collapse shows as a spike).
"""
from __future__ import annotations

import numpy as np
import torch

import stochgen

__all__ = ["PixelClassifier", "held_out_bits_per_dim", "generate", "conditional_accuracy", "class_shares",
           "make_mask", "inpaint", "MASKS"]

MASKS = ("left", "right", "top", "bottom", "center")


class PixelClassifier:
    """Multinomial logistic regression on flattened pixels in [-1, 1]: ``fit``, ``predict``, ``score``.

    Trained full-batch by L-BFGS in float64 with an L2 penalty ``l2`` (torch, deterministic,
    well under a second on the digits); the same model as scikit-learn's
    ``LogisticRegression`` with ``C = 1 / (l2 * N)``.
    """

    def __init__(self, l2: float = 1e-3, max_iter: int = 200, seed: int = 0):
        self.l2, self.max_iter, self.seed = float(l2), int(max_iter), int(seed)
        self.W = self.b = None
        self._classes = None

    def fit(self, x: torch.Tensor, labels: torch.Tensor) -> "PixelClassifier":
        if labels is None:
            raise ValueError("the classifier metric needs labelled real images")
        X = torch.from_numpy(self._features(x))
        y = torch.as_tensor(labels).cpu().long().reshape(-1)
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"got {X.shape[0]} images but {y.shape[0]} labels")
        self._classes, yi = torch.unique(y, return_inverse=True)
        k = self._classes.numel()
        if k < 2:
            raise ValueError("the classifier needs at least two classes")
        W = torch.zeros(X.shape[1], k, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=self.max_iter, tolerance_grad=1e-9,
                                tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(X @ W + b, yi) + 0.5 * self.l2 * (W**2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        self.W, self.b = W.detach(), b.detach()
        return self

    @staticmethod
    def _features(x) -> np.ndarray:
        x = torch.as_tensor(x).detach().to("cpu", torch.float64)
        if x.dim() < 2:
            raise ValueError(f"images must be batched, got shape {tuple(x.shape)}")
        return x.clamp(-1, 1).reshape(x.shape[0], -1).numpy()

    @property
    def classes(self) -> torch.Tensor:
        self._check()
        return self._classes

    def _check(self):
        if self.W is None:
            raise RuntimeError("the classifier is not fitted; call fit(x, labels) first")

    def predict(self, x) -> torch.Tensor:
        self._check()
        X = torch.from_numpy(self._features(x))
        if X.shape[1] != self.W.shape[0]:
            raise ValueError(f"the classifier was trained on {self.W.shape[0]} pixels, got images of {X.shape[1]}")
        return self._classes[(X @ self.W + self.b).argmax(1)]

    def score(self, x, labels) -> float:
        pred = self.predict(x)
        return float((pred == torch.as_tensor(labels).cpu().long()).double().mean())


def held_out_bits_per_dim(model, x: torch.Tensor, levels: int, n: int | None = 256, batch_size: int = 256,
                          divergence: str = "hutchinson", rtol: float = 1e-4, atol: float = 1e-4,
                          seed: int = 0, **kw) -> float:
    """Mean bits/dim of real images ``x`` (states in [-1, 1] on the ``levels`` grid) under ``model``."""
    x = x[:n] if n is not None else x
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size]
        bpd = stochgen.bits_per_dim(model.process, model.denoise, xb, prediction=model.prediction,
                                    num_bins=int(levels), divergence=divergence, rtol=rtol, atol=atol,
                                    generator=g, **kw)
        out.append(bpd)
    return float(torch.cat(out).mean())


def generate(model, n: int, shape, labels=None, guidance_scale: float | None = None, sampler: str | None = None,
             steps: int | None = None, generator: torch.Generator | None = None, batch_size: int = 500,
             progress: bool = False) -> torch.Tensor:
    """``n`` samples of image ``shape`` (C, H, W), optionally class-conditional with classifier-free guidance.

    ``labels`` is None (unconditional: the network's null class if it is class-conditional),
    an int, or an integer tensor ``(n,)``. ``guidance_scale`` w (None or 1: the conditional
    model) mixes ``u + w (c - u)`` with the null-label branch (``stochgen.guidance.cfg``).
    Uses ``model.denoise``, ``model.process``, ``model.prediction`` and the domain's default
    sampler and steps. Returns states in [-1, 1] (clamped).
    """
    dom = model.domain
    sampler = sampler or getattr(dom, "default_sampler", "heun")
    steps = int(steps or getattr(dom, "default_steps", 18))
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.dim() == 0:
            labels = labels.expand(n)
        if labels.shape != (n,):
            raise ValueError(f"labels must be one int or have shape ({n},), got {tuple(labels.shape)}")
    net = model.denoise
    if labels is not None and guidance_scale is not None and float(guidance_scale) != 1.0:
        net = stochgen.guidance.cfg(model.denoise, float(guidance_scale), uncond={"label": -1})
    chunks = []
    for i in range(0, n, batch_size):
        m = min(batch_size, n - i)
        cond = {} if labels is None else {"label": labels[i:i + m]}
        x = stochgen.sample(model.process, net, shape=(m, *shape), sampler=sampler, steps=steps,
                            prediction=model.prediction, generator=generator, cond=cond, progress=progress)
        chunks.append(x.clamp(-1, 1))
    return torch.cat(chunks)


def conditional_accuracy(model, classifier: PixelClassifier, shape, n_per_class: int = 50,
                         classes=None, guidance_scale: float | None = 2.0, generator=None, **kw) -> dict:
    """Share of class-conditional samples the classifier reads as the requested label (overall and per class)."""
    classes = list(range(len(classifier.classes))) if classes is None else list(classes)
    labels = torch.tensor(classes, dtype=torch.long).repeat_interleave(n_per_class)
    x = generate(model, labels.numel(), shape, labels, guidance_scale, generator=generator, **kw)
    pred = classifier.predict(x)
    hit = (pred == labels).double()
    per = {int(c): float(hit[labels == c].mean()) for c in classes}
    return {"accuracy": float(hit.mean()), "per_class": per, "samples": x, "labels": labels}


def class_shares(model, classifier: PixelClassifier, shape, n: int = 500, generator=None, **kw) -> dict:
    """Share of each predicted class among ``n`` unconditional samples."""
    x = generate(model, n, shape, None, None, generator=generator, **kw)
    pred = classifier.predict(x)
    k = len(classifier.classes)
    counts = torch.bincount(pred, minlength=k).double()
    return {"shares": (counts / n).tolist(), "samples": x}


def make_mask(shape, kind: str = "right") -> torch.Tensor:
    """A 0/1 mask of image ``shape`` (C, H, W): 1 = known pixel, 0 = to be generated.

    ``kind`` names the **missing** region: ``"left"``/``"right"``/``"top"``/``"bottom"`` half
    or the ``"center"`` square (half the height and width).
    """
    if kind not in MASKS:
        raise ValueError(f"unknown mask {kind!r}; choose one of {', '.join(MASKS)}")
    if len(shape) != 3:
        raise ValueError(f"shape must be (C, H, W), got {tuple(shape)}")
    c, h, w = (int(s) for s in shape)
    m = torch.ones(c, h, w)
    if kind == "left":
        m[:, :, : w // 2] = 0
    elif kind == "right":
        m[:, :, w // 2:] = 0
    elif kind == "top":
        m[:, : h // 2] = 0
    elif kind == "bottom":
        m[:, h // 2:] = 0
    else:
        m[:, h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2] = 0
    return m


def inpaint(model, known: torch.Tensor, mask: torch.Tensor, labels=None, steps: int = 50, resample: int = 1,
            generator: torch.Generator | None = None, **kw) -> torch.Tensor:
    """Fill the pixels where ``mask == 0`` given ``known`` (states (N, C, H, W)) via ``stochgen.guidance.inpaint``.

    Replacement sampling with the ancestral (DDPM) step on ``steps`` log-SNR intervals,
    optional RePaint ``resample``; known pixels come back exactly. ``labels`` conditions
    a class-conditional network (default: its null class).
    """
    cond = {} if labels is None else {"label": torch.as_tensor(labels, dtype=torch.long)}
    x = stochgen.guidance.inpaint(model.process, model.denoise, known, mask, prediction=model.prediction,
                                  steps=steps, resample=resample, generator=generator, cond=cond, **kw)
    return torch.where(mask.expand_as(x) == 1, known.expand_as(x), x.clamp(-1, 1))
