"""The same code on a CUDA device: results agree with the CPU, laws are right, training round-trips.

Skipped where no CUDA device is present (CI); run on a GPU machine with
``python -m pytest -q tests/test_cuda.py`` (``STOCHGEN_TEST_DEVICE=cpu`` runs the same checks on
the CPU, to check the test file itself; that is how it has been run so far: no GPU machine was
available to this project's sessions yet). The exact oracles live on the CPU in float64, so
models here move the state to the CPU and the prediction back: everything a sampler,
the likelihood or training does runs on the device.
"""
import math
import os

import pytest
import torch

import stochgen
from stochgen import oracles
from stochgen import processes as P
from stochgen.guidance import inpaint
from stochgen.samplers import grids

DEV = os.environ.get("STOCHGEN_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEV == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device")

F64 = torch.float64
G = oracles.Gaussian(torch.tensor([0.5, -1.0, 0.2, 1.5], dtype=F64), torch.tensor([0.3, 0.8, 1.2, 0.5], dtype=F64))
ODE_SAMPLERS = ["euler", "heun", "ddim", "dpm++1", "dpm++2m", "dpm++3m", "unipc", "ipndm"]


def on_device(model):
    """A CPU oracle as a model of device states."""

    def f(x, t, **cond):
        c = {k: v.cpu() if torch.is_tensor(v) else v for k, v in cond.items()}
        return model(x.cpu(), t.cpu() if torch.is_tensor(t) else t, **c).to(x.device)

    return f


def cuda_gen(seed):
    return torch.Generator(device=DEV).manual_seed(seed)


@pytest.mark.parametrize("proc", [P.EDM(), P.VP(), P.Interpolant()], ids=["edm", "vp", "interpolant"])
def test_ode_samplers_match_the_cpu(proc):
    kind = "v" if isinstance(proc, P.Interpolant) else "eps"
    grid = "uniform" if isinstance(proc, P.Interpolant) else None
    x_T = proc.prior_sample((64, 4), generator=torch.Generator().manual_seed(0), dtype=F64)
    for sampler in ODE_SAMPLERS:
        for dtype, tol in ((F64, 1e-10), (torch.float32, 2e-4)):
            cpu = stochgen.sample(proc, G.model(proc, kind), x_T=x_T.to(dtype), sampler=sampler, steps=12,
                                  grid=grid, prediction=kind)
            dev, info = stochgen.sample(proc, on_device(G.model(proc, kind)), x_T=x_T.to(dtype).to(DEV),
                                        sampler=sampler, steps=12, grid=grid, prediction=kind, return_info=True)
            assert dev.device.type == DEV and dev.dtype == dtype and info["times"].device.type == DEV
            assert float((dev.cpu() - cpu).abs().max()) < tol, (sampler, dtype)


def test_adaptive_ode_and_likelihood_match_the_cpu():
    proc = P.VP()
    x_T = proc.prior_sample((32, 4), generator=torch.Generator().manual_seed(1), dtype=F64)
    cpu = stochgen.sample(proc, G.model(proc, "score"), x_T=x_T, sampler="ode", steps=5, prediction="score",
                          rtol=1e-7, atol=1e-7)
    dev = stochgen.sample(proc, on_device(G.model(proc, "score")), x_T=x_T.to(DEV), sampler="ode", steps=5,
                          prediction="score", rtol=1e-7, atol=1e-7)
    assert float((dev.cpu() - cpu).abs().max()) < 1e-6
    x = G.sample(16, generator=torch.Generator().manual_seed(2))
    exact = G.log_prob(x)
    ll = stochgen.log_likelihood(proc, on_device(G.model(proc, "score")), x.to(DEV), prediction="score",
                                 divergence="exact", rtol=1e-6, atol=1e-6)
    assert ll.device.type == DEV
    assert float((ll.cpu() - exact).abs().max()) / 4 < 0.01  # nats per dimension


@pytest.mark.parametrize("sampler,opts,steps", [("dpm++2m-sde", {}, 60), ("euler-maruyama", {}, 300),
                                                ("pc", {"snr": 0.16}, 150), ("ddim", {"eta": 1.0}, 200),
                                                ("heun", {"S_churn": 20.0}, 60), ("sde", {}, 200)])
def test_stochastic_samplers_reach_the_gaussian_law(sampler, opts, steps):
    proc = P.VP()
    n = 20000
    x = stochgen.sample(proc, on_device(G.model(proc, "eps")), shape=(n, 4), sampler=sampler, steps=steps,
                        prediction="eps", generator=cuda_gen(3), dtype=F64, device=DEV, **opts)
    assert x.device.type == DEV
    x = x.cpu()
    mean, std = G.means[0], G.stds[0]
    assert bool(((x.mean(0) - mean).abs() < 5 * std / math.sqrt(n) + 0.03 * std).all()), x.mean(0)
    assert bool(((x.std(0) / std - 1).abs() < 0.05).all()), x.std(0)


def test_mean_reverting_gbm_and_ctmc_on_the_device():
    # OU-VE with a per-sample y on the device: the deterministic exact-linear solver equals the CPU's
    proc = P.OUVE()
    g = torch.Generator().manual_seed(4)
    y = torch.randn(64, 4, generator=g, dtype=F64)
    x_T = proc.prior_sample((64, 4), generator=g, dtype=F64, y=y)
    cpu = stochgen.sample(proc, G.model(proc, "score"), x_T=x_T, sampler="mr-exact", steps=30,
                          prediction="score", cond={"y": y}, stochastic=False)
    dev = stochgen.sample(proc, on_device(G.model(proc, "score")), x_T=x_T.to(DEV), sampler="mr-exact", steps=30,
                          prediction="score", cond={"y": y.to(DEV)}, stochastic=False)
    assert float((dev.cpu() - cpu).abs().max()) < 1e-10
    # GBM: multiplicative steps stay positive on the device
    gbm = P.GBM(mu=0.3, sigma=1.0)
    x_T = gbm.prior_sample((256, 2), generator=torch.Generator().manual_seed(5), dtype=F64)

    def score(x, t):  # any smooth score; positivity is the point
        return -1.0 / x

    xg = stochgen.sample(gbm, score, x_T=x_T.to(DEV), sampler="gbm-euler", steps=50, prediction="score",
                         generator=cuda_gen(5))
    assert xg.device.type == DEV and bool((xg > 0).all()) and bool(torch.isfinite(xg).all())
    # CTMC: exact denoising probabilities of independent positions, both jump samplers on the device
    from test_samplers_ctmc import L, TV_MC, independent_denoiser, make_process, tv_positions

    for kind in ("absorbing", "uniform"):
        ctmc = make_process(kind)
        for sampler, opts in (("ctmc-euler", {"analytic": True}), ("tau-leaping", {})):
            x = stochgen.sample(ctmc, on_device(independent_denoiser(ctmc)), shape=(20000, L), sampler=sampler,
                                steps=5 if opts else 200, prediction="x0", generator=cuda_gen(6), device=DEV, **opts)
            assert x.device.type == DEV
            assert tv_positions(x.cpu()) <= TV_MC + (0 if opts else 0.01), (kind, sampler)


def test_inpainting_keeps_known_values_on_the_device():
    proc = P.VP()
    known = torch.tensor([[0.7, float("nan"), float("nan"), 1.2]], dtype=F64)
    mask = torch.tensor([[1.0, 0.0, 0.0, 1.0]], dtype=F64)
    x = inpaint(proc, on_device(G.model(proc, "eps")), known.to(DEV), mask.to(DEV), steps=30, n=512,
                resample=2, generator=cuda_gen(7))
    assert x.device.type == DEV
    assert torch.equal(x[:, 0].cpu(), torch.full((512,), 0.7, dtype=F64))
    assert torch.equal(x[:, 3].cpu(), torch.full((512,), 1.2, dtype=F64))
    # G has independent coordinates: the unknown ones keep their own law
    assert abs(float(x[:, 1].mean()) - float(G.means[0, 1])) < 0.15


def test_fit_on_the_device_round_trips_through_a_cpu_checkpoint(tmp_path):
    from stochgen.domain import DomainData

    dom = stochgen.domain("images")
    data = dom.load("digits")
    small = DomainData(data.x[:512], None if data.labels is None else data.labels[:512], dict(data.info))
    ckpt = tmp_path / "m.ckpt"
    net = {"type": "UNet", "config": {"in_channels": int(data.x.shape[1]), "channels": [16, 32]}}
    model = stochgen.fit(dom, small, steps=30, batch_size=32, device=DEV, precision="bfloat16", ckpt_path=str(ckpt),
                         progress=False, network=net)
    assert model.device.type == DEV
    back = stochgen.load(str(ckpt), device="cpu")
    sd_dev, sd_cpu = model.weights.state_dict(), back.weights.state_dict()
    assert sd_dev.keys() == sd_cpu.keys()
    for k in sd_dev:
        assert torch.equal(sd_dev[k].cpu(), sd_cpu[k]), k
    # the same weights and start give the same samples on both devices (float32 round-off apart)
    x_T = 80.0 * torch.randn((4,) + tuple(data.x.shape[1:]), generator=torch.Generator().manual_seed(9))
    a = back.sample(4, x_T=x_T, steps=8, sampler="dpm++2m")
    b = model.sample(4, x_T=x_T.to(DEV), steps=8, sampler="dpm++2m")
    assert b.device.type == DEV and bool(torch.isfinite(b).all())
    assert float((b.cpu() - a).abs().max()) < 1e-3
