"""``stochgen.sample``: draw samples from any process with any sampler and any prediction kind."""
from __future__ import annotations

import inspect

import torch

from ._validate import as_tensor, check_finite
from .families import check_prediction, check_sampler, family_of
from .parameterization import Prediction, check_kind
from .samplers import grids, registry
from .samplers.kernel import check_times


def sample(process, model, shape=None, *, x_T=None, sampler: str = "dpm++2m", steps: int = 20,
           prediction: str | None = None, grid: str | None = None, grid_options: dict | None = None, times=None,
           generator: torch.Generator | None = None,
           cond: dict | None = None, dtype=None, device=None, callback=None, progress: bool = False,
           return_info: bool = False, **options):
    """Integrate the reverse process from the prior (or from ``x_T``) to the data end.

    ``model(x, t, **cond)`` returns the declared ``prediction`` (score, eps, x0, v or velocity;
    default eps where the process's family allows it), or for jump samplers the denoising
    probabilities p(x_0 | x_t) of shape (*x.shape, K) ("probs", or "logits"). The sampler must
    apply to the process's family and the prediction be one the family produces
    (:mod:`stochgen.families`); otherwise a ``ValueError`` names the mismatch.
    ``times`` overrides the grid (a decreasing 1-D tensor); otherwise the grid is
    ``grid`` (default: the sampler's own) with ``steps`` intervals ending at the data.
    ``grid_options`` go to the grid function of :mod:`stochgen.samplers.grids`: ``t_end`` (the
    last time before the final denoising step, default the process's ``t_min``; for EDM and VE
    that time is the noise level sigma), ``t_start`` and, for ``"karras"``, ``rho``. At 5-10
    steps a later ``t_end`` than EDM's sigma = 0.002 often helps (the final step then removes the
    last noise in one go instead of spending a model call between sigma = 0.002 and 0).
    Returns the samples, or ``(samples, info)`` with ``info["nfe"]`` and ``info["times"]``
    when ``return_info`` is true.
    """
    info = registry.get(sampler)
    fam = family_of(process)
    check_sampler(process, info)  # "sampler 'dpm++2m' needs a linear Gaussian process; ... samplers that apply: ..."
    if prediction is None:
        prediction = info.prediction or ("eps" if "eps" in fam.predictions else fam.default_prediction)
    check_prediction(process, check_kind(prediction))
    cond = dict(cond or {})
    if x_T is None:
        if shape is None:
            raise ValueError("give either shape=(n, ...) or a start state x_T")
        shape = shape if isinstance(shape, dict) else tuple(shape)  # a dict: {part: (n, ...)} of a composite
        x_T = process.prior_sample(shape, generator=generator, dtype=dtype or torch.get_default_dtype(),
                                   device=device, **cond)
    elif isinstance(x_T, dict):  # a composite state: its sampler checks the parts
        x_T = {k: torch.as_tensor(v, device=device) for k, v in x_T.items()}
    elif info.kind == "jump":  # integer states stay integers
        x_T = torch.as_tensor(x_T, device=device)
    else:
        x_T = as_tensor(x_T, "x_T", dtype=dtype, device=device)
        if shape is not None and tuple(shape) != tuple(x_T.shape):
            raise ValueError(f"shape {tuple(shape)} does not match x_T of shape {tuple(x_T.shape)}")
        check_finite(x_T, "x_T")
    dev = next(iter(x_T.values())).device if isinstance(x_T, dict) and x_T else getattr(x_T, "device", None)
    if times is None:
        if grid is None:  # the sampler's own grid, or uniform where the process has no log-SNR
            grid = info.default_grid if grids.has_log_snr(process) else "uniform"
        times = grids.make_grid(process, steps, grid, dtype=torch.float64, device=dev,
                                **_grid_options(grid, grid_options))
    else:
        if grid_options:
            raise ValueError("grid_options apply to a generated grid; they cannot be combined with times=")
        times = check_times(as_tensor(times, "times").to(device=dev))
    process.check_t(times)  # a t_end / t_start outside the process's time range is named here
    pred = Prediction(model, prediction, process, cond)
    cb = callback
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(times) - 1, desc=f"sampling ({sampler})", leave=False)

        def cb(i, t, x):  # noqa: F811 - wraps the user's callback
            bar.update(1)
            if callback is not None:
                callback(i, t, x)

    with torch.no_grad():
        x = info.fn(process, pred, x_T, times, generator=generator, callback=cb, **options)
    if bar is not None:
        bar.close()
    if return_info:
        return x, {"nfe": pred.nfe, "times": times, "sampler": sampler}
    return x


def _grid_options(grid: str, options: dict | None) -> dict:
    """``options`` checked against the keyword arguments of the grid function itself."""
    options = dict(options or {})
    fn = grids.GRIDS.get(grid)
    fixed = {"process", "steps", "dtype", "device", "to_data"}  # set by sample() itself
    allowed = [] if fn is None else [k for k in inspect.signature(fn).parameters if k not in fixed]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown grid option(s) {', '.join(map(repr, unknown))} for grid {grid!r}; "
                         f"valid: {', '.join(allowed) or 'none'}")
    return options
