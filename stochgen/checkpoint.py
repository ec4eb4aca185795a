"""One-file checkpoints: safetensors tensors + the JSON spec that rebuilds everything.

Layout of a checkpoint file (a plain safetensors file):

* tensors of every state named ``<group>.<path>``: ``model.net.in_proj.weight``,
  ``ema.…``, ``optim.state.0.exp_avg``, …; raw byte blobs as uint8 tensors ``__bytes__.<name>``;
* safetensors metadata (string -> string):
  ``stochgen_format`` = ``"1"``, ``stochgen_spec`` = ``json.dumps(spec)``, and
  ``stochgen_structure`` = JSON of each group's non-tensor structure (nested dicts, lists,
  tuples, numbers, strings, None, with tensors replaced by their names).

So a group need not be a flat ``{name: tensor}`` state dict: an optimizer's
``state_dict()`` (integer keys, step counts, hyper-parameters, tuples) is stored as is and
comes back equal, with bit-identical tensors (:func:`flatten_state` /
:func:`unflatten_state` are the two halves). Writes are atomic: a temporary file in the
same folder, fsync, ``os.replace``; a failed write leaves any earlier checkpoint intact.

    save("m.ckpt", {"model": net.state_dict(), "ema": ema.state_dict(), "optim": opt.state_dict()}, spec)
    states, spec = load("m.ckpt")
    info("m.ckpt")          # spec + tensor counts and sizes, without reading tensor data
"""
from __future__ import annotations

import json
import math
import numbers
import os
import uuid
from typing import Any

import torch
from safetensors import safe_open
import safetensors.torch

FORMAT = "1"
_KEY_FORMAT, _KEY_SPEC, _KEY_STRUCT = "stochgen_format", "stochgen_spec", "stochgen_structure"
_BYTES = "__bytes__"

__all__ = ["save", "load", "load_extra_bytes", "info", "flatten_state", "unflatten_state", "write_atomic",
           "default_file_mode", "FORMAT"]


# --- nested state <-> (tensors, JSON structure) ---------------------------------------------

def flatten_state(obj: Any, prefix: str) -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested state (e.g. ``optimizer.state_dict()``) into tensors and a JSON-able structure.

    Returns ``(tensors, structure)``: ``tensors`` maps names ``prefix.<path>`` to the tensors
    (detached, on the CPU); ``structure`` is plain JSON data in which every dict, list, tuple
    and tensor is a one-key object (``{"dict": [[key, value], ...]}``, ``{"list": [...]}``,
    ``{"tuple": [...]}``, ``{"tensor": name}``) and None, bools, ints, floats (nan and
    infinities included) and strings stand for themselves. ``unflatten_state(tensors,
    structure)`` gives the state back with its exact types (int dict keys, tuples).
    """
    tensors: dict[str, torch.Tensor] = {}

    def name_for(path: str) -> str:
        name, n = path, 1
        while name in tensors:
            name, n = f"{path}#{n}", n + 1
        return name

    def enc(o, path: str, where: str):
        if o is None or isinstance(o, (bool, str)):
            return o
        if isinstance(o, numbers.Integral):  # int, numpy integers
            return int(o)
        if isinstance(o, numbers.Real):  # float, numpy floats
            return float(o)
        if isinstance(o, torch.Tensor):
            name = name_for(path)
            tensors[name] = o.detach().cpu()
            return {"tensor": name}
        if isinstance(o, dict):
            items = []
            for k, v in o.items():
                key = enc_key(k, where)
                items.append([key, enc(v, f"{path}.{k}", f"{where}[{k!r}]")])
            return {"dict": items}
        if isinstance(o, (list, tuple)):
            vals = [enc(v, f"{path}.{i}", f"{where}[{i}]") for i, v in enumerate(o)]
            return {"tuple" if isinstance(o, tuple) else "list": vals}
        raise TypeError(f"cannot store {where} of type {type(o).__name__} in a checkpoint; "
                        "use tensors, numbers, strings, None, bools, lists, tuples and dicts")

    def enc_key(k, where):
        if k is None or isinstance(k, (bool, str, int, float)):
            return k
        if isinstance(k, tuple):
            return {"tuple": [enc_key(x, where) for x in k]}
        raise TypeError(f"cannot store a dict key of type {type(k).__name__} in {where}")

    structure = enc(obj, prefix, prefix)
    return tensors, structure


def unflatten_state(tensors: dict[str, torch.Tensor], structure: Any) -> Any:
    """Inverse of :func:`flatten_state`."""

    def dec(s):
        if s is None or isinstance(s, (bool, str, int, float)):
            return s
        if isinstance(s, dict) and len(s) == 1:
            (tag, val), = s.items()
            if tag == "tensor":
                if val not in tensors:
                    raise ValueError(f"the checkpoint structure names a tensor {val!r} that the file does not hold")
                return tensors[val]
            if tag == "dict":
                return {dec_key(k): dec(v) for k, v in val}
            if tag == "list":
                return [dec(v) for v in val]
            if tag == "tuple":
                return tuple(dec(v) for v in val)
        raise ValueError(f"unrecognised entry in the checkpoint structure: {str(s)[:100]}")

    def dec_key(k):
        if isinstance(k, dict):
            return tuple(dec_key(x) for x in k["tuple"])
        return k

    return dec(structure)


# --- save -----------------------------------------------------------------------------------

def _check_group(name) -> str:
    if not isinstance(name, str) or not name or "." in name or name.startswith("__"):
        raise ValueError(f"state group names must be non-empty strings without '.' that do not start "
                         f"with '__', got {name!r}")
    return name


def _unshare(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses non-contiguous tensors and tensors sharing memory: copy just those."""
    seen, out = set(), {}
    for name, t in tensors.items():
        if t.numel() == 0:
            out[name] = t.contiguous()
            continue
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen or not t.is_contiguous():
            t = t.clone(memory_format=torch.contiguous_format)
            ptr = t.untyped_storage().data_ptr()
        seen.add(ptr)
        out[name] = t
    return out


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def default_file_mode() -> int:
    """0o666 minus the process's umask: the mode a plain ``open()`` gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def save(path, state_dicts: dict[str, Any], spec: dict, extra_bytes: dict[str, bytes] | None = None) -> str:
    """Write one checkpoint file atomically; returns the path.

    * ``state_dicts``: ``{group: state}``, e.g. ``{"model": ..., "ema": ..., "optim": opt.state_dict()}``.
      Group names are non-empty, contain no ``.`` and do not start with ``__``. A state is a flat
      state dict or any nesting of dicts / lists / tuples over tensors and JSON scalars.
    * ``spec``: JSON-serialisable description of everything needed to use the checkpoint
      (process, parameterization, network spec, domain, sampler). It comes back as
      ``json.loads(json.dumps(spec))`` (tuples become lists).
    * ``extra_bytes``: optional ``{name: bytes}`` blobs (read back with :func:`load_extra_bytes`).
    """
    path = os.fspath(path)
    if not isinstance(state_dicts, dict):
        raise TypeError(f"state_dicts must be a dict {{group: state}}, got {type(state_dicts).__name__}")
    try:
        spec_json = json.dumps(spec)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the checkpoint spec must be JSON-serialisable: {exc}") from exc
    tensors: dict[str, torch.Tensor] = {}
    structure = {}
    for group, state in state_dicts.items():
        t, s = flatten_state(state, _check_group(group))
        tensors.update(t)
        structure[group] = s
    for name, blob in (extra_bytes or {}).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"extra_bytes names must be non-empty strings, got {name!r}")
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise TypeError(f"extra_bytes[{name!r}] must be bytes, got {type(blob).__name__}")
        tensors[f"{_BYTES}.{name}"] = torch.frombuffer(bytearray(blob), dtype=torch.uint8) if len(blob) else \
            torch.zeros(0, dtype=torch.uint8)
    metadata = {_KEY_FORMAT: FORMAT, _KEY_SPEC: spec_json, _KEY_STRUCT: json.dumps(structure)}

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot save a checkpoint to {path!r}: the folder {folder!r} does not exist")

    def write(tmp):
        safetensors.torch.save_file(_unshare(tensors), tmp, metadata=metadata)
        os.chmod(tmp, default_file_mode())  # safetensors writes 0600; a checkpoint is a plain file

    return write_atomic(path, write, sync=True)


def write_atomic(path, write, sync: bool = False) -> str:
    """Write ``path`` without ever leaving a partial file: ``write(tmp)`` fills a hidden temporary beside
    it (same suffix, so format-by-suffix writers work), which is then renamed over ``path``. On any
    error the temporary is removed and an existing ``path`` is untouched. ``sync``: fsync the file and
    its folder (checkpoints). Returns ``path``."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.{uuid.uuid4().hex[:12]}.tmp{ext}")
    try:
        write(tmp)
        if sync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync:
        _fsync_dir(folder)
    return path


# --- load -----------------------------------------------------------------------------------

def _open(path, device="cpu"):
    """Open ``path`` with safe_open after the checks every reader shares; returns (handle, spec, structure).

    The handle is a context manager; callers close it with ``with``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r} (file not found)")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a folder, not a checkpoint file")
    open(path, "rb").close()  # permission problems surface as themselves, not as "corrupt"
    try:
        f = safe_open(path, framework="pt", device=str(device))
    except Exception as exc:
        raise ValueError(f"{path!r} is not a readable stochgen checkpoint (truncated or corrupt): {exc}") from exc
    try:
        spec, structure = _read_meta(path, f.metadata())
    except BaseException:
        f.__exit__(None, None, None)
        raise
    return f, spec, structure


def _read_meta(path: str, meta) -> tuple[dict, dict]:
    if not meta or _KEY_FORMAT not in meta:
        raise ValueError(f"{path!r} is a safetensors file but not a stochgen checkpoint "
                         f"(its metadata has no {_KEY_FORMAT!r} entry)")
    if meta[_KEY_FORMAT] != FORMAT:
        raise ValueError(f"{path!r} is a stochgen checkpoint of format version {meta[_KEY_FORMAT]!r}; "
                         f"this stochgen reads version {FORMAT!r}")
    try:
        spec = json.loads(meta[_KEY_SPEC])
        structure = json.loads(meta[_KEY_STRUCT])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path!r} is not a readable stochgen checkpoint (truncated or corrupt): "
                         f"bad metadata: {exc!r}") from exc
    if not isinstance(structure, dict):
        raise ValueError(f"{path!r} is not a readable stochgen checkpoint (truncated or corrupt): bad structure")
    return spec, structure


def load(path, device="cpu") -> tuple[dict[str, Any], dict]:
    """Read a checkpoint: ``(state_dicts, spec)``, tensors on ``device``.

    Errors: a missing file raises ``FileNotFoundError`` naming the path; a truncated or
    corrupt file, a safetensors file that is not a stochgen checkpoint, and an unknown
    format version raise ``ValueError`` saying which.
    """
    f, spec, structure = _open(path, device)
    try:
        with f:
            names = [k for k in f.keys() if not k.startswith(_BYTES + ".")]
            tensors = {k: f.get_tensor(k) for k in names}
    except Exception as exc:
        raise ValueError(f"{os.fspath(path)!r} is not a readable stochgen checkpoint (truncated or corrupt): "
                         f"{exc}") from exc
    try:
        states = {group: unflatten_state(tensors, s) for group, s in structure.items()}
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)!r} is not a readable stochgen checkpoint (truncated or corrupt): "
                         f"{exc}") from exc
    return states, spec


def load_extra_bytes(path) -> dict[str, bytes]:
    """The ``extra_bytes`` blobs stored by :func:`save`."""
    f, _, _ = _open(path)
    pre = _BYTES + "."
    with f:
        return {k[len(pre):]: f.get_tensor(k).numpy().tobytes() for k in f.keys() if k.startswith(pre)}


def info(path) -> dict:
    """Describe a checkpoint without reading its tensor data.

    Returns ``{"format", "spec", "file_bytes", "tensors", "bytes", "groups": {group: {"tensors",
    "numel", "bytes"}}, "extra_bytes": {name: size}}``.
    """
    f, spec, structure = _open(path)
    groups = {g: {"tensors": 0, "numel": 0, "bytes": 0} for g in structure}
    extra = {}
    pre = _BYTES + "."
    with f:
        for k in f.keys():
            sl = f.get_slice(k)
            numel = math.prod(sl.get_shape())
            if k.startswith(pre):
                extra[k[len(pre):]] = numel
                continue
            g = groups.setdefault(k.split(".", 1)[0], {"tensors": 0, "numel": 0, "bytes": 0})
            g["tensors"] += 1
            g["numel"] += numel
            g["bytes"] += numel * _itemsize(sl.get_dtype())
    return {"format": FORMAT, "spec": spec, "file_bytes": os.path.getsize(os.fspath(path)),
            "tensors": sum(g["tensors"] for g in groups.values()),
            "bytes": sum(g["bytes"] for g in groups.values()), "groups": groups, "extra_bytes": extra}


_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
             "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8, "C128": 16}


def _itemsize(dtype: str) -> int:
    return _ITEMSIZE.get(dtype.upper(), 0)
