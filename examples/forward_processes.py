"""Tour of stochgen's forward processes on real data (scikit-learn's 8x8 digits).

Draws x_t from every process at several times, checks the empirical spread
against the closed-form marginal, and writes a picture of the corruption paths
to ``out/forward_processes.png``. Run:  python examples/forward_processes.py
"""
from __future__ import annotations

import argparse
import math
import os

import torch

import stochgen
from stochgen import processes as P
from stochgen.spaces import se3, so3


def load_digits() -> torch.Tensor:
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError as exc:
        raise SystemExit('this example needs scikit-learn: pip install -e ".[examples]"') from exc
    x = torch.from_numpy(_load().data).float() / 16.0  # (1797, 64) in [0, 1]
    return x * 2 - 1  # pixels in [-1, 1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out", help="folder for the figure (default: out)")
    ap.add_argument("--no-plot", action="store_true", help="skip the PNG (matplotlib not needed then)")
    args = ap.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    x0 = load_digits()
    print(f"stochgen {stochgen.__version__}: {x0.shape[0]} digits of 8x8 pixels in [-1, 1]\n")

    y = (x0 + 0.5 * torch.randn(x0.shape, generator=g)).clamp(-1, 1)  # a "degraded" observation for OU-VE
    gaussian = {
        "VP (linear beta)": (P.VP(), {}),
        "VP (cosine)": (P.VP(schedule="cosine"), {}),
        "sub-VP": (P.SubVP(), {}),
        "VE": (P.VE(sigma_min=0.01, sigma_max=50.0), {}),
        "EDM (t = sigma)": (P.EDM(), {}),
        "OU-VE toward y": (P.OUVE(), {"y": y}),
        "IR-SDE toward y": (P.IRSDE(lam=0.2), {"y": y}),
        "flow matching": (P.Interpolant(), {}),
    }
    fr = [0.1, 0.3, 0.6, 1.0]
    print("std of x_t around its exact mean: empirical / closed form, at fractions of [t_min, t_max]")
    print(f"{'process':20s} " + "".join(f"{format(f, '.0%'):<19s}" for f in fr))
    rows = {}
    for name, (proc, cond) in gaussian.items():
        cells, imgs = [], []
        for f in fr:
            t = proc.t_min + f * (proc.t_max - proc.t_min) if proc.t_max < 10 else proc.t_min * (proc.t_max / proc.t_min) ** f
            m = proc.marginal(x0, t, generator=g, **cond)
            emp = float((m.x_t - m.mean).std())
            cells.append(f"{emp:7.3f} / {float(proc.sigma(torch.tensor(t))):<7.3f}  ")
            imgs.append(m.x_t[0].reshape(8, 8))
        rows[name] = imgs
        print(f"{name:20s} " + "".join(cells))

    pos = x0 * 0.5 + 0.5 + 0.05  # strictly positive intensities for GBM
    gbm = P.GBM(mu=0.0, sigma=1.0)
    m = gbm.marginal(pos, 0.5, generator=g)
    print(f"\nGBM: all {m.x_t.numel()} values positive: {bool((m.x_t > 0).all())}; "
          f"std of log-ratio {float(torch.log(m.x_t / pos).std()):.3f} (exact {gbm.vol * math.sqrt(0.5):.3f})")

    levels = 17
    xd = (x0 * 0.5 + 0.5).mul(levels - 1).round().long()  # 17 grey levels, as in the raw data
    for proc in (P.UniformCTMC(levels), P.AbsorbingCTMC(levels)):
        m = proc.marginal(xd, 0.5, generator=g)
        changed = float((m.x_t != xd).float().mean())
        print(f"{type(proc).__name__}: share of pixels changed at t=0.5: {changed:.3f}")

    poses = se3.random((1000,), generator=g, dtype=torch.float64)
    sd = P.SE3Diffusion()
    m = sd.marginal(poses, 0.5, generator=g)
    R0, _ = se3.to_rt(poses)
    Rt, _ = se3.to_rt(m.x_t)
    ang = so3.distance(R0, Rt)
    print(f"SE3Diffusion: mean rotation change at t=0.5: {float(ang.mean()):.3f} rad "
          f"(IGSO(3) sigma {float(sd.rot_sigma(torch.tensor(0.5))):.3f})")

    if args.no_plot:
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('\n(no figure: pip install -e ".[examples]" for matplotlib)')
        return
    fig, axes = plt.subplots(len(rows), len(fr) + 1, figsize=(1.6 * (len(fr) + 1), 1.6 * len(rows)))
    for r, (name, imgs) in enumerate(rows.items()):
        axes[r, 0].imshow(x0[0].reshape(8, 8), cmap="gray", vmin=-1, vmax=1)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", fontsize=8)
        for c, im in enumerate(imgs):
            axes[r, c + 1].imshow(im, cmap="gray", vmin=-1.5, vmax=1.5)
            if r == 0:
                axes[r, c + 1].set_title(f"{fr[c]:.0%} of [t_min, t_max]", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_title("x_0", fontsize=8)
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "forward_processes.png")
    fig.savefig(path, dpi=110)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
