"""State spaces: where a state lives, how noise enters it and how to move on it."""
from .base import Space
from .euclidean import Euclidean
from .logspace import LogSpace
from .so3 import SO3
from .se3 import SE3
from .igso3 import IGSO3
from .discrete import Discrete

__all__ = ["Space", "Euclidean", "LogSpace", "SO3", "SE3", "IGSO3", "Discrete"]
