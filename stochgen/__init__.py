"""stochgen: stochastic-process generative modelling for any domain, in PyTorch."""
from . import guidance, likelihood, oracles, parameterization, processes, samplers, spaces
from .likelihood import bits_per_dim, log_likelihood
from .sampling import sample

__version__ = "0.1.0"

__all__ = ["processes", "spaces", "samplers", "parameterization", "oracles", "guidance", "likelihood",
           "sample", "log_likelihood", "bits_per_dim", "__version__"]
