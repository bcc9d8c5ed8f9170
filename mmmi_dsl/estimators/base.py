"""What every estimator shares: the result type, the data error, and the input checks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmmi_dsl.errors import MmmicError


class EstimatorError(MmmicError):
    """Data an estimator cannot work on (too few samples, singular, non-finite) (exit code 1)."""

    exit_code = 1


@dataclass(frozen=True)
class Estimate:
    """One MI estimate: ``nats``, its standard error (None when there is none) and details."""

    nats: float
    stderr: float | None
    details: dict = field(default_factory=dict)


def as_samples(a, name: str) -> np.ndarray:
    """``a`` as a numeric array (n, *shape) with at least one sample axis; finite."""
    a = np.asarray(a)
    if a.ndim == 0:
        raise EstimatorError(f"{name} is a scalar; expected an array with samples on the first axis")
    if a.dtype.kind not in "fiub":
        raise EstimatorError(f"{name} has dtype {a.dtype}; expected numbers")
    if a.ndim == 1:
        a = a[:, None]
    if not np.isfinite(a).all():
        raise EstimatorError(f"{name} holds NaN or infinite values")
    return a


def paired(x, y, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (n, *shape_x) and ``y`` (n, *shape_y) checked by :func:`as_samples`, paired, ``n >= minimum``."""
    x, y = as_samples(x, "x"), as_samples(y, "y")
    if len(x) != len(y):
        raise EstimatorError(f"x has {len(x)} samples and y {len(y)}; they must be paired")
    if len(x) < minimum:
        raise EstimatorError(f"{len(x)} samples is too few (at least {minimum} needed)")
    return x, y


def flatten(a: np.ndarray) -> np.ndarray:
    """(n, *shape) -> contiguous float64 (n, prod(shape))."""
    return np.ascontiguousarray(a.reshape(len(a), -1), dtype=np.float64)
