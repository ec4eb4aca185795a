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

__all__ = [
    "Process", "LinearGaussian", "Marginal", "VP", "SubVP", "VE", "EDM", "MeanReverting", "OUVE", "IRSDE",
    "GBM", "Interpolant", "SE3Diffusion", "SE3Interpolation", "CTMC", "UniformCTMC", "AbsorbingCTMC",
    "from_spec", "names", "simulate_forward",
]

_REGISTRY = {name: obj for name, obj in globals().items() if isinstance(obj, type) and issubclass(obj, Process)}


def names() -> list[str]:
    """Names of the processes that ``from_spec`` can rebuild."""
    return sorted(n for n in _REGISTRY if n not in ("Process", "LinearGaussian", "MeanReverting"))


def from_spec(spec: dict) -> Process:
    """Rebuild a process from ``process.spec()`` (what checkpoints store)."""
    return build_from_spec(spec, _REGISTRY, "process", names())
