"""Checkpoints: exact round trips (model, EMA, optimizer), atomic writes, clear errors, info()."""
import json
import math
import os

import pytest
import safetensors.torch
import torch
from torch.nn import functional as F

from stochgen import checkpoint, nets

SPEC = {"net": None, "process": {"type": "EDM", "config": {"sigma_min": 0.002, "sigma_max": 80.0}},
        "domain": "toy", "sampler": {"name": "heun", "steps": 18}}


def _batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 3, generator=g), torch.rand(16, generator=g), torch.randn(16, 3, generator=g))
            for _ in range(n)]


def _train(net, opt, batches):
    for x, t, y in batches:
        loss = F.mse_loss(net(x, t), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _setup():
    torch.manual_seed(0)
    net = nets.MLP(3, hidden=32, depth=2, zero_init=False)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    _train(net, opt, _batches(2, seed=1))
    ema = {k: v.detach().double() * 0.5 for k, v in net.state_dict().items()}  # an EMA kept in float64
    return net, opt, ema


def _assert_same(a, b, where="state"):
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def test_round_trip_is_exact_and_training_continues_identically(tmp_path):
    net, opt, ema = _setup()
    spec = dict(SPEC, net=net.spec())
    misc = {"bf16": torch.randn(3, 2).bfloat16(), "ints": torch.arange(5), "mask": torch.tensor([True, False]),
            "empty": torch.zeros(0, 4), "scalar": torch.tensor(2.5, dtype=torch.float64),
            "nested": {7: ("a", None, [1, 2.0, float("inf"), float("nan")]), (1, "x"): {"deep": torch.ones(2)}},
            "flag": True}
    states = {"model": net.state_dict(), "ema": ema, "optim": opt.state_dict(), "misc": misc}
    path = tmp_path / "m.ckpt"
    checkpoint.save(path, states, spec, extra_bytes={"readme": b"hello \x00 world", "empty": b""})

    loaded, spec2 = checkpoint.load(path)
    assert spec2 == json.loads(json.dumps(spec))
    assert list(loaded) == ["model", "ema", "optim", "misc"]
    for group in ("model", "ema", "misc"):
        _assert_same(dict(states[group]), loaded[group], group)
    _assert_same(opt.state_dict(), loaded["optim"], "optim")  # int keys, betas tuple, step tensors
    assert checkpoint.load_extra_bytes(path) == {"readme": b"hello \x00 world", "empty": b""}

    # continue 3 steps from the original and from a rebuilt net + optimizer: bit-identical
    net2 = nets.build(spec2["net"])
    net2.load_state_dict(loaded["model"])
    opt2 = torch.optim.AdamW(net2.parameters(), lr=0.5)  # hyper-parameters come from the state
    opt2.load_state_dict(loaded["optim"])
    more = _batches(3, seed=2)
    _train(net, opt, more)
    _train(net2, opt2, more)
    for (k, a), b in zip(net.state_dict().items(), net2.state_dict().values()):
        assert torch.equal(a, b), k
    # and the training really moved the weights (the comparison is not vacuous)
    assert not torch.equal(net.state_dict()["out.weight"], loaded["model"]["out.weight"])


def test_shared_and_non_contiguous_tensors(tmp_path):
    a = torch.randn(4, 3)
    states = {"model": {"w": a, "w_tied": a, "wt": a.t(), "row": a[1], "col": a[:, 2]}}
    checkpoint.save(tmp_path / "s.ckpt", states, {})
    loaded, _ = checkpoint.load(tmp_path / "s.ckpt")
    for k, v in states["model"].items():
        assert torch.equal(loaded["model"][k], v), k


@pytest.mark.parametrize("where", ["write", "fsync", "interrupt"])
def test_failed_write_keeps_old_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch, where):
    net, opt, ema = _setup()
    path = tmp_path / "m.ckpt"
    checkpoint.save(path, {"model": net.state_dict()}, {"version": "old"})
    old_bytes = path.read_bytes()

    if where in ("write", "interrupt"):
        exc = OSError("No space left on device") if where == "write" else KeyboardInterrupt()

        def broken_save_file(tensors, filename, metadata=None):
            with open(filename, "wb") as f:  # half a file, then the failure
                f.write(safetensors.torch.save(tensors, metadata=metadata)[:1000])
            raise exc

        monkeypatch.setattr(safetensors.torch, "save_file", broken_save_file)
    else:
        def broken_fsync(fd):
            raise OSError("I/O error")

        monkeypatch.setattr(os, "fsync", broken_fsync)
        exc = OSError()
    with pytest.raises(type(exc)):
        checkpoint.save(path, {"model": net.state_dict(), "optim": opt.state_dict()}, {"version": "new"})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["m.ckpt"]
    assert path.read_bytes() == old_bytes
    _, spec = checkpoint.load(path)
    assert spec == {"version": "old"}


def _good_file(tmp_path):
    net, opt, ema = _setup()
    path = tmp_path / "m.ckpt"
    checkpoint.save(path, {"model": net.state_dict(), "optim": opt.state_dict()}, {"k": 1})
    return path


@pytest.mark.parametrize("cut", ["half", "minus_one", "eight_bytes", "empty"])
def test_truncated_file_is_a_clear_error(tmp_path, cut):
    path = _good_file(tmp_path)
    data = path.read_bytes()
    n = {"half": len(data) // 2, "minus_one": len(data) - 1, "eight_bytes": 8, "empty": 0}[cut]
    path.write_bytes(data[:n])
    with pytest.raises(ValueError, match=r"is not a readable stochgen checkpoint \(truncated or corrupt\)"):
        checkpoint.load(path)
    with pytest.raises(ValueError, match=r"truncated or corrupt"):
        checkpoint.info(path)


def test_random_bytes_are_a_clear_error(tmp_path):
    path = tmp_path / "noise.ckpt"
    g = torch.Generator().manual_seed(0)
    path.write_bytes(torch.randint(0, 256, (4096,), generator=g, dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(ValueError, match=r"noise.ckpt.*is not a readable stochgen checkpoint \(truncated or corrupt\)"):
        checkpoint.load(path)


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_foreign_safetensors_file_is_not_a_stochgen_checkpoint(tmp_path, metadata):
    path = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"weight": torch.randn(3)}, str(path), metadata=metadata)
    with pytest.raises(ValueError, match="safetensors file but not a stochgen checkpoint"):
        checkpoint.load(path)
    with pytest.raises(ValueError, match="not a stochgen checkpoint"):
        checkpoint.info(path)


def _write_by_hand(path, version="1", spec="{}", structure="{}"):
    """A safetensors file with one tensor and the given stochgen metadata strings."""
    safetensors.torch.save_file({"model.w": torch.randn(3)}, str(path), metadata={
        "stochgen_format": version, "stochgen_spec": spec, "stochgen_structure": structure})


def test_wrong_format_version(tmp_path):
    path = tmp_path / "future.ckpt"
    _write_by_hand(path, version="2")
    with pytest.raises(ValueError, match="format version '2'; this stochgen reads version '1'"):
        checkpoint.load(path)


def test_corrupt_metadata(tmp_path):
    path = tmp_path / "bad.ckpt"
    _write_by_hand(path, spec="{not json")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        checkpoint.load(path)
    _write_by_hand(path, structure='{"model": {"dict": [["w", {"tensor": "model.missing"}]]}}')
    with pytest.raises(ValueError, match="truncated or corrupt.*model.missing"):
        checkpoint.load(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        checkpoint.load(path)
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        checkpoint.info(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.save(tmp_path / "no_folder" / "m.ckpt", {}, {})


def test_info_reads_no_tensor_data(tmp_path, monkeypatch):
    net, opt, ema = _setup()
    path = tmp_path / "m.ckpt"
    spec = dict(SPEC, net=net.spec())
    checkpoint.save(path, {"model": net.state_dict(), "ema": ema, "optim": opt.state_dict()}, spec,
                    extra_bytes={"notes": b"12345"})

    calls = []
    real_open = checkpoint.safe_open

    class Spy:
        def __init__(self, *a, **kw):
            self._f = real_open(*a, **kw)

        def __getattr__(self, name):
            if name == "get_tensor":
                calls.append(name)
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

    monkeypatch.setattr(checkpoint, "safe_open", Spy)
    out = checkpoint.info(path)
    assert calls == []
    assert out["spec"] == json.loads(json.dumps(spec)) and out["format"] == "1"
    n_model = len(net.state_dict())
    n_params = sum(v.numel() for v in net.state_dict().values())
    assert out["groups"]["model"] == {"tensors": n_model, "numel": n_params, "bytes": 4 * n_params}
    assert out["groups"]["ema"] == {"tensors": n_model, "numel": n_params, "bytes": 8 * n_params}
    # AdamW: exp_avg and exp_avg_sq per parameter (float32) plus a scalar float32 step per parameter
    n_p = len(list(net.parameters()))
    assert out["groups"]["optim"] == {"tensors": 3 * n_p, "numel": 2 * n_params + n_p, "bytes": 4 * (2 * n_params + n_p)}
    assert out["tensors"] == 2 * n_model + 3 * n_p
    assert out["extra_bytes"] == {"notes": 5}
    assert out["file_bytes"] == path.stat().st_size > out["bytes"]
    # the spy is in the way of load() too: it does call get_tensor, so the check above means something
    checkpoint.load(path)
    assert calls


def test_bad_inputs(tmp_path):
    path = tmp_path / "m.ckpt"
    with pytest.raises(ValueError, match="group names"):
        checkpoint.save(path, {"mo.del": {"w": torch.ones(1)}}, {})
    with pytest.raises(ValueError, match="group names"):
        checkpoint.save(path, {"__bytes__": {"w": torch.ones(1)}}, {})
    with pytest.raises(TypeError, match="JSON-serialisable"):
        checkpoint.save(path, {}, {"dtype": torch.float32})
    with pytest.raises(TypeError, match=r"model\['f'\].*function"):
        checkpoint.save(path, {"model": {"f": lambda: 0}}, {})
    with pytest.raises(TypeError, match="bytes"):
        checkpoint.save(path, {}, {}, extra_bytes={"x": "text"})
    assert not path.exists() and os.listdir(tmp_path) == []


def test_flatten_unflatten_helpers():
    state = {"state": {0: {"step": torch.tensor(3.0), "buf": torch.ones(2)}}, "param_groups": [
        {"lr": 0.1, "betas": (0.9, 0.99), "params": [0], "foreach": None, "name.with.dots": "x"}]}
    tensors, structure = checkpoint.flatten_state(state, "optim")
    assert sorted(tensors) == ["optim.state.0.buf", "optim.state.0.step"]
    json.dumps(structure)  # plain JSON
    back = checkpoint.unflatten_state(tensors, json.loads(json.dumps(structure)))
    _assert_same(state, back)
    # stored tensors carry no autograd history
    w = torch.ones(2, requires_grad=True)
    t, _ = checkpoint.flatten_state({"w": w * 2}, "g")
    assert not t["g.w"].requires_grad
