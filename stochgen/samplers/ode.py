"""The ODE samplers of linear Gaussian processes, by job (this module keeps the old import path).

* :mod:`.schedule`    the schedule engine they share (fast float path, x0 calls, order rule)
* :mod:`.time_shift`  the time-shift sampler option (Li et al. 2024)
* :mod:`.euler_heun`  ``euler``, ``heun`` (VE-equivalent form)
* :mod:`.dpm`         ``ddim``, ``dpm++1``, ``dpm++2m``, ``dpm++3m``, ``dpm++2m-sde``
"""
from .dpm import ddim, dpmpp_1, dpmpp_2m, dpmpp_2m_sde, dpmpp_3m  # noqa: F401  (registration)
from .euler_heun import euler, heun  # noqa: F401  (registration)
from .kernel import check_times  # noqa: F401
from .schedule import _At, _cast, _Pt, _reject_unknown, _Schedule, final_order_cap  # noqa: F401
from .time_shift import select_shifted_time  # noqa: F401

__all__ = ["euler", "heun", "ddim", "dpmpp_1", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "select_shifted_time",
           "final_order_cap", "check_times"]
