"""The ``multistate`` domain: continuous-time Markov chains learnt from panel observations.

``stochgen.domain("multistate").fit_panel(data, subject=..., time=..., state=..., qmatrix=Q0, ...)``
fits msm's multi-state model by maximum likelihood (:mod:`domains.multistate.panel`);
:meth:`MultistateDomain.simulate_panel` draws panel data from a generator with the core's Gillespie
sampler. :meth:`MultistateDomain.estimate_rates` is the amortized estimator
(:mod:`domains.multistate.amortized`): a conditional diffusion over log intensities, trained with
``stochgen.fit(stochgen.domain("multistate"), n_sets)`` on simulated panels, that reads a data set and
returns ``Q`` with posterior intervals in milliseconds (the shipped model without ``model=``).
"""
from __future__ import annotations

import numpy as np
import torch

import stochgen
from stochgen.domain import Domain, DomainData, register_domain

from . import amortized, panel

__all__ = ["MultistateDomain"]


class MultistateDomain(Domain):
    """Multi-state models of panel data; see the module docstring."""

    name = "multistate"
    default_sampler = "dpm++2m"  # measured on held-out sets: at 6 steps closer to the MLE than Heun at 8 (15 NFE)
    default_steps = 6

    # --- the amortized estimator's training data ----------------------------------------------------
    def load(self, data=None) -> DomainData:
        """Training sets of the amortized estimator: ``None`` (``sets`` setting, default 20000) or a number
        of simulated panels (:func:`domains.multistate.amortized.simulated_sets`, seed ``seed``), a
        :class:`DomainData`, or a dict ``{"x": (P, 36), "stats": (P, F)}`` of encoded sets (``x`` the encoded
        log intensities, :func:`~domains.multistate.amortized.encode_rates`; the ``residual`` setting measures
        them from the reference, :func:`~domains.multistate.amortized.reference_state`)."""
        if isinstance(data, DomainData):
            return data
        if data is None or (isinstance(data, (int, np.integer)) and not isinstance(data, bool)):
            count = int(self.settings.get("sets", 20000)) if data is None else int(data)
            if count < 1:
                raise ValueError(f"need at least one simulated set, got {count}")
            x, stats = amortized.simulated_sets(count, seed=int(self.settings.get("seed", 0)))
        elif isinstance(data, dict):
            if "x" not in data or "stats" not in data:
                raise ValueError("a multistate data dict needs keys x (P, 36) and stats (P, F)")
            x, stats = np.asarray(data["x"], np.float32), np.asarray(data["stats"], np.float32)
            if x.ndim != 2 or x.shape[1] != amortized.STATE_DIM or stats.shape != (len(x), amortized.STATS_DIM):
                raise ValueError(f"x must be (P, {amortized.STATE_DIM}) and stats (P, {amortized.STATS_DIM}), "
                                 f"got {x.shape} and {stats.shape}")
        else:
            raise ValueError(f"the multistate domain trains on simulated panels: pass None, a number of sets or a "
                             f"dict of x and stats; got {type(data).__name__} (panel data go to fit_panel or "
                             f"estimate_rates)")
        # residual (default): the diffused state is the log intensities minus the closed-form reference
        # (amortized.reference_state), the network learns the correction of the matrix-log estimate. Set here,
        # on the training data, so that the checkpoint records it; a model without it is read as absolute.
        if self.settings.setdefault("residual", True):
            x = x - amortized.reference_state(stats)
        return DomainData(torch.from_numpy(x), None, {"source": "simulated panels", "sets": len(x)},
                          {"stats": torch.from_numpy(stats)})

    def resolve_model(self, model=None):
        """``model`` (a :class:`stochgen.Model` or a checkpoint path), else the shipped estimator."""
        return stochgen.resolve_model(model, amortized.default_weights() if model is None else None,
                                      "train one with examples/multistate/train_rates.py and pass model=<checkpoint>")

    def estimate_rates(self, data, subject="subject", time="time", state="state", qmatrix=None, model=None,
                       death_exact=None, censored=None, states=None, num_samples: int = 32, steps: int | None = None,
                       seed: int = 0) -> amortized.RateEstimate:
        """The amortized estimate of the generator of panel ``data`` (arguments as :meth:`fit_panel`).

        No optimisation: one sampling run of the estimator's posterior (``num_samples`` draws of ``steps``
        steps of the model's sampler; the shipped one: DPM-Solver++(2M), 6 steps). The estimate starts the
        MLE: ``fit_panel(..., init=est)`` (its answer, and its posterior covariance as BFGS's first inverse
        Hessian). Up to 6 states; censored observations are skipped and exact death times read as panel
        times."""
        pd_ = panel.prepare_panel(data, subject, time, state, qmatrix, death_exact, censored, None, states)
        return amortized.estimate_rates(self.resolve_model(model), pd_, num_samples=num_samples, steps=steps, seed=seed)

    def fit_panel(self, data, subject="subject", time="time", state="state", qmatrix=None, death_exact=None,
                  censored=None, covariates=None, **opts) -> panel.PanelFit:
        """See :func:`domains.multistate.panel.fit_panel`."""
        return panel.fit_panel(data, subject=subject, time=time, state=state, qmatrix=qmatrix,
                               death_exact=death_exact, censored=censored, covariates=covariates, **opts)

    def demo(self, out: str, quick: bool = False, seed: int = 0, device: str = "cpu",
             progress: bool = True) -> list[str]:
        """``stochgen demo``: the shipped estimator and the MLE on a simulated panel (domains/multistate/demo.py)."""
        from .demo import run

        return run(self, out, quick=quick, seed=seed, device=device, progress=progress)

    def simulate_panel(self, Q, times, initial=1, n_subjects=None, death_exact=None, states=None, seed=0):
        """See :func:`domains.multistate.panel.simulate_panel`."""
        return panel.simulate_panel(Q, times, initial=initial, n_subjects=n_subjects, death_exact=death_exact,
                                    states=states, seed=seed)


register_domain("multistate", MultistateDomain)
