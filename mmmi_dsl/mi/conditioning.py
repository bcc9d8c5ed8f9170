"""What conditioning on C fixes, structural zeros of ``I(A; B | C)``, and the MI of residuals.

Every block is a linear map of independent standard-normal sources ``s`` (the scalar
protos and the coordinates of the vector protos): ``x_S = A_S s``. Given ``x_C``, ``s`` is
Gaussian with covariance ``I − P``, P the orthogonal projector onto ``row(A_C)``, so
``Cov(A, B | C) = A_A (I − P) A_Bᵀ`` and ``I(A; B | C) = 0`` exactly when it vanishes.

Note:
    Determined protos. If C fixes a set T of sources (``e_T ⊂ row(A_C)``), then
    ``P = P_T + P'`` with P' the projector onto the row space of ``A_C`` with the T columns
    zeroed, so conditioning on C is conditioning on ``s_T`` and on C', the blocks of C
    with the T columns dropped: T drops out of A, B and C. T is found without a
    factorisation where it can be (a block of C that, T aside, loads on one scalar proto,
    or on one vector proto through a multiple of the identity), by full column rank of a
    connected piece of C' (an SVD), or by an exact reduction of a small C' in integers.
    Every map that fixes something has all its singular values² above the query's dense
    threshold ``Tolerance.total`` (≥ 1e-12 ‖A_C‖², far above the ~eps ‖A_C‖ error of an
    SVD): never a false "fixed", and never one the thresholds elsewhere would contradict
    (a rank raised by rounding alone, as in a rounded outer product, fixes nothing).

    d-separation. P' is block diagonal over the connected components of the graph whose
    nodes are the protos outside T, joined when one block of C' loads on both (a proto
    no block of C' loads on is a component of its own). So ``Cov(A, B | C)`` is a sum of
    one term per component, and it is 0 when no component holds a proto of A and one of
    B. That decision uses only which coefficients are nonzero: exact on any BLAS, and it
    never declares a nonzero value zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from mmmi_dsl.mi.blocks import BlockSet, fmt, union
from mmmi_dsl.mi.logdet import Tolerance
from mmmi_dsl.mi.values import MIValue

__all__ = ["EXACT_COLUMNS", "EXACT_ROWS", "RANK_CHECK_COLUMNS", "Reduction", "exact_row_basis", "reduce_conditioning",
           "residual_mi"]

#: Largest piece of C (in source dimensions) whose full column rank is checked by an SVD.
RANK_CHECK_COLUMNS = 1024
#: Largest rest of C (rows, source dimensions) reduced in exact integer arithmetic.
EXACT_ROWS, EXACT_COLUMNS = 24, 48  # Gauss-Jordan in integers: 0.2 s at 24 × 48, 35 s at 64 × 128


@dataclass(frozen=True)
class Reduction:
    """What C fixes, and whether ``I(A; B | C)`` is a structural zero.

    Attributes:
        fixed: Protos determined by C (they drop out of A, B and C).
        fixed_coordinates: ``(proto, index)`` of the coordinates of other protos that C determines.
        zero: True when ``I(A; B | C) = 0`` follows from the structure (module Note).
        reason: Why it is zero, else None.
    """

    fixed: frozenset[str]
    zero: bool
    reason: str | None
    fixed_coordinates: frozenset[tuple[str, int]] = frozenset()


class _Roots:
    """Union-find over proto names."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def join(self, items: Sequence[str]) -> None:
        items = list(items)
        for other in items[1:]:
            a, b = self.find(items[0]), self.find(other)
            if a != b:
                self.parent[b] = a


def _dim(bs: BlockSet, proto: str) -> int:
    return bs.vector.get(proto, 1)


def _fixes_exactly(bs: BlockSet, block: str, proto: str, atol: Tolerance) -> bool:
    """A block loading on ``proto`` alone (T aside) fixes it without a factorisation: a
    loading column of a scalar proto, or ``c·I`` (no dense map) on a vector proto, whose
    squared norm (the map's σ²) is above ``atol.total``, so that the thresholds agree."""
    blk = bs.blocks[block]
    if proto in bs.vector:
        c = blk.identity.get(proto, 0.0)
        return proto not in blk.dense and c * c > atol.total
    column = blk.loadings[:, bs.scalar.index(proto)]
    return float(column @ column) > atol.total


def _full_column_rank(bs: BlockSet, blocks: Sequence[str], protos: Sequence[str], atol: Tolerance) -> bool:
    """Whether the columns ``protos`` of the rows ``blocks`` have full column rank, every
    singular value² above ``atol.total`` (module Note); False when too large to check."""
    rows, cols = bs.size(blocks), sum(_dim(bs, p) for p in protos)
    if rows < cols or cols > RANK_CHECK_COLUMNS or rows > bs.dense_limit:
        return False
    where = bs.dense_columns(blocks)
    M = bs.dense_matrix(blocks)[:, np.concatenate([np.arange(where[p].start, where[p].stop) for p in protos])]
    sv = np.linalg.svd(M, compute_uv=False)
    return sv.size == cols and bool(np.all(sv * sv > atol.total))


def exact_row_basis(M: np.ndarray) -> list[dict[int, int]]:
    """A reduced row-echelon basis of ``row(M)`` in exact integer arithmetic (sparse rows).

    The float entries are dyadic rationals, scaled by their common power of two to
    integers; Gauss-Jordan with rows divided by their gcd. Each pivot column is nonzero in
    its own row only, so ``e_j ∈ row(M)`` exactly when some row is a multiple of ``e_j``.
    """
    fr = [[Fraction(float(x)) for x in row] for row in M]
    den = max((f.denominator for row in fr for f in row), default=1)  # powers of 2: the max is the lcm
    basis: list[tuple[int, dict[int, int]]] = []

    def combine(r: dict[int, int], p: dict[int, int], col: int) -> dict[int, int]:
        a, b = p[col], r[col]
        out = {k: v for k in r.keys() | p.keys() if (v := a * r.get(k, 0) - b * p.get(k, 0))}
        g = math.gcd(*out.values()) if out else 1
        return {k: v // g for k, v in out.items()}

    for row in fr:
        r = {j: int(f * den) for j, f in enumerate(row) if f}
        for col, p in basis:
            if col in r:
                r = combine(r, p, col)
        if not r:
            continue
        col = min(r)
        basis = [(c, combine(p, r, col) if col in p else p) for c, p in basis]
        basis.append((col, r))
    return [r for _, r in basis]


def _pattern(bs: BlockSet, names: Sequence[str], proto: str) -> np.ndarray:
    """Which coordinates of ``proto`` the blocks ``names`` load on (exact: nonzero coefficients)."""
    if proto not in bs.vector:
        return np.ones(1, dtype=bool)
    out = np.zeros(bs.vector[proto], dtype=bool)
    for n in names:
        blk = bs.blocks[n]
        if blk.identity.get(proto, 0.0) != 0.0:
            out[:] = True
        if proto in blk.dense:
            out |= np.any(blk.dense[proto] != 0, axis=0)
    return out


def _fixed_protos(bs: BlockSet, C: Sequence[str], deps: dict[str, set[str]], atol: Tolerance) -> set[str]:
    """The protos C fixes by the exact single-proto rule and by full column rank (module Note)."""
    fixed: set[str] = set()
    changed = True
    while changed:
        changed = False
        for c in C:
            rest = deps[c] - fixed
            if len(rest) == 1:
                (p,) = rest
                if _fixes_exactly(bs, c, p, atol) or _full_column_rank(bs, [c], [p], atol):
                    fixed.add(p)
                    changed = True
        if changed:
            continue
        pieces = _Roots()
        for c in C:
            pieces.join(sorted(deps[c] - fixed))
        members: dict[str, tuple[list[str], set[str]]] = {}
        for c in C:
            rest = deps[c] - fixed
            if rest:
                blocks, protos = members.setdefault(pieces.find(next(iter(rest))), ([], set()))
                blocks.append(c)
                protos |= rest
        for blocks, protos in members.values():
            if _full_column_rank(bs, blocks, sorted(protos), atol):
                fixed |= protos
                changed = True
    return fixed


def reduce_conditioning(bs: BlockSet, A: Sequence[str], B: Sequence[str], C: Sequence[str],
                        atol: Tolerance) -> Reduction:
    """The protos (and coordinates) C fixes and the d-separation of A and B given C (module Note).

    After the proto-level rules, a small enough rest of C (rows ≤ ``EXACT_ROWS``, columns
    ≤ ``EXACT_COLUMNS``) is reduced exactly (:func:`exact_row_basis`): its unit rows are
    the coordinates C fixes only jointly, and its other rows link coordinates, not whole protos.
    Only when its exact rank is its rank at the query's threshold (``Tolerance.total``): a
    rank that rounding alone raised must not fix anything.
    """
    deps = {c: set(bs.dependencies([c])) for c in C}
    fixed = _fixed_protos(bs, C, deps, atol)
    rest = [c for c in C if deps[c] - fixed]
    protos = sorted(set().union(*(deps[c] - fixed for c in rest)), key=lambda p: (p in bs.vector, p))
    coords = [(p, i) for p in protos for i in range(_dim(bs, p))]
    fixed_coords: set[tuple[str, int]] = set()
    pieces = _Roots()
    exact = bool(rest) and bs.size(rest) <= EXACT_ROWS and len(coords) <= EXACT_COLUMNS
    if exact:
        where = bs.dense_columns(rest)
        M = bs.dense_matrix(rest)[:, np.array([where[p].start + i for p, i in coords], dtype=int)]
        reduced = exact_row_basis(M)
        sv = np.linalg.svd(M, compute_uv=False)
        # a matrix singular to working precision but not exactly (an outer product, rounded) would
        # fix what the thresholds call noise-free: then trust neither and keep whole protos
        exact = len(reduced) == int(np.count_nonzero(sv * sv > atol.total))
    if exact:
        for row in reduced:
            if len(row) == 1:
                fixed_coords.add(coords[next(iter(row))])
            else:
                pieces.join([repr(coords[j]) for j in sorted(row)])
        for p in protos:
            if all((p, i) in fixed_coords for i in range(_dim(bs, p))):
                fixed.add(p)
        fixed_coords = {(p, i) for p, i in fixed_coords if p not in fixed}
    else:
        for c in rest:
            pieces.join(sorted(deps[c] - fixed))

    def nodes(X: Sequence[str]) -> set[str]:
        out = set()
        for p in bs.dependencies(X) - fixed:
            if exact and p in protos:
                out |= {pieces.find(repr((p, int(i)))) for i in np.flatnonzero(_pattern(bs, X, p))
                        if (p, int(i)) not in fixed_coords}
            else:
                out.add(pieces.find(p))
        return out

    na, nb = nodes(A), nodes(B)
    names = sorted(fixed) + [f"{p}[{i + 1}]" for p, i in sorted(fixed_coords)]
    found = Reduction(frozenset(fixed), False, None, frozenset(fixed_coords))
    if not na or not nb:
        return replace(found, zero=True, reason=f"{fmt(A if not na else B)} is determined by {fmt(C)}")
    if not na & nb:
        why = f"it fixes {fmt(names)}, and no other proto-latent links them" if names else \
            "no proto-latent links them"
        return replace(found, zero=True, reason=f"{fmt(A)} and {fmt(B)} are independent given {fmt(C)}: {why}")
    return found


def _basis(M: np.ndarray, atol: Tolerance) -> np.ndarray:
    """Orthonormal basis (columns) of ``row(M)``: right singular vectors with σ² > ``atol.total``."""
    if M.size == 0:
        return np.zeros((M.shape[1], 0))
    _, sv, vt = np.linalg.svd(M, full_matrices=False)
    return vt[sv * sv > atol.total].T


def residual_mi(bs: BlockSet, A: Sequence[str], B: Sequence[str], C: Sequence[str], atol: Tolerance,
                reduction: Reduction | None = None) -> MIValue:
    """``I(A; B | C)`` as the MI of the residuals of A and B given C (:func:`residual_angles`)."""
    return residual_angles(bs, A, B, C, atol, reduction)[0]


def residual_angles(bs: BlockSet, A: Sequence[str], B: Sequence[str], C: Sequence[str], atol: Tolerance,
                    reduction: Reduction | None = None) -> tuple[MIValue, tuple[int, int, int]]:
    """``I(A; B | C)`` as the MI of the residuals of A and B given C, from factors, with the ranks
    it found for the residuals of A, of B and of both (``rank F_A``, ``rank F_B``, ``rank F``).

    Note:
        Drop the protos C fixes (module Note), take an orthonormal basis Q of the row
        space of what is left of ``A_C`` (SVD, σ² > ``atol.total``) and the residual
        factors ``F = A_X − A_X Q Qᵀ`` (X = A ∪ B, projected twice): ``Cov(X | C) = F Fᵀ``,
        with no subtraction of covariances. Then ``I = −Σ_i log sin θ_i`` over the
        principal angles between ``row(F_A)`` and ``row(F_B)`` (the canonical correlations
        are ``cos θ_i``; ``−½ log1p(−cos²)`` for small ones), ``inf`` when
        ``rank F < rank F_A + rank F_B``. Error ~ eps times the condition of the blocks,
        not its square. Dense (sizes up to ``dense_limit``).
    """
    X = union(A, B)
    full = bs.dense_matrix(union(X, C))
    where = bs.dense_columns(union(X, C))
    keep = np.ones(full.shape[1], dtype=bool)
    if reduction is not None:
        for p in reduction.fixed:
            if p in where:
                keep[where[p]] = False
        for p, i in reduction.fixed_coordinates:
            if p in where:
                keep[where[p].start + i] = False
    full = full[:, keep]
    nx, na = bs.size(X), bs.size(A)
    F, Cm = full[:nx], full[nx:]
    Q = _basis(Cm, atol)
    for _ in range(2):  # twice is enough (Kahan, Parlett)
        F = F - (F @ Q) @ Q.T
    QA, QB = _basis(F[:na], atol), _basis(F[na:], atol)
    ra, rb = QA.shape[1], QB.shape[1]
    if ra == 0 or rb == 0:
        return MIValue(0.0, f"{fmt(A) if ra == 0 else fmt(B)} is determined by {fmt(C)}", "dense"), (ra, rb, -1)
    rab = _basis(F, atol).shape[1]
    ranks = (ra, rb, rab)
    if rab < ra + rb:
        return MIValue(math.inf, f"deterministic linear relation between {fmt(A)} and {fmt(B)} given "
                       f"{fmt(C)}: rank of the conditional covariance {rab} < {ra} + {rb}", "dense"), ranks
    if ra < rb:
        QA, QB = QB, QA
    cos = np.clip(np.linalg.svd(QA.T @ QB, compute_uv=False), 0.0, 1.0)  # descending, min(ra, rb)
    sin = np.sort(np.linalg.svd(QB - QA @ (QA.T @ QB), compute_uv=False))[: cos.size]  # ascending
    if np.any(sin[cos * cos >= 0.5] == 0.0):
        return MIValue(math.inf, f"deterministic linear relation between {fmt(A)} and {fmt(B)} given "
                       f"{fmt(C)}: a canonical correlation of the residuals is 1", "dense"), ranks
    small = cos * cos < 0.5
    value = float(-0.5 * np.sum(np.log1p(-cos[small] ** 2)) - np.sum(np.log(sin[~small])))
    return MIValue(max(value, 0.0), None, "dense"), ranks
