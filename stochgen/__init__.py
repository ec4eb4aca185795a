"""stochgen: stochastic-process generative modelling for any domain, in PyTorch."""
from . import checkpoint, guidance, likelihood, nets, oracles, parameterization, processes, samplers, spaces
from .likelihood import bits_per_dim, log_likelihood
from .sampling import sample
from .domain import Domain, DomainData, domain, register_domain
from .model import Model, load, resolve_model
from .fit import fit

__version__ = "0.1.0"

__all__ = ["processes", "spaces", "nets", "checkpoint", "samplers", "parameterization", "oracles", "guidance", "likelihood",
           "sample", "log_likelihood", "bits_per_dim", "__version__",
           "Domain", "DomainData", "domain", "register_domain", "Model", "load", "resolve_model", "fit"]
