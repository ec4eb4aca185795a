"""SpeechUNet: patch folding is an exact inverse, shapes for any F x T, y is read, spec round trip, a training signal."""
import json

import pytest
import torch
from torch.nn import functional as F

from stochgen import nets

from domains.speech.nets import SpeechUNet, fold, unfold
from domains.speech.stft import SpecCodec, to_channels

SMALL = dict(channels=(8, 16), emb_dim=32)


def test_fold_unfold_exact_and_local():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, 3, 8, 6, generator=g)
    for patch in ((1, 1), (2, 2), (4, 2), (2, 3)):
        z = fold(h, patch)
        assert z.shape == (2, 3 * patch[0] * patch[1], 8 // patch[0], 6 // patch[1])
        assert torch.equal(unfold(z, patch), h)
    z = fold(h, (2, 3))
    # channel (c, i, j) at (f, t) holds h[c, f * 2 + i, t * 3 + j]
    assert z[1, 2 * 6 + 1 * 3 + 2, 3, 1] == h[1, 2, 3 * 2 + 1, 1 * 3 + 2]


@pytest.mark.parametrize("shape", [(2, 2, 256, 17), (1, 2, 255, 8), (3, 2, 16, 1)])
def test_shape_zero_init_and_dtype(shape):
    torch.manual_seed(0)
    net = SpeechUNet(**SMALL)
    x, y = torch.randn(shape), torch.randn(shape)
    out = net(x, torch.rand(shape[0]), y=y)
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))
    net = SpeechUNet(**SMALL, zero_init=False)
    out64 = net(x.double(), 0.3, y=y.double())
    assert out64.dtype == torch.float64 and out64.shape == x.shape
    torch.testing.assert_close(out64, net(x, 0.3, y=y).double(), rtol=0, atol=0)


def test_reads_y_and_t_and_refuses_bad_inputs():
    torch.manual_seed(0)
    net = SpeechUNet(**SMALL, zero_init=False)
    assert net.cond_keys == ("y",)
    x, y = torch.randn(2, 2, 32, 12), torch.randn(2, 2, 32, 12)
    with torch.no_grad():
        base = net(x, 0.5, y=y)
        assert float((base - net(x, 0.5, y=-y)).abs().max()) > 1e-4
        assert float((base - net(x, 0.9, y=y)).abs().max()) > 1e-4
    with pytest.raises(ValueError, match="pass y"):
        net(x, 0.5)
    with pytest.raises(ValueError, match="y must have shape"):
        net(x, 0.5, y=y[..., :11])
    with pytest.raises(ValueError, match=r"\(B, 2, F, T\)"):
        net(torch.randn(2, 3, 32, 12), 0.5, y=y)
    assert SpeechUNet(**SMALL, conditional=False).cond_keys == ()
    with pytest.raises(ValueError, match="patch"):
        SpeechUNet(patch=(0, 2))


def test_spec_round_trip_through_the_registry():
    torch.manual_seed(0)
    net = SpeechUNet(**SMALL, patch=(4, 2), zero_init=False)
    spec = json.loads(json.dumps(net.spec()))
    assert spec["type"] == "SpeechUNet" and "SpeechUNet" in nets.names()
    torch.manual_seed(1)
    net2 = nets.build(spec)
    assert isinstance(net2, SpeechUNet) and net2.config() == net.config()
    net2.load_state_dict(net.state_dict())
    x, y = torch.randn(1, 2, 64, 10), torch.randn(1, 2, 64, 10)
    with torch.no_grad():
        assert torch.equal(net2(x, 0.2, y=y), net(x, 0.2, y=y))


def test_learns_to_map_y_to_a_target_on_real_spectrogram_states():
    """A few Adam steps on one STFT state reduce the regression loss (a training signal through fold/unfold)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    codec = SpecCodec()
    t = torch.arange(2048) / 16000
    clean = torch.sin(2 * torch.pi * 440 * t) * 0.3
    noisy = clean + 0.1 * torch.randn(2048, generator=g)
    x0, y = to_channels(codec.encode(clean)[None]), to_channels(codec.encode(noisy)[None])
    net = SpeechUNet(**SMALL)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.mse_loss(net(y, 0.5, y=y), x0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
