"""Reverse-time samplers: stateless functions over one prediction protocol.

``names()`` lists every registered sampler; ``get(name)`` returns its
:class:`~stochgen.samplers.registry.SamplerInfo`. Importing the modules below registers them.
"""
from . import grids
from .registry import SamplerInfo, get, names, register
from . import ode, flow_ode, unipc, ipndm, sde, mean_reverting, gbm, ctmc, se3  # noqa: E402,F401  (registration)


def _import_family_samplers():
    import importlib

    for mod in ("se3_flow", "interpolant", "composite"):
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:  # a sampler module not written yet
            if exc.name != f"{__name__}.{mod}":
                raise


_import_family_samplers()

__all__ = ["grids", "get", "names", "register", "SamplerInfo"]
