"""Objectives: how each process family is trained (see :mod:`stochgen.objectives.base`).

``build(process, prediction, precondition)`` returns the objective of the process's family:
``"dsm"`` (linear Gaussian and mean-reverting processes, :mod:`.dsm`), ``"flow-matching"``
(interpolants), ``"log-dsm"`` (log-space GBM), ``"lie-dsm"`` / ``"lie-flow-matching"``
(SE(3) / SO(3) processes), ``"discrete"`` (jump processes), ``"composite"`` (states made of
named parts). Each lives in its own module, imported when first used.
"""
from .base import (Denoiser, Objective, build, check_trainable, names, register, supports_preconditioning, tree_map,
                   tree_rows)
from .dsm import P_MEAN, P_STD, draw_training_batch, dsm_loss, sample_time, target_and_weight

__all__ = ["Denoiser", "Objective", "build", "check_trainable", "names", "register", "supports_preconditioning",
           "tree_map", "tree_rows", "sample_time", "draw_training_batch", "dsm_loss", "target_and_weight",
           "P_MEAN", "P_STD", "rot_score_scale_fn"]


# every family's objective module, imported now so that what they register (prediction conversions,
# networks) is there for a loaded model too
from . import composite, discrete, flow_matching, lie_group, log_space  # noqa: E402,F401
from .lie_group import rot_score_scale_fn  # noqa: E402  (the tabulated RMS rotation score, for SE(3) score networks)
