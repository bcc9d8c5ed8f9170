"""Numeric values of an IR's templates and matrices (numpy, float64), from their definitions.

Shared by the exact analysis and the torch backend so both see the same numbers.
"""

from __future__ import annotations

import numpy as np

from mmmi_dsl import ir
from mmmi_dsl.builtins.matrices import MATRICES, VALUES_KIND, literal_values
from mmmi_dsl.builtins.templates import TEMPLATES, data_error


def template_vector(t: ir.Template, model: ir.Model, cache: dict | None = None) -> np.ndarray:
    """The template as a float64 vector of length ``t.size`` (see :mod:`mmmi_dsl.builtins.templates`)."""
    if cache is not None and t.name in cache:
        return cache[t.name]
    v = TEMPLATES[t.kind].realise(t, lambda name: template_vector(model.templates[name], model, cache))
    if v.shape != (t.size,):
        raise data_error(t, f"template `{t.name}` has {v.size} entries, expected {t.size}",
                         "the file changed since the spec was checked?")
    if not np.all(np.isfinite(v)):
        raise data_error(t, f"template `{t.name}` has non-finite entries")
    if cache is not None:
        cache[t.name] = v
    return v


def matrix_array(m: ir.Matrix, cache: dict | None = None) -> np.ndarray:
    """The matrix as a float64 array of shape (rows, cols) (see :mod:`mmmi_dsl.builtins.matrices`)."""
    if cache is not None and m.name in cache:
        return cache[m.name]
    arr = literal_values(m) if m.kind == VALUES_KIND else MATRICES[m.kind].realise(m)
    if arr.shape != (m.rows, m.cols):
        raise data_error(m, f"matrix `{m.name}` is {arr.shape}, expected {(m.rows, m.cols)}")
    if not np.all(np.isfinite(arr)):
        raise data_error(m, f"matrix `{m.name}` has non-finite entries")
    if cache is not None:
        cache[m.name] = arr
    return arr
