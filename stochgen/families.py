"""Process families: one declaration per process class says what applies to it.

A process class sets ``family = families.LINEAR_GAUSSIAN`` (or another family below).
The family -- never probing for attributes, never ``isinstance`` in a sampler -- decides

* which **traits** the process offers (``traits``): samplers state the trait they need
  when they are registered (``samplers.register(..., requires="linear")``) and
  :func:`stochgen.sample` checks it once, naming the mismatch and the samplers that apply;
* which **prediction kinds** a model of the process may declare (``predictions``) and the
  default one (``default_prediction``);
* which **objective** trains it (``objective``: a name in :mod:`stochgen.objectives`);
* whether the exact **likelihood** is defined (``likelihood``).

Traits (what a sampler may require):

``"linear"``          x_t = alpha(t) x_0 + offset(t) + sigma(t) eps with ``alpha``, ``sigma``,
                      ``lambda_``, ``t_of_lambda`` and ``offset`` (DDIM, DPM-Solver++, Heun, ...)
``"sde"``             an Euclidean diffusion ``sde(x, t)`` (Euler-Maruyama, reverse diffusion,
                      predictor-corrector, torchsde)
``"flow"``            a probability-flow ODE defined from the model (``ode`` sampler, likelihood)
``"mean-reverting"``  drift toward a conditioning signal ``y`` (``mr-pc``, ``mr-exact``)
``"interpolant"``     a stochastic interpolant with velocity prediction (``si-euler``)
``"log-space"``       multiplicative noise on positive data (``gbm-euler``)
``"lie-sde"``         a diffusion on a Lie group in tangent coordinates (``se3-euler``)
``"lie-flow"``        a Lie-group interpolant with a Lie-algebra velocity (``se3-flow``)
``"jump"``            a continuous-time Markov chain on finite states (``tau-leaping``, ``ctmc-euler``)
``"composite"``       a state of named parts with a process each (``composite``)
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Family", "TRAITS", "LINEAR_GAUSSIAN", "MEAN_REVERTING", "INTERPOLANT", "LOG_SPACE", "LIE_GROUP",
           "LIE_INTERPOLANT", "JUMP", "COMPOSITE", "ALL", "family_of", "check_prediction", "check_sampler"]

#: what each trait means, for error messages ("sampler X needs <title>")
TRAITS = {
    "linear": "a linear Gaussian process (x_t = alpha x_0 + offset + sigma eps)",
    "sde": "an Euclidean diffusion dx = f dt + g dW (process.sde)",
    "flow": "a process with a probability-flow ODE",
    "mean-reverting": "a mean-reverting conditional process (OU-VE, IR-SDE)",
    "interpolant": "a stochastic interpolant",
    "log-space": "a log-space multiplicative process (GBM)",
    "lie-sde": "a diffusion on a Lie group (SE(3), SO(3))",
    "lie-flow": "a Lie-group interpolant (SE3Interpolation)",
    "jump": "a jump process (continuous-time Markov chain)",
    "composite": "a composite state (named parts, a process each)",
}

LINEAR_KINDS = ("x0", "eps", "score", "v")


@dataclass(frozen=True)
class Family:
    """What a process family offers; see the module docstring."""

    name: str
    title: str
    traits: frozenset = field(default_factory=frozenset)
    predictions: tuple = ()
    default_prediction: str = "eps"
    objective: str = "dsm"
    likelihood: bool = False

    def __post_init__(self):
        unknown = set(self.traits) - set(TRAITS)
        if unknown:
            raise ValueError(f"unknown trait(s) {sorted(unknown)} for family {self.name!r}; known: {', '.join(TRAITS)}")
        if self.default_prediction not in self.predictions:
            raise ValueError(f"family {self.name!r}: default prediction {self.default_prediction!r} is not one of "
                             f"its predictions {self.predictions}")

    def has(self, trait: str) -> bool:
        return trait in self.traits

    def __repr__(self) -> str:
        return f"Family({self.name!r})"


def _fam(name, title, traits, predictions, default, objective, likelihood):
    return Family(name, title, frozenset(traits), tuple(predictions), default, objective, likelihood)


# "v" is the default where no EDM preconditioning applies: it stays well posed at both ends. An
# unpreconditioned x0 network makes the score (x_t - alpha x0)/sigma^2, and so the likelihood, blow
# up near the data end; an eps network makes x0 = (x_t - sigma eps)/alpha blow up where alpha is
# small (measured on OU-VE: rare trajectories 48 sd off with eps, none with v)
LINEAR_GAUSSIAN = _fam("linear-gaussian", "a linear Gaussian process", ("linear", "sde", "flow"), LINEAR_KINDS,
                       "v", "dsm", True)
MEAN_REVERTING = _fam("mean-reverting", "a mean-reverting conditional process",
                      ("linear", "sde", "flow", "mean-reverting"), LINEAR_KINDS, "v", "dsm", True)
INTERPOLANT = _fam("interpolant", "an interpolant (flow matching)", ("linear", "sde", "flow", "interpolant"),
                   ("velocity",) + LINEAR_KINDS, "velocity", "flow-matching", True)
LOG_SPACE = _fam("log-space", "a log-space multiplicative process", ("log-space", "flow"), ("score", "eps"),
                 "eps", "log-dsm", True)
LIE_GROUP = _fam("lie-group", "a Lie-group process", ("lie-sde",), ("tangent_score",), "tangent_score",
                 "lie-dsm", False)
LIE_INTERPOLANT = _fam("lie-interpolant", "a Lie-group interpolant", ("lie-flow",), ("velocity",), "velocity",
                       "lie-flow-matching", False)
JUMP = _fam("jump", "a jump process", ("jump",), ("logits", "probs"), "logits", "discrete", False)
COMPOSITE = _fam("composite", "a composite process", ("composite",), ("parts",), "parts", "composite", False)

ALL = {f.name: f for f in (LINEAR_GAUSSIAN, MEAN_REVERTING, INTERPOLANT, LOG_SPACE, LIE_GROUP, LIE_INTERPOLANT,
                           JUMP, COMPOSITE)}


def family_of(process) -> Family:
    """The family a process declares (``type(process).family``); a clear error when it declares none."""
    fam = getattr(type(process), "family", None)
    if not isinstance(fam, Family):
        raise ValueError(f"{type(process).__name__} declares no process family; set the class attribute "
                         f"family = stochgen.families.<one of {', '.join(n.upper().replace('-', '_') for n in ALL)}>")
    return fam


def describe(process) -> str:
    """``"SE3Diffusion is a Lie-group process"``."""
    return f"{type(process).__name__} is {family_of(process).title}"


def check_prediction(process, kind: str) -> str:
    """``kind`` if a model of ``process`` may declare it, else a ``ValueError`` naming the kinds that apply."""
    fam = family_of(process)
    if kind not in fam.predictions:
        raise ValueError(f"prediction {kind!r} does not apply: {describe(process)}, whose models predict "
                         f"{', '.join(map(repr, fam.predictions))}")
    return kind


def samplers_for(process) -> list[str]:
    """Names of the registered samplers whose requirement the process's family meets."""
    from .samplers import registry

    fam = family_of(process)
    return [n for n in registry.names() if fam.has(registry.get(n).requires)]


def check_sampler(process, info) -> None:
    """Raise ``ValueError`` when the sampler ``info`` (a ``SamplerInfo``) does not apply to ``process``."""
    fam = family_of(process)
    if not fam.has(info.requires):
        ok = samplers_for(process)
        raise ValueError(f"sampler {info.name!r} needs {TRAITS[info.requires]}; {describe(process)}; "
                         f"samplers that apply: {', '.join(ok) or 'none'}")
