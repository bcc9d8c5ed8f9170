"""Factors of a covariance given directly: S = F Fᵀ, with the rank of S decided exactly where possible.

A block of latents declared by its covariance S (n x n) is realised as F ε with ε ~ N(0, I_r) fresh
proto-latents and F (n, r), r = rank S. The factor is found per connected component of S's
sparsity graph (coordinates i, j linked when S_ij != 0 exactly), so a block-diagonal S gives
independent blocks by structure, not by roundoff.

- Up to :data:`EXACT_LIMIT` coordinates a component is factored in exact rational arithmetic
  (:func:`exact_ldl`): symmetric elimination S = L D Lᵀ with positive pivots, which decides
  positive semi-definiteness and the rank exactly; F = L sqrt(D) is rounded to float64 only at the
  end, so its zero pattern is exact.
- Larger components use float64 eigenvalues: an eigenvalue at most :func:`rank_tolerance`
  (n · eps · the largest |eigenvalue|, numpy's ``matrix_rank`` rule) counts as zero; below minus
  that, S is not positive semi-definite. Full rank gives the Cholesky factor, else
  F = V_r sqrt(Λ_r).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

#: Coordinates of one component factored exactly (rational elimination, about n³/3 steps:
#: Bareiss on integers, under a second at 64 for arbitrary float64 entries).
EXACT_LIMIT = 64


class NotPositiveSemidefinite(ValueError):
    """S has a negative eigenvalue; ``smallest`` is its smallest eigenvalue (float64)."""

    def __init__(self, smallest: float):
        super().__init__(f"smallest eigenvalue {smallest:.6g}")
        self.smallest = smallest


@dataclass(frozen=True)
class Component:
    """One connected component of S: its coordinates (ascending), the factor rows F (len(coords), rank)
    and whether the rank was decided exactly."""

    coords: tuple[int, ...]
    factor: np.ndarray
    exact: bool

    @property
    def rank(self) -> int:
        return self.factor.shape[1]


def rank_tolerance(eigenvalues: np.ndarray) -> float:
    """n · eps · max |λ|: eigenvalues this small are zero on the float path."""
    n = max(1, eigenvalues.size)
    top = float(np.max(np.abs(eigenvalues))) if eigenvalues.size else 0.0
    return n * np.finfo(np.float64).eps * top


def smallest_eigenvalue(s: np.ndarray) -> float:
    return float(np.linalg.eigvalsh(s)[0]) if s.size else 0.0


def components(s: list[list[Fraction]] | np.ndarray) -> list[list[int]]:
    """Connected components of the graph with an edge i-j where S_ij != 0 (exactly), each ascending."""
    n = len(s)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        row = s[i]
        for j in range(i + 1, n):
            if row[j] != 0:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values())


def exact_ldl(s: list[list[Fraction]]) -> list[tuple[int, dict[int, Fraction], Fraction]]:
    """Pivots (p, column, d) with S = Σ d · l lᵀ, l_j = column[j] (l_p = 1), every d > 0.

    Symmetric fraction-free (Bareiss) elimination on the integers m·S (m the common denominator),
    pivoting on the first positive diagonal entry. After k pivots an entry is the Schur
    complement's times the k-th leading principal minor (> 0), so signs are the Schur
    complement's. S is positive semi-definite iff elimination never meets a negative diagonal
    entry, nor a zero diagonal entry in a nonzero row (a Schur complement of a PSD matrix on a
    positive pivot is PSD, and conversely). The number of pivots is the rank.

    Raises:
        NotPositiveSemidefinite: S is not PSD (``smallest`` from float64 eigenvalues of S).
    """
    m = math.lcm(*(x.denominator for row in s for x in row)) if s else 1
    a = [[x.numerator * (m // x.denominator) for x in row] for row in s]
    rest = list(range(len(a)))
    pivots = []
    prev = 1  # the previous pivot's value: the leading principal minor so far (times m^k)
    while rest:
        pivot = None
        for i in rest:
            d = a[i][i]
            if d < 0 or (d == 0 and any(a[i][j] != 0 for j in rest)):
                raise NotPositiveSemidefinite(smallest_eigenvalue(np.array(s, dtype=float)))
            if pivot is None and d > 0:
                pivot = i
        if pivot is None:
            break  # the rest is exactly zero
        app = a[pivot][pivot]
        rest.remove(pivot)
        prow = a[pivot]
        column = {pivot: Fraction(1)}
        column.update({j: Fraction(prow[j], app) for j in rest if prow[j] != 0})
        pivots.append((pivot, column, Fraction(app, prev * m)))
        for j in rest:  # Bareiss: a_jk <- (a_pp a_jk - a_jp a_pk) / prev, exact
            row, ajp = a[j], prow[j]
            if ajp == 0:
                for k in rest:
                    row[k] = row[k] * app // prev if row[k] else 0
            else:
                for k in rest:
                    row[k] = (app * row[k] - ajp * prow[k]) // prev
        prev = app
    return pivots


def _exact_factor(s: list[list[Fraction]]) -> np.ndarray:
    pivots = exact_ldl(s)
    f = np.zeros((len(s), len(pivots)))
    for c, (_, column, d) in enumerate(pivots):
        root = math.sqrt(d)  # float(d), then sqrt: the only rounding besides the entries'
        for j, lj in column.items():
            f[j, c] = float(lj) * root
    return f


def _float_factor(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    tol = rank_tolerance(w)
    if w.size and w[0] < -tol:
        raise NotPositiveSemidefinite(float(w[0]))
    keep = w > tol
    if keep.all():
        try:
            return np.linalg.cholesky(s)
        except np.linalg.LinAlgError:
            pass
    return v[:, keep] * np.sqrt(w[keep])[None, :]


def factor(s: list[list[Fraction]]) -> list[Component]:
    """F per connected component of S (n x n, symmetric, exact entries), rank-0 components left out.

    Raises:
        NotPositiveSemidefinite: S is not PSD; ``smallest`` is the smallest eigenvalue of the whole S.
    """
    out = []
    try:
        for coords in components(s):
            sub = [[s[i][j] for j in coords] for i in coords]
            if len(coords) <= EXACT_LIMIT:
                f, exact = _exact_factor(sub), True
            else:
                f, exact = _float_factor(np.array(sub, dtype=float)), False
            if f.shape[1]:
                out.append(Component(tuple(coords), f, exact))
    except NotPositiveSemidefinite:
        raise NotPositiveSemidefinite(smallest_eigenvalue(np.array(s, dtype=float))) from None
    return out
