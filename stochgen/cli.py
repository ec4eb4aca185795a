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
import importlib.util
import json
import math
import os
import sys
import time

__all__ = ["main", "build_parser", "CLIError", "VERB_ENTRY_POINT_GROUP", "check_device", "check_output", "verb_parser", "finite_float", "seed_int"]

#: entry-point group of command-line verbs added by domains: ``name = "module:add_verbs"``, where
#: ``add_verbs(subparsers)`` adds parsers with ``set_defaults(func=run)`` and ``run(args) -> int``
VERB_ENTRY_POINT_GROUP = "stochgen.verbs"


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``stochgen VERB: error: ... (see stochgen VERB --help)``, status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default in ``--help`` (unless the help text already names it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower() or not action.option_strings:
            return text
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return text
        return text + " (default: %(default)s)"


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
            if importlib.util.find_spec(f"domains.{name}.domain") is not None:
                importlib.import_module(f"domains.{name}.domain")  # registers itself on import
        except ImportError:
            raise CLIError(str(exc)) from None
        from stochgen.domain import names

        if name in names():
            return stochgen.domain(name, **settings)
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, stochgen.Domain) and getattr(obj, "name", None) == name:
                register_domain(name, obj)
                return stochgen.domain(name, **settings)
        raise CLIError(str(exc)) from None


def _load_model(path: str, device: str = "cpu"):
    import stochgen

    _check_ckpt_path(path)
    spec = stochgen.checkpoint.info(path)["spec"]
    name = (spec.get("domain") or {}).get("name") if isinstance(spec, dict) else None
    if name:
        _resolve_domain(name)  # registers a built-in domain package if needed
    return stochgen.load(path, device=device)


def _check_ckpt_path(path: str) -> None:
    if os.path.isdir(path):
        raise CLIError(f"{path} is a folder, not a checkpoint file (give the .ckpt file a run wrote)")
    if not os.path.exists(path):
        raise CLIError(f"checkpoint not found: {path}")
    if not os.path.isfile(path):
        raise CLIError(f"{path} is not a regular file, so not a checkpoint")
    if not os.access(path, os.R_OK):
        raise CLIError(f"cannot read the checkpoint {path}: permission denied")


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


def verb_parser(subparsers, name: str, **kw) -> argparse.ArgumentParser:
    """``subparsers.add_parser(name, **kw)`` with the main parser's formatter (defaults shown in
    ``--help``, one-line errors): what a domain's ``add_verbs(subparsers)`` calls for each verb."""
    formatter = getattr(getattr(subparsers, "_parser_class", None), "formatter_class", None)
    if formatter is not None:
        kw.setdefault("formatter_class", formatter)
    return subparsers.add_parser(name, **kw)


def check_output(path: str, what: str = "output") -> str:
    """Refuse an output path that cannot be written, before any work starts (no lost runs)."""
    path = os.fspath(path)
    if "\x00" in path:
        raise CLIError(f"the {what} path {path!r} contains a NUL byte")
    if os.path.isdir(path):
        raise CLIError(f"{what} {path!r} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path)) or "."
    probe = folder
    while not os.path.exists(probe):  # the first existing parent decides (missing folders are created later)
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write the {what} {path!r}: {probe!r} is not a writable folder")
    return path


#: what ``stochgen sample -o`` writes, by the output's suffix
OUTPUT_FORMATS = {".png": "image", ".jpg": "image", ".jpeg": "image", ".npy": "npy", ".pt": "pt",
                  ".safetensors": "safetensors"}


def _output_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise CLIError(f"cannot tell what to write to {path!r} from its suffix {ext or '(none)'}: end it in .png or "
                       ".jpg (an image grid), .npy (a numpy array), .pt (a torch tensor) or .safetensors")
    return OUTPUT_FORMATS[ext]


def _per_sample_paths(path: str, n: int) -> list[str]:
    stem, ext = os.path.splitext(path)
    width = max(4, len(str(n - 1)))
    return [f"{stem}_{i:0{width}d}{ext}" for i in range(n)]


def _write_states(x, path: str, fmt: str, domain, nrow=None) -> str:
    import numpy as np
    import torch

    from .checkpoint import write_atomic as _write_atomic

    if fmt == "image":
        return _write_atomic(path, lambda tmp: domain.save_grid(x, tmp, nrow=nrow))
    cpu = {k: v.detach().cpu().contiguous() for k, v in x.items()} if isinstance(x, dict) else x.detach().cpu()
    if fmt == "npy":
        return _write_atomic(path, lambda tmp: np.save(tmp, cpu.numpy()))
    if fmt == "pt":
        return _write_atomic(path, lambda tmp: torch.save(cpu, tmp))
    import safetensors.torch

    from .checkpoint import default_file_mode

    def save_st(tmp):
        safetensors.torch.save_file(cpu if isinstance(cpu, dict) else {"x": cpu.contiguous()}, tmp)
        os.chmod(tmp, default_file_mode())  # safetensors writes 0600
    return _write_atomic(path, save_st)


def finite_float(text: str) -> float:
    """argparse type: a finite number (``nan`` and ``inf`` are refused)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def seed_int(text: str) -> int:
    """argparse type: a seed, a whole number in 0 .. 2**32 - 1 (what torch and numpy both accept)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= v < 2 ** 32:
        raise argparse.ArgumentTypeError(f"a seed lies in 0 .. 4294967295, got {v}")
    return v


def positive_int(text: str) -> int:
    """argparse type: a whole number in 1 .. 100000 (counts of samples, steps, points)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    if v > 100_000:
        raise argparse.ArgumentTypeError(f"{v} is too large (at most 100000)")
    return v


def check_device(name: str) -> str:
    """A torch device this machine has, or a one-line error."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise CLIError(f"--device {name!r} is not a torch device ({exc}); use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        if dev.index not in (None, 0):
            raise CLIError(f"--device {name!r}: there is one cpu device; use cpu")
        return name
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"--device {name!r}: CUDA is not available on this machine (torch "
                           f"{torch.__version__}); use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CLIError(f"--device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return name
    if dev.type == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return name
    raise CLIError(f"--device {name!r} cannot run a model here; use cpu"
                   + (" or cuda" if torch.cuda.is_available() else ""))


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

    check_output(args.out, "checkpoint")
    if args.log is not None:
        check_output(args.log, "training log")
        if not args.log.lower().endswith((".csv", ".jsonl")):
            raise CLIError(f"--log {args.log!r}: the training log is a .csv or .jsonl file")
    check_device(args.device)
    _positive(args.steps, "--steps")
    _positive(args.epochs, "--epochs")
    _positive(args.batch_size, "--batch-size")
    dom = _resolve_domain(args.domain, **_parse_settings(args.set))
    process, network = _process_arg(args), _network_arg(args)
    data = dom.load(args.data)
    print(f"training {args.domain} on {len(data)} samples of {args.data} (seed {args.seed}, device {args.device}); "
          f"the checkpoint goes to {os.path.abspath(args.out)}", flush=True)
    t0 = time.time()
    model = stochgen.fit(dom, data, steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed, device=args.device, ema="auto" if args.ema is None else args.ema,
                         val_split=args.val_split,
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

    from stochgen.domain import Domain

    check_output(args.out, "output")
    fmt = _output_format(args.out)
    check_device(args.device)
    _positive(args.n, "-n")
    _positive(args.steps, "--steps")
    _positive(args.nrow, "--nrow")
    if args.nrow is not None and fmt != "image":
        raise CLIError("--nrow sets the images per row of a grid; it needs a .png or .jpg output")
    model = _load_model(args.ckpt, args.device)
    if fmt == "image" and type(model.domain).save_grid is Domain.save_grid:
        raise CLIError(f"the {model.domain.name} domain draws no images; write the samples to .pt, .npy or "
                       ".safetensors")
    if fmt == "npy" and isinstance(model.state_shape, dict):
        raise CLIError("this model's states have several parts "
                       f"({', '.join(model.state_shape)}); write them to .pt or .safetensors")
    paths = _per_sample_paths(args.out, args.n) if args.per_sample else [args.out]
    if args.per_sample:
        for p in paths:
            check_output(p, "output")
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
    sampler = args.sampler or model.sampler
    print(f"sampling {args.n} with {sampler}, {args.steps or model.steps} steps, seed {args.seed}", flush=True)
    x = model.sample(args.n, sampler=args.sampler, steps=args.steps, cond=cond, generator=g,
                     guidance_scale=args.guidance, progress=not args.no_progress)
    x = model.domain.clip_states(x)
    folder = os.path.dirname(args.out)
    if folder:
        os.makedirs(folder, exist_ok=True)
    if args.per_sample:
        for i, p in enumerate(paths):
            xi = {k: v[i:i + 1] for k, v in x.items()} if isinstance(x, dict) else x[i:i + 1]
            _write_states(xi, p, fmt, model.domain, nrow=1)
        where = f"{paths[0]} .. {paths[-1]}" if len(paths) > 1 else paths[0]
    else:
        _write_states(x, args.out, fmt, model.domain, nrow=args.nrow)
        where = args.out
    shape = {k: tuple(v.shape[1:]) for k, v in x.items()} if isinstance(x, dict) else tuple(x.shape[1:])
    print(f"wrote {args.n} samples of shape {shape} to {where}")
    return 0


def cmd_likelihood(args) -> int:
    import torch

    import stochgen

    from stochgen.families import describe, family_of

    _positive(args.n, "-n")
    _positive(args.batch_size, "--batch-size")
    check_device(args.device)
    model = _load_model(args.ckpt, args.device)
    if not family_of(model.process).likelihood:
        raise CLIError(f"the exact likelihood is not defined for this model: {describe(model.process)}")
    held, what = _held_out(model, args)
    n = min(args.n, len(held))
    print(f"scoring the first {n} of {len(held)} samples ({what}); seed {args.seed}", flush=True)
    x = held.x[:n].to(model.device)
    conds = {k: v[:n].to(model.device) for k, v in held.cond.items()}
    g = torch.Generator().manual_seed(args.seed)
    kw = dict(divergence="exact" if args.exact else "hutchinson", rtol=args.rtol, atol=args.atol, generator=g,
              progress=not args.no_progress)
    levels = model.domain.levels
    out = []
    for i in range(0, n, args.batch_size):
        xb = x[i:i + args.batch_size]
        if levels is not None:
            out.append(stochgen.bits_per_dim(model.process, model.denoise, xb, prediction=model.prediction,
                                             num_bins=int(levels), **kw))
        else:
            out.append(-model.log_likelihood(xb, cond={k: v[i:i + args.batch_size] for k, v in conds.items()}, **kw))
        if not args.no_progress and n > args.batch_size:
            print(f"  {min(i + args.batch_size, n)}/{n} samples scored", flush=True)
    vals = torch.cat(out)
    if levels is not None:
        print(f"bits/dim: {float(vals.mean()):.4f} +- {float(vals.std() / math.sqrt(vals.numel())):.4f} "
              f"({vals.numel()} samples, {levels} levels)")
    else:
        d = x[0].numel()
        print(f"nll: {float(vals.mean()):.4f} nats/sample, {float(vals.mean()) / (d * math.log(2)):.4f} bits/dim "
              f"({vals.numel()} samples, continuous)")
    return 0


def _held_out(model, args):
    """The rows of ``args.data`` the model was not trained on (all with ``--include-training``), and what they are."""
    data = model.domain.prepare(model.domain.load(args.data), model.process)
    held, skipped = (data, None) if args.include_training else model.held_out(data)
    if skipped is None:
        what = ("all of DATA, training samples included (--include-training)" if args.include_training else
                "the checkpoint records no training rows, so DATA may include training samples")
    elif skipped:
        what = f"held-out samples only: {skipped} of the {len(data)} samples of DATA were training data and are skipped"
    else:
        what = f"none of the {len(data)} samples of DATA was training data"
    if len(held) == 0:
        raise CLIError(f"all {len(data)} samples of {args.data} were used to train this model: give held-out data "
                       "(or --include-training to score training data)")
    return held, what


def cmd_metrics(args) -> int:
    _positive(args.n, "-n")
    check_device(args.device)
    model = _load_model(args.ckpt, args.device)
    held, what = _held_out(model, args)
    n = min(args.n, len(held))
    print(f"evaluating on the first {n} of {len(held)} samples ({what})", flush=True)
    m = model.domain.metrics(model, held.subset(range(n)))
    if not m:
        print(f"the {model.domain.name} domain defines no metrics")
        return 0
    for k, v in m.items():
        print(f"{k}: {_fmt(v)}")
    return 0


def cmd_info(args) -> int:
    import stochgen

    _check_ckpt_path(args.ckpt)
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
    check_device(args.device)
    check_output(os.path.join(args.out, "model.ckpt"), "demo output")
    steps = args.steps or (40 if args.quick else 1000)
    batch = args.batch_size or (32 if args.quick else 64)
    dom = _resolve_domain("images")
    train, test = dom.split("digits", held_out=0.2, seed=0)
    print(f"stochgen demo: {len(train)} training / {len(test)} held-out 8x8 digits (17 grey levels), "
          f"EDM + U-Net, {steps} steps of batch {batch} on {args.device}, seed {args.seed}; "
          f"writing to {os.path.abspath(args.out)}", flush=True)
    t0 = time.time()
    model = stochgen.fit(dom, train, steps=steps, batch_size=batch, lr=args.lr, seed=args.seed, device=args.device,
                         progress=not args.no_progress, warmup=min(100, steps // 10), ema=0.995 if steps > 500 else 0.9)
    t_fit = time.time() - t0
    os.makedirs(args.out, exist_ok=True)  # only now: a run refused or failed in training leaves no folder
    ckpt = model.save(os.path.join(args.out, "model.ckpt"))
    g = torch.Generator().manual_seed(args.seed)
    per_row = 4 if args.quick else 10
    labels = torch.arange(10).repeat_interleave(per_row)
    x = dom.sample(model, labels.numel(), label=labels, guidance_scale=args.guidance, generator=g)
    dom.save_grid(x, os.path.join(args.out, "samples.png"), nrow=per_row)
    known = test.x[:6]
    filled, mask = dom.inpaint(model, known, "right", steps=20 if args.quick else 50, generator=g)
    dom.save_inpainting(known, mask, filled, os.path.join(args.out, "inpainting.png"))
    print(f"trained in {t_fit:.0f} s; evaluating on the held-out digits", flush=True)
    m = dom.metrics(model, test, n_bpd=8 if args.quick else 128, n_per_class=per_row,
                    n_uncond=20 if args.quick else 500, guidance_scale=args.guidance, seed=args.seed,
                    progress=not args.no_progress)
    shares = [m[f"share_{k}"] for k in range(10) if f"share_{k}" in m]
    print(f"wrote {ckpt}, samples.png, inpainting.png to {args.out}")
    print(f"held-out bits/dim: {m['bits_per_dim']:.3f}  ({min(len(test), 8 if args.quick else 128)} digits, "
          "17 levels, Hutchinson trace)")
    print(f"classifier accuracy on real held-out digits: {m['classifier_real_accuracy']:.3f}")
    print(f"classifier accuracy on class-conditional samples (guidance {args.guidance:g}): {m['cond_accuracy']:.3f}")
    print("per-class share of unconditional samples: " + " ".join(f"{k}:{s:.2f}" for k, s in enumerate(shares)))
    _domain_demos(args)
    print(f"total {time.time() - t0:.0f} s")
    return 0


def _builtin_domain_packages() -> dict[str, str]:
    """``{name: folder}`` of the built-in ``domains/<name>`` packages (found without entry points)."""
    try:
        spec = importlib.util.find_spec("domains")
    except (ImportError, ValueError):
        spec = None
    out = {}
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        for e in sorted(os.listdir(folder)):
            if e.isidentifier() and os.path.isfile(os.path.join(folder, e, "__init__.py")):
                out.setdefault(e, os.path.join(folder, e))
    return out


def _builtin_domain_names() -> list[str]:
    from stochgen.domain import names

    return sorted(set(names()) | set(_builtin_domain_packages()))


def _domain_demos(args) -> None:
    """Every other domain that ships a model shows it (``Domain.demo``), each in ``OUT/<name>/``."""
    from stochgen.domain import Domain

    for name in _builtin_domain_names():
        if name in ("images", "base"):
            continue
        try:
            dom = _resolve_domain(name)
        except (CLIError, ImportError, ValueError):
            continue
        if type(dom).demo is Domain.demo:
            continue
        print(f"\n{name}:", flush=True)
        try:
            lines = dom.demo(os.path.join(args.out, name), quick=args.quick, seed=args.seed, device=args.device,
                             progress=not args.no_progress)
        except ImportError as exc:
            print(f"  skipped: {exc}")
            continue
        for line in lines or []:
            print(f"  {line}")


# --- parser -----------------------------------------------------------------------------------------

_VERB_ERRORS: dict[str, str] = {}


def _verb_adders() -> dict:
    """``{source: add_verbs}``: the entry points of :data:`VERB_ENTRY_POINT_GROUP`, plus ``domains/<name>/cli.py``
    of the built-in domains (found without an installed entry point, e.g. in a source checkout)."""
    from importlib.metadata import entry_points

    found: dict = {}
    try:
        eps = entry_points(group=VERB_ENTRY_POINT_GROUP)
    except TypeError:  # pragma: no cover - Python < 3.10 API
        eps = entry_points().get(VERB_ENTRY_POINT_GROUP, [])
    for ep in eps:
        found[ep.value.split(":")[0]] = ep.load
    for name, folder in _builtin_domain_packages().items():
        if os.path.isfile(os.path.join(folder, "cli.py")):
            mod = f"domains.{name}.cli"
            found.setdefault(mod, lambda mod=mod: getattr(importlib.import_module(mod), "add_verbs"))
    return found


def _add_plugin_verbs(sub) -> None:
    for source, load in _verb_adders().items():
        try:
            load()(sub)
        except Exception as exc:  # a broken or half-installed plug-in must not take the whole CLI down
            _VERB_ERRORS[source] = f"{type(exc).__name__}: {exc}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:  # pragma: no cover
        torch_version = "not installed"
    from . import __version__

    return f"stochgen {__version__} (torch {torch_version}, Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    F = HelpFormatter
    p = ArgumentParser(prog="stochgen", description="Stochastic-process generative models for any domain.",
                                formatter_class=F)
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model on a domain's data and save a checkpoint", formatter_class=F,
                       description="Train a model on DATA of DOMAIN and save one self-describing checkpoint.")
    t.add_argument("domain", help="domain name, e.g. images")
    t.add_argument("data", help="data the domain knows: a name (images: digits, mnist5k), a folder or a file")
    t.add_argument("--steps", type=int, default=None, help="optimizer steps (default: one epoch if --epochs unset)")
    t.add_argument("--epochs", type=int, default=None, help="passes over the data (instead of --steps)")
    t.add_argument("--batch-size", type=int, default=None,
                   help="samples per optimizer step (default: the domain's fit_defaults, else 128)")
    t.add_argument("--lr", type=finite_float, default=None,
                   help="AdamW learning rate (default: the domain's fit_defaults, else 2e-4)")
    t.add_argument("--ema", type=finite_float, default=None,
                   help="EMA decay of the weights, 0 = no EMA (default: the domain's fit_defaults, else 0.999)")
    t.add_argument("--val-split", type=finite_float, default=0.0, help="share of the data held out for validation")
    t.add_argument("--seed", type=seed_int, default=0, help="seed of the split, the initial weights and the batches")
    t.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    t.add_argument("--out", "-o", default="model.ckpt", help="checkpoint path")
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
    t.add_argument("--cond-drop", type=finite_float, default=0.1, help="label dropout for classifier-free guidance")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw samples from a checkpoint", formatter_class=F,
                       description="Draw samples and write them in the format OUT's suffix names: .png / .jpg a grid "
                                   "image (image domains), .npy a numpy array, .pt a torch tensor (a dict for "
                                   "composite states), .safetensors tensors (key 'x', or one per part).")
    s.add_argument("ckpt", help="checkpoint file")
    s.add_argument("-n", type=int, default=16, help="number of samples")
    s.add_argument("-o", "--out", required=True, help="output file: .png, .jpg, .npy, .pt or .safetensors")
    s.add_argument("--per-sample", action="store_true",
                   help="one file per sample, OUT's name with _0000, _0001, ... before the suffix")
    s.add_argument("--nrow", type=int, default=None, help="images per row of a grid (default: about sqrt(n))")
    s.add_argument("--sampler", default=None, help="sampler name (default: the checkpoint's)")
    s.add_argument("--steps", type=int, default=None, help="sampler steps (default: the checkpoint's)")
    s.add_argument("--seed", type=seed_int, default=0, help="seed of the sampler's noise")
    s.add_argument("--label", type=int, default=None, help="class to draw (class-conditional models)")
    s.add_argument("--guidance", type=finite_float, default=None, help="classifier-free guidance scale (with --label)")
    s.add_argument("--cond", action="append", metavar="NAME=FILE",
                   help="a condition the model was trained with (a .pt tensor or .npy array, one row per sample "
                        "or one for all); repeatable")
    s.add_argument("--device", default="cpu", help="torch device")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_sample)

    lk = sub.add_parser("likelihood", help="held-out log-likelihood (bits/dim) of data under a checkpoint",
                        formatter_class=F,
                        description="Probability-flow ODE log-likelihood of DATA (bits/dim for quantised data). "
                                    "Samples the model was trained on are skipped (the checkpoint records them); "
                                    "the output says what was scored.")
    lk.add_argument("ckpt", help="checkpoint file")
    lk.add_argument("data", help="data the model's domain knows (a name, a folder or a file)")
    lk.add_argument("-n", type=int, default=256, help="score the first N held-out samples")
    lk.add_argument("--batch-size", type=int, default=256, help="samples per ODE solve")
    lk.add_argument("--exact", action="store_true", help="exact divergence (default: Hutchinson estimate)")
    lk.add_argument("--include-training", action="store_true", help="score training samples too")
    lk.add_argument("--rtol", type=finite_float, default=1e-4, help="ODE relative tolerance")
    lk.add_argument("--atol", type=finite_float, default=1e-4, help="ODE absolute tolerance")
    lk.add_argument("--seed", type=seed_int, default=0, help="seed of the dequantization noise and the probes")
    lk.add_argument("--device", default="cpu", help="torch device")
    lk.add_argument("--no-progress", action="store_true", help="no progress bar")
    lk.set_defaults(func=cmd_likelihood)

    mt = sub.add_parser("metrics", help="the domain's quality metrics of a checkpoint on DATA", formatter_class=F,
                        description="Evaluate a checkpoint with its domain's own metrics on DATA (samples the "
                                    "model was trained on are skipped, as in likelihood).")
    mt.add_argument("ckpt", help="checkpoint file")
    mt.add_argument("data", help="data the model's domain knows")
    mt.add_argument("-n", type=int, default=256, help="evaluate on the first N held-out samples")
    mt.add_argument("--include-training", action="store_true", help="use training samples too")
    mt.add_argument("--device", default="cpu", help="torch device")
    mt.set_defaults(func=cmd_metrics)

    i = sub.add_parser("info", help="describe a checkpoint without loading its weights", formatter_class=F,
                       description="Print the spec of a checkpoint: domain, process, network, sampler, sizes.")
    i.add_argument("ckpt", help="checkpoint file")
    i.add_argument("--json", action="store_true", help="print everything as JSON")
    i.set_defaults(func=cmd_info)

    d = sub.add_parser("demo", help="train a class-conditional digit model on the CPU and show what it does",
                       formatter_class=F,
                       description="Train on scikit-learn's 8x8 digits (a few minutes on a CPU), then write "
                                   "DIR/model.ckpt, DIR/samples.png (one row per digit), DIR/inpainting.png and "
                                   "print held-out bits/dim and classifier scores of the samples.")
    d.add_argument("--steps", type=int, default=None, help="training steps (default 1000; 40 with --quick)")
    d.add_argument("--batch-size", type=int, default=None, help="samples per step (default 64; 32 with --quick)")
    d.add_argument("--lr", type=finite_float, default=1e-3, help="AdamW learning rate")
    d.add_argument("--out", default="stochgen-demo", help="output folder")
    d.add_argument("--quick", action="store_true", help="tiny run (seconds) for tests")
    d.add_argument("--guidance", type=finite_float, default=2.0, help="classifier-free guidance scale")
    d.add_argument("--seed", type=seed_int, default=0, help="seed of training and sampling")
    d.add_argument("--device", default="cpu", help="torch device")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_demo)

    _add_plugin_verbs(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None) and _VERB_ERRORS:
            for source, err in _VERB_ERRORS.items():
                print(f"stochgen: note: the commands of {source} could not be loaded ({err})", file=sys.stderr)
        raise
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
