"""Matrix constructors (``matrix M = ...``, applied as ``M @ z``), each declared once with its
numpy realisation as a float64 array of shape (rows, cols)."""

from __future__ import annotations

import numpy as np

from mmmi_dsl.builtins.signature import MAX_SEED, Arg, Builtin
from mmmi_dsl.builtins.templates import FILE, load_npy


def _uniform(m) -> np.ndarray:
    rng = np.random.default_rng(int(m.args["seed"]))
    return rng.uniform(float(m.args.get("low", -1.0)), float(m.args.get("high", 1.0)), size=(m.rows, m.cols))


def _normal(m) -> np.ndarray:
    rng = np.random.default_rng(int(m.args["seed"]))
    return rng.normal(0.0, float(m.args.get("scale", 1.0)), size=(m.rows, m.cols))


def _orthogonal(m) -> np.ndarray:
    """Haar-distributed: Q of a Gaussian matrix's QR with the signs of R's diagonal."""
    rng = np.random.default_rng(int(m.args["seed"]))
    q, r = np.linalg.qr(rng.standard_normal((m.rows, m.rows)))
    return q * np.sign(np.diag(r))[None, :]


def _identity(m) -> np.ndarray:
    return np.eye(m.rows)


def _npy(m) -> np.ndarray:
    return load_npy(m)


ROWS = Arg("rows", "size")
COLS = Arg("cols", "size")
SEED = Arg("seed", "int", low=0, high=MAX_SEED, help="a non-negative integer seed")
BOUND = 1e150  # entries and scales whose squares stay finite

MATRICES: dict[str, Builtin] = {b.name: b for b in (
    Builtin("uniform", "matrix", "entries U(low, high) from a seed", (ROWS, COLS, SEED),
            (Arg("low", "float", -1.0, low=-BOUND, high=BOUND), Arg("high", "float", 1.0, low=-BOUND, high=BOUND)),
            realise=_uniform),
    Builtin("normal", "matrix", "entries N(0, scale^2) from a seed", (ROWS, COLS, SEED),
            (Arg("scale", "float", 1.0, low=0, high=BOUND),), realise=_normal),
    Builtin("orthogonal", "matrix", "a Haar-random orthogonal matrix from a seed", (Arg("size", "size"), SEED),
            realise=_orthogonal),
    Builtin("identity", "matrix", "the identity", (Arg("size", "size"),), realise=_identity),
    Builtin("npy", "matrix", "a 2-D .npy array", (FILE,), realise=_npy),
)}
