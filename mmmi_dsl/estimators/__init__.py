"""MI estimators to benchmark on datasets whose MI is known (``mmmic estimate``).

Every estimator has one signature::

    estimate = ESTIMATORS[name](x, y, *, seed=0, device="cpu", **options)

``x`` is ``(n, *shape_x)``, ``y`` is ``(n, *shape_y)``; the result is an
:class:`Estimate` (nats, a standard error or None, and details). The estimators:

- ``gaussian``: plug-in Gaussian MI from the sample covariance, minus the exact
  Wishart bias (:func:`mmmi_dsl.dataset.plugin_bias`); standard error from the
  influence function (valid for non-Gaussian data too). Exact only for Gaussian data.
- ``ksg``: Kraskov-Stoegbauer-Grassberger estimator 1 (k = 3, max-norm), neighbours
  with ``scipy.spatial.cKDTree`` (low dimension) or blockwise brute force in torch.
- ``dv``, ``mine``, ``nwj``, ``infonce``, ``js``, ``smile``: variational bounds with a
  trained critic (Poole et al. 2019; Song & Ermon 2020), read on a held-out test split.

Modules: :mod:`~mmmi_dsl.estimators.classical` (gaussian, ksg),
:mod:`~mmmi_dsl.estimators.variational` (critics, bounds, training),
:mod:`~mmmi_dsl.estimators.saved` (estimators on a generated dataset).
``docs/estimators.md`` is the reference (options, tolerances, caveats).
"""

from __future__ import annotations

import inspect
from typing import Callable

from mmmi_dsl.errors import UsageError, did_you_mean
from mmmi_dsl.estimators.base import Estimate, EstimatorError
from mmmi_dsl.estimators.classical import gaussian, ksg
from mmmi_dsl.estimators.variational import (
    EXTRA_OPTIONS,
    TRAIN_DEFAULTS,
    VARIATIONAL,
    dv,
    infonce,
    js,
    mine,
    nwj,
    smile,
)

ESTIMATORS: dict[str, Callable[..., Estimate]] = {
    "gaussian": gaussian, "ksg": ksg, "dv": dv, "mine": mine, "nwj": nwj, "infonce": infonce, "js": js,
    "smile": smile,
}


def get_estimator(name: str) -> Callable[..., Estimate]:
    """The estimator called ``name``; a :class:`UsageError` listing the valid names otherwise."""
    try:
        return ESTIMATORS[name]
    except (KeyError, TypeError):
        close = did_you_mean(str(name), ESTIMATORS)
        hint = f" ({close})" if close.startswith("did you") else ""
        raise UsageError(f"unknown estimator {name!r}{hint}; valid: {', '.join(ESTIMATORS)}") from None


def estimate(name: str, x, y, *, seed: int = 0, device: str = "cpu", **options) -> Estimate:
    """Run estimator ``name``; unknown options are a :class:`UsageError` naming the valid ones."""
    fn = get_estimator(name)
    if name not in VARIATIONAL:
        params = inspect.signature(fn).parameters
        unknown = sorted(set(options) - set(params))
        if unknown:
            valid = sorted(p for p in params if p not in ("x", "y", "seed", "device"))
            raise UsageError(f"{name}: unknown option {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
    return fn(x, y, seed=seed, device=device, **options)


__all__ = ["ESTIMATORS", "VARIATIONAL", "TRAIN_DEFAULTS", "EXTRA_OPTIONS", "Estimate", "EstimatorError",
           "estimate", "get_estimator", "gaussian", "ksg", "dv", "mine", "nwj", "infonce", "js", "smile"]
