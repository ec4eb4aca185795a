"""``stochgen.fit(domain, data)``: train a model by denoising score matching.

One code path for one process and for many: under ``torchrun`` (``WORLD_SIZE`` > 1)
``fit`` joins the process group (gloo on CPU, NCCL on CUDA), every rank takes its own
shard of each global batch and gradients are averaged by an all-reduce; rank 0 writes
checkpoints and the metrics log.

Randomness, and why runs reproduce (and resume) exactly:

* the data order is a pure function of ``(seed, step)``: the global batch of step k is
  entries ``[k G, (k + 1) G)`` of an endless stream of per-epoch permutations
  (``G = batch_size * world_size``);
* the training draws (label dropout, times, noise) come from one CPU ``torch.Generator``
  seeded with ``seed`` and are drawn for the whole global batch on every rank, each rank
  keeping its rows. So a run on W processes with ``batch_size`` B computes the same
  gradient as one process with ``batch_size`` W B, up to floating-point summation order;
* torch's global RNG (network dropout) is seeded with ``seed + rank`` inside ``fit``
  (and restored afterwards), so dropout masks differ between ranks;
* a checkpoint holds the weights, EMA, optimizer state, step, generator and global RNG
  states, and the loss history, so ``resume=path`` continues bit-identically
  (on several ranks the global RNG state of rank 0 is stored; it only matters for dropout).
"""
from __future__ import annotations

import copy
import csv
import json
import math
import os
import time
import warnings

import torch
from torch import nn

from . import checkpoint as _ckpt
from . import distributed as _dist
from .domain import Domain, DomainData
from .model import Model, model_from_spec
from . import objectives as _objectives
from .objectives import Denoiser, check_trainable, supports_preconditioning, tree_map
from .parameterization import check_kind

__all__ = ["fit", "batch_indices", "validation_split"]

_PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}


#: training sets up to this many rows are recorded in the model (``Model.train_rows``)
MAX_RECORDED_ROWS = 250_000
#: a global batch may repeat the training set at most this many times
MAX_PASSES_PER_BATCH = 64


def validation_split(data: DomainData, val_split: float, seed: int) -> tuple:
    """``(val, train)`` as ``fit(..., val_split=, seed=)`` splits ``data`` (``val`` None when 0)."""
    if not val_split > 0:
        return None, data
    n_all = len(data)
    perm = torch.randperm(n_all, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n_all * val_split)))
    if n_val >= n_all:
        raise ValueError(f"val_split={val_split} leaves no training data ({n_all} samples)")
    return data.subset(perm[:n_val]), data.subset(perm[n_val:])


def batch_indices(step: int, size: int, n: int, seed: int) -> torch.Tensor:
    """Indices of the global batch of ``step``: the next ``size`` entries of an endless stream of permutations."""
    start = step * size
    out, pos = [], start
    while pos < start + size:
        epoch, off = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch))
        take = min(n - off, start + size - pos)
        out.append(perm[off:off + take])
        pos += take
    return torch.cat(out)


class _Log:
    """Metrics log, JSONL (one object per line) or CSV (by the file extension); rank 0 only."""

    FIELDS = ["step", "loss", "val_loss", "lr", "samples_per_s", "time"]

    def __init__(self, path: str | None, resume_step: int | None):
        self.path = path
        self.csv = bool(path) and path.lower().endswith(".csv")
        if not path:
            return
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        keep = []
        if resume_step is not None and os.path.exists(path):  # drop what was logged after the checkpoint
            with open(path, newline="") as f:
                if self.csv:
                    keep = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
                else:
                    keep = [json.loads(line) for line in f if line.strip()]
                    keep = [r for r in keep if int(r["step"]) <= resume_step]
        with open(path, "w", newline="") as f:
            if self.csv:
                w = csv.DictWriter(f, fieldnames=self.FIELDS)
                w.writeheader()
                w.writerows(keep)
            else:
                for r in keep:
                    f.write(json.dumps(r) + "\n")

    def write(self, row: dict) -> None:
        if not self.path:
            return
        with open(self.path, "a", newline="") as f:
            if self.csv:
                csv.DictWriter(f, fieldnames=self.FIELDS).writerow({k: row.get(k, "") for k in self.FIELDS})
            else:
                f.write(json.dumps(row) + "\n")


LR_SCHEDULES = ("constant", "cosine", "linear")


def lr_at(step: int, steps: int, lr: float, warmup: int, schedule: str = "constant", lr_min: float = 0.0) -> float:
    """The learning rate of 0-based ``step`` of ``steps``: linear warm-up over ``warmup`` steps, then
    ``schedule`` (constant, or cosine / linear decay reaching ``lr_min`` at the last step)."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    span = max(1, steps - 1 - warmup)
    frac = min(1.0, max(0.0, (step - warmup) / span))
    w = 0.5 * (1 + math.cos(math.pi * frac)) if schedule == "cosine" else 1 - frac
    return lr_min + (lr - lr_min) * w


def _check_args(steps, epochs, batch_size, lr, warmup, clip, ema, val_split, val_every, ckpt_every, ckpt_path,
                precision, cond_drop, metrics_every=None):
    if steps is None and epochs is None:
        raise ValueError("give steps= or epochs=")
    for name, v in (("steps", steps), ("batch_size", batch_size)):
        if v is not None and (isinstance(v, bool) or not float(v).is_integer()):
            raise ValueError(f"{name} must be a whole number, got {v!r}")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if epochs is not None and not epochs > 0:
        raise ValueError(f"epochs must be > 0, got {epochs}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not math.isfinite(float(lr)) or not lr > 0 or warmup < 0 or (clip is not None and not clip > 0):
        raise ValueError(f"need lr > 0, warmup >= 0, clip > 0 or None; got lr={lr}, warmup={warmup}, clip={clip}")
    if ema is not None and not 0 <= ema < 1:
        raise ValueError(f"ema is a decay in [0, 1) (or None / 0 for no EMA), got {ema}")
    if not 0 <= val_split < 1:
        raise ValueError(f"val_split must lie in [0, 1), got {val_split}")
    if val_every is not None and val_split == 0:
        raise ValueError("val_every needs val_split > 0 (a validation set)")
    if metrics_every is not None and val_split == 0:
        raise ValueError("metrics_every needs val_split > 0 (a validation set)")
    if ckpt_every is not None and not ckpt_path:
        raise ValueError("ckpt_every needs ckpt_path=")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}, got {precision!r}")
    if not 0 <= cond_drop <= 1:
        raise ValueError(f"cond_drop must lie in [0, 1], got {cond_drop}")


def _slice_cond(cond: dict, sl: slice, n: int, device) -> dict:
    out = {}
    for k, v in cond.items():
        if torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == n:
            v = v[sl]
        out[k] = v.to(device) if torch.is_tensor(v) else v
    return out


@torch.no_grad()
def _ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    pe = list(ema.parameters())
    torch._foreach_lerp_(pe, [p.detach().to(q.dtype) for q, p in zip(pe, net.parameters())], 1.0 - decay)
    for be, b in zip(ema.buffers(), net.buffers()):
        be.copy_(b)


def _resolve_process(domain, process):
    from . import processes

    if process is None:
        process = domain.default_process()
    elif isinstance(process, dict):
        process = processes.from_spec(process)
    elif not isinstance(process, processes.Process):
        raise TypeError(f"process must be a stochgen process, a process spec dict or None, got "
                        f"{type(process).__name__}")
    return process


def _cond_spec(data: DomainData) -> dict:
    """What the model must be given at sampling time: ``{name: {"shape": per-sample shape, "dtype": ...}}``."""
    return {k: {"shape": list(v.shape[1:]), "dtype": str(v.dtype).replace("torch.", "")} for k, v in data.cond.items()}


def _state_shape(x):
    if isinstance(x, dict):
        return {k: _state_shape(v) for k, v in x.items()}
    return tuple(x.shape[1:])


def _build_model(domain, data: DomainData, process, network, prediction, ema, seed, cond_drop,
                 objective_options=None) -> Model:
    from . import nets

    prediction = check_kind(prediction or domain.default_prediction_for(process))
    precondition = "edm" if supports_preconditioning(process) and prediction == "x0" else None
    # a clear error for a prediction (or an option) the family's objective cannot train
    _objectives.build(process, prediction, precondition, **(objective_options or {}))
    num_classes = data.num_classes
    torch.manual_seed(int(seed))  # network initialisation: identical on every rank
    if network is None:
        example = tree_map(lambda v: v[:2], data.x)
        net = domain.default_network_for(process, example, num_classes, {k: v[:2] for k, v in data.cond.items()},
                                         prediction)
    elif isinstance(network, dict):
        net = nets.build(network)
    elif isinstance(network, nn.Module):
        net = network
    else:
        raise TypeError(f"network must be an nn.Module, a nets spec dict or None, got {type(network).__name__}")
    ema_net = None
    if ema:
        ema_net = copy.deepcopy(net).float()
        ema_net.requires_grad_(False)
    sampler, steps = domain.default_sampler_for(process)
    extra = {}
    if objective_options:
        extra["objective_options"] = dict(objective_options)
    if data.cond:
        extra["conditions"] = _cond_spec(data)
    drops = {k: p for k, p in cond_drop.items() if p > 0 and k != "label"}
    if drops:
        extra["cond_drop"] = drops
    return Model(domain, process, net, prediction=prediction, precondition=precondition, ema=ema_net,
                 ema_decay=float(ema) if ema else None, state_shape=_state_shape(data.x),
                 num_classes=num_classes if (num_classes and "label" in getattr(net, "cond_keys", ("label",)))
                 else None, sampler=sampler, steps=steps, extra_spec=extra)


def _cond_drop(cond_drop, data: DomainData, process) -> dict:
    """``cond_drop`` as ``{condition: probability}``: a number applies to the labels only."""
    if isinstance(cond_drop, dict):
        out = {str(k): float(v) for k, v in cond_drop.items()}
    else:
        out = {"label": float(cond_drop)}
    for k, p in out.items():
        if not 0 <= p <= 1:
            raise ValueError(f"cond_drop[{k!r}] must lie in [0, 1], got {p}")
        if k != "label" and k not in data.cond:
            raise ValueError(f"cond_drop names the condition {k!r}, which the data do not have "
                             f"(conditions: {', '.join(data.cond) or 'none'})")
        if k in process.cond_keys and p > 0:
            raise ValueError(f"cond_drop cannot drop {k!r}: {type(process).__name__} itself needs it")
    return out


def _drop_conds(cond: dict, drops: dict, g: torch.Generator) -> dict:
    """Classifier-free dropout of named conditions: dropped rows become zeros (the null condition)."""
    for k, p in drops.items():
        if k == "label" or p <= 0 or k not in cond:
            continue
        v = cond[k]
        keep = (torch.rand(v.shape[0], generator=g) >= p).to(v.dtype).reshape((-1,) + (1,) * (v.dim() - 1))
        cond[k] = v * keep
    return cond


#: training settings of ``fit`` when neither the call nor the domain's ``fit_defaults`` give them
FIT_DEFAULTS = {"batch_size": 128, "lr": 2e-4, "warmup": 100, "lr_schedule": "constant", "lr_min": 0.0,
                "ema": 0.999}


def fit(domain, data, *, steps=None, epochs=None, batch_size=None, lr=None, warmup=None, weight_decay=0.0, clip=1.0,
        ema="auto", seed=0, val_split=0.0, val_every=None, ckpt_every=None, ckpt_path=None, resume=None,
        device="cpu", precision="float32", log=None, progress=True, process=None, network=None, prediction=None,
        cond_drop=0.1, log_every=10, metrics_every=None, objective_options=None, lr_schedule=None,
        lr_min=None) -> Model:
    """Train a model on ``data`` of ``domain`` and return a :class:`stochgen.Model`.

    * ``domain``: a :class:`stochgen.Domain` or a registered name; ``data``: anything
      ``domain.load`` takes (or :class:`DomainData`).
    * ``steps`` (or ``epochs``; neither: the domain's ``fit_defaults["steps"]``); ``batch_size`` per process (the global batch is
      ``batch_size * world_size``); AdamW with ``lr``, linear warm-up over ``warmup``
      steps, then ``lr_schedule``: ``"constant"``, or ``"cosine"`` / ``"linear"`` decay from ``lr``
      to ``lr_min`` at the last step (a function of the step, so a resumed run follows it too);
      ``weight_decay``; gradient-norm clipping at ``clip`` (None: off);
      ``ema`` decay of the float32 EMA copy used for sampling (None or 0: off; ``"auto"``: the
      domain's ``fit_defaults["ema"]``, else 0.999).
    * ``process``, ``network`` (module or nets spec), ``prediction``: default to the
      domain's. EDM processes with an ``"x0"`` prediction get EDM preconditioning.
    * ``cond_drop``: probability of replacing a label by the null class -1 (for
      classifier-free guidance) when the data have labels; a dict ``{name: p}`` drops named
      conditions too (a dropped condition is all zeros; ``"label"`` keys the labels).
    * Conditions (``DomainData.cond``, or the extra entries of a data dict
      ``{"x": ..., "y": ...}``) are sliced with ``x`` in every batch and handed to the network,
      and to the process where it needs them (OU-VE's ``y``).
    * Any built-in process trains: its family's objective (:mod:`stochgen.objectives`) draws
      the batch and gives the loss, and the data are checked against its space
      (``domain.prepare``).
    * ``val_split`` of the data is held out; its loss (EMA weights, fixed draws) is logged every
      ``val_every`` steps. ``ckpt_path`` is written every ``ckpt_every`` steps and at the end;
      ``resume=path`` continues from such a checkpoint up to ``steps``.
    * ``precision="bfloat16"`` runs the network under autocast; ``log``: metrics file (``.jsonl``
      or ``.csv``; default ``<ckpt_path stem>.metrics.jsonl`` when ``ckpt_path`` is set; one line
      every ``log_every`` steps and one per validation); ``progress``: a tqdm bar.
    * ``objective_options``: options of the family's objective (:mod:`stochgen.objectives`), e.g.
      ``{"loss": "score_entropy"}`` for a uniform jump process; stored in the model's spec, so a
      resumed run trains the same objective.
    * ``metrics_every``: every so many steps (and at the end) the domain's own ``metrics(model, val)``
      on the validation split are computed and logged (needs ``val_split``; they can be slow).
    """
    from .domain import domain as _domain

    if isinstance(domain, str):
        domain = _domain(domain)
    if not isinstance(domain, Domain):
        raise TypeError(f"domain must be a stochgen.Domain or a registered name, got {type(domain).__name__}")
    if resume is None and not isinstance(data, DomainData):
        data = domain.load(data)  # first: a domain's fit_defaults may depend on its data (e.g. their size)
    # settings the call leaves out: the domain's fit_defaults, then FIT_DEFAULTS
    own = dict(getattr(domain, "fit_defaults", None) or {})
    if steps is None and epochs is None:
        steps, epochs = own.get("steps"), own.get("epochs")
    batch_size, lr, warmup, lr_schedule, lr_min = (
        v if v is not None else own.get(k, FIT_DEFAULTS[k])
        for k, v in (("batch_size", batch_size), ("lr", lr), ("warmup", warmup), ("lr_schedule", lr_schedule),
                     ("lr_min", lr_min)))
    if isinstance(ema, str):
        if ema != "auto":
            raise ValueError(f"ema must be a decay in [0, 1), None or 'auto', got {ema!r}")
        ema = own.get("ema", FIT_DEFAULTS["ema"])
    _check_args(steps, epochs, batch_size, lr, warmup, clip, ema, val_split, val_every, ckpt_every, ckpt_path,
                precision, 0.0 if isinstance(cond_drop, dict) else cond_drop, metrics_every)
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
    if not (math.isfinite(float(lr_min)) and 0 <= float(lr_min) <= float(lr)):
        raise ValueError(f"lr_min must lie in [0, lr={lr}], got {lr_min}")
    ctx = _dist.setup(device)
    if ctx.enabled and torch.device(device).type == "cuda":
        device = f"cuda:{ctx.local_rank}"
        torch.cuda.set_device(device)
        ctx.device = device if ctx.device != "cpu" else "cpu"
    try:
        with torch.random.fork_rng(devices=[]):
            return _fit(ctx, domain, data, steps=steps, epochs=epochs, batch_size=int(batch_size), lr=float(lr),
                        warmup=int(warmup), weight_decay=float(weight_decay), clip=clip, ema=ema, seed=int(seed),
                        val_split=float(val_split), val_every=val_every, ckpt_every=ckpt_every, ckpt_path=ckpt_path,
                        resume=resume, device=torch.device(device), precision=precision, log=log,
                        progress=progress, process=process, network=network, prediction=prediction,
                        cond_drop=cond_drop, log_every=max(1, int(log_every)), metrics_every=metrics_every,
                        objective_options=objective_options, lr_schedule=lr_schedule, lr_min=float(lr_min))
    finally:
        _dist.teardown(ctx)


def _fit(ctx, domain, data, *, steps, epochs, batch_size, lr, warmup, weight_decay, clip, ema, seed, val_split,
         val_every, ckpt_every, ckpt_path, resume, device, precision, log, progress, process, network, prediction,
         cond_drop, log_every, metrics_every=None, objective_options=None, lr_schedule="constant",
         lr_min=0.0) -> Model:
    data = data if isinstance(data, DomainData) else domain.load(data)
    states = spec = None
    if resume is not None:
        states, spec = _ckpt.load(resume)
        if "train" not in states or "optim" not in states:
            raise ValueError(f"{os.fspath(resume)!r} is a model checkpoint without training state; cannot resume "
                             "(it can be loaded with stochgen.load)")
        resumed = model_from_spec(spec, domain=domain)
        process = resumed.process
    else:
        process = _resolve_process(domain, process)
    data = domain.prepare(data, process)
    check_trainable(process)
    cond_drop = _cond_drop(cond_drop, data, process)
    val, train = validation_split(data, val_split, seed)
    n_train = len(train)
    G = batch_size * ctx.world
    if G > MAX_PASSES_PER_BATCH * n_train:
        raise ValueError(f"a batch of {G} is more than {MAX_PASSES_PER_BATCH} passes over the {n_train} training "
                         "samples; choose a batch_size at most the size of the data")
    if steps is None:
        steps = max(1, math.ceil(epochs * n_train / G))
    steps = int(steps)

    # --- model, optimizer, generators ------------------------------------------------------------
    g_train = torch.Generator().manual_seed(seed)
    start, history = 0, {"loss": [], "val": []}
    if resume is not None:
        model = resumed
        model.net.load_state_dict(states["net"])
        if model.ema is not None:
            model.ema.load_state_dict(states["ema"])
        tr = states["train"]
        start = int(tr["step"])
        if int(tr.get("global_batch", G)) != G or int(tr.get("seed", seed)) != seed:
            warnings.warn(f"resuming with global batch {G} and seed {seed}, but the checkpoint was trained with "
                          f"{tr.get('global_batch')} and {tr.get('seed')}: the run will not match an uninterrupted one",
                          stacklevel=3)
        g_train.set_state(tr["rng"])
        history = {"loss": [float(v) for v in tr["loss"].tolist()], "val": [list(v) for v in tr["val"]]}
        if start > steps:
            raise ValueError(f"the checkpoint is at step {start}, beyond steps={steps}")
    else:
        if objective_options is not None and not isinstance(objective_options, dict):
            raise TypeError(f"objective_options must be a dict, got {type(objective_options).__name__}")
        model = _build_model(domain, train, process, network, prediction, ema, seed, cond_drop, objective_options)
    model.to(device)
    # the training rows, so held-out evaluation can skip them (8 bytes a row; not kept for huge sets)
    model.train_rows = train.row_hashes() if len(train) <= MAX_RECORDED_ROWS else None
    net, process = model.net, model.process
    _dist.broadcast_module(net, ctx)
    if model.ema is not None and resume is None:
        model.ema.load_state_dict(net.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    if resume is not None:
        opt.load_state_dict(states["optim"])
        if ctx.rank == 0:
            torch.set_rng_state(tr["torch_rng"])
        else:
            torch.manual_seed(seed + ctx.rank + start)
    else:
        torch.manual_seed(seed + ctx.rank)
    model.history = history
    train_den = Denoiser(net, process, model.prediction, model.precondition)
    if resume is not None and objective_options is not None and \
            dict(objective_options) != dict(model.extra_spec.get("objective_options") or {}):
        raise ValueError(f"objective_options={objective_options} differ from the checkpoint's "
                         f"{model.extra_spec.get('objective_options') or {}}; a resumed run keeps its objective")
    objective = _objectives.build(process, model.prediction, model.precondition,
                                  **(model.extra_spec.get("objective_options") or {}))
    autocast = _PRECISIONS[precision]
    use_labels = model.num_classes is not None and train.labels is not None

    # --- logging ------------------------------------------------------------------------------
    if log is None and ckpt_path:
        log = os.path.splitext(os.fspath(ckpt_path))[0] + ".metrics.jsonl"
    logger = _Log(os.fspath(log) if (log and ctx.is_main) else None, start if resume is not None else None)
    bar = None
    if progress and ctx.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start, desc="fit", unit="step", dynamic_ncols=True)

    def save_ckpt(step_done: int):
        if not ctx.is_main:
            return
        spec = dict(model.spec)
        spec["train"] = {"step": step_done, "steps": steps, "batch_size": batch_size, "world_size": ctx.world,
                         "seed": seed, "lr": lr, "warmup": warmup, "weight_decay": weight_decay, "clip": clip,
                         "cond_drop": cond_drop, "precision": precision, "lr_schedule": lr_schedule,
                         "lr_min": lr_min}
        train_state = {"step": step_done, "rng": g_train.get_state(), "torch_rng": torch.get_rng_state(),
                       "seed": seed, "global_batch": G,
                       "loss": torch.tensor(model.history["loss"], dtype=torch.float64),
                       "val": [list(v) for v in model.history["val"]]}
        _ckpt.save(ckpt_path, {**model.state_dicts(), "optim": opt.state_dict(), "train": train_state}, spec)

    def batch_cond(part: DomainData, idx, labels) -> tuple:
        x0, cond = domain.cond_from_batch((tree_map(lambda v: v[idx], part.x), labels))
        for k, v in part.cond.items():
            cond.setdefault(k, v[idx])
        return x0, cond

    def val_loss() -> float:
        den = Denoiser(model.weights, process, model.prediction, model.precondition)
        g = torch.Generator().manual_seed(seed + 1)
        tot, cnt = 0.0, 0
        model.weights.eval()
        with torch.no_grad():
            for i in range(0, len(val), 1024):
                idx = torch.arange(i, min(i + 1024, len(val)))
                x, cond = batch_cond(val, idx, None if (val.labels is None or not use_labels) else val.labels[idx])
                proc_cond = {k: cond[k] for k in process.cond_keys if k in cond}
                dr = tree_map(lambda v: v.to(device), objective.draw(x, g, **proc_cond))
                per = objective.loss(den, dr, _slice_cond(cond, slice(None), len(idx), device), autocast,
                                     reduce=False)
                tot += float(per.double().sum())
                cnt += len(idx)
        return tot / cnt

    # --- loop -------------------------------------------------------------------------------
    t0, done_since, win = time.perf_counter(), 0, []
    sl = slice(ctx.rank * batch_size, (ctx.rank + 1) * batch_size)
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup, lr_schedule, lr_min)
        idx = batch_indices(step, G, n_train, seed)
        labels = train.labels[idx] if use_labels else None
        if labels is not None and cond_drop.get("label", 0) > 0:
            from .nets import drop_labels

            labels = drop_labels(labels, cond_drop["label"], g_train)
        x0, cond = batch_cond(train, idx, labels)
        cond = _drop_conds(cond, cond_drop, g_train)
        proc_cond = {k: cond[k] for k in process.cond_keys if k in cond}
        draws = objective.draw(x0, g_train, **proc_cond)
        shard = tree_map(lambda v: v[sl].to(device), draws)
        cond_s = _slice_cond(cond, sl, len(idx), device)

        net.train()
        loss = objective.loss(train_den, shard, cond_s, autocast)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the training loss is {float(loss)} at step {step}; lower lr or check the data")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _dist.average_gradients(net.parameters(), ctx)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        if model.ema is not None:
            _ema_update(model.ema, net, model.ema_decay)

        lval = _dist.all_mean(loss.detach(), ctx)
        model.history["loss"].append(lval)
        win.append(lval)
        done_since += 1
        s = step + 1
        if s % log_every == 0 or s == steps:
            el = time.perf_counter() - t0
            sps = G * done_since / el if el > 0 else float("nan")
            logger.write({"step": s, "loss": sum(win) / len(win), "lr": opt.param_groups[0]["lr"],
                          "samples_per_s": sps, "time": time.time()})
            if bar is not None:
                bar.set_postfix(loss=f"{sum(win) / len(win):.4f}", samples_s=f"{sps:.0f}")
            win, t0, done_since = [], time.perf_counter(), 0
        if val is not None and val_every and (s % int(val_every) == 0 or s == steps):
            if ctx.is_main:
                v = val_loss()
                model.history["val"].append([s, v])
                logger.write({"step": s, "val_loss": v, "time": time.time()})
                if bar is not None:
                    bar.set_postfix(loss=f"{lval:.4f}", val=f"{v:.4f}")
        if val is not None and metrics_every and (s % int(metrics_every) == 0 or s == steps) and ctx.is_main:
            mets = {k: float(v) for k, v in domain.metrics(model, val).items()}
            model.history.setdefault("metrics", []).append([s, mets])
            logger.write({"step": s, **{f"metric_{k}": v for k, v in mets.items()}, "time": time.time()})
        if bar is not None:
            bar.update(1)
        if ckpt_every and s % int(ckpt_every) == 0 and s != steps:
            save_ckpt(s)
    if bar is not None:
        bar.close()
    if ckpt_path:
        save_ckpt(steps)
    _dist.barrier(ctx)
    net.eval()
    return model
