"""CTMC reverse samplers (tau-leaping, Euler, analytic) against exact categorical data laws.

Data: ``S = 5`` states. The independent case has sequences of ``L = 3``
positions, each with its own categorical law ``PI[l]`` (different per
position, so a mix-up of positions shows). The correlated case is a joint law
``JOINT`` over pairs (``L = 2``). The denoiser is exact: ``p(x0 | x_t)`` by
Bayes from the process's transition matrix ``P(0, t)`` (for the pair, each
position's posterior is computed from the joint given both noisy positions).

Error measure: total variation between empirical and true per-position
marginals, maximised over positions (independent case), or between the
empirical and true joint law (pair). With ``N = 20000`` samples exact draws
give TV about 0.007 +- 0.002 (simulated: mean 0.0067, sd 0.0018, largest of
200 draws 0.0148), so ``TV_MC = 0.02`` is the bound for an exact sampler. The
pair uses ``N_PAIR = 10000`` samples of 25 cells: exact draws give about
0.011 +- 0.003, bound ``TV_MC_PAIR = 0.03``. A step-size test asserts both a
bound on the fine grid and a clear gap to the coarse grid (both far beyond the
Monte-Carlo noise). Seeds are fixed.

Measured with these seeds (for the record; the asserts have margins):
independent positions: analytic 5 steps 0.005 (uniform), 0.006 (absorbing),
0.005 (generic chain); uniform chain tau-leaping 5 steps 0.175, and with
10000 samples 10 / 60 steps 0.084 / 0.017, Euler 3 / 30 steps 0.087 / 0.009.
Correlated pair, 5 -> 60 steps: uniform tau-leaping 0.19 -> 0.023, absorbing
analytic 0.15 -> 0.021.
"""
from __future__ import annotations

import pytest
import torch

import stochgen
from stochgen import samplers
from stochgen.parameterization import Prediction
from stochgen.processes import CTMC, VP, AbsorbingCTMC, UniformCTMC
from stochgen.samplers import grids

F64 = torch.float64
S, L = 5, 3
N = 20_000
N_PAIR = 10_000
TV_MC = 0.02
TV_MC_PAIR = 0.03

PI = torch.tensor(
    [
        [0.50, 0.20, 0.15, 0.10, 0.05],
        [0.05, 0.10, 0.15, 0.20, 0.50],
        [0.10, 0.60, 0.10, 0.10, 0.10],
    ],
    dtype=F64,
)


def _joint() -> torch.Tensor:
    J = torch.zeros(S, S, dtype=F64)
    for i in range(S):
        J[i, i] = 3.0
        J[i, (i + 1) % S] = 1.0
    J[0, 0] = 6.0
    return J / J.sum()


JOINT = _joint()



def generic_chain() -> CTMC:
    g = torch.Generator().manual_seed(3)
    Q = torch.rand(S, S, generator=g, dtype=F64) + 0.5
    Q.fill_diagonal_(0.0)
    return CTMC(Q - torch.diag(Q.sum(1)))


def make_process(kind: str):
    if kind == "uniform":
        return UniformCTMC(S)
    if kind == "absorbing":
        return AbsorbingCTMC(S)
    return generic_chain()


def padded(proc, p: torch.Tensor) -> torch.Tensor:
    """Data laws over the K categories (zero on the mask of an absorbing chain)."""
    out = torch.zeros(p.shape[:-1] + (proc.num_categories,), dtype=F64)
    out[..., :S] = p
    return out


def lik(proc, x, t):
    """q(x_t = x | x0) over x0: ``x.shape + (K,)``."""
    P = proc.transition(0.0, t[0].double(), dtype=F64)
    return P.T[x]


def independent_denoiser(proc, pi=PI, data_only=False):
    """Exact p(x0 | x_t) for independent positions with laws ``pi`` (shape ``event_shape + (S,)``)."""
    pik = padded(proc, pi)

    def model(x, t):
        assert t.shape == (x.shape[0],) and bool((t == t[0]).all())
        post = pik * lik(proc, x, t)
        post = post / post.sum(-1, keepdim=True)
        return post[..., :S] if data_only else post

    return model


def pair_denoiser(proc):
    """Exact per-position p(x0^l | x_t^1, x_t^2) for the joint law JOINT."""
    Jk = torch.zeros(proc.num_categories, proc.num_categories, dtype=F64)
    Jk[:S, :S] = JOINT

    def model(x, t):
        l1, l2 = lik(proc, x[:, 0], t), lik(proc, x[:, 1], t)
        w = Jk * l1[:, :, None] * l2[:, None, :]
        # a coarse sampler can reach pairs the data never produce; use the product of marginals there
        bad = w.sum((1, 2)) <= 0
        if bool(bad.any()):
            prod = (Jk.sum(1) * l1)[:, :, None] * (Jk.sum(0) * l2)[:, None, :]
            w = torch.where(bad[:, None, None], prod, w)
        p1, p2 = w.sum(2), w.sum(1)
        return torch.stack([p1 / p1.sum(-1, keepdim=True), p2 / p2.sum(-1, keepdim=True)], dim=1)

    return model


def tv_positions(x: torch.Tensor, pi: torch.Tensor = PI) -> float:
    """Largest per-position TV between empirical marginals of ``x`` (n, *event) and ``pi`` (*event, S)."""
    flat, p = x.reshape(x.shape[0], -1), pi.reshape(-1, S)
    assert int(flat.max()) < S, "samples contain non-data states"
    f = torch.stack([torch.bincount(flat[:, i], minlength=S).double() / flat.shape[0] for i in range(flat.shape[1])])
    return float(0.5 * (f - p).abs().sum(-1).max())


def tv_pair(x: torch.Tensor) -> float:
    assert int(x.max()) < S, "samples contain non-data states"
    f = torch.bincount(x[:, 0] * S + x[:, 1], minlength=S * S).double() / x.shape[0]
    return float(0.5 * (f - JOINT.reshape(-1)).abs().sum())


def draw(proc, model, sampler, steps, n=N, event=(L,), seed=0, **opts):
    g = torch.Generator().manual_seed(seed)
    x, info = stochgen.sample(proc, model, shape=(n,) + tuple(event), sampler=sampler, steps=steps,
                              prediction="probs", generator=g, return_info=True, **opts)
    assert info["nfe"] == steps
    return x


# ---------------------------------------------------------------------------
# exactness with an exact denoiser, independent positions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["uniform", "absorbing", "generic"])
def test_analytic_step_is_exact_with_few_steps(kind):
    proc = make_process(kind)
    x = draw(proc, independent_denoiser(proc), "ctmc-euler", 5, analytic=True)
    assert tv_positions(x) <= TV_MC


def test_tau_leaping_is_far_off_where_analytic_is_exact():
    """The same 5-step grid: the analytic bound above is no Monte-Carlo accident."""
    proc = UniformCTMC(S)
    assert tv_positions(draw(proc, independent_denoiser(proc), "tau-leaping", 5)) > 0.1


@pytest.mark.parametrize("sampler,opts", [("tau-leaping", {}), ("ctmc-euler", {}), ("ctmc-euler", {"analytic": True})])
def test_one_step_from_the_mask_prior_is_exact(sampler, opts):
    """steps=1: one denoising step from the all-mask prior draws x0 ~ p(x0 | all masked) = PI."""
    proc = AbsorbingCTMC(S)
    assert tv_positions(draw(proc, independent_denoiser(proc), sampler, 1, **opts)) <= TV_MC


def test_final_argmax_takes_the_mode():
    proc = AbsorbingCTMC(S)
    x = draw(proc, independent_denoiser(proc), "tau-leaping", 1, n=50, final="argmax")
    assert torch.equal(x, PI.argmax(-1).expand(50, L))


@pytest.mark.parametrize("sampler", ["tau-leaping", "ctmc-euler"])
def test_absorbing_independent_positions_exact_at_any_step(sampler):
    """For independent positions p(x0 | masked) = PI whenever a position unmasks, so no step bias."""
    proc = AbsorbingCTMC(S)
    assert tv_positions(draw(proc, independent_denoiser(proc, data_only=True), sampler, 8)) <= TV_MC


def test_absorbing_loglinear_euler_step_equals_analytic_step():
    """With the log-linear schedule h beta(t) / expm1(B(t)) = h / t = (a_s - a_t) / (1 - a_t): same kernel, same draws."""
    proc = AbsorbingCTMC(S, schedule="loglinear")
    model = independent_denoiser(proc)
    a = draw(proc, model, "ctmc-euler", 6, n=2000, seed=5)
    b = draw(proc, model, "ctmc-euler", 6, n=2000, seed=5, analytic=True)
    assert torch.equal(a, b)


def test_event_shape_2d_keeps_positions_apart():
    pi = torch.tensor([[[0.7, 0.1, 0.1, 0.05, 0.05], [0.05, 0.05, 0.1, 0.1, 0.7]],
                       [[0.2, 0.2, 0.2, 0.2, 0.2], [0.0, 0.5, 0.0, 0.5, 0.0]]], dtype=F64)
    proc = UniformCTMC(S, event_shape=(2, 2))
    x = draw(proc, independent_denoiser(proc, pi), "ctmc-euler", 4, n=5000, event=(2, 2), analytic=True)
    assert x.shape == (5000, 2, 2) and x.dtype == torch.long
    assert tv_positions(x, pi) <= 0.04  # 5000 samples: exact draws give about 0.013
    assert not bool(((x == 0) | (x == 2) | (x == 4))[:, 1, 1].any())  # impossible values never drawn


# ---------------------------------------------------------------------------
# step-size dependence (uniform chain, independent positions)
# ---------------------------------------------------------------------------


def test_uniform_tau_leaping_error_shrinks_with_steps():
    proc = UniformCTMC(S)
    model = independent_denoiser(proc)
    coarse = tv_positions(draw(proc, model, "tau-leaping", 10, n=N // 2))
    fine = tv_positions(draw(proc, model, "tau-leaping", 60, n=N // 2))
    assert fine <= 0.03  # about 0.01 Monte Carlo + 0.01 discretisation
    assert coarse >= 0.05 and coarse >= 2.5 * fine


def test_uniform_euler_error_shrinks_with_steps():
    proc = UniformCTMC(S)
    model = independent_denoiser(proc)
    coarse = tv_positions(draw(proc, model, "ctmc-euler", 3, n=N // 2))
    fine = tv_positions(draw(proc, model, "ctmc-euler", 30, n=N // 2))
    assert fine <= TV_MC  # 10000 samples: exact draws give about 0.0095 +- 0.0025
    assert coarse >= 0.04 and coarse >= 2.5 * fine


# ---------------------------------------------------------------------------
# correlated pair: per-position updates are exact only as the steps shrink
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind,sampler,opts", [
    ("uniform", "tau-leaping", {}),
    ("absorbing", "ctmc-euler", {"analytic": True}),
])
def test_correlated_pair_converges_with_steps(kind, sampler, opts):
    proc = make_process(kind)
    model = pair_denoiser(proc)
    coarse = tv_pair(draw(proc, model, sampler, 5, n=N_PAIR, event=(2,), **opts))
    fine = tv_pair(draw(proc, model, sampler, 60, n=N_PAIR, event=(2,), **opts))
    # measured: uniform/tau 0.19 -> 0.023, absorbing/analytic 0.15 -> 0.021 (exact draws: 0.011 +- 0.003)
    assert fine <= TV_MC_PAIR + 0.01
    assert coarse >= 0.1 and coarse >= 3 * fine


# ---------------------------------------------------------------------------
# protocol: NFE, callback, times, generator, bare callables
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sampler,opts", [("tau-leaping", {}), ("ctmc-euler", {}), ("ctmc-euler", {"analytic": True})])
def test_nfe_callback_times_and_no_mask_left(sampler, opts):
    proc = AbsorbingCTMC(S)
    exact = independent_denoiser(proc)
    seen_t, seen_cb = [], []

    def model(x, t):
        assert t.dtype == torch.get_default_dtype() and t.shape == (x.shape[0],)
        seen_t.append(float(t[0]))
        return exact(x, t)

    steps = 7
    times = grids.make_grid(proc, steps, "uniform")
    x0 = proc.prior_sample((64, L))
    pred = Prediction(model, "probs", proc)
    out = samplers.get(sampler).fn(proc, pred, x0, times, generator=torch.Generator().manual_seed(1),
                                   callback=lambda i, t, x: seen_cb.append((i, float(t), bool((x == S).any()))), **opts)
    assert pred.nfe == steps == len(seen_t)
    assert seen_t == pytest.approx(times[:-1].tolist(), rel=1e-6)
    assert [c[0] for c in seen_cb] == list(range(steps))
    assert [c[1] for c in seen_cb] == pytest.approx(times[1:].tolist())
    assert seen_cb[-1][1] == 0.0 and not seen_cb[-1][2]
    assert out.dtype == torch.long and out.shape == (64, L) and int(out.max()) < S
    assert bool((x0 == S).all())  # the start state is not modified


def test_generator_reproducible_and_bare_callable_model():
    proc = UniformCTMC(S)
    model = independent_denoiser(proc)
    times = grids.make_grid(proc, 5, "uniform")
    fn = samplers.get("tau-leaping").fn
    x_T = proc.prior_sample((500, L), generator=torch.Generator().manual_seed(0))
    a = fn(proc, model, x_T, times, generator=torch.Generator().manual_seed(7))
    b = fn(proc, model, x_T, times, generator=torch.Generator().manual_seed(7))
    c = fn(proc, model, x_T, times, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # a floating start state holding integer values is accepted
    assert torch.equal(fn(proc, model, x_T.double(), times, generator=torch.Generator().manual_seed(7)), a)


def test_grid_stopping_above_zero_ends_with_an_ordinary_step():
    """Without the final denoising interval masks may remain (the caller asked to stop at t_min)."""
    proc = AbsorbingCTMC(S)
    times = grids.make_grid(proc, 4, "uniform", t_end=0.5, to_data=False)
    x = samplers.get("ctmc-euler").fn(proc, independent_denoiser(proc), proc.prior_sample((2000, L)), times,
                                      generator=torch.Generator().manual_seed(0))
    frac = float((x == S).double().mean())
    assert abs(frac - 0.5) < 0.03  # loglinear: a fraction (1 - eps) t of positions is masked at t = 0.5


def test_registered_as_jump_samplers():
    for name in ("tau-leaping", "ctmc-euler"):
        info = samplers.get(name)
        assert info.kind == "jump" and info.default_grid == "uniform"


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def _run_with(proc, model, **opts):
    times = grids.make_grid(proc, 3, "uniform")
    return samplers.get("tau-leaping").fn(proc, model, proc.prior_sample((4, L)), times, **opts)


@pytest.mark.parametrize("bad,match", [
    (lambda x, t: torch.full(x.shape, 0.5), "shape"),
    (lambda x, t: torch.full(x.shape + (S + 2,), 1.0 / (S + 2)), "shape"),
    (lambda x, t: torch.full(x.shape + (S + 1,), 1.0 / (S + 1)).transpose(0, 1), "shape"),
    (lambda x, t: torch.nn.functional.one_hot(x, S + 1).long(), "floating"),
    (lambda x, t: torch.randn(x.shape + (S + 1,), generator=torch.Generator().manual_seed(0)), "negative|sum"),
    (lambda x, t: torch.full(x.shape + (S + 1,), 0.5), "sum to 1"),
    (lambda x, t: torch.tensor([-0.1, 0.3, 0.3, 0.3, 0.2, 0.0]).expand(x.shape + (S + 1,)), "negative"),
    (lambda x, t: torch.full(x.shape + (S + 1,), float("nan")), "NaN"),
    (lambda x, t: torch.nn.functional.one_hot(torch.full_like(x, S), S + 1).float(), "mask"),
])
def test_bad_model_output_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        _run_with(AbsorbingCTMC(S), bad)


def test_bad_options_and_inputs_raise():
    proc = AbsorbingCTMC(S)
    model = independent_denoiser(proc)
    with pytest.raises(ValueError, match="final"):
        _run_with(proc, model, final="mode")
    times = grids.make_grid(proc, 3, "uniform")
    fn = samplers.get("ctmc-euler").fn
    with pytest.raises(ValueError, match="integer"):
        fn(proc, model, torch.full((4, L), 0.5), times)
    with pytest.raises(ValueError, match="out-of-range"):
        fn(proc, model, torch.full((4, L), S + 1), times)
    with pytest.raises(ValueError, match="decreasing"):
        fn(proc, model, proc.prior_sample((4, L)), times.flip(0))
    with pytest.raises(ValueError, match="jump process"):
        fn(VP(), model, torch.zeros(4, L), times)
