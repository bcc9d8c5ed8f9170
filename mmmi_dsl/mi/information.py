"""Conditional mutual information, total correlation and interaction information.

Each is a signed sum of log pseudo-determinants (:mod:`mmmi_dsl.mi.logdet`) sharing
the thresholds of the union of the query's blocks, with a rank rule for the infinite
case (a deterministic linear relation) and an exact 0.0 when the sets share no proto.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from mmmi_dsl.mi.blocks import BlockSet, fmt, union
from mmmi_dsl.mi.conditioning import reduce_conditioning, residual_angles, residual_mi
from mmmi_dsl.mi.logdet import logdet, tolerance
from mmmi_dsl.mi.values import MIValue

__all__ = ["MIValue", "clamp", "interaction_from_terms", "interaction_information", "mi", "total_correlation"]

#: Above this MI (nats) the log-determinant combination of :func:`mi` can lose more than 1e-13
#: relative (its error grows like eps e^(2 I) / I); queries of at most RESIDUAL_ROWS coordinates
#: are then recomputed from the principal angles of the residuals (:func:`residual_mi`): always after
#: dense log-determinants, after structured ones only when their dense factor costs at most
#: RESIDUAL_WORK (rows² × columns; up to ~50 ms on a 2-core CPU). Beyond that budget the angles cost
#: up to 1,400 times the structured query (decay at N = 10, d = 256: 350 ms each) and the structured
#: log-determinants are kept: on decay they agree with the angles to 2e-15.
NEAR_DETERMINISTIC_NATS = 4.0
RESIDUAL_ROWS = 512
RESIDUAL_WORK = 2e7


def clamp(value: float, terms: Iterable[float], what: str) -> float:
    """Snap round-off to exactly 0.0.

    A value within ``64 eps Σ|terms|`` of zero (the floating-point error of
    adding the log-determinants) is indistinguishable from 0 and reported as
    exactly 0.0 (e.g. a conditional independence ``I(x1; x2 | z_c)``); a
    slightly negative one (within 1e-9 relative) too; a clearly negative one
    is a bug.
    """
    scale = 1.0 + sum(abs(t) for t in terms)
    if abs(value) <= 64 * np.finfo(float).eps * scale:
        return 0.0
    if value >= 0:
        return value
    tol = 1e-9 * scale
    if value > -tol:
        return 0.0
    raise ArithmeticError(f"{what} came out clearly negative ({value:.3e} nats): this is a bug")


def mi(bs: BlockSet, a: str | Sequence[str], b: str | Sequence[str], given: str | Sequence[str] = ()) -> MIValue:
    """``I(A; B | C)`` in nats (see :meth:`GaussianSystem.mi`).

    Note:
        ``I = ½[lpdet(AC) + lpdet(BC) − lpdet(ABC) − lpdet(C)]`` with
        pseudo-determinants, and ``I = inf`` iff
        ``rank(ABC) + rank(C) < rank(AC) + rank(BC)``; right for degenerate
        Gaussians (restrict each block to its support) when the supports add up
        (else :func:`~mmmi_dsl.mi.conditioning.residual_mi`). All four share the
        threshold of the union. Exactly 0.0 ("independent") when A and B are
        d-separated given C, decided from which coefficients are nonzero once the
        protos C fixes are dropped (:func:`~mmmi_dsl.mi.conditioning.reduce_conditioning`),
        so a structural zero is 0 on any BLAS.
    """
    A = bs.check(a, "a")
    B = bs.check(b, "b")
    C = bs.check(given, "given")
    if not A or not B:
        raise ValueError("mi needs non-empty sets a and b")
    shared = set(A) & set(B)
    if shared:
        raise ValueError(f"a and b share blocks {sorted(shared)}")
    if bs.independent(A, B, C):
        return MIValue(0.0, f"{fmt(A)} and {fmt(B)} are independent given {fmt(C)}: "
                       "one of them shares no proto-latent with the rest", "independent")
    AC, BC, ABC = union(A, C), union(B, C), union(A, B, C)
    atol = tolerance(bs, ABC)
    reduction = reduce_conditioning(bs, A, B, C, atol) if C else None
    if reduction is not None and reduction.zero:
        return MIValue(0.0, reduction.reason, "independent")
    l_ac, l_bc, l_abc = logdet(bs, AC, atol), logdet(bs, BC, atol), logdet(bs, ABC, atol)
    l_c = logdet(bs, C, atol)
    if C and (l_ac.rank < logdet(bs, A, atol).rank + l_c.rank or
              l_bc.rank < logdet(bs, B, atol).rank + l_c.rank):
        return residual_mi(bs, A, B, C, atol, reduction)
    dets = (l_ac, l_bc, l_abc, l_c)
    method = "dense" if any(x.method == "dense" for x in dets) else "structured"
    lhs, rhs = l_abc.rank + l_c.rank, l_ac.rank + l_bc.rank
    if lhs < rhs:
        cond = f" given {fmt(C)}" if C else ""
        return MIValue(
            math.inf,
            f"deterministic linear relation between {fmt(A)} and {fmt(B)}{cond}: "
            f"rank(ABC)+rank(C) = {lhs} < rank(AC)+rank(BC) = {rhs}",
            method,
        )
    if lhs > rhs:
        raise ArithmeticError(
            f"inconsistent ranks (rank(ABC)+rank(C) = {lhs} > {rhs}): eigenvalues too close to the "
            "zero threshold; rescale the model"
        )
    value = 0.5 * (l_ac.value + l_bc.value - l_abc.value - l_c.value)
    value = clamp(value, (x.value for x in dets), "mutual information")
    cancels = value > NEAR_DETERMINISTIC_NATS or (C and method == "dense" and value > 0)
    if cancels and _angles_affordable(bs, ABC, method):
        # near a deterministic relation the four log-determinants lose eps * e^(2 I) to cancellation
        # (2e-9 relative at I = 7.9), and four dense ones of a conditional MI cancel to a small value
        # (I(a; b | c0, c1) = 4e-4 from terms of -3 to -10: 1.5e-9 relative, the small eigenvalues
        # amplifying eps); the principal angles of the residuals lose eps * cond. Taken only
        # when the residuals have the ranks the log-determinants decided: the angles' one threshold
        # (atol.total) can drop a weak noise-free direction the structured thresholds keep
        angles, (ra, rb, rab) = residual_angles(bs, A, B, C, atol, reduction)
        decided = (l_ac.rank - l_c.rank, l_bc.rank - l_c.rank, l_abc.rank - l_c.rank)
        if (ra, rb, rab) == decided and math.isfinite(angles.nats) and angles.nats > 0:
            return MIValue(angles.nats, None, "dense")
    return MIValue(value, None, method)


def _angles_affordable(bs: BlockSet, names: Sequence[str], method: str) -> bool:
    """Whether the residuals' principal angles of ``names`` fit RESIDUAL_ROWS and ``dense_limit`` and, after
    structured log-determinants, RESIDUAL_WORK. Dense ones always take them: they lose eps e^(2 I) too
    (a 1e-4 noise under a shared cause: 2.5e-6 relative at 11.5 nats), and cost about as much."""
    rows, columns = bs.dense_shape(names)
    if rows > min(RESIDUAL_ROWS, bs.dense_limit):
        return False
    return method == "dense" or rows * rows * columns <= RESIDUAL_WORK


def total_correlation(bs: BlockSet, groups: Sequence[str | Sequence[str]]) -> MIValue:
    """``Σ_i H(G_i) − H(G_1, …, G_n) = ½[Σ_i lpdet(G_i) − lpdet(∪ G_i)]`` in nats
    (see :meth:`GaussianSystem.total_correlation`)."""
    gs = [bs.check(g, f"groups[{i}]") for i, g in enumerate(groups)]
    if len(gs) < 2 or any(not g for g in gs):
        raise ValueError("total_correlation needs at least two non-empty groups")
    whole_names = union(*gs)
    if len(whole_names) != sum(len(g) for g in gs):
        raise ValueError("total_correlation groups must be disjoint")
    deps = [bs.dependencies(g) for g in gs]
    if all(not (deps[i] & deps[j]) for i in range(len(gs)) for j in range(i + 1, len(gs))):
        return MIValue(0.0, "the groups depend on pairwise disjoint proto-latents", "independent")
    atol = tolerance(bs, whole_names)
    parts = [logdet(bs, g, atol) for g in gs]
    whole = logdet(bs, whole_names, atol)
    method = "dense" if any(x.method == "dense" for x in [*parts, whole]) else "structured"
    rsum = sum(p.rank for p in parts)
    if whole.rank < rsum:
        return MIValue(
            math.inf,
            f"deterministic linear relation among the groups: "
            f"rank(union) = {whole.rank} < Σ rank = {rsum}",
            method,
        )
    if whole.rank > rsum:
        raise ArithmeticError("inconsistent ranks: eigenvalues too close to the zero threshold")
    value = 0.5 * (sum(p.value for p in parts) - whole.value)
    value = clamp(value, [whole.value, *(p.value for p in parts)], "total correlation")
    return MIValue(value, None, method)


def interaction_information(bs: BlockSet, a: str | Sequence[str], b: str | Sequence[str],
                            c: str | Sequence[str]) -> MIValue:
    """``I(A; B) − I(A; B | C)`` in nats (see :meth:`GaussianSystem.interaction_information`)."""
    A, B, C = bs.check(a, "a"), bs.check(b, "b"), bs.check(c, "c")
    if not A or not B or not C:
        raise ValueError("interaction_information needs three non-empty sets")
    if len(union(A, B, C)) != len(A) + len(B) + len(C):
        raise ValueError("interaction_information sets must be pairwise disjoint")
    i_ab, i_abc = mi(bs, A, B), mi(bs, A, B, C)
    try:
        return interaction_from_terms(i_ab, i_abc)
    except ValueError as err:
        raise ValueError(f"interaction information undefined: {err}") from None


def interaction_from_terms(i_ab: MIValue, i_abc: MIValue,
                           zero_reason: str | None = "both terms are exactly zero by independence") -> MIValue:
    """``II = I(A; B) − I(A; B | C)`` from its two terms, for every law (Gaussian, Student-t, uniform).

    ``+inf`` when only ``I(A; B)`` is infinite, ``−inf`` when only ``I(A; B | C)`` is, exactly 0.0
    (with ``zero_reason``) when both are zero by independence. The method is the first of
    student, uniform, dense, structured among the terms', else independent.

    Raises:
        ValueError: Both terms infinite (inf − inf is undefined).
    """
    if math.isinf(i_ab.nats) and math.isinf(i_abc.nats):
        raise ValueError(f"both I(A;B) and I(A;B|C) are infinite ({i_ab.reason}; {i_abc.reason})")
    methods = {i_ab.method, i_abc.method}
    method = next((m for m in ("student", "uniform", "dense", "structured") if m in methods), "independent")
    if math.isinf(i_ab.nats):
        return MIValue(math.inf, f"I(A;B) is infinite: {i_ab.reason}", method)
    if math.isinf(i_abc.nats):
        return MIValue(-math.inf, f"I(A;B|C) is infinite: {i_abc.reason}", method)
    if method == "independent":
        return MIValue(0.0, zero_reason, method)
    return MIValue(i_ab.nats - i_abc.nats, None, method)
