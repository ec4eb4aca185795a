"""stochgen: stochastic-process generative modelling for any domain, in PyTorch."""
from . import processes, spaces

__version__ = "0.1.0"

__all__ = ["processes", "spaces", "__version__"]
