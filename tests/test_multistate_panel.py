"""Multi-state panel models (issue 13): likelihood definitions, recovery on simulated panels, bad input, msm."""
from __future__ import annotations

import shutil
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.linalg import expm

import stochgen
from domains.multistate import panel as P

Q3 = np.array([[-0.3, 0.2, 0.1], [0.1, -0.25, 0.15], [0.0, 0.0, 0.0]])
PATTERN = [[0, 0.1, 0.1], [0.1, 0, 0.1], [0, 0, 0]]


def _theta(Q):
    return torch.tensor(np.log([Q[r, s] for r in range(3) for s in range(3) if r != s and Q[r, s] > 0]),
                        dtype=torch.float64)


def test_loglik_is_the_hand_computed_product_of_matrix_exponential_entries():
    df = pd.DataFrame({"id": [1, 1, 1, 2, 2, 2],
                       "t": [0.0, 1.0, 2.5, 0.0, 0.7, 3.0],
                       "s": [1, 2, 3, 1, 99, 2]})
    pd_ = P.prepare_panel(df, "id", "t", "s", qmatrix=PATTERN, death_exact=[3], censored={99: [1, 2]})
    ll = float(P.panel_loglik(pd_, _theta(Q3)))
    Pm = lambda dt: expm(Q3 * dt)  # noqa: E731
    Qoff = Q3 - np.diag(np.diag(Q3))
    # subject 1: 1 -> 2 over 1.0, then an exact entry into 3 after 1.5 (the state just before unknown)
    s1 = Pm(1.0)[0, 1] * sum(Pm(1.5)[1, k] * Qoff[k, 2] for k in (0, 1))
    # subject 2: 1 -> "1 or 2" (censored) over 0.7, then -> 2 over 2.3: summed over the hidden state
    s2 = sum(Pm(0.7)[0, k] * Pm(2.3)[k, 1] for k in (0, 1))
    assert ll == pytest.approx(np.log(s1) + np.log(s2), rel=1e-12)


def test_fit_on_a_simulated_panel_covers_the_true_intensities():
    rng = np.random.default_rng(3)
    times = [np.cumsum(np.r_[0.0, rng.uniform(0.5, 1.5, 8)]) for _ in range(1000)]
    df = P.simulate_panel(Q3, times, initial=1, seed=1)
    fit = stochgen.domain("multistate").fit_panel(df, qmatrix=PATTERN)
    lo, hi = fit.Q_ci
    for r, s in [(0, 1), (0, 2), (1, 0), (1, 2)]:
        assert lo[r, s] < fit.Q[r, s] < hi[r, s]
        # the truth within the 95% interval widened to 3 standard errors (log scale): fails 0.3% of streams
        se = (np.log(hi[r, s]) - np.log(lo[r, s])) / (2 * 1.96)
        assert abs(np.log(fit.Q[r, s]) - np.log(Q3[r, s])) < 3 * se, (r, s, fit.Q[r, s])
    assert fit.info["converged"]
    np.testing.assert_allclose(fit.pmatrix(2.0), expm(fit.Q * 2.0), atol=1e-12)
    assert "1 -> 2" in fit.summary() and "-2 log L" in fit.summary()


def test_exact_death_times_give_their_own_likelihood_and_recover_q():
    rng = np.random.default_rng(4)
    times = [np.cumsum(np.r_[0.0, rng.uniform(0.5, 1.5, 8)]) for _ in range(800)]
    df = P.simulate_panel(Q3, times, initial=1, seed=2, death_exact=True)
    dead = df.groupby("subject").tail(1)
    assert (dead.state == 3).any() and not np.isin(dead.time[dead.state == 3], np.concatenate(times)).all()
    fit = P.fit_panel(df, qmatrix=PATTERN, death_exact=True)
    plain = P.fit_panel(df, qmatrix=PATTERN)
    assert fit.minus2loglik != pytest.approx(plain.minus2loglik, abs=1.0)
    lo, hi = fit.Q_ci
    for r, s in [(0, 2), (1, 2)]:
        se = (np.log(hi[r, s]) - np.log(lo[r, s])) / (2 * 1.96)
        assert abs(np.log(fit.Q[r, s]) - np.log(Q3[r, s])) < 3 * se


def test_covariate_effect_recovered():
    rng = np.random.default_rng(5)
    times = [np.cumsum(np.r_[0.0, rng.uniform(0.5, 1.5, 8)]) for _ in range(700)]
    Qx = Q3.copy()
    Qx[0, 1] *= 2.0  # hazard ratio 2 on 1 -> 2 for x = 1
    np.fill_diagonal(Qx, 0)
    np.fill_diagonal(Qx, -Qx.sum(1))
    a = P.simulate_panel(Q3, times, initial=1, seed=3).assign(x=0.0)
    b = P.simulate_panel(Qx, times, initial=1, seed=4).assign(x=1.0)
    b["subject"] += 10_000
    fit = P.fit_panel(pd.concat([a, b]), qmatrix=PATTERN, covariates=["x"])
    hr, lo, hi = fit.hazard_ratios()["x"][(1, 2)]
    se = (np.log(hi) - np.log(lo)) / (2 * 1.96)
    assert abs(np.log(hr) - np.log(2.0)) < 3 * se and lo > 1.0
    for tr in [(1, 3), (2, 1), (2, 3)]:
        hr, lo, hi = fit.hazard_ratios()["x"][tr]
        assert lo < 1.0 < hi * 1.5


def _panel(**cols):
    base = {"subject": [1, 1, 1, 2, 2], "time": [0.0, 1.0, 2.0, 0.0, 1.0], "state": [1, 2, 3, 1, 1]}
    base.update(cols)
    return pd.DataFrame(base)


def test_bad_input_errors_name_the_rows():
    with pytest.raises(ValueError, match=r"unknown state label\(s\) 7 in rows 3"):
        P.fit_panel(_panel(state=[1, 2, 7, 1, 1]), qmatrix=PATTERN)
    with pytest.raises(ValueError, match=r"subject 1, rows 2-3: a change of state 3 -> 1"):
        P.fit_panel(_panel(state=[1, 3, 1, 1, 1]), qmatrix=PATTERN)
    with pytest.raises(ValueError, match=r"times must increase within a subject: subject 1, rows 2-3"):
        P.fit_panel(_panel(time=[0.0, 1.0, 1.0, 0.0, 1.0]), qmatrix=PATTERN)
    with pytest.raises(ValueError, match="square"):
        P.fit_panel(_panel(), qmatrix=[[0, 1, 0], [1, 0, 1]])
    with pytest.raises(ValueError, match="negative off-diagonal entry at row 1, column 2"):
        P.fit_panel(_panel(), qmatrix=[[0, -0.1, 0.1], [0.1, 0, 0.1], [0, 0, 0]])
    with pytest.raises(ValueError, match="no column"):
        P.fit_panel(_panel(), time="years", qmatrix=PATTERN)
    with pytest.raises(ValueError, match="must be numeric"):
        P.fit_panel(_panel(time=["a", 1.0, 2.0, 0.0, 1.0]), qmatrix=PATTERN)


def test_single_observation_subject_is_dropped_with_a_warning_naming_it():
    df = pd.concat([_panel(), pd.DataFrame({"subject": [42], "time": [0.0], "state": [2]})])
    with pytest.warns(UserWarning, match=r"single observation .*42"):
        pd_ = P.prepare_panel(df, qmatrix=PATTERN)
    assert 42 not in pd_.subjects and len(pd_.subjects) == 2


def test_csv_and_dataframe_give_the_same_fit(tmp_path):
    rng = np.random.default_rng(6)
    times = [np.cumsum(np.r_[0.0, rng.uniform(0.5, 1.5, 5)]) for _ in range(150)]
    df = P.simulate_panel(Q3, times, initial=1, seed=5)
    path = tmp_path / "panel.csv"
    df.to_csv(path, index=False)
    a, b = P.fit_panel(df, qmatrix=PATTERN), P.fit_panel(str(path), qmatrix=PATTERN)
    np.testing.assert_allclose(a.Q, b.Q, rtol=1e-6)
    assert a.minus2loglik == pytest.approx(b.minus2loglik, abs=1e-6)


def _msm_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    r = subprocess.run(["Rscript", "-e", "library(msm)"], capture_output=True)
    return r.returncode == 0


_CAV_Q = [[0, 0.25, 0, 0.25], [0.166, 0, 0.166, 0.166], [0, 0.25, 0, 0.25], [0, 0, 0, 0]]
_PSOR_Q = [[0, 0.1, 0, 0], [0, 0, 0.1, 0], [0, 0, 0, 0.1], [0, 0, 0, 0]]
# data set, time, subject, qmatrix, our options, msm's extra arguments
_MSM_CASES = {"cav death exact": ("cav", "years", "PTNUM", _CAV_Q, {"death_exact": [4]}, ", deathexact=4"),
              "cav panel": ("cav", "years", "PTNUM", _CAV_Q, {}, ""),
              "psor covariates": ("psor", "months", "ptnum", _PSOR_Q, {"covariates": ["ollwsdrt", "hieffusn"]},
                                  ", covariates=~ollwsdrt+hieffusn")}


def _r_matrix(Q) -> str:
    return "rbind(" + ", ".join("c(" + ", ".join(repr(float(v)) for v in row) + ")" for row in Q) + ")"


@pytest.mark.skipif(not _msm_available(), reason="R's msm is not installed (apt-get install r-cran-msm)")
@pytest.mark.parametrize("case", list(_MSM_CASES))
def test_same_answer_as_msm(tmp_path, case):
    data, tcol, scol, Q0, kw, extra = _MSM_CASES[case]
    script = f"""
suppressMessages(library(msm))
write.csv({data}, "{tmp_path}/data.csv", row.names=FALSE)
m <- msm(state ~ {tcol}, subject={scol}, data={data}, qmatrix={_r_matrix(Q0)}{extra})
q <- qmatrix.msm(m, ci="delta")
write.csv(q$estimates, "{tmp_path}/Q.csv"); write.csv(q$L, "{tmp_path}/L.csv"); write.csv(q$U, "{tmp_path}/U.csv")
writeLines(sprintf("%.8f", m$minus2loglik), "{tmp_path}/m2ll.txt")
"""
    subprocess.run(["Rscript", "-e", script], check=True, capture_output=True)
    read = lambda n: pd.read_csv(tmp_path / n, index_col=0).to_numpy()  # noqa: E731
    Q, L, U = read("Q.csv"), read("L.csv"), read("U.csv")
    m2ll = float((tmp_path / "m2ll.txt").read_text())
    df = pd.read_csv(tmp_path / "data.csv")
    if kw.get("covariates"):  # msm drops observations with a missing covariate (na.action = na.omit)
        df = df.dropna(subset=kw["covariates"])
    fit = stochgen.domain("multistate").fit_panel(df, subject=scol, time=tcol, state="state", qmatrix=Q0, **kw)
    nz = Q != 0
    np.testing.assert_allclose(fit.Q[nz], Q[nz], rtol=0.01)
    assert abs(fit.minus2loglik - m2ll) < 0.01
    np.testing.assert_allclose(fit.Q_ci[0][nz], L[nz], rtol=0.02)
    np.testing.assert_allclose(fit.Q_ci[1][nz], U[nz], rtol=0.02)


def test_prevalence_counts_and_plot(tmp_path):
    df = P.simulate_panel(Q3, np.arange(7.0), initial=1, n_subjects=300, seed=6)
    fit = P.fit_panel(df, qmatrix=PATTERN)
    prev = fit.prevalence(times=[0.0, 2.0, 4.0])
    # at time 0 every subject is in its first state, observed and expected alike
    np.testing.assert_allclose(prev["observed"][0], [300, 0, 0])
    np.testing.assert_allclose(prev["expected"][0], [300, 0, 0], atol=1e-9)
    # expected counts are the at-risk subjects' P(t) rows: they sum to the number observed
    np.testing.assert_allclose(prev["expected"].sum(1), prev["observed"].sum(1), rtol=1e-9)
    # at the (shared) observation times the observed state is the state: a fitted model tracks the
    # observed prevalence within sampling error (binomial sd of 300 subjects)
    share_o = prev["observed"] / prev["observed"].sum(1, keepdims=True)
    share_e = prev["expected"] / prev["expected"].sum(1, keepdims=True)
    assert np.abs(share_o - share_e).max() < 4 * np.sqrt(0.25 / 300)
    path = fit.plot_prevalence(str(tmp_path / "prev.png"))
    assert (tmp_path / "prev.png").stat().st_size > 5000 and path.endswith("prev.png")


def test_an_intensity_at_its_boundary_gives_an_unbounded_interval_not_an_error():
    """1 -> 3 is allowed by the model but never happens in the data: its MLE goes towards 0 and its
    interval (delta method on the log scale) spans decades, up to inf, without an overflow."""
    Q = np.array([[-0.3, 0.3, 0.0], [0.0, -0.2, 0.2], [0.0, 0.0, 0.0]])
    df = P.simulate_panel(Q, np.arange(0.0, 6.0, 0.2), initial=1, n_subjects=300, seed=8)  # short intervals
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = P.fit_panel(df, qmatrix=[[0, 0.1, 0.1], [0, 0, 0.1], [0, 0, 0]])
    lo, hi = fit.Q_ci
    assert fit.Q[0, 2] < 0.01 and hi[0, 2] / max(lo[0, 2], 1e-300) > 100
    # a variance far beyond float range (bos3's 1-3 intensity in msm's data): -inf, no OverflowError
    lo_d, hi_d = fit._diag_ci(np.eye(len(fit.theta)) * 1e8)
    assert lo_d[0] == -np.inf and hi_d[0] == 0.0
    # the other two within 3.5 standard errors of the truth (log scale; transitions 1-2, 1-3, 2-3)
    assert abs(fit.theta[0] - np.log(0.3)) < 3.5 * fit.se[0] and abs(fit.theta[2] - np.log(0.2)) < 3.5 * fit.se[2]
    assert "1 -> 3" in fit.summary()
