"""Forward simulation of any diffusion process through torchsde.

Used to check a process's closed-form marginals against its own SDE, and by
users who want forward paths (data augmentation, visualising corruption).
"""
from __future__ import annotations

import torch

from .._validate import as_tensor, check_finite


class _TorchsdeAdapter(torch.nn.Module):
    """torchsde wants flat (batch, d) states; processes take any event shape."""

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, process, event_shape, cond):
        super().__init__()
        self.process, self.event_shape, self.cond = process, event_shape, cond

    def _coeffs(self, t, y):
        x = y.reshape((y.shape[0],) + self.event_shape)
        drift, diff = self.process.sde(x, t, **self.cond)
        return drift.reshape(y.shape), diff.reshape(y.shape)

    def f(self, t, y):
        return self._coeffs(t, y)[0]

    def g(self, t, y):
        return self._coeffs(t, y)[1]


def brownian_entropy(generator: torch.Generator | None = None) -> int:
    """A seed for a torchsde Brownian motion, drawn from ``generator`` (torch's global RNG if None).

    torchsde seeds its Brownian motions from numpy's global RNG when given no ``entropy``, so
    without this a torch seed would not fix the noise."""
    dev = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=dev).item())


def simulate_forward(process, x, t0: float, t1, dt: float = 1e-3, method: str = "euler",
                     seed: int | None = None, **cond) -> torch.Tensor:
    """Integrate ``process.sde`` from state ``x`` at time ``t0`` to the time(s) ``t1``.

    ``t1`` is a float or an increasing sequence; the result has shape
    ``(len(t1), *x.shape)`` for a sequence and ``x.shape`` for a float.
    ``method`` is any torchsde Ito method for diagonal noise ("euler", "milstein", "srk").
    ``seed`` fixes the whole path (torchsde's Brownian motion included); without it the
    paths follow torch's global RNG, so ``torch.manual_seed`` fixes them too.
    """
    import torchsde

    x = check_finite(as_tensor(x, "x"), "x")
    scalar = not hasattr(t1, "__len__")
    ts = [float(t0)] + ([float(t1)] if scalar else [float(v) for v in t1])
    if any(b <= a for a, b in zip(ts, ts[1:])):
        raise ValueError(f"times must increase from t0, got {ts}")
    process.check_t(torch.tensor(ts, dtype=torch.float64))
    sde = _TorchsdeAdapter(process, tuple(x.shape[1:]), cond)
    y0 = x.reshape(x.shape[0], -1)
    ts_t = torch.tensor(ts, dtype=x.dtype, device=x.device)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []), torch.no_grad():
        if seed is not None:
            torch.manual_seed(seed)
        entropy = brownian_entropy()
        # BrownianInterval (not BrownianPath, whose window ends at t0 + 1 and silently
        # returns wrong increments past it); Levy areas only when the method needs them
        bm = torchsde.BrownianInterval(t0=ts[0], t1=ts[-1], size=y0.shape, dtype=x.dtype, device=x.device,
                                       entropy=entropy,
                                       levy_area_approximation="space-time" if method == "srk" else "none")
        ys = torchsde.sdeint(sde, y0, ts_t, bm=bm, dt=dt, method=method)
    out = ys[1:].reshape((len(ts) - 1,) + tuple(x.shape))
    return out[0] if scalar else out
