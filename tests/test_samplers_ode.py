"""ODE samplers (euler, heun, ddim, dpm++1/2m/3m, dpm++2m-sde, ode) against closed forms.

Gaussian data have an exact denoiser and an exact probability-flow map
(``oracles.Gaussian.flow``), so a sampler's endpoint from a given x_T can be compared
with the exact answer: integrate the flow exactly from t_max to the grid's t_min and
take the exact denoising step to the data end (the samplers' last interval).
"""
import math

import pytest
import torch

import stochgen
from stochgen import oracles
from stochgen import processes as P
from stochgen.parameterization import KINDS, Prediction
from stochgen.samplers import get, grids, names
from stochgen.samplers.ode import select_shifted_time

F64 = torch.float64
MEAN = torch.tensor([0.5, -1.0, 0.2, 1.5], dtype=F64)
STD = torch.tensor([0.3, 0.8, 1.2, 0.5], dtype=F64)
G = oracles.Gaussian(MEAN, STD)
DATA_VAR = float((STD**2).mean())  # per-coordinate variance averaged over coordinates
MY_SAMPLERS = ["euler", "heun", "ddim", "dpm++1", "dpm++2m", "dpm++3m", "dpm++2m-sde", "ode", "ipndm"]



def _y(n, d=4):
    g = torch.Generator().manual_seed(7)
    return torch.randn(n, d, generator=g, dtype=F64)


def exact_endpoint(proc, x_T, **cond):
    """Exact flow t_max -> t_min, then the exact denoising step x = E[x0 | x_{t_min}]."""
    t_min = torch.tensor(proc.t_min, dtype=F64)
    return G.x0_mean(proc, G.flow(proc, x_T, proc.t_max, proc.t_min, **cond), t_min, **cond)


def exact_marginal_sample(proc, n, seed, data=G, **cond):
    """x_T drawn from the exact marginal at t_max (not the approximate prior)."""
    g = torch.Generator().manual_seed(seed)
    x0 = data.sample(n, generator=g)
    return proc.marginal(x0, proc.t_max, generator=g, **cond).x_t


def loglog_slope(nfe, err):
    ln = torch.log(torch.tensor(nfe, dtype=F64))
    le = torch.log(torch.tensor(err, dtype=F64))
    A = torch.stack([ln, torch.ones_like(ln)], 1)
    return -float(torch.linalg.lstsq(A, le[:, None]).solution[0, 0])


# --------------------------------------------------------------------------------------
# order of convergence
# --------------------------------------------------------------------------------------
ORDER_CASES = [
    # (process id, sampler, least slope)
    ("edm", "euler", 0.8), ("edm", "ddim", 0.8), ("edm", "heun", 1.6), ("edm", "dpm++2m", 1.6), ("edm", "dpm++3m", 2.4),
    ("vp", "euler", 0.8), ("vp", "ddim", 0.8), ("vp", "heun", 1.6), ("vp", "dpm++2m", 1.6), ("vp", "dpm++3m", 2.4),
    ("ouve", "heun", 1.6), ("ouve", "dpm++2m", 1.6),
]
PROCS = {"edm": P.EDM(), "vp": P.VP(), "ouve": P.OUVE()}


@pytest.mark.parametrize("pid,sampler,least", ORDER_CASES, ids=[f"{p}-{s}" for p, s, _ in ORDER_CASES])
def test_error_slope_matches_order(pid, sampler, least):
    proc = PROCS[pid]
    n = 32
    cond = {"y": _y(n)} if pid == "ouve" else {}
    x_T = proc.prior_sample((n, 4), generator=torch.Generator().manual_seed(1), dtype=F64, **cond)
    ref = exact_endpoint(proc, x_T, **cond)
    errs, nfes = [], []
    for steps in (20, 40, 80):
        times = grids.karras(proc, steps)
        x, info = stochgen.sample(proc, G.model(proc, "x0"), x_T=x_T, times=times, sampler=sampler,
                                  prediction="x0", cond=cond, return_info=True)
        errs.append(float((x - ref).abs().max()))
        nfes.append(info["nfe"])
    slope = loglog_slope(nfes, errs)
    assert slope >= least, (pid, sampler, slope, errs, nfes)
    assert errs[-1] < 0.15, errs  # and the finest grid is actually close
    if sampler == "heun":
        assert nfes == [2 * s - 1 for s in (20, 40, 80)]  # the last step (to sigma = 0) is Euler
    else:
        assert nfes == [20, 40, 80]


def test_dpmpp3m_lower_order_final_keeps_uniform_grids_convergent():
    """VP on a grid uniform in t: the interval into t_min spans a huge log-SNR step. Measured max error at
    10/15/20/30 steps: 1.36, 0.67, 0.34, 0.18 with lower_order_final (default), 1.57, 1.84, 1.42, 0.73 without."""
    proc = PROCS["vp"]
    x_T = proc.prior_sample((64, 4), generator=torch.Generator().manual_seed(1), dtype=F64)
    ref = exact_endpoint(proc, x_T)

    def err(n, lof):
        x = stochgen.sample(proc, G.model(proc, "eps"), x_T=x_T, grid="uniform", steps=n, sampler="dpm++3m",
                            lower_order_final=lof)
        return float((x - ref).abs().max())

    errs = [err(n, True) for n in (10, 15, 20, 30)]
    assert all(b < 0.7 * a for a, b in zip(errs, errs[1:])), errs
    assert err(15, False) > 2 * errs[1]  # what the cap prevents


@pytest.mark.parametrize("sampler,least", [("dpm++3m", 3.1), ("unipc", 3.3)])
def test_lower_order_final_keeps_the_order_of_grids_that_stop_short_of_the_data(sampler, least):
    """No denoising step follows a grid ending at sigma = 0.1: capping its final step at first order
    would make the method second order; the cap applies there only below 15 steps. Measured slopes over
    16/32/64 steps: 3.46 (dpm++3m) and 3.57 (unipc), against 2.76 and 1.94 with the final step capped."""
    proc = PROCS["edm"]
    x_T = proc.prior_sample((32, 4), generator=torch.Generator().manual_seed(1), dtype=F64) / 4.0
    ref = G.flow(proc, x_T, 20.0, 0.1)
    errs = []
    for n in (16, 32, 64):
        times = torch.exp(torch.linspace(math.log(20.0), math.log(0.1), n + 1, dtype=F64))
        x = stochgen.sample(proc, G.model(proc, "x0"), x_T=x_T, times=times, sampler=sampler, prediction="x0")
        errs.append(float((x - ref).abs().max()))
    assert loglog_slope([16, 32, 64], errs) >= least, errs


def test_mean_reverting_dpmpp2m_reaches_exact_flow_endpoint():
    """OU-VE with a per-sample conditioning signal y: the offset (1 - alpha) y goes through the protocol."""
    proc = P.OUVE()
    n = 64
    y = _y(n)
    x_T = proc.prior_sample((n, 4), generator=torch.Generator().manual_seed(2), dtype=F64, y=y)
    ref = exact_endpoint(proc, x_T, y=y)
    x = stochgen.sample(proc, G.model(proc, "score"), x_T=x_T, sampler="dpm++2m", steps=40, prediction="score",
                        cond={"y": y})
    err = float((x - ref).abs().max())
    assert err < 5e-3, err
    # the conditioning matters: ignoring y (y = 0 in the model and the sampler) lands elsewhere
    x0 = stochgen.sample(proc, G.model(proc, "score"), x_T=x_T, sampler="dpm++2m", steps=40, prediction="score",
                         cond={"y": torch.zeros_like(y)})
    assert float((x0 - ref).abs().max()) > 50 * err


def test_exact_flow_endpoint_is_the_data_end_flow_up_to_sigma_min():
    """The reference (flow to t_min + exact denoising) differs from the flow to t_lo by O(sigma_min^2/std^2)."""
    proc = P.EDM()
    x_T = proc.prior_sample((32, 4), generator=torch.Generator().manual_seed(3), dtype=F64)
    a = exact_endpoint(proc, x_T)
    b = G.flow(proc, x_T, proc.t_max, proc.t_lo)
    z = (b - MEAN) / STD
    bound = (proc.sigma_min / STD) ** 2 * STD * z.abs()
    assert bool(((a - b).abs() <= bound + 1e-14).all())


# --------------------------------------------------------------------------------------
# prediction kinds, dtype, callback, NFE
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("pid", ["edm", "vp"])
def test_prediction_kinds_give_the_same_samples(pid):
    proc = PROCS[pid]
    x_T = proc.prior_sample((8, 4), generator=torch.Generator().manual_seed(4), dtype=F64)
    opts = {"ddim": {"eta": 0.5}, "ode": {"method": "midpoint"}, "heun": {"S_churn": 5.0}}
    for sampler in MY_SAMPLERS:
        outs = [stochgen.sample(proc, G.model(proc, kind), x_T=x_T, sampler=sampler, steps=8, prediction=kind,
                                generator=torch.Generator().manual_seed(5), **opts.get(sampler, {}))
                for kind in KINDS]
        for kind, out in zip(KINDS[1:], outs[1:]):
            assert float((out - outs[0]).abs().max()) < 1e-5, (sampler, kind)


def test_float32_follows_float64():
    proc = P.EDM()
    x_T = proc.prior_sample((8, 4), generator=torch.Generator().manual_seed(6), dtype=F64)
    for sampler in ["euler", "heun", "ddim", "dpm++2m", "dpm++3m", "ode", "ipndm"]:
        opts = {"rtol": 1e-4, "atol": 1e-4} if sampler == "ode" else {}
        x64 = stochgen.sample(proc, G.model(proc, "eps"), x_T=x_T, sampler=sampler, steps=10, prediction="eps",
                              **opts)
        x32 = stochgen.sample(proc, G.model(proc, "eps"), x_T=x_T.float(), sampler=sampler, steps=10,
                              prediction="eps", **opts)
        assert x32.dtype == torch.float32 and x64.dtype == F64
        assert float((x32.double() - x64).abs().max()) < 1e-3, sampler


def test_callback_sees_every_step_and_batch_shapes_are_free():
    """callback(i, t, x) after every step; a (n, 2, 5) state gives exactly the (n, 10) result reshaped."""
    proc = P.VP()
    x_T = proc.prior_sample((3, 2, 5), generator=torch.Generator().manual_seed(8), dtype=F64)
    g10 = oracles.Gaussian(torch.linspace(-1, 1, 10, dtype=F64), 0.5 * torch.ones(10, dtype=F64))

    def model(x, t):  # the oracle works on (n, d): flatten the trailing dims
        return g10.model(proc, "eps")(x.reshape(len(x), -1), t).reshape(x.shape)

    times = grids.log_snr(proc, 8)
    for sampler in MY_SAMPLERS:
        seen = []
        x = stochgen.sample(proc, model, x_T=x_T, times=times, sampler=sampler, prediction="eps",
                            generator=torch.Generator().manual_seed(0),
                            callback=lambda i, t, x: seen.append((i, float(t), x.clone())))
        assert x.shape == x_T.shape
        assert [s[0] for s in seen] == list(range(len(times) - 1)), sampler
        assert [s[1] for s in seen] == times[1:].tolist(), sampler
        assert torch.equal(seen[-1][2], x)
        flat = stochgen.sample(proc, g10.model(proc, "eps"), x_T=x_T.reshape(3, 10), times=times, sampler=sampler,
                               prediction="eps", generator=torch.Generator().manual_seed(0))
        assert float((flat - x.reshape(3, 10)).abs().max()) < 1e-12, sampler


def test_interpolant_from_alpha_zero():
    """A flow-matching path starts at alpha(t_max) = 0 (lambda = -inf): every sampler stays finite and converges."""
    proc = P.Interpolant()
    x_T = proc.prior_sample((32, 4), generator=torch.Generator().manual_seed(9), dtype=F64)
    t_min = torch.tensor(proc.t_min, dtype=F64)
    ref = G.x0_mean(proc, G.flow(proc, x_T, 1.0, proc.t_min), t_min)
    for sampler in ["euler", "heun", "ddim", "dpm++2m", "dpm++3m", "ipndm"]:
        errs = [float((stochgen.sample(proc, G.model(proc, "v"), x_T=x_T, sampler=sampler, steps=s, grid="uniform",
                                       prediction="v") - ref).abs().max()) for s in (20, 40)]
        assert errs[1] < 0.6 * errs[0] and errs[1] < 0.3, (sampler, errs)


# --------------------------------------------------------------------------------------
# the torchdiffeq probability-flow ODE
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("pid", ["edm", "vp"])
def test_ode_dopri5_matches_exact_flow(pid):
    proc = PROCS[pid]
    x_T = proc.prior_sample((32, 4), generator=torch.Generator().manual_seed(10), dtype=F64)
    ref = exact_endpoint(proc, x_T)
    x, info = stochgen.sample(proc, G.model(proc, "score"), x_T=x_T, sampler="ode", steps=10, prediction="score",
                              rtol=1e-8, atol=1e-8, return_info=True)
    assert float((x - ref).abs().max()) < 1e-5
    assert info["nfe"] > 20  # adaptive: far more evaluations than grid points


def test_ode_fixed_step_methods_have_their_order():
    proc = P.EDM()
    x_T = proc.prior_sample((32, 4), generator=torch.Generator().manual_seed(11), dtype=F64)
    ref = exact_endpoint(proc, x_T)
    for method, least, per_step in [("euler", 0.8, 1), ("rk4", 3.5, 4)]:
        errs, nfes = [], []
        for steps in (15, 30, 60):
            x, info = stochgen.sample(proc, G.model(proc, "x0"), x_T=x_T, sampler="ode", steps=steps,
                                      prediction="x0", method=method, return_info=True)
            errs.append(float((x - ref).abs().max()))
            nfes.append(info["nfe"])
        assert nfes == [per_step * (s - 1) + 1 for s in (15, 30, 60)]  # grid steps + the denoising step
        assert loglog_slope(nfes, errs) >= least, (method, errs)


# --------------------------------------------------------------------------------------
# stochastic variants: distribution of the samples
# --------------------------------------------------------------------------------------
def assert_gaussian_moments(x, mean, std, bias):
    n = x.shape[0]
    se = std / math.sqrt(n)
    emp_mean, emp_std = x.mean(0), x.std(0)
    assert bool(((emp_mean - mean).abs() < 4.5 * se + bias * std).all()), ((emp_mean - mean) / se)
    # a sample std has relative standard error 1/sqrt(2n)
    assert bool(((emp_std / std - 1).abs() < 4.5 / math.sqrt(2 * n) + bias).all()), (emp_std / std - 1)
    # the target covariance is diagonal: sample correlations have standard error 1/sqrt(n)
    corr = torch.corrcoef(x.T) - torch.eye(x.shape[1], dtype=x.dtype)
    assert float(corr.abs().max()) < 4.5 / math.sqrt(n), corr


STOCHASTIC = [
    # (process, sampler, steps, options, allowed bias as a fraction of the std)
    ("edm", "ddim", 200, {"eta": 1.0}, 0.03),  # first order in distribution: std -11% at 50 steps, ~-3% at 200
    ("vp", "ddim", 200, {"eta": 1.0}, 0.03),
    ("edm", "dpm++2m-sde", 50, {}, 0.02),
    ("vp", "dpm++2m-sde", 50, {}, 0.02),
    ("edm", "heun", 60, {"S_churn": 30.0}, 0.03),
]


@pytest.mark.parametrize("pid,sampler,steps,opts,bias", STOCHASTIC,
                         ids=[f"{p}-{s}-{'-'.join(map(str, o.items()))}" for p, s, _, o, _ in STOCHASTIC])
def test_stochastic_samplers_reproduce_the_gaussian(pid, sampler, steps, opts, bias):
    proc = PROCS[pid]
    n = 2000
    x_T = exact_marginal_sample(proc, n, seed=12)
    x = stochgen.sample(proc, G.model(proc, "x0"), x_T=x_T, sampler=sampler, steps=steps, prediction="x0",
                        generator=torch.Generator().manual_seed(13), **opts)
    assert_gaussian_moments(x, MEAN, STD, bias)
    # the noise matters: without it (eta = 0 / no churn) the same x_T gives another, deterministic sample
    det = {"ddim": {"eta": 0.0}, "dpm++2m-sde": {"eta": 0.0}, "heun": {}}[sampler]
    x_det = stochgen.sample(proc, G.model(proc, "x0"), x_T=x_T[:100], sampler=sampler, steps=steps, prediction="x0",
                            **det)
    assert float((x[:100] - x_det).abs().mean()) > 0.1


@pytest.mark.parametrize("sampler,opts,std_tol", [("ddim", {"eta": 1.0}, 0.12), ("dpm++2m-sde", {}, 0.03)],
                         ids=["ddim-eta1", "dpm++2m-sde"])
def test_stochastic_samplers_keep_mixture_weights(sampler, opts, std_tol):
    mix = oracles.GaussianMixture(torch.tensor([0.3, 0.7]), torch.tensor([[-2.0, 1.0], [2.0, -1.0]]),
                                  torch.tensor([0.4, 0.6]))
    proc = P.EDM()
    n = 2000
    x_T = exact_marginal_sample(proc, n, seed=14, data=mix)
    x = stochgen.sample(proc, mix.model(proc, "eps"), x_T=x_T, sampler=sampler, steps=60, prediction="eps",
                        generator=torch.Generator().manual_seed(15), **opts)
    label = ((x - mix.means[1]).norm(dim=1) < (x - mix.means[0]).norm(dim=1)).double()
    w1 = float(label.mean())
    assert abs(w1 - 0.7) < 4.5 * math.sqrt(0.21 / n) + 0.01, w1
    # each mode keeps its own spread (coarse ddim loses ~10% of it: first order in distribution)
    for k in (0, 1):
        xs = x[label == k]
        tol = 4.5 / math.sqrt(2 * len(xs)) + std_tol
        assert bool(((xs.std(0) / mix.stds[k] - 1).abs() < tol).all()), (k, xs.std(0))


# --------------------------------------------------------------------------------------
# time shift (Li et al. 2024)
# --------------------------------------------------------------------------------------
def test_select_shifted_time_finds_the_matching_noise_level():
    """Given x drawn exactly at time t* near the nominal t, the selected time is t* up to the candidate spacing."""
    proc = P.EDM()
    times = grids.karras(proc, 20)
    i = 8
    t_prev, t, t_next = times[i - 1], times[i], times[i + 1]
    lam = proc.lambda_(times[i - 1:i + 2])
    g = torch.Generator().manual_seed(16)
    x0 = G.sample(40000, generator=g)
    spacing = 0.25 * float(max(lam[1] - lam[0], lam[2] - lam[1])) / 10  # window / (candidates // 2)
    for frac in (-0.2, 0.0, 0.15):  # fraction of the interval towards the data end
        lam_star = lam[1] + frac * (lam[2] - lam[1] if frac > 0 else lam[1] - lam[0])
        t_star = proc.t_of_lambda(lam_star)
        x = proc.marginal(x0, t_star, generator=g).x_t
        t_sel = select_shifted_time(proc, x, t, t_prev, t_next, stat="batch", data_var=DATA_VAR)
        assert t_sel.dim() == 0
        assert abs(float(proc.lambda_(t_sel) - lam_star)) < 1.5 * spacing, (frac, float(t_sel), float(t_star))
    # too much variance for t: a noisier time is chosen; too little: a cleaner one
    x = proc.marginal(x0, t, generator=g).x_t
    assert float(select_shifted_time(proc, 1.1 * (x - MEAN) + MEAN, t, t_prev, t_next, stat="batch", data_var=DATA_VAR)) > float(t)
    assert float(select_shifted_time(proc, 0.9 * (x - MEAN) + MEAN, t, t_prev, t_next, stat="batch", data_var=DATA_VAR)) < float(t)


def test_select_shifted_time_per_sample():
    """The paper's estimator: one time per sample from the variance over the sample's own entries."""
    proc = P.VP()
    d = 16384  # per-sample variance over d entries: relative standard error sqrt(2/d) = 1.1%
    gd = oracles.Gaussian(torch.zeros(d, dtype=F64), 0.5 * torch.ones(d, dtype=F64))
    times = grids.log_snr(proc, 10)
    t_prev, t, t_next = times[4], times[5], times[6]
    g = torch.Generator().manual_seed(17)
    x0 = gd.sample(8, generator=g)
    scale = torch.tensor([1.0] * 4 + [1.15] * 4, dtype=F64)[:, None]
    x = proc.marginal(x0, t, generator=g).x_t * scale
    t_sel = select_shifted_time(proc, x, t, t_prev, t_next, stat="sample", data_var=0.25)
    assert t_sel.shape == (8,)
    lam_sel, lam = proc.lambda_(t_sel), proc.lambda_(t)
    # d v / d lambda = -2 alpha^2 sigma^2 (1 - data_var) ~ -0.34 here: 1.1% of v ~ 0.017 in lambda, plus
    # the candidate spacing 0.25 h / 10 ~ 0.027
    assert bool(((lam_sel[:4] - lam).abs() < 0.09).all()), lam_sel - lam
    assert bool((lam_sel[4:] < lam - 0.15).all()), lam_sel - lam  # inflated samples move to noisier times


@pytest.mark.parametrize("sampler", ["ddim", "dpm++1", "dpm++2m", "dpm++3m", "dpm++2m-sde"])
def test_time_shift_keeps_an_exact_model_exact(sampler):
    proc = P.EDM()
    n = 2000
    x_T = exact_marginal_sample(proc, n, seed=18)
    kw = dict(x_T=x_T, sampler=sampler, steps=50, prediction="x0")
    x = stochgen.sample(proc, G.model(proc, "x0"), generator=torch.Generator().manual_seed(19), time_shift=True,
                        ts_stat="batch", ts_data_var=DATA_VAR, **kw)
    assert_gaussian_moments(x, MEAN, STD, 0.03)
    base = stochgen.sample(proc, G.model(proc, "x0"), generator=torch.Generator().manual_seed(19), **kw)
    assert float((x - base).abs().mean()) < 0.1 * float(STD.mean())


def test_time_shift_per_sample_statistic_through_sample():
    proc = P.EDM()
    d = 256
    gd = oracles.Gaussian(torch.zeros(d, dtype=F64), 0.5 * torch.ones(d, dtype=F64))
    x_T = exact_marginal_sample(proc, 64, seed=20, data=gd)
    times = []
    x = stochgen.sample(proc, gd.model(proc, "eps"), x_T=x_T, sampler="dpm++2m", steps=30, prediction="eps",
                        time_shift=True, ts_data_var=0.25, callback=lambda i, t, x: times.append(t))
    assert x.shape == x_T.shape
    # the mean of 16384 entries of std 0.5 has standard error 0.0039: allow 5 of them
    assert abs(float(x.std()) / 0.5 - 1) < 0.03 and abs(float(x.mean())) < 5 * 0.5 / math.sqrt(x.numel())


def test_time_shift_reduces_a_variance_deficit():
    """Coarse DDIM loses variance (x_t is too clean for its t); the shift moves such samples to cleaner
    times, which takes the lost variance back (the exposure-bias correction of the paper)."""
    proc = P.EDM()
    n = 2000
    x_T = exact_marginal_sample(proc, n, seed=21)
    kw = dict(x_T=x_T, sampler="ddim", steps=20, prediction="x0")
    plain = stochgen.sample(proc, G.model(proc, "x0"), **kw)
    shifted = stochgen.sample(proc, G.model(proc, "x0"), time_shift=True, ts_stat="batch", ts_data_var=DATA_VAR, **kw)
    deficit_plain = float((1 - plain.std(0) / STD).mean())
    deficit_shift = float((1 - shifted.std(0) / STD).mean())
    assert deficit_plain > 0.08  # what the first-order sampler does at 20 steps
    assert deficit_shift < deficit_plain - 0.015, (deficit_plain, deficit_shift)


def test_time_shift_tolerance_leaves_exact_states_alone():
    """With ts_tol standard errors of slack an exact model's states are never re-labelled on VP,
    where the variance hardly depends on t at high noise. The guard is tested at each of ~12
    shiftable steps, so its slack must cover the largest of ~12 standard normals: tol = 3 let
    1 start in 20 through (seeds 22-41), tol = 2 four; tol = 4 none."""
    proc = P.VP()
    x_T = exact_marginal_sample(proc, 2000, seed=22)
    kw = dict(x_T=x_T, sampler="dpm++2m", steps=25, prediction="x0")
    base = stochgen.sample(proc, G.model(proc, "x0"), **kw)
    guarded = stochgen.sample(proc, G.model(proc, "x0"), time_shift=True, ts_stat="batch", ts_data_var=DATA_VAR,
                              ts_tol=4.0, **kw)
    assert float((guarded - base).abs().max()) < 1e-12


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------
def test_registered_names_and_unknown_sampler():
    for name in MY_SAMPLERS:
        assert name in names()
        assert get(name).kind == ("sde" if name == "dpm++2m-sde" else "ode")
    with pytest.raises(ValueError) as err:
        stochgen.sample(P.EDM(), G.model(P.EDM(), "x0"), shape=(2, 4), sampler="dpm++9m", prediction="x0")
    assert all(n in str(err.value) for n in MY_SAMPLERS), str(err.value)


def test_bad_times_and_options_are_errors():
    proc = P.EDM()
    model = G.model(proc, "x0")
    x_T = torch.zeros(2, 4, dtype=F64)
    with pytest.raises(ValueError, match="decreasing"):
        stochgen.sample(proc, model, x_T=x_T, times=torch.tensor([0.0, 1.0, 80.0]), sampler="heun", prediction="x0")
    pred = Prediction(model, "x0", proc)
    for name in MY_SAMPLERS:
        with pytest.raises(ValueError, match="decreasing"):
            get(name).fn(proc, pred, x_T, torch.tensor([80.0, 1.0, 1.0, 0.0]))
        with pytest.raises(TypeError, match="bogus"):
            get(name).fn(proc, pred, x_T, grids.karras(proc, 3), bogus=1)
    with pytest.raises(ValueError, match="eta"):
        stochgen.sample(proc, model, x_T=x_T, sampler="ddim", steps=3, prediction="x0", eta=1.5)
    with pytest.raises(ValueError, match="ts_window"):
        stochgen.sample(proc, model, x_T=x_T, sampler="dpm++2m", steps=5, prediction="x0", time_shift=True,
                        ts_window=0.5, ts_stat="batch")
    with pytest.raises(ValueError, match="solver_type"):
        stochgen.sample(proc, model, x_T=x_T, sampler="dpm++2m-sde", steps=3, prediction="x0", solver_type="rk")


# --- interpolants: alpha(1) = 0 at the prior end ------------------------------------------------------
# max |x - exact flow map| at 20 steps from t = 1, 200 starts (measured, x0 prediction, linear / trig path):
# ddim 0.49 / 0.45, dpm++1 0.41 / 0.39, dpm++2m 0.065 / 0.059, dpm++3m 0.035 / 0.027, euler 0.49 / 0.45,
# heun 0.25 / 0.21, ipndm 0.090 / 0.076, unipc 0.016 / 0.011, ode 1.0e-4 / 3.7e-5, mr-exact 0.41 / 0.39.
# eps / score predictions (no x0 at alpha = 0; the grid starts 1e-3 of the first interval inside)
# used to give NaN (ode: a NaN time; trig: lambda(1) = -37 and a karras grid repeating t = 1).
IL_BOUNDS = {"ddim": 0.6, "dpm++1": 0.5, "dpm++2m": 0.08, "dpm++3m": 0.045, "euler": 0.6, "heun": 0.3,
             "ipndm": 0.11, "unipc": 0.02, "ode": 3e-4, "mr-exact": 0.5}
IL_KINDS = ("x0", "eps", "score", "v", "velocity")


@pytest.mark.parametrize("path", ["linear", "trig"])
@pytest.mark.parametrize("sampler", list(IL_BOUNDS))
def test_interpolant_every_prediction_kind_from_t1(path, sampler):
    proc = P.Interpolant(path)
    target = oracles.Gaussian(torch.tensor([1.0, -0.5], dtype=F64), torch.tensor([0.5, 0.8], dtype=F64))
    x_T = torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    want = target.flow(proc, x_T, torch.tensor(1.0, dtype=F64), torch.tensor(0.0, dtype=F64))
    opts = {"stochastic": False} if sampler == "mr-exact" else {}
    ref = None
    for kind in IL_KINDS:
        x = stochgen.sample(proc, target.model(proc, kind), x_T=x_T, sampler=sampler, steps=20, prediction=kind,
                            **opts)
        assert torch.isfinite(x).all(), kind
        err = float((x - want).abs().max())
        assert err < IL_BOUNDS[sampler], (kind, err)
        if ref is None:
            ref = x
        else:  # the kinds agree up to the inside start of eps / score (~1e-3 of the first step)
            assert float((x - ref).abs().max()) < 0.02 * max(err, 1e-3) + 1e-6, kind
