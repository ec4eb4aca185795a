"""The pose domain's command: ``stochgen register SOURCE TARGET``."""
from __future__ import annotations

import argparse
import os

__all__ = ["add_verbs", "run_register", "plot_registration"]

_DESCRIPTION = (
    "Rigid registration of two point clouds (or meshes, sampled to points) by SE(3) diffusion: prints the 4x4 "
    "transform T with target ~= R @ source + t, its fit score (the fraction of target points within 0.02 of the "
    "normalised scale of the moved source) and, with --truth, the rotation error in degrees and the translation "
    "error. Reads .ply / .off / .obj / .stl / .xyz / .txt / .pts / .npy. Without --model the shipped default "
    "model is used. No correspondences needed; the clouds may differ in size and overlap partially.")
_PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def add_verbs(subparsers) -> None:
    """Add ``register`` to ``subparsers`` (what ``ArgumentParser.add_subparsers()`` returns)."""
    from stochgen.cli import positive_int, seed_int, verb_parser

    p = verb_parser(subparsers, "register", help="rigid transform between two point clouds (SE(3) diffusion)",
                    description=_DESCRIPTION)
    p.add_argument("source", metavar="SOURCE", help="the cloud to move (.ply/.off/.obj/.stl/.xyz/.npy)")
    p.add_argument("target", metavar="TARGET", help="the cloud to move it onto")
    p.add_argument("--model", metavar="CKPT", default=None, help="a pose model (default: the shipped one)")
    p.add_argument("-o", "--output", metavar="T.txt", default=None, help="write the 4x4 transform here (text)")
    p.add_argument("--plot", metavar="FIG", default=None, help="both clouds before and after (.png/.pdf/.svg)")
    p.add_argument("--particles", metavar="K", type=positive_int, default=8,
                   help="reverse-diffusion hypotheses started from uniform rotations")
    p.add_argument("--uniform", metavar="K", type=int, default=32,
                   help="extra hypotheses: uniform rotations as they are (joined before the coarse ICP)")
    p.add_argument("--steps", metavar="N", type=positive_int, default=None, help="sampler steps (default: the model's)")
    p.add_argument("--no-refine", action="store_true", help="skip the point-to-plane ICP refinement")
    p.add_argument("--truth", metavar="T.txt", default=None, help="true 4x4 transform: print the errors")
    p.add_argument("--points", metavar="N", type=positive_int, default=2048,
                   help="points sampled from a mesh file")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the sampler and of mesh sampling")
    p.set_defaults(func=run_register)


def _check_plot(path: str) -> None:
    from stochgen.cli import CLIError, check_output

    if os.path.splitext(path)[1].lower() not in _PLOT_SUFFIXES:
        raise CLIError(f"--plot {path}: the figure must be a {' / '.join(_PLOT_SUFFIXES)} file")
    check_output(path, "figure")


def plot_registration(path: str, source, target, T) -> str:
    """Two 3-D scatter panels: the clouds as given, and the source moved by ``T`` onto the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from stochgen.checkpoint import write_atomic

    moved = source @ T[:3, :3].T + T[:3, 3]
    fig = plt.figure(figsize=(10, 4.8))
    for i, (title, s) in enumerate((("before", source), ("after registration", moved))):
        ax = fig.add_subplot(1, 2, i + 1, projection="3d")
        for pts, colour, label, size in ((s, "tab:orange", "source", 4.0), (target, "tab:blue", "target", 1.0)):
            step = max(1, len(pts) // 3000)
            ax.scatter(*pts[::step].T, s=size, c=colour, label=label, depthshade=False, alpha=0.8)
        both = np.concatenate([target, s])
        c, r = both.mean(0), np.abs(both - both.mean(0)).max()
        ax.set_xlim(c[0] - r, c[0] + r), ax.set_ylim(c[1] - r, c[1] + r), ax.set_zlim(c[2] - r, c[2] + r)
        ax.set_title(title)
        ax.legend(loc="upper left", markerscale=6)
    fig.tight_layout()
    ext = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    write_atomic(path, lambda f: fig.savefig(f, format="jpeg" if ext == "jpg" else ext, dpi=110))
    plt.close(fig)
    return path


def run_register(args: argparse.Namespace) -> int:
    """Read both clouds, register, print (and write) the transform; 0 on success."""
    import numpy as np

    from stochgen.cli import CLIError, check_output

    from .domain import PoseDomain
    from .io import read_points, read_transform, write_transform

    if args.output:
        check_output(args.output, "transform")
    if args.plot:
        _check_plot(args.plot)
    truth = read_transform(args.truth) if args.truth else None
    source = read_points(args.source, n=args.points, seed=args.seed)
    target = read_points(args.target, n=args.points, seed=args.seed + 1)
    dom = PoseDomain()
    try:
        model = dom.resolve_model(args.model)
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from None
    if args.uniform < 0:
        raise CLIError(f"--uniform must be >= 0, got {args.uniform}")
    T, info = dom.register(source, target, model=model, particles=args.particles, uniform=args.uniform,
                           steps=args.steps,
                           refine=not args.no_refine, seed=args.seed, return_info=True)
    with np.printoptions(precision=6, suppress=True):
        print(T)
    print(f"fit score (target inlier fraction): {info['score']:.4f}  ({args.particles} particles + "
          f"{args.uniform} uniform starts, "
          f"{'refined' if not args.no_refine else 'not refined'})")
    if truth is not None:
        rot, trans = dom.errors(T, truth)
        print(f"rotation error {rot:.3f} deg, translation error {trans:.5f}")
    if args.output:
        write_transform(args.output, T)
        print(f"wrote {args.output}")
    if args.plot:
        plot_registration(args.plot, source, target, T)
        print(f"wrote {args.plot}")
    return 0
