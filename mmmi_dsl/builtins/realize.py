"""Numeric values of an IR's templates and matrices (numpy, float64).

Shared by the exact analysis and the torch backend so both see the same numbers.
Random ones come from numpy's PCG64 generator seeded by the spec, so they are the
same on every machine. Files are read without pickle.
"""

from __future__ import annotations

import numpy as np

from mmmi_dsl import ir
from mmmi_dsl.errors import Diagnostic, SpecError


def _data_error(node, message: str, hint: str = "") -> SpecError:
    return SpecError([Diagnostic("E0208", message, node.span, "", hint)])


def template_vector(t: ir.Template, model: ir.Model, cache: dict | None = None) -> np.ndarray:
    """The template as a float64 vector of length ``t.size``.

    Note:
        ``blob(shape, row, col, sigma)`` is ``exp(-((r-row)^2 + (c-col)^2) / (2 sigma^2))``
        over 1-based pixel coordinates (r, c), the same in every channel, flattened
        channel-first; ``image`` scales 8-bit values to [0, 1], flattened C x H x W.
    """
    if cache is not None and t.name in cache:
        return cache[t.name]
    a = t.args
    if t.kind == "ones":
        v = np.ones(t.size)
    elif t.kind == "onehot":
        v = np.zeros(t.size)
        v[int(a["index"]) - 1] = 1.0
    elif t.kind == "random":
        v = np.random.default_rng(int(a["seed"])).standard_normal(t.size)
    elif t.kind == "blob":
        shape = tuple(a["shape"])
        c, h, w = shape if len(shape) == 3 else (1, *shape)
        r = np.arange(1, h + 1)[:, None]
        q = np.arange(1, w + 1)[None, :]
        plane = np.exp(-((r - float(a["row"])) ** 2 + (q - float(a["col"])) ** 2) / (2 * float(a["sigma"]) ** 2))
        v = np.broadcast_to(plane, (c, h, w)).reshape(-1).copy()
    elif t.kind == "image":
        from PIL import Image
        try:
            with Image.open(t.path) as img:
                arr = np.asarray(img.convert(str(a.get("mode", "RGB"))), dtype=np.float64) / 255.0
        except Exception as err:  # noqa: BLE001 - any decoder failure is a data error
            raise _data_error(t, f"cannot read image `{a.get('file')}`: {err}") from None
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        v = arr.reshape(-1)
    elif t.kind == "npy":
        v = _load_npy(t).reshape(-1)
    elif t.kind == "normalize":
        inner = template_vector(model.templates[str(a["of"])], model, cache)
        norm = float(np.linalg.norm(inner))
        if norm == 0 or not np.isfinite(norm):
            raise SpecError([Diagnostic("E0212", f"cannot normalize template `{a['of']}`: its norm is {norm}",
                                        t.span, "", "a template to normalize must be finite and nonzero")])
        v = inner / norm
    else:  # pragma: no cover - the IR admits no other kind
        raise ValueError(t.kind)
    if v.shape != (t.size,):
        raise _data_error(t, f"template `{t.name}` has {v.size} entries, expected {t.size}",
                          "the file changed since the spec was checked?")
    if not np.all(np.isfinite(v)):
        raise _data_error(t, f"template `{t.name}` has non-finite entries")
    if cache is not None:
        cache[t.name] = v
    return v


def matrix_array(m: ir.Matrix, cache: dict | None = None) -> np.ndarray:
    """The matrix as a float64 array of shape (rows, cols)."""
    if cache is not None and m.name in cache:
        return cache[m.name]
    a = m.args
    if m.kind == "uniform":
        rng = np.random.default_rng(int(a["seed"]))
        arr = rng.uniform(float(a.get("low", -1.0)), float(a.get("high", 1.0)), size=(m.rows, m.cols))
    elif m.kind == "normal":
        rng = np.random.default_rng(int(a["seed"]))
        arr = rng.normal(0.0, float(a.get("scale", 1.0)), size=(m.rows, m.cols))
    elif m.kind == "orthogonal":
        rng = np.random.default_rng(int(a["seed"]))
        q, r = np.linalg.qr(rng.standard_normal((m.rows, m.rows)))
        arr = q * np.sign(np.diag(r))[None, :]  # Haar-distributed
    elif m.kind == "identity":
        arr = np.eye(m.rows)
    elif m.kind == "npy":
        arr = _load_npy(m)
    else:  # pragma: no cover
        raise ValueError(m.kind)
    if arr.shape != (m.rows, m.cols):
        raise _data_error(m, f"matrix `{m.name}` is {arr.shape}, expected {(m.rows, m.cols)}")
    if not np.all(np.isfinite(arr)):
        raise _data_error(m, f"matrix `{m.name}` has non-finite entries")
    if cache is not None:
        cache[m.name] = arr
    return arr


def _load_npy(node) -> np.ndarray:
    try:
        arr = np.load(node.path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - unreadable or pickled data is a data error
        raise _data_error(node, f"cannot read `{node.args.get('file')}`: {err}",
                          "save with numpy.save; pickled objects are refused") from None
    return np.asarray(arr, dtype=np.float64)
