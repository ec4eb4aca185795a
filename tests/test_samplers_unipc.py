"""UniPC (stochgen.samplers.unipc) against closed forms.

Gaussian data have an exact denoiser and an exact probability-flow map
(``oracles.Gaussian.flow``): a sampler's endpoint from x_T is compared with the exact
flow from t_max to the grid's t_min followed by the exact denoising step (the samplers'
last interval). UniPC-p's predictor has order p and its corrector adds one, so the
error slopes are measured against p + 1.
"""
import math

import pytest
import torch

import stochgen
import stochgen.samplers.unipc  # noqa: F401  (registration, until the package imports it)
from stochgen import oracles
from stochgen import processes as P
from stochgen.parameterization import KINDS
from stochgen.samplers import get, grids
from stochgen.samplers.unipc import _taylor_targets, unipc_weights

F64 = torch.float64
MEAN = torch.tensor([0.5, -1.0, 0.2, 1.5], dtype=F64)
STD = torch.tensor([0.3, 0.8, 1.2, 0.5], dtype=F64)
G = oracles.Gaussian(MEAN, STD)
PROCS = {"edm": P.EDM(), "vp": P.VP(), "ouve": P.OUVE()}


def _y(n, d=4):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(7), dtype=F64)


def exact_endpoint(proc, x_T, **cond):
    """Exact flow t_max -> t_min, then the exact denoising step x = E[x0 | x_{t_min}]."""
    t_min = torch.tensor(proc.t_min, dtype=F64)
    return G.x0_mean(proc, G.flow(proc, x_T, proc.t_max, proc.t_min, **cond), t_min, **cond)


def loglog_slope(nfe, err):
    ln = torch.log(torch.tensor(nfe, dtype=F64))
    le = torch.log(torch.tensor(err, dtype=F64))
    A = torch.stack([ln, torch.ones_like(ln)], 1)
    return -float(torch.linalg.lstsq(A, le[:, None]).solution[0, 0])


def endpoint_errors(proc, grid, steps=(20, 40, 80), cond=None, kind="x0", seed=1, **opts):
    cond = cond or {}
    n = 32
    x_T = proc.prior_sample((n, 4), generator=torch.Generator().manual_seed(seed), dtype=F64, **cond)
    ref = exact_endpoint(proc, x_T, **cond)
    errs, nfes = [], []
    for s in steps:
        x, info = stochgen.sample(proc, G.model(proc, kind), x_T=x_T, times=grids.make_grid(proc, s, grid),
                                  sampler="unipc", prediction=kind, cond=cond, return_info=True, **opts)
        errs.append(float((x - ref).abs().max()))
        nfes.append(info["nfe"])
    return errs, nfes


def test_registered_as_ode_sampler_on_the_log_snr_grid():
    info = get("unipc")
    assert info.kind == "ode" and info.default_grid == "log_snr"


# --------------------------------------------------------------------------------------
# the weights: exact integrals of interpolating polynomials
# --------------------------------------------------------------------------------------
def _quad_integral(h, f, m=20001):
    """int_0^h e^{-(h-u)} f(u) du by composite Simpson in float64."""
    u = torch.linspace(0.0, h, m, dtype=F64)
    y = torch.exp(-(h - u)) * f(u)
    w = torch.ones(m, dtype=F64)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return float((w * y).sum() * (h / (m - 1)) / 3.0)


@pytest.mark.parametrize("h", [0.05, 0.7, 1.0, 2.5])
def test_taylor_targets_are_the_exponential_integrals(h):
    """k! I_k(h) / h^k with I_k = int_0^h e^{-(h-u)} u^k / k! du (series below h = 1, recursion above)."""
    got = _taylor_targets(h, 3)
    for k in (1, 2, 3):
        want = math.factorial(k) * _quad_integral(h, lambda u: u**k / math.factorial(k)) / h**k
        assert abs(got[k - 1] - want) < 1e-10 * max(1.0, abs(want)), (k, got, want)


@pytest.mark.parametrize("rs", [[-1.0, 1.0], [-0.7, -1.9], [-1.0, -2.0, 1.0], [-0.4, -1.3, 1.0]])
def test_solved_weights_integrate_polynomials_exactly(rs):
    """With K points the weighted differences give the exact integral of any polynomial of degree <= K
    (every variant: a 2x2 or 3x3 system is solved exactly, B(h) cancels)."""
    h = 0.8
    K = len(rs)
    coef = [0.3, -1.1, 0.6, 0.25][: K + 1]  # D(u) = sum_k c_k (u/h)^k

    def D(u):
        return sum(c * (u / h) ** k for k, c in enumerate(coef))

    exact = _quad_integral(h, D)
    for variant in ("bh1", "bh2", "exact"):
        w = unipc_weights(h, rs, variant)
        D_s = D(torch.tensor(0.0, dtype=F64))
        approx = -math.expm1(-h) * float(D_s) + sum(wm * float(D(torch.tensor(r * h, dtype=F64)) - D_s)
                                                    for wm, r in zip(w, rs))
        assert abs(approx - exact) < 1e-10, (variant, approx, exact)


def test_single_point_weights_of_the_variants():
    """bh1 / bh2 use the paper's w = B(h) / (2 r); 'exact' integrates the line: w = I_1 / (h r)."""
    h, r = 1.3, -0.8
    assert unipc_weights(h, [r], "bh1") == pytest.approx([0.5 * h / r], rel=1e-14)
    assert unipc_weights(h, [r], "bh2") == pytest.approx([0.5 * -math.expm1(-h) / r], rel=1e-14)
    assert unipc_weights(h, [r], "exact") == pytest.approx([(h - 1 + math.exp(-h)) / (h * r)], rel=1e-12)
    assert unipc_weights(h, [], "bh2") == []


# --------------------------------------------------------------------------------------
# order of convergence
# --------------------------------------------------------------------------------------
ORDER_CASES = [  # (process, grid, order, least slope): UniPC-p converges with order p + 1
    ("edm", "karras", 1, 1.6), ("edm", "karras", 2, 2.4), ("edm", "karras", 3, 3.2),
    ("vp", "karras", 1, 1.6), ("vp", "karras", 2, 2.4), ("vp", "karras", 3, 3.2),
    ("edm", "log_snr", 2, 2.4), ("edm", "log_snr", 3, 2.8),
    ("vp", "log_snr", 2, 2.4), ("vp", "log_snr", 3, 2.8),
]


@pytest.mark.parametrize("pid,grid,order,least", ORDER_CASES,
                         ids=[f"{p}-{g}-order{o}" for p, g, o, _ in ORDER_CASES])
def test_error_slope_is_order_plus_one(pid, grid, order, least):
    errs, nfes = endpoint_errors(PROCS[pid], grid, order=order)
    slope = loglog_slope(nfes, errs)
    assert slope >= least, (pid, grid, order, slope, errs)
    assert slope >= {1: 0.8, 2: 1.6, 3: 2.4}[order]  # at least the predictor's own order
    assert errs[-1] < 2e-2, errs
    assert nfes == [20, 40, 80]  # one evaluation per step: UniC reuses the next step's evaluation


@pytest.mark.parametrize("order", [1, 2])
def test_corrector_raises_the_order(order):
    """Without UniC the predictor alone has order p; with it, p + 1 and a smaller error at equal NFE."""
    proc = PROCS["edm"]
    e_pc, n_pc = endpoint_errors(proc, "karras", order=order)
    e_p, n_p = endpoint_errors(proc, "karras", order=order, corrector=False)
    assert n_pc == n_p
    s_pc, s_p = loglog_slope(n_pc, e_pc), loglog_slope(n_p, e_p)
    assert s_pc > s_p + 0.6, (s_pc, s_p)
    assert e_pc[-1] < 0.2 * e_p[-1], (e_pc, e_p)


def test_nfe_equals_steps_for_short_grids():
    proc = PROCS["edm"]
    x_T = proc.prior_sample((4, 4), generator=torch.Generator().manual_seed(3), dtype=F64)
    for steps in (1, 2, 3, 5):
        for order in (1, 2, 3):
            x, info = stochgen.sample(proc, G.model(proc, "eps"), x_T=x_T, sampler="unipc", steps=steps,
                                      prediction="eps", order=order, return_info=True)
            assert info["nfe"] == steps and bool(torch.isfinite(x).all())


def test_ve_last_step_to_the_sigma_floor_costs_no_extra_evaluation():
    """VE's data end keeps sigma = sigma_min: the last step is a UniP step without corrector, so NFE = steps."""
    proc = P.VE()
    x_T = proc.prior_sample((32, 4), generator=torch.Generator().manual_seed(11), dtype=F64)
    errs = []
    for steps in (10, 20, 40):
        times = grids.log_snr(proc, steps)
        ref = G.flow(proc, x_T, proc.t_max, float(times[-1]))  # exact flow to the floor
        x, info = stochgen.sample(proc, G.model(proc, "x0"), x_T=x_T, times=times, sampler="unipc", prediction="x0",
                                  return_info=True)
        assert info["nfe"] == steps
        errs.append(float((x - ref).abs().max()))
    assert errs[2] < errs[0] and errs[2] < 1e-3, errs


def test_lower_order_final_keeps_a_time_uniform_vp_grid_stable():
    """On a grid uniform in t the last log-SNR steps of VP are ~10x the earlier ones; order-3
    extrapolation across them is unstable unless the final steps lower the order."""
    proc = PROCS["vp"]
    x_T = proc.prior_sample((32, 4), generator=torch.Generator().manual_seed(12), dtype=F64)
    ref = exact_endpoint(proc, x_T)
    err = {}
    for lof in (True, False):
        x = stochgen.sample(proc, G.model(proc, "x0"), x_T=x_T, sampler="unipc", steps=20, grid="uniform",
                            prediction="x0", lower_order_final=lof)
        err[lof] = float((x - ref).abs().max())
    assert err[True] < 0.35 and err[True] < 0.4 * err[False], err


# --------------------------------------------------------------------------------------
# processes, prediction kinds, dtype, callback, batch shapes
# --------------------------------------------------------------------------------------
def test_mean_reverting_ouve_with_y_converges_to_the_exact_flow():
    """OU-VE with a per-sample conditioning signal y: the offset (1 - alpha) y goes through the protocol."""
    proc = PROCS["ouve"]
    cond = {"y": _y(32)}
    errs, nfes = endpoint_errors(proc, "log_snr", steps=(10, 20, 40), cond=cond, kind="score", seed=2)
    assert nfes == [10, 20, 40]
    assert errs[-1] < 1e-3 and loglog_slope(nfes, errs) >= 2.4, errs
    # the conditioning matters: a model and sampler told y = 0 land elsewhere
    x_T = proc.prior_sample((32, 4), generator=torch.Generator().manual_seed(2), dtype=F64, **cond)
    ref = exact_endpoint(proc, x_T, **cond)
    x0 = stochgen.sample(proc, G.model(proc, "score"), x_T=x_T, sampler="unipc", steps=40, prediction="score",
                         cond={"y": torch.zeros_like(cond["y"])})
    assert float((x0 - ref).abs().max()) > 100 * errs[-1]


@pytest.mark.parametrize("pid", ["edm", "vp"])
def test_prediction_kinds_give_the_same_samples(pid):
    proc = PROCS[pid]
    x_T = proc.prior_sample((8, 4), generator=torch.Generator().manual_seed(4), dtype=F64)
    for opts in ({}, {"order": 2, "variant": "bh1"}):
        outs = [stochgen.sample(proc, G.model(proc, kind), x_T=x_T, sampler="unipc", steps=8, prediction=kind, **opts)
                for kind in KINDS]
        for kind, out in zip(KINDS[1:], outs[1:]):
            assert float((out - outs[0]).abs().max()) < 1e-5, (kind, opts)


def test_float32_follows_float64():
    proc = PROCS["edm"]
    x_T = proc.prior_sample((8, 4), generator=torch.Generator().manual_seed(6), dtype=F64)
    x64 = stochgen.sample(proc, G.model(proc, "eps"), x_T=x_T, sampler="unipc", steps=10, prediction="eps")
    x32 = stochgen.sample(proc, G.model(proc, "eps"), x_T=x_T.float(), sampler="unipc", steps=10, prediction="eps")
    assert x32.dtype == torch.float32 and x64.dtype == F64
    assert float((x32.double() - x64).abs().max()) < 1e-3


def test_callback_sees_every_step_and_batch_shapes_are_free():
    """callback(i, t, x) after every step with the corrected state; a (n, 2, 5) state gives the (n, 10) result."""
    proc = PROCS["vp"]
    x_T = proc.prior_sample((3, 2, 5), generator=torch.Generator().manual_seed(8), dtype=F64)
    g10 = oracles.Gaussian(torch.linspace(-1, 1, 10, dtype=F64), 0.5 * torch.ones(10, dtype=F64))

    def model(x, t):  # the oracle works on (n, d): flatten the trailing dims
        return g10.model(proc, "eps")(x.reshape(len(x), -1), t).reshape(x.shape)

    times = grids.log_snr(proc, 8)
    seen = []
    x = stochgen.sample(proc, model, x_T=x_T, times=times, sampler="unipc", prediction="eps",
                        callback=lambda i, t, x: seen.append((i, float(t), x.clone())))
    assert x.shape == x_T.shape
    assert [s[0] for s in seen] == list(range(len(times) - 1))
    assert [s[1] for s in seen] == times[1:].tolist()
    assert torch.equal(seen[-1][2], x)
    flat = stochgen.sample(proc, g10.model(proc, "eps"), x_T=x_T.reshape(3, 10), times=times, sampler="unipc",
                           prediction="eps")
    assert float((flat - x.reshape(3, 10)).abs().max()) < 1e-12


def test_interpolant_from_alpha_zero():
    """A flow-matching path starts at alpha = 0 (lambda = -inf): a first-order step without corrector, then UniPC."""
    proc = P.Interpolant()
    x_T = proc.prior_sample((32, 4), generator=torch.Generator().manual_seed(9), dtype=F64)
    t_min = torch.tensor(proc.t_min, dtype=F64)
    ref = G.x0_mean(proc, G.flow(proc, x_T, 1.0, proc.t_min), t_min)
    errs = [float((stochgen.sample(proc, G.model(proc, "v"), x_T=x_T, sampler="unipc", steps=s, grid="uniform",
                                   prediction="v") - ref).abs().max()) for s in (20, 40)]
    assert all(math.isfinite(e) for e in errs)
    assert errs[1] < 0.3 * errs[0] and errs[1] < 0.05, errs


def test_disable_corrector_and_options_are_checked():
    proc = PROCS["edm"]
    x_T = proc.prior_sample((4, 4), generator=torch.Generator().manual_seed(10), dtype=F64)
    model = G.model(proc, "x0")
    kw = dict(x_T=x_T, sampler="unipc", steps=6, prediction="x0")
    full = stochgen.sample(proc, model, **kw)
    none = stochgen.sample(proc, model, corrector=False, **kw)
    all_off = stochgen.sample(proc, model, disable_corrector=range(6), **kw)
    assert torch.equal(none, all_off) and not torch.equal(full, none)
    with pytest.raises(ValueError, match="order"):
        stochgen.sample(proc, model, order=4, **kw)
    with pytest.raises(ValueError, match="variant"):
        stochgen.sample(proc, model, variant="bh3", **kw)
    with pytest.raises(TypeError, match="unknown option"):
        stochgen.sample(proc, model, solver_type="bh2", **kw)
