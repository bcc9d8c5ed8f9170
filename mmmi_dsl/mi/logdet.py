"""Log pseudo-determinants and ranks of covariance sub-matrices, and their thresholds.

Note:
    Tolerance. An eigenvalue (a variance along some direction) is treated as an
    exact zero when it is below ``RTOL = 1e-12`` times the scale of the matrix it
    was computed from, summed over the union of all blocks in the query:
    eigenvalues of the identity Grams ``F_g`` (squared singular values of R_g,
    so RTOL applies to the singular values: RTOL² to λ) against ``Σ_v Σ_j c_vj²``, those of
    the loadings' Gram against ``Σ_v ‖L_v‖₂²``, and those of a dense covariance
    against the bound ``Σ_v (Σ_j (|c_vj| + ‖D_vj‖₂)² + ‖L_v‖₂²)`` on its largest
    eigenvalue (:class:`Tolerance`). Each is computed to about eps times its own
    scale, so a strong shared cause (``‖L‖² = d·c²``, 1e13 in decay.mmi at small
    beta) does not swamp the noise it rides on. One set of thresholds per query
    keeps the ranks of the four sets of a conditional MI consistent. Consequence:
    noise whose variance is below 1e-24 of the other noise, or below :data:`HTOL`
    of the causes', counts as absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmmi_dsl.mi.blocks import BlockSet

__all__ = ["HTOL", "RTOL", "LogDet", "Tolerance", "equilibrated_cholesky", "logdet", "logdet_spd", "tolerance"]

#: Relative eigenvalue tolerance (see the module Note).
RTOL = 1e-12
#: Identity eigenvalues below HTOL times the loadings' scale count as zero, so that
#: ``H = Σ U'ᵀU'/λ`` cannot overflow: MI beyond ~ ½ log(1/HTOL) = 334 nats per
#: direction reads as inf (double precision cannot tell it from a deterministic relation).
HTOL = 1e-290


@dataclass(frozen=True)
class Tolerance:
    """Absolute eigenvalue thresholds of one query (module Note): an eigenvalue at or
    below its threshold is an exact zero."""

    identity: float  # eigenvalues of the identity Grams F_g
    loadings: float  # eigenvalues of the loadings' Gram M0
    total: float  # eigenvalues of a dense covariance


@dataclass(frozen=True)
class LogDet:
    """Log pseudo-determinant of a covariance ``Σ_SS``.

    Attributes:
        value: Sum of the logs of the nonzero eigenvalues of ``Σ_SS``.
        rank: Number of nonzero eigenvalues.
        size: Total dimension of S.
        method: "structured" or "dense" (how it was computed).
    """

    value: float
    rank: int
    size: int
    method: str = "structured"


def tolerance(bs: BlockSet, names: Sequence[str]) -> Tolerance:
    """The eigenvalue thresholds (``RTOL`` times each scale) of a query over checked ``names``."""
    identity = loadings = total = 0.0  # summed in order, as numpy sums fewer than 8 terms
    for n in names:
        i, ld, t = bs.block_scales(n)
        identity, loadings, total = identity + i, loadings + ld, total + t
    # F_g's eigenvalues are squared singular values of R_g, each accurate to eps·‖R_g‖: RTOL on
    # the singular values is RTOL² on λ; and Σ_{i∈+} U'ᵀU'/λ_i must stay finite (HTOL)
    return Tolerance(max(RTOL * RTOL * float(identity), HTOL * float(loadings)), RTOL * float(loadings),
                     RTOL * float(total))


def equilibrated_cholesky(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(D, L)`` with ``M = diag(D) L Lᵀ diag(D)``, ``D = diag(M)^½``, for a symmetric positive definite M.

    The Cholesky factor of the unit-diagonal ``C = M / (D Dᵀ)`` keeps causes of very
    different strength (entries 1e18 next to 1) apart. Callers form ``I + PᵀHP`` in
    range(Π), not ``I + ΠHΠ``: ``1 + 1e18`` rounds to ``1e18`` in a mixed direction.
    """
    M = 0.5 * (M + M.T)
    d = np.sqrt(np.diag(M))
    try:
        return d, np.linalg.cholesky(M / np.outer(d, d))
    except np.linalg.LinAlgError:  # I + PSD: only round-off can break it
        raise ArithmeticError("I + PᵀHP is not positive definite in double precision") from None


def logdet_spd(M: np.ndarray) -> float:
    """``log|M| = 2 Σ log D + 2 Σ log diag(L)`` (:func:`equilibrated_cholesky`)."""
    if M.size == 0:
        return 0.0
    d, chol = equilibrated_cholesky(M)
    return float(2.0 * np.sum(np.log(d)) + 2.0 * np.sum(np.log(np.diag(chol))))


def logdet(bs: BlockSet, names: Sequence[str], atol: Tolerance | None = None) -> LogDet:
    """Log pseudo-determinant and rank of ``Σ_SS`` for checked ``names``.

    Dense (``eigvalsh`` of the smaller of ``A_S A_Sᵀ`` and ``A_Sᵀ A_S``, same nonzero
    eigenvalues) when a block has dense maps, else :func:`structured_logdet`.
    ``atol`` defaults to ``tolerance(bs, names)``.
    """
    size = bs.size(names)
    if not names:
        return LogDet(0.0, 0, 0, "structured")
    if atol is None:
        atol = tolerance(bs, names)
    if bs.is_dense(names):
        A = bs.dense_matrix(names)
        gram = A @ A.T if A.shape[0] <= A.shape[1] else A.T @ A
        lam = np.linalg.eigvalsh(gram)
        nz = lam > atol.total
        return LogDet(float(np.sum(np.log(lam[nz]))), int(np.count_nonzero(nz)), size, "dense")
    return structured_logdet(bs, names, atol, size)


def structured_logdet(bs: BlockSet, names: Sequence[str], atol: Tolerance, size: int) -> LogDet:
    """``log pdet Σ_SS`` without forming Σ (blocks without dense maps; GaussianSystem's Note).

    Cost O(n_g² d K²) once for the Grams, then O(n_g³ + K³).
    """
    if bs.K == 1:
        return one_cause_logdet(bs, names, atol, size)
    return matrix_logdet(bs, names, atol, size)


def matrix_logdet(bs: BlockSet, names: Sequence[str], atol: Tolerance, size: int) -> LogDet:
    """:func:`structured_logdet` with K×K matrices (any K)."""
    K = bs.K
    value = 0.0
    rank = 0
    H = np.zeros((K, K))
    M0 = np.zeros((K, K))
    for d, members in bs.groups(names).items():
        lam, V = bs.group_eig(members)
        plus = lam > atol.identity
        value += d * float(np.sum(np.log(lam[plus])))
        rank += d * int(np.count_nonzero(plus))
        if K:
            Gi = bs.group_gram(members)
            H += np.einsum("i,ikl->kl", 1.0 / lam[plus], Gi[plus])
            M0 += Gi[~plus].sum(axis=0)
    if K:
        M0 = 0.5 * (M0 + M0.T)
        w, W = np.linalg.eigh(M0)
        nz = w > atol.loadings
        value += float(np.sum(np.log(w[nz])))
        rank += int(np.count_nonzero(nz))
        P = W[:, ~nz]  # orthonormal basis of range(Π): |I_K + ΠHΠ| = |I_r + PᵀHP|
        value += logdet_spd(np.eye(P.shape[1]) + P.T @ H @ P)
    return LogDet(value, rank, size, "structured")


def one_cause_logdet(bs: BlockSet, names: Sequence[str], atol: Tolerance, size: int) -> LogDet:
    """:func:`matrix_logdet` for one scalar proto (K = 1): the K×K matrices are numbers.

    The same operations in the same order, on floats (decay's 1,999 queries: no 1×1 arrays): the
    eigen-decomposition of a 1×1 M0 is M0 itself, ``|1 + PᵀHP|`` is 1 + h (its equilibrated
    Cholesky factor done by hand) or 1. Logs and square roots are numpy's, as there.
    """
    log, sqrt = np.log, np.sqrt
    value, rank, h, m0 = 0.0, 0, 0.0, 0.0
    for d, members in bs.groups(names).items():
        lam, _ = bs.group_eig(members)
        gram = bs.group_gram(members)[:, 0, 0]
        logs, hg, mg, count = 0.0, 0.0, 0.0, 0
        for lam_i, g_i in zip(lam.tolist(), gram.tolist()):
            if lam_i > atol.identity:
                logs += log(lam_i)
                hg += (1.0 / lam_i) * g_i
                count += 1
            else:
                mg += g_i
        value += d * float(logs)
        rank += d * count
        h, m0 = h + hg, m0 + mg
    if m0 > atol.loadings:
        value += float(log(m0))
        rank += 1
    else:  # logdet_spd([[1 + h]]): D = sqrt(1 + h), L = sqrt((1 + h) / D²)
        a = 1.0 + h
        dd = sqrt(a)
        value += float(2.0 * log(dd) + 2.0 * log(sqrt(a / (dd * dd))))
    return LogDet(value, rank, size, "structured")
