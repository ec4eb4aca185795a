"""The ``stochgen`` command line: train, sample, likelihood, metrics, info, demo.

    stochgen train images digits --steps 3000 --out model.ckpt
    stochgen train base tokens.pt --process AbsorbingCTMC --process-set num_states=6 --steps 2000
    stochgen sample model.ckpt -n 64 -o samples.png --label 3 --guidance 2
    stochgen sample ouve.ckpt -n 8 --cond y=noisy.pt -o clean.pt
    stochgen likelihood model.ckpt digits
    stochgen metrics model.ckpt digits
    stochgen info model.ckpt
    stochgen demo --out demo

Every verb has ``--help``. Errors (a missing checkpoint, an unknown domain, bad data)
print one line ``stochgen: error: ...`` and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time

__all__ = ["main", "build_parser"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


# --- helpers ------------------------------------------------------------------------------------

def _resolve_domain(name: str, **settings):
    """``stochgen.domain(name)``; a built-in ``domains.<name>`` package is found even without its entry point."""
    import stochgen
    from stochgen.domain import register_domain

    try:
        return stochgen.domain(name, **settings)
    except ValueError as exc:
        if not name.isidentifier():
            raise CLIError(str(exc)) from None
        try:
            mod = importlib.import_module(f"domains.{name}")
        except ImportError:
            raise CLIError(str(exc)) from None
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, stochgen.Domain) and getattr(obj, "name", None) == name:
                register_domain(name, obj)
                return stochgen.domain(name, **settings)
        raise CLIError(str(exc)) from None


def _load_model(path: str, device: str = "cpu"):
    import stochgen

    if not os.path.isfile(path):
        raise CLIError(f"checkpoint not found: {path}")
    spec = stochgen.checkpoint.info(path)["spec"]
    name = (spec.get("domain") or {}).get("name") if isinstance(spec, dict) else None
    if name:
        _resolve_domain(name)  # registers a built-in domain package if needed
    return stochgen.load(path, device=device)


def _parse_settings(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"--set takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _check_output(path: str, what: str = "output") -> str:
    """Refuse an output path that cannot be written, before any work starts (no lost runs)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CLIError(f"{what} {path!r} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path)) or "."
    probe = folder
    while not os.path.exists(probe):  # the first existing parent decides (missing folders are created later)
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write the {what} {path!r}: {probe!r} is not a writable folder")
    return path


def _positive(value, name: str):
    if value is not None and value < 1:
        raise CLIError(f"{name} must be >= 1, got {value}")
    return value


def _process_arg(args):
    """``--process`` (a type name or a JSON spec) with ``--process-set`` overrides -> a process, or None."""
    import stochgen

    if args.process is None:
        if args.process_set:
            raise CLIError("--process-set needs --process")
        return None
    text = args.process.strip()
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CLIError(f"--process is not valid JSON: {exc}") from None
    else:
        spec = {"type": text, "config": {}}
    spec.setdefault("config", {}).update(_parse_settings(args.process_set))
    return stochgen.processes.from_spec(spec)


def _network_arg(args):
    import stochgen

    if args.network is None:
        return None
    text = args.network.strip()
    try:
        spec = json.loads(text) if text.startswith("{") else {"type": text, "config": {}}
    except json.JSONDecodeError as exc:
        raise CLIError(f"--network is not valid JSON: {exc}") from None
    return stochgen.nets.build(spec)


def _cond_args(items, model) -> dict | None:
    """``--cond NAME=FILE`` (.pt tensor or .npy array) -> ``{NAME: tensor}``."""
    import numpy as np
    import torch

    out = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"--cond takes NAME=FILE, got {item!r}")
        k, path = item.split("=", 1)
        if not os.path.isfile(path):
            raise CLIError(f"--cond {k}: file not found: {path}")
        try:
            v = np.load(path, allow_pickle=False) if path.lower().endswith(".npy") else \
                torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CLIError(f"--cond {k}: cannot read {path} ({exc}); give a .pt tensor or a .npy array") from None
        out[k] = torch.as_tensor(v)
    unknown = sorted(set(out) - set(model.conditions))
    if unknown:
        raise CLIError(f"this model takes no condition(s) {unknown}; it takes: "
                       f"{', '.join(model.conditions) or 'none'}")
    return out


# --- verbs ------------------------------------------------------------------------------------------

def cmd_train(args) -> int:
    import stochgen

    _check_output(args.out, "checkpoint")
    _positive(args.steps, "--steps")
    _positive(args.epochs, "--epochs")
    _positive(args.batch_size, "--batch-size")
    dom = _resolve_domain(args.domain, **_parse_settings(args.set))
    process, network = _process_arg(args), _network_arg(args)
    data = dom.load(args.data)
    t0 = time.time()
    model = stochgen.fit(dom, data, steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed, device=args.device, ema=args.ema, val_split=args.val_split,
                         progress=not args.no_progress, log=args.log, process=process, network=network,
                         prediction=args.prediction, cond_drop=args.cond_drop)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 writes
        return 0
    path = model.save(args.out)
    print(f"trained {args.domain} ({type(model.process).__name__}, prediction {model.prediction}) on {len(data)} "
          f"samples in {time.time() - t0:.1f} s; wrote {path}")
    if args.val_split > 0:
        from stochgen.fit import validation_split

        held = validation_split(dom.prepare(data, model.process), args.val_split, args.seed)[0]
        m = dom.metrics(model, held)
        if m:
            print("held-out metrics: " + ", ".join(f"{k} {_fmt(v)}" for k, v in m.items()))
    return 0


def cmd_sample(args) -> int:
    import torch

    _check_output(args.out, "output")
    _positive(args.n, "-n")
    _positive(args.steps, "--steps")
    model = _load_model(args.ckpt, args.device)
    g = torch.Generator().manual_seed(args.seed)
    cond = _cond_args(args.cond, model) or None
    if args.label is not None:
        if model.num_classes is None:
            raise CLIError("--label needs a class-conditional model (this one was trained without labels)")
        if not 0 <= args.label < model.num_classes:
            raise CLIError(f"--label must lie in 0..{model.num_classes - 1}, got {args.label}")
        cond = {**(cond or {}), "label": args.label}
    if args.guidance is not None and cond is None:
        raise CLIError("--guidance needs --label (or --cond for a model trained with condition dropout)")
    x = model.sample(args.n, sampler=args.sampler, steps=args.steps, cond=cond, generator=g,
                     guidance_scale=args.guidance)
    x = model.domain.clip_states(x)
    out = args.out
    folder = os.path.dirname(out)
    if folder:
        os.makedirs(folder, exist_ok=True)
    if out.lower().endswith(".png"):
        model.domain.save_grid(x, out)
    elif out.lower().endswith(".npy"):
        import numpy as np

        if isinstance(x, dict):
            raise CLIError("a composite state has several parts; write it to a .pt file")
        np.save(out, x.detach().cpu().numpy())
    else:
        torch.save(x.detach().cpu() if torch.is_tensor(x) else {k: v.detach().cpu() for k, v in x.items()}, out)
    shape = {k: tuple(v.shape[1:]) for k, v in x.items()} if isinstance(x, dict) else tuple(x.shape[1:])
    print(f"wrote {args.n} samples of shape {shape} to {out}")
    return 0


def cmd_likelihood(args) -> int:
    import torch

    import stochgen

    from stochgen.families import describe, family_of

    _positive(args.n, "-n")
    _positive(args.batch_size, "--batch-size")
    model = _load_model(args.ckpt, args.device)
    if not family_of(model.process).likelihood:
        raise CLIError(f"the exact likelihood is not defined for this model: {describe(model.process)}")
    data = model.domain.prepare(model.domain.load(args.data), model.process)
    x = data.x[: args.n].to(model.device)
    conds = {k: v[: args.n].to(model.device) for k, v in data.cond.items()}
    g = torch.Generator().manual_seed(args.seed)
    kw = dict(divergence="exact" if args.exact else "hutchinson", rtol=args.rtol, atol=args.atol, generator=g)
    levels = model.domain.levels
    if levels is not None:
        bpd = torch.cat([stochgen.bits_per_dim(model.process, model.denoise, x[i:i + args.batch_size],
                                               prediction=model.prediction, num_bins=int(levels), **kw)
                         for i in range(0, x.shape[0], args.batch_size)])
        print(f"bits/dim: {float(bpd.mean()):.4f} +- {float(bpd.std() / math.sqrt(bpd.numel())):.4f} "
              f"({bpd.numel()} samples, {levels} levels)")
    else:
        nll = -torch.cat([model.log_likelihood(x[i:i + args.batch_size],
                                               cond={k: v[i:i + args.batch_size] for k, v in conds.items()}, **kw)
                          for i in range(0, x.shape[0], args.batch_size)])
        d = x[0].numel()
        print(f"nll: {float(nll.mean()):.4f} nats/sample, {float(nll.mean()) / (d * math.log(2)):.4f} bits/dim "
              f"({nll.numel()} samples, continuous)")
    return 0


def cmd_metrics(args) -> int:
    model = _load_model(args.ckpt, args.device)
    data = model.domain.prepare(model.domain.load(args.data), model.process)
    m = model.domain.metrics(model, data)
    if not m:
        print(f"the {model.domain.name} domain defines no metrics")
        return 0
    for k, v in m.items():
        print(f"{k}: {_fmt(v)}")
    return 0


def cmd_info(args) -> int:
    import stochgen

    if not os.path.isfile(args.ckpt):
        raise CLIError(f"checkpoint not found: {args.ckpt}")
    info = stochgen.checkpoint.info(args.ckpt)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    spec = info["spec"] or {}
    dom = spec.get("domain") or {}
    proc = spec.get("process") or {}
    net = spec.get("net") or {}
    print(f"checkpoint: {args.ckpt} ({info['file_bytes'] / 1e6:.2f} MB, format {info['format']})")
    print(f"domain:     {dom.get('name')}  {json.dumps(dom.get('settings', {}))}")
    print(f"process:    {proc.get('type')}  {json.dumps(proc.get('config', {}))}")
    try:
        from stochgen.families import family_of

        print(f"family:     {family_of(stochgen.processes.from_spec(proc)).name}")
    except ValueError:
        pass
    print(f"network:    {net.get('type')}  {json.dumps(net.get('config', {}))}")
    for key in ("prediction", "preconditioning", "ema_decay", "sampler", "steps", "state_shape", "num_classes",
                "conditions", "stochgen_version"):
        if key in spec:
            print(f"{key + ':':12s}{spec[key]}" if len(key) < 11 else f"{key}: {spec[key]}")
    for g, v in sorted(info["groups"].items()):
        print(f"weights[{g}]: {v['tensors']} tensors, {v['numel']:,} numbers")
    return 0


def cmd_demo(args) -> int:
    import torch

    import stochgen

    _positive(args.steps, "--steps")
    _positive(args.batch_size, "--batch-size")
    _check_output(os.path.join(args.out, "model.ckpt"), "demo output")
    steps = args.steps or (40 if args.quick else 1000)
    batch = args.batch_size or (32 if args.quick else 64)
    os.makedirs(args.out, exist_ok=True)
    dom = _resolve_domain("images")
    train, test = dom.split("digits", held_out=0.2, seed=0)
    print(f"stochgen demo: {len(train)} training / {len(test)} held-out 8x8 digits (17 grey levels), "
          f"EDM + U-Net, {steps} steps of batch {batch} on {args.device}")
    t0 = time.time()
    model = stochgen.fit(dom, train, steps=steps, batch_size=batch, lr=args.lr, seed=args.seed, device=args.device,
                         progress=not args.no_progress, warmup=min(100, steps // 10), ema=0.995 if steps > 500 else 0.9)
    t_fit = time.time() - t0
    ckpt = model.save(os.path.join(args.out, "model.ckpt"))
    g = torch.Generator().manual_seed(args.seed)
    per_row = 4 if args.quick else 10
    labels = torch.arange(10).repeat_interleave(per_row)
    x = dom.sample(model, labels.numel(), label=labels, guidance_scale=args.guidance, generator=g)
    dom.save_grid(x, os.path.join(args.out, "samples.png"), nrow=per_row)
    known = test.x[:6]
    filled, mask = dom.inpaint(model, known, "right", steps=20 if args.quick else 50, generator=g)
    dom.save_inpainting(known, mask, filled, os.path.join(args.out, "inpainting.png"))
    m = dom.metrics(model, test, n_bpd=32 if args.quick else 128, n_per_class=per_row,
                    n_uncond=50 if args.quick else 500, guidance_scale=args.guidance, seed=args.seed)
    shares = [m[f"share_{k}"] for k in range(10) if f"share_{k}" in m]
    print(f"trained in {t_fit:.0f} s; wrote {ckpt}, samples.png, inpainting.png to {args.out}")
    print(f"held-out bits/dim: {m['bits_per_dim']:.3f}  ({min(len(test), 32 if args.quick else 128)} digits, "
          "17 levels, Hutchinson trace)")
    print(f"classifier accuracy on real held-out digits: {m['classifier_real_accuracy']:.3f}")
    print(f"classifier accuracy on class-conditional samples (guidance {args.guidance:g}): {m['cond_accuracy']:.3f}")
    print("per-class share of unconditional samples: " + " ".join(f"{k}:{s:.2f}" for k, s in enumerate(shares)))
    print(f"total {time.time() - t0:.0f} s")
    return 0


# --- parser -----------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stochgen", description="Stochastic-process generative models for any domain.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model on a domain's data and save a checkpoint",
                       description="Train a model on DATA of DOMAIN and save one self-describing checkpoint.")
    t.add_argument("domain", help="domain name, e.g. images")
    t.add_argument("data", help="data the domain knows: a name (images: digits, mnist5k), a folder or a file")
    t.add_argument("--steps", type=int, default=None, help="optimizer steps (default: one epoch if --epochs unset)")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--ema", type=float, default=0.999, help="EMA decay (0 = no EMA)")
    t.add_argument("--val-split", type=float, default=0.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.add_argument("--out", "-o", default="model.ckpt", help="checkpoint path (default: model.ckpt)")
    t.add_argument("--log", default=None, help="training log (.csv or .jsonl)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="domain setting, e.g. --set process=vp (JSON values); repeatable")
    t.add_argument("--process", default=None,
                   help="process type (e.g. OUVE, Interpolant, AbsorbingCTMC, SE3Diffusion) or a JSON spec "
                        "(default: the domain's)")
    t.add_argument("--process-set", action="append", metavar="KEY=VALUE",
                   help="a constructor argument of --process, e.g. num_states=6 (JSON values); repeatable")
    t.add_argument("--network", default=None, help="network type (e.g. MLP) or JSON nets spec (default: the domain's)")
    t.add_argument("--prediction", default=None,
                   help="what the network predicts: x0, eps, score, v, velocity, tangent_score, logits "
                        "(default: the domain's / the process family's)")
    t.add_argument("--cond-drop", type=float, default=0.1,
                   help="label dropout for classifier-free guidance (default 0.1)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw samples from a checkpoint",
                       description="Draw samples; OUT ending in .pt gets the state tensor (a dict for composite states), "
                                   ".npy a numpy array, .png a grid image (image domains).")
    s.add_argument("ckpt")
    s.add_argument("-n", type=int, default=16, help="number of samples (default 16)")
    s.add_argument("-o", "--out", required=True, help="output .pt (tensor of states), .npy or .png (grid)")
    s.add_argument("--sampler", default=None, help="sampler name (default: the checkpoint's)")
    s.add_argument("--steps", type=int, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--label", type=int, default=None, help="class to draw (class-conditional models)")
    s.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (with --label)")
    s.add_argument("--cond", action="append", metavar="NAME=FILE",
                   help="a condition the model was trained with (a .pt tensor or .npy array, one row per sample "
                        "or one for all); repeatable")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_sample)

    lk = sub.add_parser("likelihood", help="held-out log-likelihood (bits/dim) of data under a checkpoint",
                        description="Probability-flow ODE log-likelihood of DATA; bits/dim for quantised data.")
    lk.add_argument("ckpt")
    lk.add_argument("data")
    lk.add_argument("-n", type=int, default=256, help="use the first N samples (default 256)")
    lk.add_argument("--batch-size", type=int, default=256)
    lk.add_argument("--exact", action="store_true", help="exact divergence (default: Hutchinson estimate)")
    lk.add_argument("--rtol", type=float, default=1e-4)
    lk.add_argument("--atol", type=float, default=1e-4)
    lk.add_argument("--seed", type=int, default=0)
    lk.add_argument("--device", default="cpu")
    lk.set_defaults(func=cmd_likelihood)

    mt = sub.add_parser("metrics", help="the domain's quality metrics of a checkpoint on DATA",
                        description="Evaluate a checkpoint with its domain's own metrics on DATA.")
    mt.add_argument("ckpt")
    mt.add_argument("data")
    mt.add_argument("--device", default="cpu")
    mt.set_defaults(func=cmd_metrics)

    i = sub.add_parser("info", help="describe a checkpoint without loading its weights",
                       description="Print the spec of a checkpoint: domain, process, network, sampler, sizes.")
    i.add_argument("ckpt")
    i.add_argument("--json", action="store_true", help="print everything as JSON")
    i.set_defaults(func=cmd_info)

    d = sub.add_parser("demo", help="train a class-conditional digit model on the CPU and show what it does",
                       description="Train on scikit-learn's 8x8 digits (a few minutes on a CPU), then write "
                                   "DIR/model.ckpt, DIR/samples.png (one row per digit), DIR/inpainting.png and "
                                   "print held-out bits/dim and classifier scores of the samples.")
    d.add_argument("--steps", type=int, default=None, help="training steps (default 1000; 40 with --quick)")
    d.add_argument("--batch-size", type=int, default=None, help="default 64 (32 with --quick)")
    d.add_argument("--lr", type=float, default=1e-3)
    d.add_argument("--out", default="stochgen-demo", help="output folder (default: stochgen-demo)")
    d.add_argument("--quick", action="store_true", help="tiny run (seconds) for tests")
    d.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale (default 2)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", default="cpu")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"stochgen: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"stochgen: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
