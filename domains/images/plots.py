"""PNG figures for images: sample grids (Pillow) and the inpainting figure original | masked | inpainted.

Inputs are integer levels ``(N, C, H, W)`` in ``0 .. levels - 1`` (what
``ImagesDomain.decode`` returns); small images are enlarged by an integer factor
(nearest neighbour) so that 8x8 digits are visible.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

__all__ = ["grid_array", "save_grid", "save_inpainting"]


def _to_uint8(pixels, levels: int) -> np.ndarray:
    p = torch.as_tensor(pixels)
    if p.dim() == 3:
        p = p[:, None]
    if p.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W) or (N, H, W), got {tuple(p.shape)}")
    if p.shape[1] not in (1, 3):
        raise ValueError(f"can draw 1 (grey) or 3 (RGB) channels, got {p.shape[1]}")
    a = p.double().clamp(0, levels - 1).numpy() * (255.0 / (levels - 1))
    return np.round(a).astype(np.uint8)


def grid_array(pixels, levels: int = 256, nrow: int | None = None, pad: int = 1, scale: int | None = None,
               pad_value: int = 64) -> np.ndarray:
    """Tile images ``(N, C, H, W)`` into one uint8 array ``(H', W')`` or ``(H', W', 3)``, ``nrow`` per row."""
    a = _to_uint8(pixels, levels)
    n, c, h, w = a.shape
    if n == 0:
        raise ValueError("no images to draw")
    nrow = int(nrow or math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    scale = int(scale or max(1, 32 // max(h, w)))
    a = a.repeat(scale, axis=2).repeat(scale, axis=3)
    h, w = h * scale, w * scale
    out = np.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[:, y:y + h, x:x + w] = a[i]
    return out[0] if c == 1 else out.transpose(1, 2, 0)


def save_grid(pixels, path, levels: int = 256, nrow: int | None = None, **kw) -> str:
    """Write a grid of integer-level images to a PNG file; returns the path."""
    from PIL import Image

    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    Image.fromarray(grid_array(pixels, levels, nrow, **kw)).save(path)
    return path


def save_inpainting(original, mask, inpainted, path, levels: int = 256, title: str | None = None) -> str:
    """Three columns (original | masked | inpainted), one row per image; the missing region shows red."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    orig = _to_uint8(original, levels)
    inp = _to_uint8(inpainted, levels)
    m = torch.as_tensor(mask).expand(torch.as_tensor(original).shape).numpy() > 0.5
    n = orig.shape[0]

    def rgb(a):
        return np.repeat(a, 3, axis=1) if a.shape[1] == 1 else a

    masked = rgb(orig).copy()
    mm = np.repeat(m[:, :1], 3, axis=1) if m.shape[1] == 1 else m
    red = np.zeros_like(masked)
    red[:, 0] = 200
    masked = np.where(mm, masked, red)
    cols = [("original", rgb(orig)), ("masked", masked), ("inpainted", rgb(inp))]
    fig, axes = plt.subplots(1, 3, figsize=(6, max(2.0, 0.9 * n + 0.6)))
    for ax, (name, arr) in zip(axes, cols):
        ax.imshow(grid_array(arr, 255 + 1, nrow=1, pad_value=255), interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
