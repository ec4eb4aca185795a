"""Forward processes: how data are corrupted, with exact marginals and priors."""
from .._validate import build_from_spec
from .base import LinearGaussian, Marginal, Process
from .vp import VP, SubVP
from .ve import VE
from .edm import EDM
from .mean_reverting import IRSDE, OUVE, MeanReverting
from .gbm import GBM
from .interpolant import Interpolant
from .se3_diffusion import SE3Diffusion, SE3Interpolation
from .ctmc import CTMC, AbsorbingCTMC, UniformCTMC
from .simulate import simulate_forward
from .composite import Composite

__all__ = [
    "Process", "LinearGaussian", "Marginal", "VP", "SubVP", "VE", "EDM", "MeanReverting", "OUVE", "IRSDE",
    "GBM", "Interpolant", "SE3Diffusion", "SE3Interpolation", "CTMC", "UniformCTMC", "AbsorbingCTMC", "Composite",
    "from_spec", "names", "register", "simulate_forward",
]

_REGISTRY = {name: obj for name, obj in globals().items() if isinstance(obj, type) and issubclass(obj, Process)}


_ABSTRACT = ("Process", "LinearGaussian", "MeanReverting")


def names() -> list[str]:
    """Names of the processes that ``from_spec`` can rebuild."""
    return sorted(n for n in _REGISTRY if n not in _ABSTRACT)


def register(cls: type) -> type:
    """Make a third-party :class:`Process` subclass known to ``from_spec`` (and so to ``stochgen.load``).

    Usable as a decorator. ``cls(**process.config())`` must rebuild a process, and the class must
    declare a ``family`` (:mod:`stochgen.families`), usually by inheriting it. Registering the same
    class again is a no-op; another class under a taken name is an error. (A checkpoint also records
    the class's module, so ``stochgen.load`` imports it in a fresh process.)
    """
    from ..families import family_of

    if not (isinstance(cls, type) and issubclass(cls, Process)):
        raise TypeError(f"only Process subclasses can be registered, got {cls!r}")
    have = _REGISTRY.get(cls.__name__)
    if have is not None and have is not cls:
        raise ValueError(f"a process type named {cls.__name__!r} is already registered ({have.__module__})")
    family_of(cls.__new__(cls))  # a clear error now rather than at training time
    _REGISTRY[cls.__name__] = cls
    return cls


def from_spec(spec: dict) -> Process:
    """Rebuild a process from ``process.spec()`` (what checkpoints store)."""
    if isinstance(spec, dict) and spec.get("type") in _ABSTRACT:
        raise ValueError(f"unknown process type {spec['type']!r}; known: {', '.join(names())}")
    return build_from_spec(spec, _REGISTRY, "process", names(), base=Process)
