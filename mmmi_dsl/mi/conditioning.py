"""What conditioning on C fixes, structural zeros of ``I(A; B | C)``, and the MI of residuals.

Every block is a linear map of independent standard-normal sources ``s`` (the scalar
protos and the coordinates of the vector protos): ``x_S = A_S s``. Given ``x_C``, ``s`` is
Gaussian with covariance ``I − P``, P the orthogonal projector onto ``row(A_C)``, so
``Cov(A, B | C) = A_A (I − P) A_Bᵀ`` and ``I(A; B | C) = 0`` exactly when it vanishes.

Note:
    Determined protos. If C fixes a set T of protos (``e_T ⊂ row(A_C)``), then
    ``P = P_T + P'`` with P' the projector onto the row space of ``A_C`` with the T columns
    zeroed, so conditioning on C is conditioning on ``s_T`` and on C', the blocks of C
    with the T columns dropped: T drops out of A, B and C. T is found exactly where it
    can be (a block of C that, T aside, loads on one scalar proto, or on one vector proto
    through a nonzero multiple of the identity) and otherwise by full column rank of a
    connected piece of C' (every singular value² above the query's dense threshold
    ``Tolerance.total``, ≥ 1e-12 ‖A_C‖², far above the ~eps ‖A_C‖ error of an SVD, so
    never a false "fixed").

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
from dataclasses import dataclass

import numpy as np

from mmmi_dsl.mi.blocks import BlockSet, fmt, union
from mmmi_dsl.mi.logdet import Tolerance
from mmmi_dsl.mi.values import MIValue

__all__ = ["RANK_CHECK_COLUMNS", "Reduction", "reduce_conditioning", "residual_mi"]

#: Largest piece of C (in source dimensions) whose full column rank is checked by an SVD.
RANK_CHECK_COLUMNS = 1024


@dataclass(frozen=True)
class Reduction:
    """What C fixes, and whether ``I(A; B | C)`` is a structural zero.

    Attributes:
        fixed: Protos determined by C (they drop out of A, B and C).
        zero: True when ``I(A; B | C) = 0`` follows from the structure (module Note).
        reason: Why it is zero, else None.
    """

    fixed: frozenset[str]
    zero: bool
    reason: str | None


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


def _fixes_exactly(bs: BlockSet, block: str, proto: str) -> bool:
    """A block loading on ``proto`` alone (T aside) fixes it with no numerics: a nonzero
    loading column of a scalar proto, or ``c·I`` (c ≠ 0, no dense map) on a vector proto."""
    blk = bs.blocks[block]
    if proto in bs.vector:
        return proto not in blk.dense and blk.identity.get(proto, 0.0) != 0.0
    return True  # a scalar proto in the block's dependencies has a nonzero loading


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


def reduce_conditioning(bs: BlockSet, A: Sequence[str], B: Sequence[str], C: Sequence[str],
                        atol: Tolerance) -> Reduction:
    """The protos C fixes and the d-separation of A and B given C (module Note)."""
    deps = {c: set(bs.dependencies([c])) for c in C}
    fixed: set[str] = set()
    changed = True
    while changed:
        changed = False
        for c in C:
            rest = deps[c] - fixed
            if len(rest) == 1:
                (p,) = rest
                if _fixes_exactly(bs, c, p) or _full_column_rank(bs, [c], [p], atol):
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
    da, db = bs.dependencies(A) - fixed, bs.dependencies(B) - fixed
    why = f"it fixes {fmt(sorted(fixed))}, and no other proto-latent links them" if fixed else \
        "no proto-latent links them"
    if not da or not db:
        side = A if not da else B
        return Reduction(frozenset(fixed), True, f"{fmt(side)} is determined by {fmt(C)}")
    pieces = _Roots()
    for c in C:
        pieces.join(sorted(deps[c] - fixed))
    if not {pieces.find(p) for p in da} & {pieces.find(p) for p in db}:
        return Reduction(frozenset(fixed), True,
                         f"{fmt(A)} and {fmt(B)} are independent given {fmt(C)}: {why}")
    return Reduction(frozenset(fixed), False, None)


def _basis(M: np.ndarray, atol: Tolerance) -> np.ndarray:
    """Orthonormal basis (columns) of ``row(M)``: right singular vectors with σ² > ``atol.total``."""
    if M.size == 0:
        return np.zeros((M.shape[1], 0))
    _, sv, vt = np.linalg.svd(M, full_matrices=False)
    return vt[sv * sv > atol.total].T


def residual_mi(bs: BlockSet, A: Sequence[str], B: Sequence[str], C: Sequence[str], atol: Tolerance,
                fixed: frozenset[str] = frozenset()) -> MIValue:
    """``I(A; B | C)`` as the MI of the residuals of A and B given C, from factors.

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
    for p in fixed:
        if p in where:
            keep[where[p]] = False
    full = full[:, keep]
    nx, na = bs.size(X), bs.size(A)
    F, Cm = full[:nx], full[nx:]
    Q = _basis(Cm, atol)
    for _ in range(2):  # twice is enough (Kahan, Parlett)
        F = F - (F @ Q) @ Q.T
    QA, QB = _basis(F[:na], atol), _basis(F[na:], atol)
    ra, rb = QA.shape[1], QB.shape[1]
    if ra == 0 or rb == 0:
        return MIValue(0.0, f"{fmt(A) if ra == 0 else fmt(B)} is determined by {fmt(C)}", "dense")
    rab = _basis(F, atol).shape[1]
    if rab < ra + rb:
        return MIValue(math.inf, f"deterministic linear relation between {fmt(A)} and {fmt(B)} given "
                       f"{fmt(C)}: rank of the conditional covariance {rab} < {ra} + {rb}", "dense")
    if ra < rb:
        QA, QB = QB, QA
    cos = np.clip(np.linalg.svd(QA.T @ QB, compute_uv=False), 0.0, 1.0)  # descending, min(ra, rb)
    sin = np.sort(np.linalg.svd(QB - QA @ (QA.T @ QB), compute_uv=False))[: cos.size]  # ascending
    if np.any(sin[cos * cos >= 0.5] == 0.0):
        return MIValue(math.inf, f"deterministic linear relation between {fmt(A)} and {fmt(B)} given "
                       f"{fmt(C)}: a canonical correlation of the residuals is 1", "dense")
    small = cos * cos < 0.5
    value = float(-0.5 * np.sum(np.log1p(-cos[small] ** 2)) - np.sum(np.log(sin[~small])))
    return MIValue(max(value, 0.0), None, "dense")
