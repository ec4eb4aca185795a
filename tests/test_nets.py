"""Score networks: shapes, zero-init, training signal, conditioning, spec round trip."""
import json

import pytest
import torch
from torch.nn import functional as F

from stochgen import guidance, nets


def _cases():
    # (name, constructor, input shape)
    return {
        "mlp": (lambda **kw: nets.MLP(5, hidden=64, depth=2, **kw), (6, 5)),
        "unet8": (lambda **kw: nets.UNet(1, channels=(16, 32), **kw), (4, 1, 8, 8)),
        "unet28": (lambda **kw: nets.UNet(1, channels=(16, 32), **kw), (2, 1, 28, 28)),
        "unet28_3lvl_attn": (lambda **kw: nets.UNet(1, channels=(16, 32, 32), num_res_blocks=2, attention=True,
                                                    **kw), (2, 1, 28, 28)),
        "unet_odd": (lambda **kw: nets.UNet(3, channels=(16, 32, 32), **kw), (2, 3, 13, 10)),
        "unet1d": (lambda **kw: nets.UNet1d(2, channels=(16, 32), **kw), (3, 2, 24)),
        "unet1d_odd_attn": (lambda **kw: nets.UNet1d(2, channels=(16, 32, 32), attention=True, **kw), (3, 2, 23)),
    }


CASES = _cases()
FAST = ["mlp", "unet8", "unet1d"]


def _make(name, seed=0, **kw):
    torch.manual_seed(seed)
    ctor, shape = CASES[name]
    net = ctor(**kw)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(shape, generator=g)
    t = torch.rand(shape[0], generator=g)
    return net, x, t, g


def _sgd_step(net, x, t, target, lr=0.05, **cond):
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    loss = F.mse_loss(net(x, t, **cond), target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


@pytest.mark.parametrize("name", list(CASES))
def test_shape_and_zero_init(name):
    net, x, t, _ = _make(name)
    out = net(x, t)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, torch.zeros_like(x))  # zero-initialised output layer: exactly 0


@pytest.mark.parametrize("name", FAST)
def test_without_zero_init_output_is_not_zero(name):
    net, x, t, _ = _make(name, zero_init=False)
    with torch.no_grad():
        out = net(x, t)
    assert out.shape == x.shape
    assert float(out.abs().mean()) > 1e-3


@pytest.mark.parametrize("name", list(CASES))
def test_one_sgd_step_decreases_regression_loss(name):
    net, x, t, g = _make(name)
    target = torch.randn(x.shape, generator=g)
    before = _sgd_step(net, x, t, target)
    with torch.no_grad():
        after = float(F.mse_loss(net(x, t), target))
    assert after < before - 1e-4, (before, after)


@pytest.mark.parametrize("name", FAST)
def test_time_embedding_distinguishes_noise_levels(name):
    net, x, t, g = _make(name)
    _sgd_step(net, x, t, torch.randn(x.shape, generator=g))
    with torch.no_grad():
        lo, hi = net(x, 0.1), net(x, 0.9)
        # a scalar t is the same as a per-sample vector and as (B, 1, ...)
        vec = net(x, torch.full((x.shape[0],), 0.1))
        col = net(x, torch.full((x.shape[0],) + (1,) * (x.dim() - 1), 0.1))
        near = net(x, 0.101)
    # one SGD step from a zero output layer: the t-dependence is small, so judge it against the
    # output's own scale (exactly 0 if t were ignored)
    assert float((lo - hi).abs().max()) > 1e-3 * float(hi.abs().max())
    assert float((lo - near).abs().max()) > 0  # the default embedding resolves 1e-3
    torch.testing.assert_close(lo, vec, rtol=0, atol=0)
    torch.testing.assert_close(lo, col, rtol=0, atol=0)


def test_fourier_embedding_distinguishes_noise_levels_and_is_in_state_dict():
    torch.manual_seed(0)
    net = nets.MLP(3, hidden=32, depth=1, embedding="fourier", emb_scale=4.0)
    assert "time_emb.features.freqs" in net.state_dict()
    x = torch.randn(5, 3)
    _sgd_step(net, x, torch.rand(5), torch.randn(5, 3))
    with torch.no_grad():
        feats = net.time_emb.features
        assert float((feats(torch.tensor([-1.0])) - feats(torch.tensor([1.0]))).abs().max()) > 0.5
        # one SGD step from the zero-initialised output layer: the t-dependence is small but
        # well above round-off (0.4-1.2% of the output's scale over 8 seeds; 0 if t were ignored)
        lo, hi = net(x, -1.0), net(x, 1.0)
        assert float((lo - hi).abs().max()) > 1e-3 * float(hi.abs().max())
    # the frequencies follow from the config's seed: a rebuilt net has the same ones
    assert torch.equal(nets.build(net.spec()).time_emb.features.freqs, net.time_emb.features.freqs)


def test_bad_time_shape():
    net, x, t, _ = _make("mlp")
    with pytest.raises(ValueError, match="one entry per sample"):
        net(x, torch.rand(x.shape[0] + 1))


@pytest.mark.parametrize("kind", ["mlp", "unet8"])
def test_class_conditioning_and_null_label(kind):
    torch.manual_seed(0)
    if kind == "mlp":
        net, x = nets.MLP(4, hidden=64, depth=2, num_classes=3), torch.randn(6, 4)
    else:
        net, x = nets.UNet(1, channels=(16, 32), num_classes=3), torch.randn(6, 1, 8, 8)
    assert net.cond_keys == ("label",)
    t = torch.rand(6)
    labels = torch.tensor([0, 1, 2, 0, 1, -1])
    target = torch.randn_like(x) + labels.clamp(min=0).reshape(-1, *([1] * (x.dim() - 1)))
    _sgd_step(net, x, t, target, label=labels)
    with torch.no_grad():
        out = {lab: net(x, t, label=lab) for lab in (0, 1, 2)}
        null = net(x, t, label=-1)
        null_none = net(x, t)  # no label at all = null class
        null_vec = net(x, t, label=torch.full((6,), -1))
        mixed = net(x, t, label=labels)
    for a, b in [(0, 1), (1, 2), (0, 2)]:
        assert float((out[a] - out[b]).abs().max()) > 1e-4
    assert float((out[0] - null).abs().max()) > 1e-4
    assert torch.equal(null, null_none) and torch.equal(null, null_vec)
    # per-sample labels pick the per-sample rows
    assert torch.equal(mixed[0], out[0][0]) and torch.equal(mixed[1], out[1][1]) and torch.equal(mixed[5], null[5])
    # classifier-free guidance through the null label
    guided = guidance.cfg(net, 3.0, uncond={"label": -1})
    with torch.no_grad():
        torch.testing.assert_close(guided(x, t, label=1), null + 3.0 * (out[1] - null))


def test_label_errors():
    torch.manual_seed(0)
    net, x = nets.MLP(4, hidden=16, depth=1, num_classes=3), torch.randn(2, 4)
    with pytest.raises(ValueError, match="0..2"):
        net(x, 0.5, label=3)
    with pytest.raises(ValueError, match="0..2"):
        net(x, 0.5, label=torch.tensor([0, -2]))
    with pytest.raises(ValueError, match="integer"):
        net(x, 0.5, label=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="one entry per sample"):
        net(x, 0.5, label=torch.tensor([0, 1, 2]))


def test_unconditional_net_ignores_other_keys():
    # guidance.cfg hands the conditional keywords to a separate unconditional network
    net, x, t, _ = _make("mlp", zero_init=False)
    assert net.cond_keys == ()
    assert torch.equal(net(x, t), net(x, t, label=torch.zeros(x.shape[0], dtype=torch.long)))


def test_drop_labels():
    g = torch.Generator().manual_seed(0)
    lab = torch.randint(0, 10, (4000,), generator=g)
    d = nets.drop_labels(lab, 0.25, generator=g)
    dropped = d == -1
    assert abs(float(dropped.float().mean()) - 0.25) < 0.03
    assert torch.equal(d[~dropped], lab[~dropped])
    assert torch.equal(nets.drop_labels(lab, 0.0), lab)
    assert bool((nets.drop_labels(lab, 1.0) == -1).all())
    with pytest.raises(ValueError):
        nets.drop_labels(lab, 1.5)


@pytest.mark.parametrize("kind", ["mlp", "unet1d"])
def test_conditioning_signal_y(kind):
    torch.manual_seed(0)
    if kind == "mlp":
        net, x, y = nets.MLP(4, hidden=32, depth=1, cond_dim=2), torch.randn(5, 4), torch.randn(5, 2)
        bad = torch.randn(5, 3)
    else:
        net, x, y = nets.UNet1d(2, channels=(16, 32), cond_channels=1), torch.randn(5, 2, 12), torch.randn(5, 1, 12)
        bad = torch.randn(5, 1, 11)
    assert net.cond_keys == ("y",)
    t = torch.rand(5)
    _sgd_step(net, x, t, torch.randn_like(x) + y.mean(dim=1, keepdim=True), y=y)
    with torch.no_grad():
        assert float((net(x, t, y=y) - net(x, t, y=-y)).abs().max()) > 1e-4
    with pytest.raises(ValueError, match="pass y"):
        net(x, t)
    with pytest.raises(ValueError, match="y must have shape"):
        net(x, t, y=bad)


@pytest.mark.parametrize("name", ["mlp", "unet8", "unet28_3lvl_attn", "unet1d_odd_attn"])
def test_spec_round_trip(name):
    net, x, t, g = _make(name)
    _sgd_step(net, x, t, torch.randn(x.shape, generator=g))
    spec = json.loads(json.dumps(net.spec()))  # JSON-serialisable
    assert spec["type"] in nets.names()
    torch.manual_seed(123)  # different fresh weights
    net2 = nets.build(spec)
    assert net2.config() == net.config()
    with torch.no_grad():
        assert not torch.equal(net2(x, t), net(x, t))
    net2.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.equal(net2(x, t), net(x, t))


def test_build_errors():
    with pytest.raises(ValueError, match=r"unknown network type.*MLP.*UNet, UNet1d"):
        nets.build({"type": "Transformer", "config": {}})
    with pytest.raises(ValueError, match="'type'"):
        nets.build({"config": {}})
    with pytest.raises(ValueError, match="bad config"):
        nets.build({"type": "MLP", "config": {"dim": 3, "widht": 4}})
    with pytest.raises(ValueError, match="attention heads"):
        nets.UNet(1, channels=(16, 18), attention=True, heads=4)
    with pytest.raises(ValueError, match="embedding"):
        nets.MLP(3, embedding="learned")


def test_register_custom_network():
    class TinyNet(nets.ScoreNet):
        def __init__(self, dim=2):
            super().__init__()
            self.dim = dim
            self.lin = torch.nn.Linear(dim, dim)

        def config(self):
            return {"dim": self.dim}

        def forward(self, x, t, **cond):
            return self.lin(x)

    nets.register(TinyNet)
    try:
        assert "TinyNet" in nets.names()
        assert isinstance(nets.build({"type": "TinyNet", "config": {"dim": 3}}), TinyNet)
        with pytest.raises(ValueError, match="already registered"):
            nets.register(type("TinyNet", (nets.ScoreNet,), {}))
    finally:
        nets._REGISTRY.pop("TinyNet")


def test_input_shape_errors():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        nets.MLP(5, hidden=16, depth=1)(torch.randn(2, 4), 0.5)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        nets.UNet(1, channels=(16,))(torch.randn(2, 1, 8), 0.5)
    with pytest.raises(ValueError, match=r"C=2"):
        nets.UNet1d(2, channels=(16,))(torch.randn(2, 3, 8), 0.5)


def test_float64_input_to_float32_net():
    net, x, t, g = _make("unet8")
    _sgd_step(net, x, t, torch.randn(x.shape, generator=g))
    with torch.no_grad():
        out32 = net(x, t)
        out64 = net(x.double(), t.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64, out32.double(), rtol=0, atol=0)
