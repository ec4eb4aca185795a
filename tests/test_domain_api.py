"""The Domain plug-in API: base encode/decode, load() checks, the registry, a third-party domain with fit."""
import numpy as np
import pytest
import torch

import stochgen
from stochgen.domain import DomainData, names as domain_names


def test_base_encode_decode_round_trip():
    d = stochgen.Domain()
    x = torch.randn(5, 3)
    assert torch.equal(d.decode(d.encode(x)), x)
    # integer arrays become float tensors with the same values
    a = np.arange(6, dtype=np.int64).reshape(3, 2)
    e = d.encode(a)
    assert e.dtype == torch.float32 and torch.equal(e, torch.arange(6.0).reshape(3, 2))


def test_load_accepts_tensor_array_pair_dataset_and_files(tmp_path):
    d = stochgen.Domain()
    x = torch.randn(10, 2)
    y = torch.arange(10) % 3
    assert torch.equal(d.load(x).x, x) and d.load(x).labels is None
    assert torch.equal(d.load(x.numpy()).x, x)
    dd = d.load((x, y))
    assert torch.equal(dd.labels, y) and dd.num_classes == 3
    ds = d.load(torch.utils.data.TensorDataset(x, y))
    assert torch.equal(ds.x, x) and torch.equal(ds.labels, y)
    torch.save({"x": x, "labels": y}, tmp_path / "d.pt")
    f = d.load(str(tmp_path / "d.pt"))
    assert torch.equal(f.x, x) and torch.equal(f.labels, y)
    np.savez(tmp_path / "d.npz", x=x.numpy(), labels=y.numpy())
    assert torch.equal(d.load(tmp_path / "d.npz").labels, y)


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), "NaN"),
    (torch.tensor([[0.0, float("inf")]]), "infinite"),
    (torch.randn(7), "dims"),
    (torch.zeros(0, 2), "empty"),
    ({"a": 1}, "without an 'x' entry"),
    ({"x": torch.randn(4, 2), "c": torch.randn(3, 2)}, r"condition 'c' has shape \(3, 2\).*\(4, \.\.\.\)"),
    ({"x": torch.randn(4, 2), "c": torch.tensor([1.0, float("nan"), 0.0, 0.0])}, "condition 'c' holds NaN"),
    ([1.0, 2.0], "cannot load data of type list"),
    ("/nonexistent/file.pt", "no such file"),
])
def test_load_errors_name_the_problem(bad, match):
    with pytest.raises(ValueError, match=match):
        stochgen.Domain().load(bad)


def test_load_label_errors(tmp_path):
    d = stochgen.Domain()
    with pytest.raises(ValueError, match="3 labels for 4 samples"):
        d.load((torch.randn(4, 2), torch.tensor([0, 1, 2])))
    with pytest.raises(ValueError, match="integer"):
        d.load((torch.randn(2, 2), torch.tensor([0.5, 1.0])))
    with pytest.raises(ValueError, match=">= 0"):
        d.load((torch.randn(2, 2), torch.tensor([0, -1])))
    (tmp_path / "x.txt").write_text("1 2")
    with pytest.raises(ValueError, match="unsupported file type"):
        d.load(str(tmp_path / "x.txt"))


def test_settings_must_be_json():
    with pytest.raises(TypeError, match="JSON"):
        stochgen.Domain(bad=object())
    assert stochgen.Domain(sigma_data=1.0).settings == {"sigma_data": 1.0}


def test_unknown_domain_lists_known_names():
    with pytest.raises(ValueError, match="unknown domain 'nope'.*base"):
        stochgen.domain("nope")


class _Shifted(stochgen.Domain):
    """A third-party-style domain: raw data live around `offset`, states are centred and scaled."""

    name = "test-shifted"

    def encode(self, raw):
        raw = super().encode(raw)
        return (raw - self.settings.get("offset", 0.0)) / self.settings.get("scale", 1.0)

    def decode(self, x):
        return x * self.settings.get("scale", 1.0) + self.settings.get("offset", 0.0)

    def metrics(self, model, data):
        return {"n": float(len(data))}


def test_register_domain_resolves_with_settings():
    stochgen.register_domain("test-shifted", _Shifted)
    stochgen.register_domain("test-shifted", _Shifted)  # same class again: no-op
    d = stochgen.domain("test-shifted", offset=10.0, scale=2.0)
    assert type(d) is _Shifted and d.settings == {"offset": 10.0, "scale": 2.0}
    assert "test-shifted" in domain_names()

    class Other(stochgen.Domain):
        pass

    with pytest.raises(ValueError, match="already registered"):
        stochgen.register_domain("test-shifted", Other)
    with pytest.raises(TypeError, match="Domain subclasses"):
        stochgen.register_domain("x", dict)


def test_third_party_domain_fits_saves_and_loads(tmp_path):
    stochgen.register_domain("test-shifted", _Shifted)
    g = torch.Generator().manual_seed(0)
    raw = 10.0 + 2.0 * torch.randn(512, 2, generator=g) * torch.tensor([1.0, 0.5])
    d = stochgen.domain("test-shifted", offset=10.0, scale=2.0, sigma_data=0.8, hidden=32, depth=1)
    data = d.load(raw)
    assert torch.allclose(data.x.mean(0), torch.zeros(2), atol=0.15)   # encode ran
    m = stochgen.fit(d, data, steps=150, batch_size=128, lr=3e-3, warmup=10, ema=0.9, progress=False)
    # the loss hardly moves here (the preconditioned start is already a fair Gaussian denoiser), so
    # check what was learned: against the Bayes denoiser of the encoded law N(0, diag(1, 0.25)), the
    # trained one errs far less than the untrained c_skip(sigma) x (5-31% of its error over 10 seeds)
    var, g_eval = torch.tensor([1.0, 0.25]), torch.Generator().manual_seed(7)
    for sig in (0.2, 0.5, 1.0, 2.0):
        x0 = torch.randn(2000, 2, generator=g_eval) * var.sqrt()
        x_t = x0 + sig * torch.randn(2000, 2, generator=g_eval)
        best, untrained = var / (var + sig**2) * x_t, 0.64 / (0.64 + sig**2) * x_t
        with torch.no_grad():
            learned = m.denoise(x_t, torch.full((2000,), sig))
        assert float(((learned - best) ** 2).mean()) < 0.5 * float(((untrained - best) ** 2).mean()), sig
    m.save(tmp_path / "m.ckpt")
    m2 = stochgen.load(tmp_path / "m.ckpt")
    assert type(m2.domain) is _Shifted and m2.domain.settings == d.settings
    s = m2.sample(400, steps=10, generator=torch.Generator().manual_seed(1), decode=True)
    # decoded samples live on the raw scale: mean near 10, per-axis std near (2, 1)
    assert torch.allclose(s.mean(0), torch.tensor([10.0, 10.0]), atol=0.4)
    assert 1.4 < float(s[:, 0].std()) < 2.6 and 0.6 < float(s[:, 1].std()) < 1.4
    assert m2.domain.metrics(m2, data) == {"n": 512.0}


def test_domain_data_subset():
    dd = DomainData(torch.arange(8.0).reshape(4, 2), torch.tensor([0, 1, 0, 1]))
    s = dd.subset([3, 0])
    assert torch.equal(s.x, torch.tensor([[6.0, 7.0], [0.0, 1.0]])) and torch.equal(s.labels, torch.tensor([1, 0]))
