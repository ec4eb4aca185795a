"""The ``multistate`` domain: continuous-time Markov chains learnt from panel observations.

``stochgen.domain("multistate").fit_panel(data, subject=..., time=..., state=..., qmatrix=Q0, ...)``
fits msm's multi-state model by maximum likelihood (:mod:`domains.multistate.panel`);
:meth:`MultistateDomain.simulate_panel` draws panel data from a generator with the core's Gillespie
sampler. States are the chain's states; the domain's process is the core's
:class:`stochgen.processes.CTMC` with a constant rate.
"""
from __future__ import annotations

from stochgen.domain import Domain, register_domain

from . import panel

__all__ = ["MultistateDomain"]


class MultistateDomain(Domain):
    """Multi-state models of panel data; see the module docstring."""

    name = "multistate"

    def fit_panel(self, data, subject="subject", time="time", state="state", qmatrix=None, death_exact=None,
                  censored=None, covariates=None, **opts) -> panel.PanelFit:
        """See :func:`domains.multistate.panel.fit_panel`."""
        return panel.fit_panel(data, subject=subject, time=time, state=state, qmatrix=qmatrix,
                               death_exact=death_exact, censored=censored, covariates=covariates, **opts)

    def simulate_panel(self, Q, times, initial=1, n_subjects=None, death_exact=None, states=None, seed=0):
        """See :func:`domains.multistate.panel.simulate_panel`."""
        return panel.simulate_panel(Q, times, initial=initial, n_subjects=n_subjects, death_exact=death_exact,
                                    states=states, seed=seed)


register_domain("multistate", MultistateDomain)
