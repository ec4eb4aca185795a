"""``stochgen.fit`` takes the settings a call leaves out from the domain's ``fit_defaults``."""
import pytest
import torch

import stochgen
from stochgen.domain import Domain


class _Tiny(Domain):
    name = "tiny-defaults"
    fit_defaults = {"steps": 7, "batch_size": 4, "lr": 1e-3, "ema": 0.5}


def _data(n=16):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(0))


def test_domain_defaults_fill_what_the_call_leaves_out():
    m = stochgen.fit(_Tiny(), _data(), progress=False, ema=None)
    assert len(m.history["loss"]) == 7  # one loss per step: the domain's steps
    assert m.ema_decay is None  # ema=None given: off, whatever the domain says
    assert stochgen.fit(_Tiny(), _data(), progress=False).ema_decay == 0.5  # ema left out: the domain's
    assert stochgen.fit(Domain(), _data(), steps=2, batch_size=4, progress=False).ema_decay == 0.999
    # an explicit argument wins over the domain's default
    m2 = stochgen.fit(_Tiny(), _data(), steps=3, progress=False, ema=None)
    assert len(m2.history["loss"]) == 3
    # epochs given: steps derive from them, not from the domain (16 rows / batch 4 = 4 steps per epoch)
    m3 = stochgen.fit(_Tiny(), _data(), epochs=2, progress=False, ema=None)
    assert len(m3.history["loss"]) == 8


def test_without_domain_defaults_steps_are_required():
    with pytest.raises(ValueError, match="steps= or epochs="):
        stochgen.fit(Domain(), _data(), progress=False)
    with pytest.raises(ValueError, match="ema"):
        stochgen.fit(_Tiny(), _data(), progress=False, ema="fast")
