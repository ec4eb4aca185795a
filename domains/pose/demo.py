"""The pose part of ``stochgen demo``: register a shape turned by 150 degrees with the shipped model.

The shape ships as 4096 surface points in ``domains/pose/data/demo_shape.npy`` (the procedural shape
``union-40`` of :mod:`domains.pose.shapes`, outside the training library, which uses ``union-0`` ..
``union-11``). Two disjoint random halves of it are the source and the target (independent samples
of the surface); the target is turned by 150 degrees about a random axis, moved, cropped to the 70%
of its points furthest along a random direction and given N(0, 0.01^2) noise, as in the benchmark.
Needs numpy, scipy and torch only (matplotlib for the figure).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

DEMO_SHAPE = Path(__file__).resolve().parent / "data" / "demo_shape.npy"
DEMO_ANGLE = 150.0


def demo_pair(seed: int = 0, angle_deg: float = DEMO_ANGLE):
    """``(source (1024, 3), target (717, 3), T_true)`` of the embedded demo shape (see the module docstring)."""
    from .shapes import move_and_crop

    pts = np.load(DEMO_SHAPE).astype(np.float64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pts))
    source, other = pts[order[:1024]], pts[order[1024:2048]]
    target, T = move_and_crop(other, angle_deg, rng, keep=0.7, noise=0.01, max_trans=0.1)
    return source, target, T


def run(domain, out: str, quick: bool = False, seed: int = 0, device: str = "cpu", progress: bool = True) -> list[str]:
    """Register the demo pair, write the transform and a before / after figure to ``out``; the lines to print."""
    from .domain import default_weights
    from .io import write_transform

    if not default_weights().is_file():
        return [f"no shipped registration model at {default_weights()}; nothing to show"]
    source, target, T_true = demo_pair(seed)
    t0 = time.perf_counter()
    T, info = domain.register(source, target, seed=seed, return_info=True)
    took = time.perf_counter() - t0
    rot, trans = domain.errors(T, T_true)
    os.makedirs(out, exist_ok=True)
    write_transform(os.path.join(out, "T.txt"), T)
    lines = [f"registered a {len(source)}-point shape to a partial, noisy copy turned by {DEMO_ANGLE:g} degrees "
             f"({len(target)} points) in {took:.2f} s with the shipped model",
             f"rotation error {rot:.2f} deg, translation error {trans:.4f} (of a unit-diagonal shape); "
             f"fit score {info['score']:.3f}"]
    try:
        from .cli import plot_registration

        fig = plot_registration(os.path.join(out, "registration.png"), source, target, T)
        lines.append(f"wrote T.txt and {os.path.basename(fig)} to {out}")
    except ImportError:
        lines.append(f"wrote T.txt to {out} (the figure needs matplotlib: pip install matplotlib)")
    return lines
