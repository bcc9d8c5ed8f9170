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


def _equicorrelation(m) -> np.ndarray:
    """(1 - rho) I + rho 1 1ᵀ: variance 1, correlation rho between every pair."""
    out = np.full((m.rows, m.rows), float(m.args["rho"]))
    np.fill_diagonal(out, 1.0)
    return out


def _diagonal(m) -> np.ndarray:
    return np.diag(np.asarray(m.args["values"], dtype=np.float64))


def literal_values(m) -> np.ndarray:
    """A matrix written as rows (``[[1, 0.5], [0.5, 1]]``) or assembled at lowering (``blockdiag``)."""
    return np.asarray(m.args["values"], dtype=np.float64).reshape(m.rows, m.cols)


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
    Builtin("equicorrelation", "matrix", "a correlation matrix: 1 on the diagonal, rho elsewhere",
            (Arg("size", "size"), Arg("rho", "float", low=-1, high=1,
                                      help="the correlation of every pair; positive semi-definite from "
                                           "-1/(size - 1) to 1")), realise=_equicorrelation),
    Builtin("diagonal", "matrix", "a diagonal matrix of the listed entries",
            (Arg("values", "list", help="the diagonal entries as a list: diagonal([1, 2, 0.5])"),),
            realise=_diagonal),
    Builtin("blockdiag", "matrix", "matrices along the diagonal, zeros elsewhere (blockdiag(A, B, ...))",
            (Arg("blocks", "matrices", help="two or more matrices: names, constructors or rows [[a, b], [c, d]]"),),
            realise=literal_values),
)}

#: Matrices built at lowering and kept as their entries (``args["values"]``): literal rows, blockdiag.
VALUES_KIND = "values"
