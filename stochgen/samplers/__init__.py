"""Reverse-time samplers: stateless functions over one prediction protocol.

``names()`` lists every registered sampler; ``get(name)`` returns its
:class:`~stochgen.samplers.registry.SamplerInfo`. Importing the modules below registers them.
"""
from . import grids
from .registry import SamplerInfo, get, names, register
from . import ode, flow_ode, unipc, ipndm, sde, mean_reverting, gbm, ctmc, se3  # noqa: E402,F401  (registration)

from . import se3_flow, interpolant, composite  # noqa: E402,F401  (the family samplers)

__all__ = ["grids", "get", "names", "register", "SamplerInfo"]
