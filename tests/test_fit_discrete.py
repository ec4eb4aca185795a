"""stochgen.fit on integer tokens: absorbing (masked) and uniform discrete diffusion.

The data are sequences of a known first-order Markov chain (initial law PI0, transition matrix
T), so the law of the unigram and bigram frequencies of samples is known exactly. Each trained
model is sampled and its frequencies compared with the chain's in total variation; the bound is
the sampling error of the TV itself (simulated from the exact chain at the same sample size:
mean + 4 std over 32 draws) plus a training slack measured over seeds (see SLACK).
"""
import os
import subprocess
import sys

import pytest
import torch

import stochgen
from stochgen import objectives, processes
from stochgen.nets.tokens import TokenMLP, TokenTransformer
from stochgen.objectives.discrete import mdlm_weight, sample_times

K, L = 4, 8
PI0 = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
T = torch.tensor([[0.7, 0.1, 0.1, 0.1],
                  [0.1, 0.1, 0.7, 0.1],
                  [0.2, 0.2, 0.2, 0.4],
                  [0.6, 0.1, 0.2, 0.1]], dtype=torch.float64)
N_DATA, N_SAMPLES = 4000, 2000
FIT = dict(steps=400, batch_size=256, lr=3e-3, warmup=20, ema=0.99, progress=False)

# Training slack on top of the sampling error, measured with these settings over
# STOCHGEN_TEST_SEED_SHIFT = 0..5 (fresh data, initialisation, training draws and sampling per shift;
# the sampling error alone, mean + 4 std, is 0.019 for unigrams and 0.027-0.029 for bigrams):
#   absorbing: TV(unigram) 0.002-0.014, TV(bigram) 0.046-0.062;
#   uniform:   TV(unigram) 0.005-0.024, TV(bigram) 0.029-0.047.
# The slack leaves about 1.5x the largest measured TV. A model that ignored the correlations
# (independent positions with the exact unigram law) has TV(bigram) = 0.26: the bigram bound
# still fails for it (asserted below).
SLACK = {"absorbing": {"uni": 0.015, "bi": 0.07}, "uniform": {"uni": 0.02, "bi": 0.05}}


def chain(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(n, L, dtype=torch.long)
    x[:, 0] = torch.multinomial(PI0, n, replacement=True, generator=g)
    for i in range(1, L):
        x[:, i] = torch.multinomial(T[x[:, i - 1]], 1, generator=g).squeeze(1)
    return x


def exact_frequencies():
    """Expected unigram (K,) and bigram (K, K) frequencies, averaged over positions."""
    p, uni, bi = PI0.clone(), torch.zeros(K, dtype=torch.float64), torch.zeros(K, K, dtype=torch.float64)
    for i in range(L):
        uni += p / L
        if i < L - 1:
            bi += p[:, None] * T / (L - 1)
        p = p @ T
    return uni, bi


def frequencies(x):
    uni = torch.bincount(x.reshape(-1), minlength=K).double() / x.numel()
    pairs = (x[:, :-1] * K + x[:, 1:]).reshape(-1)
    bi = torch.bincount(pairs, minlength=K * K).double().reshape(K, K) / pairs.numel()
    return uni, bi


def tvs(x):
    (u, b), (eu, eb) = frequencies(x), exact_frequencies()
    return 0.5 * float((u - eu).abs().sum()), 0.5 * float((b - eb).abs().sum())


def sampling_bound(n):
    """mean + 4 std of (TV unigram, TV bigram) of n sequences drawn from the exact chain."""
    d = torch.tensor([tvs(chain(n, 10_000 + r)) for r in range(32)], dtype=torch.float64)
    return tuple((d.mean(0) + 4 * d.std(0)).tolist())


def samples(model, n, seed, **options):
    """``Model.sample``: the default sampler (ctmc-euler, 50 steps) reads the logits through Prediction."""
    return model.sample(n, generator=torch.Generator().manual_seed(seed), **options)


PROCESSES = {"absorbing": lambda: processes.AbsorbingCTMC(num_states=K),
             "uniform": lambda: processes.UniformCTMC(num_states=K)}


@pytest.fixture(scope="module", params=list(PROCESSES))
def trained(request):
    data = chain(N_DATA, 1)
    model = stochgen.fit("base", data, process=PROCESSES[request.param](), **FIT)
    return request.param, model


def test_samples_match_the_chain(trained):
    name, model = trained
    assert model.prediction == "logits" and model.sampler == "ctmc-euler"
    assert isinstance(model.net, TokenMLP)  # the default for 8 positions of 4-5 values
    loss = model.history["loss"]
    assert sum(loss[-50:]) / 50 < sum(loss[:20]) / 20
    s = samples(model, N_SAMPLES, 2)
    assert s.dtype == torch.long and s.shape == (N_SAMPLES, L)
    assert int(s.min()) >= 0 and int(s.max()) < K  # data values only: no mask left
    tv_uni, tv_bi = tvs(s)
    b_uni, b_bi = sampling_bound(N_SAMPLES)
    if os.environ.get("STOCHGEN_PRINT"):
        print(f"\n{name}: TV uni {tv_uni:.4f} (sampling {b_uni:.4f}), TV bi {tv_bi:.4f} (sampling {b_bi:.4f})")
    assert tv_uni < b_uni + SLACK[name]["uni"], (tv_uni, b_uni)
    assert tv_bi < b_bi + SLACK[name]["bi"], (tv_bi, b_bi)
    u, _ = exact_frequencies()
    independent = 0.5 * float((u[:, None] * u[None] - exact_frequencies()[1]).abs().sum())
    assert independent > b_bi + SLACK[name]["bi"] + 0.05  # the bound can tell correlations were learned


@pytest.mark.parametrize("sampler, options", [("tau-leaping", {}), ("ctmc-euler", {"analytic": True})])
def test_other_jump_samplers_return_tokens(trained, sampler, options):
    """The other jump samplers read the trained logits too: integer tokens without mask symbols."""
    _, model = trained
    s = model.sample(256, sampler=sampler, steps=20, generator=torch.Generator().manual_seed(3), **options)
    assert s.dtype == torch.long and s.shape == (256, L) and int(s.min()) >= 0 and int(s.max()) < K


def test_save_load_round_trip(trained, tmp_path):
    _, model = trained
    path = tmp_path / "tokens.ckpt"
    model.save(path)
    m2 = stochgen.load(path)
    assert m2.spec["net"] == model.net.spec() and m2.spec["process"] == model.process.spec()
    assert m2.prediction == "logits" and type(m2.process) is type(model.process)
    assert torch.equal(samples(model, 64, 4), samples(m2, 64, 4))
    # a fresh interpreter rebuilds the network from the checkpoint alone
    code = ("import torch, stochgen; m = stochgen.load(%r); x = torch.zeros(3, %d, dtype=torch.long); "
            "print(type(m.net).__name__, tuple(m.denoise(x, torch.full((3,), 0.5)).shape))" % (str(path), L))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["TokenMLP", f"(3,", f"{L},", f"{K})"]


def test_probs_prediction_and_the_transformer(tmp_path):
    """prediction="probs" and the transformer network train, sample and reload (plumbing, few steps)."""
    data = chain(512, 7)
    dom = stochgen.Domain(token_network="transformer", hidden=32)
    model = stochgen.fit(dom, data.double(), process=processes.AbsorbingCTMC(num_states=K), prediction="probs",
                         steps=30, batch_size=128, lr=3e-3, warmup=5, ema=None, progress=False)
    assert isinstance(model.net, TokenTransformer) and model.net.output == "probs"
    p = model.denoise(torch.full((5, L), K), torch.full((5,), 0.9))
    assert p.shape == (5, L, K) and torch.allclose(p.sum(-1), torch.ones(5, L), atol=1e-5)
    s = model.sample(64, generator=torch.Generator().manual_seed(0))  # probs go straight to the sampler
    assert s.dtype == torch.long and s.shape == (64, L) and int(s.max()) < K and int(s.min()) >= 0
    model.save(tmp_path / "p.ckpt")
    m2 = stochgen.load(tmp_path / "p.ckpt")
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.equal(model.sample(32, generator=g()), m2.sample(32, generator=g()))


# --- the objective in closed form ---------------------------------------------------------------

def _objective_and_batch(process, n=64, seed=0, **options):
    obj = objectives.build(process, "logits", None, **options)
    x0 = chain(n, seed)
    batch = obj.draw(x0, torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    net = TokenMLP(process.num_categories, process.num_states, L, hidden=32, zero_init=False)
    return obj, batch, objectives.Denoiser(net, process, "logits")


def test_mdlm_weight_is_one_over_t_for_the_loglinear_schedule():
    t = torch.tensor([1e-3, 0.1, 0.5, 0.99], dtype=torch.float64)
    w = mdlm_weight(processes.AbsorbingCTMC(num_states=K), t)
    assert torch.allclose(w, 1 / t, rtol=1e-9)
    # and -alpha'/(1 - alpha) with alpha = exp(-B) for another schedule, by finite differences
    proc = processes.AbsorbingCTMC(num_states=K, schedule="linear")
    alpha = lambda s: torch.exp(-proc.schedule.integral(s))  # noqa: E731
    h = 1e-6
    fd = -(alpha(t + h) - alpha(t - h)) / (2 * h) / (1 - alpha(t))
    assert torch.allclose(mdlm_weight(proc, t), fd, rtol=1e-5)


def test_absorbing_score_entropy_equals_the_mdlm_loss():
    proc = processes.AbsorbingCTMC(num_states=K)
    obj, batch, den = _objective_and_batch(proc)
    se = objectives.build(proc, "logits", None, loss="score_entropy")
    a, b = obj.loss(den, batch, reduce=False), se.loss(den, batch, reduce=False)
    assert float(a.detach().abs().max()) > 0.1
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_mdlm_loss_by_hand():
    proc = processes.AbsorbingCTMC(num_states=K)
    obj, batch, den = _objective_and_batch(proc, seed=2)
    logp = torch.log_softmax(den(batch["x_t"], batch["t"]), -1)
    nll = -logp.gather(-1, batch["x0"].unsqueeze(-1)).squeeze(-1)
    want = ((batch["x_t"] == K) * nll).sum(1) / batch["t"] / L
    assert torch.allclose(obj.loss(den, batch, reduce=False), want, rtol=1e-5)
    assert int((batch["x_t"][batch["x_t"] != K] != batch["x0"][batch["x_t"] != K]).sum()) == 0


def test_uniform_score_entropy_vanishes_only_at_the_truth():
    proc = processes.UniformCTMC(num_states=K)
    obj, batch, den = _objective_and_batch(proc, loss="score_entropy", seed=3)
    per = obj.loss(den, batch, reduce=False)
    per = per.detach()
    assert bool((per >= -1e-6).all()) and float(per.mean()) > 1e-3
    # a model that knows x0 (log p = one-hot) has the true reverse rates: zero loss
    oracle = lambda x, t: 60.0 * torch.nn.functional.one_hot(batch["x0"], K).float()  # noqa: E731
    assert float(obj.loss(oracle, batch, reduce=False).abs().max()) < 1e-4
    ce = objectives.build(proc, "logits", None)
    nll = -torch.log_softmax(den(batch["x_t"], batch["t"]), -1).gather(-1, batch["x0"].unsqueeze(-1))
    assert torch.allclose(ce.loss(den, batch), nll.mean(), rtol=1e-5)


def test_training_times():
    proc = processes.UniformCTMC(num_states=K)
    t = sample_times(proc, 1000, torch.Generator().manual_seed(0))
    assert float(t.min()) >= proc.t_min and float(t.max()) <= 1.0
    # stratified: exactly one time in each of the 1000 equal cells of [t_min, 1]
    cells = ((t.double() - proc.t_min) / (1 - proc.t_min) * 1000).floor().long().clamp(0, 999)
    assert torch.bincount(cells, minlength=1000).max() <= 2
    u = sample_times(proc, 4000, torch.Generator().manual_seed(0), "uniform")
    assert abs(float(u.double().mean()) - (1 + proc.t_min) / 2) < 4 * (1 / 12) ** 0.5 / 4000 ** 0.5


# --- conditions and bad input -------------------------------------------------------------------

@pytest.mark.parametrize("cls", [TokenMLP, TokenTransformer])
def test_networks_read_labels_and_conditions(cls):
    torch.manual_seed(0)
    net = cls(K + 1, K, L, num_classes=3, cond_inputs={"c": 2})
    with torch.no_grad():  # random weights everywhere (the zero-initialised layers hide the wiring)
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    assert set(net.cond_keys) == {"label", "c"}
    x, t, c = torch.randint(0, K + 1, (4, L)), torch.rand(4), torch.randn(4, 2)
    a = net(x, t, label=torch.tensor([0, 1, 2, -1]), c=c)
    assert a.shape == (4, L, K)
    assert not torch.allclose(a, net(x, t, label=torch.tensor([1, 2, 0, 0]), c=c))
    assert not torch.allclose(a, net(x, t, label=torch.tensor([0, 1, 2, -1]), c=c + 1))
    assert stochgen.nets.build(net.spec()).config() == net.config()
    with pytest.raises(ValueError, match="condition 'c'"):
        net(x, t, label=0)
    with pytest.raises(ValueError, match="tokens must lie in"):
        net(torch.full((2, L), K + 1), torch.rand(2), label=0, c=c[:2])
    with pytest.raises(ValueError, match="positions"):
        net(torch.zeros(2, L + 1, dtype=torch.long), torch.rand(2), label=0, c=c[:2])
    with pytest.raises(ValueError, match="integer tokens"):
        net(torch.full((2, L), 0.5), torch.rand(2), label=0, c=c[:2])


def test_bad_data_and_options_raise():
    proc = processes.AbsorbingCTMC(num_states=K)
    good = chain(64, 0)
    with pytest.raises(ValueError, match="integer state indices"):
        stochgen.fit("base", good.float() + 0.5, process=proc, steps=1, progress=False)
    with pytest.raises(ValueError, match="out-of-range"):
        stochgen.fit("base", good + K + 1, process=proc, steps=1, progress=False)
    bad = good.clone()
    bad[0, 0] = K  # the mask of the absorbing chain is no data value
    with pytest.raises(ValueError, match="mask"):
        stochgen.fit("base", bad, process=proc, steps=1, progress=False)
    with pytest.raises(ValueError, match="loss must be one of"):
        objectives.build(proc, "logits", None, loss="mse")
    with pytest.raises(ValueError, match="times must be one of"):
        objectives.build(proc, "logits", None, times="sobol")
    with pytest.raises(ValueError, match="does not apply"):
        objectives.build(proc, "x0", None)
    with pytest.raises(ValueError, match="token_network"):
        stochgen.fit(stochgen.Domain(token_network="cnn"), good, process=proc, steps=1, progress=False)
    obj, batch, _ = _objective_and_batch(proc)
    with pytest.raises(ValueError, match="4 data values"):
        obj.loss(lambda x, t: torch.zeros(x.shape + (K + 1,)), batch)


@pytest.mark.parametrize("loss", ["cross_entropy", "score_entropy"])
def test_generic_ctmc_trains(loss):
    """A CTMC with its own rate matrix trains with both losses (plumbing: finite, decreasing loss)."""
    q = torch.tensor([[-1.0, 0.5, 0.3, 0.2], [0.2, -0.6, 0.2, 0.2], [0.1, 0.1, -0.4, 0.2], [0.5, 0.2, 0.3, -1.0]])
    proc = processes.CTMC(q, schedule={"name": "linear", "beta_min": 0.5, "beta_max": 4.0})
    obj, batch, den = _objective_and_batch(proc, loss=loss)
    per = obj.loss(den, batch, reduce=False)
    assert per.shape == (64,) and bool(torch.isfinite(per).all()) and bool((per.detach() >= -1e-6).all())
    model = stochgen.fit("base", chain(256, 3), process=proc, steps=40, batch_size=64, lr=3e-3, warmup=5, ema=None,
                         progress=False)
    h = model.history["loss"]
    assert all(torch.isfinite(torch.tensor(h))) and sum(h[-10:]) < sum(h[:10])
