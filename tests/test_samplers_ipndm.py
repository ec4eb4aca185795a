"""iPNDM (equal-step Adams-Bashforth on dx~/ds~) and grid options, against the exact Gaussian flow.

On a grid uniform in s~ = sigma/alpha the order-p formula is an order-p step; over 10-40
steps the error falls at close to that order. Its warm-up (the first step is Euler, the next
ones AB2, AB3) leaves an O(h^2) term that takes over at finer grids (order 4 on EDM: slope 3.4
over 10/20/40 steps, 2.0 from 40 to 80). On a smoothly graded grid (Karras) the equal-step
weights make every order >= 2 second order (the weight error is O(h * (h_i - h_{i-1})) = O(h^3)
per step). Both are asserted.
"""
import pytest
import torch

import stochgen
from stochgen import oracles
from stochgen import processes as P
from stochgen.samplers import grids
from stochgen.samplers.ipndm import AB_WEIGHTS

F64 = torch.float64
G = oracles.Gaussian(torch.tensor([0.5, -1.0, 0.2, 1.5], dtype=F64), torch.tensor([0.3, 0.8, 1.2, 0.5], dtype=F64))


def slope(nfe, err):
    ln = torch.log(torch.tensor(nfe, dtype=F64))
    le = torch.log(torch.tensor(err, dtype=F64))
    A = torch.stack([ln, torch.ones_like(ln)], 1)
    return -float(torch.linalg.lstsq(A, le[:, None]).solution[0, 0])


def exact_endpoint(proc, x_T, **cond):
    t_min = torch.tensor(proc.t_min, dtype=F64)
    return G.x0_mean(proc, G.flow(proc, x_T, proc.t_max, proc.t_min, **cond), t_min, **cond)


def spread_start(proc):
    """A fixed spread of starts over the exact marginal at t_max (+-2.5 std per coordinate).

    The flow of one Gaussian is affine, so a sampler's error is affine in the start too; with
    random starts the largest error (and a high order's measured slope) would depend on the
    stream of random numbers rather than on the method."""
    t = torch.tensor(proc.t_max, dtype=F64)
    a, s = proc.alpha(t), proc.sigma(t)
    z = torch.linspace(-2.5, 2.5, 9, dtype=F64)
    z = torch.stack(torch.meshgrid(z, z.flip(0), indexing="ij"), -1).reshape(-1, 2).repeat(1, 2)
    return a * G.means[0] + torch.sqrt(a**2 * G.stds[0] ** 2 + s**2) * z


def test_weights_are_adams_bashforth():
    """The weights integrate polynomials of degree < p exactly over one step of an equal-step history."""
    for p, w in AB_WEIGHTS.items():
        assert abs(sum(w) - 1.0) < 1e-15
        for k in range(p):  # d(u) = u^k sampled at u = 0, -1, -2, ...: its integral over [0, 1] is 1/(k+1)
            assert abs(sum(wj * float(-j) ** k for j, wj in enumerate(w)) - 1.0 / (k + 1)) < 1e-14, (p, k)
        k = p  # and not the next degree: the weights are exactly order p
        assert abs(sum(wj * float(-j) ** k for j, wj in enumerate(w)) - 1.0 / (k + 1)) > 1e-3, p


@pytest.mark.parametrize("pid", ["edm", "vp"])
@pytest.mark.parametrize("order,least", [(1, 0.9), (2, 1.7), (3, 2.6), (4, 3.3)])
def test_order_on_a_grid_uniform_in_sigma_tilde(pid, order, least):
    """Measured 0.98, 1.77, 2.72, 3.43 (EDM) / 0.97, 1.77, 2.72, 3.47 (VP)."""
    proc = {"edm": P.EDM(), "vp": P.VP()}[pid]
    x_T = spread_start(proc)
    errs, nfes = [], []
    for steps in (10, 20, 40):
        times = proc.t_of_lambda(-torch.log(torch.linspace(2.0, 0.1, steps + 1, dtype=F64)))
        x, info = stochgen.sample(proc, G.model(proc, "x0"), x_T=x_T, times=times, sampler="ipndm",
                                  prediction="x0", order=order, return_info=True)
        ref = G.flow(proc, x_T, float(times[0]), float(times[-1]))
        errs.append(float((x - ref).abs().max()))
        nfes.append(info["nfe"])
    assert nfes == [10, 20, 40]  # one model call per step
    assert slope(nfes, errs) >= least, (order, errs)


@pytest.mark.parametrize("pid", ["edm", "vp", "ouve"])
def test_second_order_on_the_karras_grid(pid):
    proc = {"edm": P.EDM(), "vp": P.VP(), "ouve": P.OUVE()}[pid]
    n = 32
    cond = {"y": torch.randn(n, 4, generator=torch.Generator().manual_seed(7), dtype=F64)} if pid == "ouve" else {}
    x_T = proc.prior_sample((n, 4), generator=torch.Generator().manual_seed(1), dtype=F64, **cond)
    ref = exact_endpoint(proc, x_T, **cond)
    euler = stochgen.sample(proc, G.model(proc, "x0"), x_T=x_T, steps=20, sampler="euler", prediction="x0",
                            cond=cond)
    for order in (2, 3, 4):
        errs = [float((stochgen.sample(proc, G.model(proc, "x0"), x_T=x_T, steps=s, sampler="ipndm",
                                       prediction="x0", order=order, cond=cond) - ref).abs().max())
                for s in (20, 40, 80)]
        assert slope([20, 40, 80], errs) >= 1.8, (pid, order, errs)
        assert errs[0] < 0.25 * float((euler - ref).abs().max()), (pid, order, errs)


def test_order_one_is_euler():
    proc = P.VP()
    x_T = proc.prior_sample((16, 4), generator=torch.Generator().manual_seed(2), dtype=F64)
    a = stochgen.sample(proc, G.model(proc, "eps"), x_T=x_T, steps=12, sampler="ipndm", order=1)
    b = stochgen.sample(proc, G.model(proc, "eps"), x_T=x_T, steps=12, sampler="euler")
    assert float((a - b).abs().max()) < 1e-12


def test_interpolant_start_at_alpha_zero_and_float32():
    """From alpha = 0 (s~ = inf) the first step is Euler's finite form; float32 follows float64 from there."""
    proc = P.Interpolant()
    x_T = proc.prior_sample((32, 4), generator=torch.Generator().manual_seed(3), dtype=F64)
    ref = G.x0_mean(proc, G.flow(proc, x_T, 1.0, proc.t_min), torch.tensor(proc.t_min, dtype=F64))
    out = {dt: stochgen.sample(proc, G.model(proc, "v"), x_T=x_T.to(dt), sampler="ipndm", steps=40, grid="uniform",
                               prediction="v") for dt in (torch.float32, F64)}
    assert out[torch.float32].dtype == torch.float32
    assert float((out[F64] - ref).abs().max()) < 0.05
    assert float((out[torch.float32].double() - out[F64]).abs().max()) < 1e-4


def test_bad_order_is_an_error():
    proc = P.EDM()
    for bad in (0, 5, 2.0, True):
        with pytest.raises(ValueError, match="order"):
            stochgen.sample(proc, G.model(proc, "x0"), shape=(2, 4), sampler="ipndm", steps=3, prediction="x0",
                            order=bad)


# --------------------------------------------------------------------------------------
# grid_options of stochgen.sample
# --------------------------------------------------------------------------------------
def test_grid_options_reach_the_grid():
    proc = P.EDM()
    model = G.model(proc, "x0")
    x_T = proc.prior_sample((4, 4), generator=torch.Generator().manual_seed(4), dtype=F64)
    for grid, opts in [("karras", {"t_end": 0.04}), ("karras", {"rho": 3.0, "t_start": 20.0}),
                       ("log_snr", {"t_end": 0.04}), ("uniform", {"t_start": 10.0, "t_end": 1.0})]:
        _, info = stochgen.sample(proc, model, x_T=x_T, sampler="dpm++2m", steps=6, grid=grid, grid_options=opts,
                                  prediction="x0", return_info=True)
        expect = grids.make_grid(proc, 6, grid, **opts)
        assert torch.equal(info["times"].cpu(), expect), (grid, opts)
        assert float(info["times"][-1]) == proc.t_lo  # still ends with the denoising step
        if "t_end" in opts:
            assert abs(float(info["times"][-2]) - opts["t_end"]) < 1e-12
        if "t_start" in opts:
            assert abs(float(info["times"][0]) - opts["t_start"]) < 1e-12
    # rho changes the spacing: rho = 1 is uniform in sigma
    t1 = grids.karras(proc, 5, rho=1.0)
    assert float((t1[:-1] - torch.linspace(80.0, 0.002, 5, dtype=F64)).abs().max()) < 1e-9


def test_a_later_t_end_ends_at_the_exact_denoised_point():
    """With t_end = s the last interval is the exact denoising step from s: compare with flow-to-s + E[x0|x_s]."""
    proc = P.EDM()
    x_T = proc.prior_sample((32, 4), generator=torch.Generator().manual_seed(5), dtype=F64)
    s = 0.5
    ref = G.x0_mean(proc, G.flow(proc, x_T, proc.t_max, s), torch.tensor(s, dtype=F64))
    x = stochgen.sample(proc, G.model(proc, "x0"), x_T=x_T, sampler="unipc", steps=40, prediction="x0",
                        grid_options={"t_end": s})
    err = float((x - ref).abs().max())
    assert err < 2e-3
    far = G.x0_mean(proc, G.flow(proc, x_T, proc.t_max, proc.t_min), torch.tensor(proc.t_min, dtype=F64))
    assert float((x - far).abs().max()) > 20 * err  # and the stopping point really moved


def test_bad_grid_options_are_errors():
    proc = P.EDM()
    model = G.model(proc, "x0")
    with pytest.raises(ValueError, match="rho"):
        stochgen.sample(proc, model, shape=(2, 4), steps=4, grid="log_snr", grid_options={"rho": 5.0},
                        prediction="x0")
    with pytest.raises(ValueError, match="rho must be a positive"):
        stochgen.sample(proc, model, shape=(2, 4), steps=4, grid="karras", grid_options={"rho": -1.0},
                        prediction="x0")
    with pytest.raises(ValueError, match="backwards"):
        stochgen.sample(proc, model, shape=(2, 4), steps=4, grid="karras", grid_options={"t_end": 100.0},
                        prediction="x0")
    with pytest.raises(ValueError, match="times="):
        stochgen.sample(proc, model, shape=(2, 4), times=grids.karras(proc, 4), grid_options={"t_end": 1.0},
                        prediction="x0")
