"""Exact mutual information of linear-Gaussian block models, at scale.

Every named variable ("block") is a linear map of independent standard-normal
proto-latents: K scalar ones ``ũ = (ũ_1..ũ_K)`` and named vector ones
``p_j ∈ R^{m_j}``::

    x_v = Σ_j identity_v[j] · p_j  +  L_v ũ  +  Σ_j dense_v[j] @ p_j

This module evaluates log pseudo-determinants of covariance sub-matrices and,
from them, (conditional) mutual information, total correlation, interaction
information, the MI of a thresholded score, and pointwise MI. When no block of
a set has dense maps it never forms a d×d matrix: only K×K Gram matrices of the
loadings touch d. Pure numpy; imports nothing from the rest of the package.

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

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

__all__ = [
    "RTOL",
    "Block",
    "LogDet",
    "MIValue",
    "Tolerance",
    "TooLargeError",
    "GaussianSystem",
    "binary_entropy",
    "binary_label_information",
]

#: Relative eigenvalue tolerance (see the module Note).
RTOL = 1e-12
#: Identity eigenvalues below HTOL times the loadings' scale count as zero, so that
#: ``H = Σ U'ᵀU'/λ`` cannot overflow: MI beyond ~ ½ log(1/HTOL) = 334 nats per
#: direction reads as inf (double precision cannot tell it from a deterministic relation).
HTOL = 1e-290

#: pmi refuses when its Woodbury terms exceed this times the dimension: their difference
#: (of order the dimension) would be off by more than ~1e-6 of the dimension, in nats.
PMI_CANCEL = 1e10

# Samples per chunk in pmi: keeps the rotated copy of the data below ~32 MiB.
_CHUNK_FLOATS = 1 << 22


@dataclass(frozen=True)
class Tolerance:
    """Absolute eigenvalue thresholds of one query (module Note): an eigenvalue at or
    below its threshold is an exact zero."""

    identity: float  # eigenvalues of the identity Grams F_g
    loadings: float  # eigenvalues of the loadings' Gram M0
    total: float  # eigenvalues of a dense covariance


class TooLargeError(ValueError):
    """The dense path would need a matrix larger than ``dense_limit`` rows."""


@dataclass(frozen=True, eq=False)
class Block:
    """One named variable ``x_v ∈ R^size``, linear in the proto-latents.

    Attributes:
        name: Block name.
        size: Dimension ``size_v`` (1 for a scalar such as a target θ).
        identity: Vector-proto name -> coefficient c; adds ``c · p_j``. Only for
            protos whose size equals ``size``.
        loadings: (size, K) float64, loadings on the K scalar protos.
        dense: Vector-proto name -> (size, m_j) matrix; adds ``D @ p_j``.

    Arrays are copied to read-only float64 and mappings frozen on construction.
    A 1-D ``loadings`` of length K is accepted for ``size == 1``.
    """

    name: str
    size: int
    identity: Mapping[str, float]
    loadings: np.ndarray
    dense: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"block name must be a non-empty string, got {self.name!r}")
        size = int(self.size)
        if size != self.size or size < 1:
            raise ValueError(f"block {self.name!r}: size must be a positive integer, got {self.size!r}")
        identity = {}
        for proto, coef in dict(self.identity).items():
            coef = float(coef)
            if not math.isfinite(coef):
                raise ValueError(f"block {self.name!r}: identity coefficient on {proto!r} is not finite")
            identity[str(proto)] = coef
        loadings = np.array(self.loadings, dtype=np.float64, copy=True)
        if loadings.ndim == 1 and size == 1:
            loadings = loadings.reshape(1, -1)
        if loadings.ndim != 2 or loadings.shape[0] != size:
            raise ValueError(
                f"block {self.name!r}: loadings must have shape (size={size}, K), got {loadings.shape}"
            )
        if not np.all(np.isfinite(loadings)):
            raise ValueError(f"block {self.name!r}: loadings are not finite")
        loadings.flags.writeable = False
        dense = {}
        for proto, mat in dict(self.dense).items():
            mat = np.array(mat, dtype=np.float64, copy=True)
            if mat.ndim != 2 or mat.shape[0] != size:
                raise ValueError(
                    f"block {self.name!r}: dense map on {proto!r} must have shape (size={size}, m), "
                    f"got {mat.shape}"
                )
            if not np.all(np.isfinite(mat)):
                raise ValueError(f"block {self.name!r}: dense map on {proto!r} is not finite")
            mat.flags.writeable = False
            dense[str(proto)] = mat
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "identity", MappingProxyType(identity))
        object.__setattr__(self, "loadings", loadings)
        object.__setattr__(self, "dense", MappingProxyType(dense))


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


@dataclass(frozen=True)
class MIValue:
    """An information quantity in nats.

    Attributes:
        nats: Value; may be ``math.inf``; never NaN; exactly 0.0 for independent sets.
        reason: Why it is infinite or exactly zero, else None.
        method: "structured", "dense" or "independent".
    """

    nats: float
    reason: str | None
    method: str


def _phi(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


_ERFC = np.frompyfunc(math.erfc, 1, 1)


def _Phi(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, accurate in both tails (erfc)."""
    return _ERFC(-np.asarray(x, dtype=np.float64) / math.sqrt(2.0)).astype(np.float64) * 0.5


def _xlogx(p: np.ndarray) -> np.ndarray:
    out = np.zeros_like(p)
    pos = p > 0
    out[pos] = p[pos] * np.log(p[pos])
    return out


def _h_of_Phi(v: np.ndarray) -> np.ndarray:
    """Binary entropy (nats) of ``Φ(v)``, with both tails computed without cancellation."""
    return -_xlogx(_Phi(v)) - _xlogx(_Phi(-v))


def binary_entropy(p: float) -> float:
    """Binary entropy ``h(p) = -p log p - (1-p) log(1-p)`` in nats."""
    return float(-_xlogx(np.array([p]))[0] - _xlogx(np.array([1.0 - p]))[0])


_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(32)
_GL_PANELS = 8
_WINDOW = 12.0  # φ and h(Φ(·)) are below 1e-30 beyond 12 standard units


def _gauss_legendre(f, lo: float, hi: float) -> float:
    """Composite Gauss–Legendre (8 panels × 32 nodes) of f over [lo, hi]."""
    if not hi > lo:
        return 0.0
    edges = np.linspace(lo, hi, _GL_PANELS + 1)
    half = 0.5 * (edges[1:] - edges[:-1])
    mid = 0.5 * (edges[1:] + edges[:-1])
    x = (mid[:, None] + half[:, None] * _GL_NODES[None, :]).ravel()
    w = (half[:, None] * _GL_WEIGHTS[None, :]).ravel()
    return float(np.sum(w * f(x)))


def binary_label_information(mi_nats: float, tau: float) -> float:
    """MI between a thresholded score and what predicts it.

    Args:
        mi_nats: ``I(s; X)`` for a Gaussian score s and Gaussian X, in [0, inf].
        tau: Threshold in units of the standard deviation of s.

    Returns:
        ``I(y; X)`` in nats for ``y = 1[s > tau·sd(s)]``.

    Note:
        With s standardised, ``s | X ~ N(μ, c²)``, ``c = exp(-I)``, and
        ``μ = ρ z``, ``z ~ N(0, 1)``, ``ρ² = 1 - c²``. Then
        ``I(y; X) = h(Φ(-τ)) - E_z[h(Φ((ρ z - τ)/c))]``. The expectation is a 1-D
        integral of a Gaussian (width 1, centre 0) times a bump (width c/ρ, centre
        τ/ρ). It is evaluated by composite Gauss–Legendre in the variable of the
        narrower factor (z, or u = (ρ z - τ)/c), on the intersection of the two
        ±12-width windows; accurate to ~1e-13 absolute for I in [0, 20+] and
        |τ| ≤ 5 (tested against adaptive quadrature).
    """
    mi_nats = float(mi_nats)
    tau = float(tau)
    if math.isnan(mi_nats) or mi_nats < 0:
        raise ValueError(f"mi_nats must be in [0, inf], got {mi_nats}")
    if not math.isfinite(tau):
        raise ValueError(f"tau must be finite, got {tau}")
    h_y = float(_h_of_Phi(np.array([-tau]))[0])
    if mi_nats == 0.0:
        return 0.0
    if math.isinf(mi_nats):
        return h_y
    c = math.exp(-mi_nats)
    rho = math.sqrt(-math.expm1(-2.0 * mi_nats))
    W = _WINDOW
    if c < rho:  # bump narrower: integrate in u, z = (c u + tau)/rho, dz = c/rho du
        lo = max(-W, (-W * rho - tau) / c)
        hi = min(W, (W * rho - tau) / c)
        cond = (c / rho) * _gauss_legendre(lambda u: _phi((c * u + tau) / rho) * _h_of_Phi(u), lo, hi)
    else:  # Gaussian weight narrower: integrate in z
        lo = max(-W, (tau - W * c) / rho)
        hi = min(W, (tau + W * c) / rho)
        cond = _gauss_legendre(lambda z: _phi(z) * _h_of_Phi((rho * z - tau) / c), lo, hi)
    return max(h_y - cond, 0.0)


def _as_names(x: str | Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(x, str):
        return (x,)
    names = tuple(x)
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"{what}: block names must be strings, got {n!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: a block is listed twice in {list(names)}")
    return names


def _union(*sets: Sequence[str]) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for s in sets:
        for n in s:
            out[n] = None
    return tuple(out)


def _equilibrated_cholesky(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _logdet_spd(M: np.ndarray) -> float:
    """``log|M| = 2 Σ log D + 2 Σ log diag(L)`` (:func:`_equilibrated_cholesky`)."""
    if M.size == 0:
        return 0.0
    d, chol = _equilibrated_cholesky(M)
    return float(2.0 * np.sum(np.log(d)) + 2.0 * np.sum(np.log(np.diag(chol))))


def _fmt(names: Sequence[str]) -> str:
    return "{" + ", ".join(names) + "}"


class GaussianSystem:
    """Jointly Gaussian blocks that are linear maps of standard-normal protos.

    Args:
        scalar_protos: Names of the K scalar protos ``ũ_1..ũ_K`` (column order of
            every block's loadings).
        vector_protos: Vector-proto name -> size m_j.
        blocks: Block name -> Block (the key must equal ``Block.name``).
        dense_limit: Largest number of rows the dense path may build.

    Note:
        For a set S of blocks without dense maps,
        ``Σ_SS = blockdiag_g(F_g ⊗ I_{d_g}) + U Uᵀ``: blocks grouped by size d_g,
        ``F_g = R_g R_gᵀ`` with R_g the identity coefficients of the group's
        blocks on vector protos of size d_g, and U the stacked loadings (K
        columns). ``F_g = V Λ Vᵀ`` (from the SVD of R_g); rotated loadings
        ``U'_i = Σ_a V_ai L_a``. With "+" the indices where λ_i > tol, "0" the rest,
        ``M0 = Σ_{i∈0} U'_iᵀ U'_i = W S² Wᵀ`` (s nonzero), ``Π = I - W Wᵀ`` and
        ``H = Σ_{i∈+} U'_iᵀ U'_i / λ_i``::

            log pdet Σ = Σ_{i∈+} d_i log λ_i + Σ log S² + log|I_K + Π H Π|
            rank Σ     = Σ_{i∈+} d_i + s

        (rotate by V ⊗ I; the zero block is U0 U0ᵀ with U0 = P S Wᵀ; its Schur
        complement is ``Λ+ ⊗ I + (U+ Π)(U+ Π)ᵀ``, positive definite; then the
        matrix determinant lemma). Only the K×K Gram matrices ``L_aᵀ L_b`` touch d;
        they are cached per pair of same-size blocks.
    """

    def __init__(
        self,
        scalar_protos: Sequence[str],
        vector_protos: Mapping[str, int],
        blocks: Mapping[str, Block],
        dense_limit: int = 8192,
    ) -> None:
        self._scalar = tuple(str(s) for s in scalar_protos)
        if len(set(self._scalar)) != len(self._scalar):
            raise ValueError(f"duplicate scalar proto names in {list(self._scalar)}")
        self._vector: dict[str, int] = {}
        for name, m in vector_protos.items():
            if int(m) != m or m < 1:
                raise ValueError(f"vector proto {name!r}: size must be a positive integer, got {m!r}")
            if name in self._scalar:
                raise ValueError(f"proto name {name!r} is both scalar and vector")
            self._vector[str(name)] = int(m)
        self._K = len(self._scalar)
        self._blocks: dict[str, Block] = {}
        for key, blk in blocks.items():
            if not isinstance(blk, Block):
                raise TypeError(f"blocks[{key!r}] is not a Block")
            if key != blk.name:
                raise ValueError(f"blocks key {key!r} differs from Block.name {blk.name!r}")
            if blk.loadings.shape[1] != self._K:
                raise ValueError(
                    f"block {key!r}: loadings have {blk.loadings.shape[1]} columns, expected K={self._K}"
                )
            for proto in blk.identity:
                if proto not in self._vector:
                    raise ValueError(f"block {key!r}: unknown vector proto {proto!r} in identity")
                if self._vector[proto] != blk.size:
                    raise ValueError(
                        f"block {key!r}: identity map needs proto {proto!r} of size {blk.size}, "
                        f"it has size {self._vector[proto]}"
                    )
            for proto, mat in blk.dense.items():
                if proto not in self._vector:
                    raise ValueError(f"block {key!r}: unknown vector proto {proto!r} in dense")
                if mat.shape[1] != self._vector[proto]:
                    raise ValueError(
                        f"block {key!r}: dense map on {proto!r} has {mat.shape[1]} columns, "
                        f"proto size is {self._vector[proto]}"
                    )
            self._blocks[key] = blk
        self.dense_limit = int(dense_limit)
        self._gram_cache: dict[tuple[str, str], np.ndarray] = {}
        self._scale_cache: dict[str, float] = {}
        self._deps: dict[str, frozenset[str]] = {}
        for key, blk in self._blocks.items():
            deps = {self._scalar[k] for k in range(self._K) if np.any(blk.loadings[:, k] != 0)}
            deps |= {p for p, c in blk.identity.items() if c != 0}
            deps |= {p for p, mat in blk.dense.items() if np.any(mat != 0)}
            self._deps[key] = frozenset(deps)

    # ------------------------------------------------------------------ basics
    @property
    def scalar_protos(self) -> tuple[str, ...]:
        """Names of the K scalar protos, in loading-column order."""
        return self._scalar

    @property
    def vector_protos(self) -> Mapping[str, int]:
        """Vector-proto name -> size."""
        return MappingProxyType(self._vector)

    @property
    def blocks(self) -> Mapping[str, Block]:
        """Block name -> Block."""
        return MappingProxyType(self._blocks)

    def dependencies(self, names: str | Sequence[str]) -> frozenset[str]:
        """Protos with a nonzero coefficient in any of the blocks ``names``."""
        out: set[str] = set()
        for n in self._check(names, "names"):
            out |= self._deps[n]
        return frozenset(out)

    def _check(self, names: str | Sequence[str], what: str) -> tuple[str, ...]:
        names = _as_names(names, what)
        for n in names:
            if n not in self._blocks:
                raise KeyError(f"{what}: unknown block {n!r}")
        return names

    def _is_dense(self, names: Sequence[str]) -> bool:
        return any(self._blocks[n].dense for n in names)

    def _block_scales(self, name: str) -> tuple[float, float, float]:
        """``(Σ_j c_j², ‖L‖₂², Σ_j (|c_j| + ‖D_j‖₂)² + ‖L‖₂²)``: identity, loadings, whole-block scales."""
        s = self._scale_cache.get(name)
        if s is None:
            blk = self._blocks[name]
            loading = float(np.linalg.norm(blk.loadings, 2) ** 2) if blk.loadings.size else 0.0
            identity, total = 0.0, loading
            for proto in set(blk.identity) | set(blk.dense):
                c = abs(blk.identity.get(proto, 0.0))
                identity += c * c
                part = c + (float(np.linalg.norm(blk.dense[proto], 2)) if proto in blk.dense else 0.0)
                total += part * part
            s = self._scale_cache[name] = (identity, loading, total)
        return s

    def _block_scale(self, name: str) -> float:
        """Upper bound on the largest eigenvalue of ``Σ_vv``."""
        return self._block_scales(name)[2]

    def tolerance(self, names: str | Sequence[str]) -> Tolerance:
        """The eigenvalue thresholds (``RTOL`` times each scale) of a query over ``names``."""
        names = self._check(names, "names")
        identity, loadings, total = (np.sum([self._block_scales(n) for n in names], axis=0) if names
                                     else np.zeros(3))
        # F_g's eigenvalues are squared singular values of R_g, each accurate to eps·‖R_g‖: RTOL on
        # the singular values is RTOL² on λ; and Σ_{i∈+} U'ᵀU'/λ_i must stay finite (HTOL)
        return Tolerance(max(RTOL * RTOL * float(identity), HTOL * float(loadings)), RTOL * float(loadings),
                         RTOL * float(total))

    # ------------------------------------------------------------ dense helpers
    def _dense_matrix(self, names: Sequence[str]) -> np.ndarray:
        """A_S: (Σ size_v, K + Σ m_j over involved vector protos) with Σ_SS = A Aᵀ."""
        rows = sum(self._blocks[n].size for n in names)
        used = {p for n in names for p in (*self._blocks[n].identity, *self._blocks[n].dense)}
        protos = [p for p in self._vector if p in used]
        cols = self._K + sum(self._vector[p] for p in protos)
        if rows > self.dense_limit:
            small = min(rows, cols)
            mib = 8.0 * (rows * cols + 2 * small * small) / 2**20
            raise TooLargeError(
                f"dense covariance of {_fmt(names)} needs a {rows}×{cols} matrix and a {small}×{small} "
                f"eigendecomposition (~{mib:.0f} MiB, O({rows}·{cols}·{small}) work): {rows} rows exceed "
                f"dense_limit={self.dense_limit}"
            )
        A = np.zeros((rows, cols))
        offs = {}
        c0 = self._K
        for p in protos:
            offs[p] = c0
            c0 += self._vector[p]
        r0 = 0
        for n in names:
            blk = self._blocks[n]
            r1 = r0 + blk.size
            A[r0:r1, : self._K] = blk.loadings
            for p, c in blk.identity.items():
                o = offs[p]
                A[r0:r1, o : o + blk.size] += c * np.eye(blk.size)
            for p, mat in blk.dense.items():
                o = offs[p]
                A[r0:r1, o : o + mat.shape[1]] += mat
            r0 = r1
        return A

    def covariance(self, names: str | Sequence[str]) -> np.ndarray:
        """Dense ``Σ_SS`` (for tests and small sizes only).

        Args:
            names: Block names, concatenated in this order.

        Returns:
            (Σ size_v, Σ size_v) covariance matrix.

        Raises:
            TooLargeError: If the rows exceed ``dense_limit``.
        """
        names = self._check(names, "names")
        A = self._dense_matrix(names)
        return A @ A.T

    # ------------------------------------------------------- structured helpers
    def _groups(self, names: Sequence[str]) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = {}
        for n in names:
            groups.setdefault(self._blocks[n].size, []).append(n)
        return groups

    def _gram(self, members: Sequence[str]) -> np.ndarray:
        """(n, n, K, K) Gram tensor ``G_ab = L_aᵀ L_b`` of same-size blocks (cached per pair)."""
        n, K = len(members), self._K
        missing = any((a, b) not in self._gram_cache for a in members for b in members)
        if missing:
            d = self._blocks[members[0]].size
            stack = np.stack([self._blocks[m].loadings for m in members])  # (n, d, K)
            flat = stack.transpose(0, 2, 1).reshape(n * K, d)
            full = (flat @ flat.T).reshape(n, K, n, K)
            for i, a in enumerate(members):
                for j, b in enumerate(members):
                    self._gram_cache[(a, b)] = full[i, :, j, :].copy()
        G = np.empty((n, n, K, K))
        for i, a in enumerate(members):
            for j, b in enumerate(members):
                G[i, j] = self._gram_cache[(a, b)]
        return G

    def _group_eig(self, members: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Eigen-decomposition ``F_g = V diag(λ) Vᵀ`` via the SVD of R_g: λ (n,), V (n, n)."""
        protos = sorted({p for m in members for p in self._blocks[m].identity})
        n = len(members)
        if not protos:
            return np.zeros(n), np.eye(n)
        R = np.array([[self._blocks[m].identity.get(p, 0.0) for p in protos] for m in members])
        V, sv, _ = np.linalg.svd(R, full_matrices=n > len(protos))  # V is (n, n) either way
        lam = np.zeros(n)
        lam[: sv.size] = sv * sv
        return lam, V

    # ----------------------------------------------------------------- logdet
    def logdet(self, names: str | Sequence[str], atol: Tolerance | None = None) -> LogDet:
        """Log pseudo-determinant and rank of ``Σ_SS``.

        Args:
            names: Block names (order irrelevant).
            atol: Eigenvalue thresholds; default ``self.tolerance(names)``.

        Returns:
            LogDet with the sum of logs of the eigenvalues above their threshold, their count, dim S.

        Raises:
            TooLargeError: Dense path (a block has dense maps) beyond ``dense_limit``.

        Note:
            Structured algorithm in the class Note when no block has dense maps
            (cost O(n_g² d K²) once for the Grams, then O(n_g³ + K³)); otherwise
            ``eigvalsh`` of the smaller of ``A_S A_Sᵀ`` and ``A_Sᵀ A_S`` (same nonzero
            eigenvalues; absolute error ~ n·eps·λmax, far below the threshold).
        """
        names = self._check(names, "names")
        size = sum(self._blocks[n].size for n in names)
        if not names:
            return LogDet(0.0, 0, 0, "structured")
        if atol is None:
            atol = self.tolerance(names)
        if self._is_dense(names):
            A = self._dense_matrix(names)
            gram = A @ A.T if A.shape[0] <= A.shape[1] else A.T @ A
            lam = np.linalg.eigvalsh(gram)
            nz = lam > atol.total
            return LogDet(float(np.sum(np.log(lam[nz]))), int(np.count_nonzero(nz)), size, "dense")
        return self._structured_logdet(names, atol, size)

    def _structured_logdet(self, names: Sequence[str], atol: Tolerance, size: int) -> LogDet:
        K = self._K
        value = 0.0
        rank = 0
        H = np.zeros((K, K))
        M0 = np.zeros((K, K))
        for d, members in self._groups(names).items():
            lam, V = self._group_eig(members)
            plus = lam > atol.identity
            value += d * float(np.sum(np.log(lam[plus])))
            rank += d * int(np.count_nonzero(plus))
            if K:
                Gi = np.einsum("ai,bi,abkl->ikl", V, V, self._gram(members))
                H += np.einsum("i,ikl->kl", 1.0 / lam[plus], Gi[plus])
                M0 += Gi[~plus].sum(axis=0)
        if K:
            M0 = 0.5 * (M0 + M0.T)
            w, W = np.linalg.eigh(M0)
            nz = w > atol.loadings
            value += float(np.sum(np.log(w[nz])))
            rank += int(np.count_nonzero(nz))
            P = W[:, ~nz]  # orthonormal basis of range(Π): |I_K + ΠHΠ| = |I_r + PᵀHP|
            value += _logdet_spd(np.eye(P.shape[1]) + P.T @ H @ P)
        return LogDet(value, rank, size, "structured")

    # --------------------------------------------------------------------- MI
    def _independent(self, a: Sequence[str], b: Sequence[str], c: Sequence[str]) -> bool:
        da, db, dc = self.dependencies(a), self.dependencies(b), self.dependencies(c)
        return not (da & (db | dc)) or not (db & (da | dc))

    @staticmethod
    def _clamp(value: float, terms: Iterable[float], what: str) -> float:
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

    def mi(
        self,
        a: str | Sequence[str],
        b: str | Sequence[str],
        given: str | Sequence[str] = (),
    ) -> MIValue:
        """Conditional mutual information ``I(A; B | C)`` in nats.

        Args:
            a: Block names of A (non-empty).
            b: Block names of B (non-empty, disjoint from A).
            given: Block names of C (may be empty; may overlap A or B).

        Returns:
            MIValue: exactly 0.0 ("independent") when A or B shares no proto with
            the other two sets; ``inf`` with a reason for a deterministic linear
            relation; else the finite value.

        Raises:
            ValueError: Empty or overlapping A, B.
            TooLargeError: A needed dense covariance is too large.

        Note:
            ``I = ½[lpdet(AC) + lpdet(BC) − lpdet(ABC) − lpdet(C)]`` with
            pseudo-determinants, and ``I = inf`` iff
            ``rank(ABC) + rank(C) < rank(AC) + rank(BC)``; right for degenerate
            Gaussians (restrict each block to its support). All four share the
            threshold of the union.
        """
        A = self._check(a, "a")
        B = self._check(b, "b")
        C = self._check(given, "given")
        if not A or not B:
            raise ValueError("mi needs non-empty sets a and b")
        shared = set(A) & set(B)
        if shared:
            raise ValueError(f"a and b share blocks {sorted(shared)}")
        if self._independent(A, B, C):
            return MIValue(0.0, f"{_fmt(A)} and {_fmt(B)} are independent given {_fmt(C)}: "
                           "one of them shares no proto-latent with the rest", "independent")
        AC, BC, ABC = _union(A, C), _union(B, C), _union(A, B, C)
        atol = self.tolerance(ABC)
        l_ac, l_bc, l_abc = self.logdet(AC, atol), self.logdet(BC, atol), self.logdet(ABC, atol)
        l_c = self.logdet(C, atol)
        if C and (l_ac.rank < self.logdet(A, atol).rank + l_c.rank or
                  l_bc.rank < self.logdet(B, atol).rank + l_c.rank):
            return self._mi_of_residuals(A, B, C, atol)
        dets = (l_ac, l_bc, l_abc, l_c)
        method = "dense" if any(x.method == "dense" for x in dets) else "structured"
        lhs, rhs = l_abc.rank + l_c.rank, l_ac.rank + l_bc.rank
        if lhs < rhs:
            cond = f" given {_fmt(C)}" if C else ""
            return MIValue(
                math.inf,
                f"deterministic linear relation between {_fmt(A)} and {_fmt(B)}{cond}: "
                f"rank(ABC)+rank(C) = {lhs} < rank(AC)+rank(BC) = {rhs}",
                method,
            )
        if lhs > rhs:
            raise ArithmeticError(
                f"inconsistent ranks (rank(ABC)+rank(C) = {lhs} > {rhs}): eigenvalues too close to the "
                "zero threshold; rescale the model"
            )
        value = 0.5 * (l_ac.value + l_bc.value - l_abc.value - l_c.value)
        value = self._clamp(value, (x.value for x in dets), "mutual information")
        return MIValue(value, None, method)

    def _mi_of_residuals(self, A, B, C, atol: Tolerance) -> MIValue:
        """``I(A; B | C)`` when C partly determines A or B: the MI of the residuals.

        Note:
            The four pseudo-determinant formula holds only when the supports add up,
            rank(XC) = rank(X) + rank(C); otherwise it depends on the blocks' scales.
            In general ``I(A; B | C) = I(A - E[A|C]; B - E[B|C])``, the MI of the
            conditional covariance ``S = Σ_XX - Σ_XC Σ_CC^+ Σ_CX`` (X = A ∪ B), with
            the unconditional rank rule on S. Dense (sizes up to ``dense_limit``).
        """
        X = _union(A, B)
        cov = self.covariance(_union(X, C))
        nx = sum(self._blocks[v].size for v in X)
        na = sum(self._blocks[v].size for v in A)
        w, v = np.linalg.eigh(cov[nx:, nx:])
        keep = w > atol.total
        pinv = (v[:, keep] / w[keep]) @ v[:, keep].T
        S = cov[:nx, :nx] - cov[:nx, nx:] @ pinv @ cov[nx:, :nx]
        S = 0.5 * (S + S.T)

        def pdet(m: np.ndarray) -> tuple[float, int]:
            ev = np.linalg.eigvalsh(m) if m.size else np.zeros(0)
            good = ev > atol.total
            return float(np.sum(np.log(ev[good]))), int(good.sum())

        (la, ra), (lb, rb), (lab, rab) = pdet(S[:na, :na]), pdet(S[na:, na:]), pdet(S)
        if ra == 0 or rb == 0:
            return MIValue(0.0, f"{_fmt(A) if ra == 0 else _fmt(B)} is determined by {_fmt(C)}", "dense")
        if rab < ra + rb:
            return MIValue(math.inf, f"deterministic linear relation between {_fmt(A)} and {_fmt(B)} given "
                           f"{_fmt(C)}: rank of the conditional covariance {rab} < {ra} + {rb}", "dense")
        value = self._clamp(0.5 * (la + lb - lab), (la, lb, lab), "mutual information")
        return MIValue(value, None, "dense")

    def total_correlation(self, groups: Sequence[str | Sequence[str]]) -> MIValue:
        """Total correlation ``Σ_i H(G_i) − H(G_1, …, G_n)`` in nats.

        Args:
            groups: At least two non-empty, pairwise disjoint lists of block names.

        Returns:
            MIValue; inf iff ``rank(∪G) < Σ rank(G_i)``; exactly 0.0 when the
            groups depend on pairwise disjoint protos.

        Note:
            ``TC = ½[Σ_i lpdet(G_i) − lpdet(∪ G_i)]`` (pseudo-determinants).
        """
        gs = [self._check(g, f"groups[{i}]") for i, g in enumerate(groups)]
        if len(gs) < 2 or any(not g for g in gs):
            raise ValueError("total_correlation needs at least two non-empty groups")
        union = _union(*gs)
        if len(union) != sum(len(g) for g in gs):
            raise ValueError("total_correlation groups must be disjoint")
        deps = [self.dependencies(g) for g in gs]
        if all(not (deps[i] & deps[j]) for i in range(len(gs)) for j in range(i + 1, len(gs))):
            return MIValue(0.0, "the groups depend on pairwise disjoint proto-latents", "independent")
        atol = self.tolerance(union)
        parts = [self.logdet(g, atol) for g in gs]
        whole = self.logdet(union, atol)
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
        value = self._clamp(value, [whole.value, *(p.value for p in parts)], "total correlation")
        return MIValue(value, None, method)

    def interaction_information(
        self, a: str | Sequence[str], b: str | Sequence[str], c: str | Sequence[str]
    ) -> MIValue:
        """Interaction information ``I(A; B) − I(A; B | C)`` in nats.

        Sign convention: positive when C accounts for (is redundant with) part of
        the information A and B share; negative when conditioning on C creates
        dependence (synergy, "explaining away"). Symmetric in A, B, C.

        Args:
            a, b, c: Non-empty, pairwise disjoint lists of block names.

        Returns:
            MIValue; ±inf when exactly one of the two terms is infinite.

        Raises:
            ValueError: Both terms infinite (inf − inf is undefined).
        """
        A, B, C = self._check(a, "a"), self._check(b, "b"), self._check(c, "c")
        if not A or not B or not C:
            raise ValueError("interaction_information needs three non-empty sets")
        if len(_union(A, B, C)) != len(A) + len(B) + len(C):
            raise ValueError("interaction_information sets must be pairwise disjoint")
        i_ab = self.mi(A, B)
        i_abc = self.mi(A, B, C)
        if math.isinf(i_ab.nats) and math.isinf(i_abc.nats):
            raise ValueError(
                "interaction information undefined: both I(A;B) and I(A;B|C) are infinite "
                f"({i_ab.reason}; {i_abc.reason})"
            )
        methods = {i_ab.method, i_abc.method}
        method = next((m for m in ("dense", "structured") if m in methods), "independent")
        if math.isinf(i_ab.nats):
            return MIValue(math.inf, f"I(A;B) is infinite: {i_ab.reason}", method)
        if math.isinf(i_abc.nats):
            return MIValue(-math.inf, f"I(A;B|C) is infinite: {i_abc.reason}", method)
        if method == "independent":
            return MIValue(0.0, "both terms are exactly zero by independence", method)
        return MIValue(i_ab.nats - i_abc.nats, None, method)

    # --------------------------------------------------------------- label MI
    def label_mi(
        self,
        score: str,
        threshold: float,
        others: str | Sequence[str],
        given: str | Sequence[str] = (),
    ) -> MIValue:
        """MI between a binary label ``y = 1[s > threshold]`` and blocks X, given C.

        Args:
            score: Name of a size-1 block s.
            threshold: Threshold t in the units of s (s has mean 0).
            others: Block names of X (non-empty).
            given: Block names of C.

        Returns:
            ``I(y; X | C)`` in nats (finite, ≤ log 2).

        Note:
            ``I(y; X | C) = I(y; X, C) − I(y; C)`` and, for Gaussian s and X,
            ``I(y; X) = H(y) − E_X[h(Φ((μ(X) − t)/σ_c))]`` with
            ``σ_c² = Var(s) exp(−2 I(s; X))`` (see binary_label_information).
            If s is in X∪C, ``I(s; X,C) = inf`` and ``I(y; X,C) = H(y)``.
        """
        (s,) = self._check([score], "score")
        if self._blocks[s].size != 1:
            raise ValueError(f"score {s!r} must be a size-1 block, it has size {self._blocks[s].size}")
        X = self._check(others, "others")
        C = self._check(given, "given")
        if not X:
            raise ValueError("label_mi needs non-empty others")
        threshold = float(threshold)
        var_s = float(self.covariance([s])[0, 0])
        if var_s <= 0:
            return MIValue(0.0, f"score {s!r} has zero variance: the label is constant", "independent")
        tau = threshold / math.sqrt(var_s)

        def s_info(S: tuple[str, ...]) -> MIValue:
            if s in S:
                return MIValue(math.inf, f"{s!r} is among the conditioning blocks", "structured")
            return self.mi([s], S)

        m_xc = s_info(_union(X, C))
        if m_xc.method == "independent":
            return MIValue(0.0, f"score {s!r} is independent of {_fmt(_union(X, C))}", "independent")
        i_xc = binary_label_information(m_xc.nats, tau)
        i_c = 0.0
        method = m_xc.method
        if C:
            m_c = s_info(C)
            i_c = binary_label_information(m_c.nats, tau)
            if m_c.method == "dense":
                method = "dense"
        value = self._clamp(i_xc - i_c, (i_xc, i_c), "label MI")
        return MIValue(value, None, method)

    # -------------------------------------------------------------------- PMI
    def _check_samples(self, names: Sequence[str], samples: Mapping[str, np.ndarray]) -> int:
        n = None
        for v in names:
            if v not in samples:
                raise KeyError(f"samples lack block {v!r}")
            x = np.asarray(samples[v])
            size = self._blocks[v].size
            if x.ndim == 1 and size == 1:
                x = x[:, None]
            if x.ndim != 2 or x.shape[1] != size:
                raise ValueError(f"samples[{v!r}] must have shape (n, {size}), got {x.shape}")
            if n is None:
                n = x.shape[0]
            elif x.shape[0] != n:
                raise ValueError("samples have different numbers of rows")
        return int(n or 0)

    @staticmethod
    def _get(samples: Mapping[str, np.ndarray], v: str, sl: slice) -> np.ndarray:
        x = np.asarray(samples[v], dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        return x[sl]

    def pmi(
        self,
        a: str | Sequence[str],
        b: str | Sequence[str],
        samples: Mapping[str, np.ndarray],
    ) -> np.ndarray:
        """Pointwise MI ``log p(a, b) − log p(a) − log p(b)`` per sample.

        Args:
            a: Block names of A.
            b: Block names of B (disjoint from A).
            samples: Block name -> (n, size_v) array (``(n,)`` allowed for size 1).

        Returns:
            (n,) float64; its mean over draws from the model tends to ``mi(a, b)``;
            exactly zero when A and B share no proto.

        Raises:
            ValueError: If Σ_A, Σ_B or Σ_AB is singular (PMI needs non-degenerate blocks).

        Note:
            ``PMI = I(A;B) + ½(q_A + q_B − q_AB)``, ``q_S = x_Sᵀ Σ_SS⁻¹ x_S``. Without
            dense maps, ``Σ⁻¹`` is applied in the rotated frame of the class Note:
            the zero-λ part (≤ K dims) by a Schur complement, the rest by Woodbury
            on ``Λ+ ⊗ I + (U+Π)(U+Π)ᵀ``; memory O(n_g·d·K) plus a chunk of samples.
        """
        A, B = self._check(a, "a"), self._check(b, "b")
        if not A or not B:
            raise ValueError("pmi needs non-empty sets a and b")
        shared = set(A) & set(B)
        if shared:
            raise ValueError(f"a and b share blocks {sorted(shared)}")
        AB = _union(A, B)
        n = self._check_samples(AB, samples)
        if self._independent(A, B, ()):
            return np.zeros(n)
        atol = self.tolerance(AB)
        dets = []
        for S in (A, B, AB):
            ld = self.logdet(S, atol)
            if ld.rank < ld.size:
                raise ValueError(
                    f"PMI needs non-degenerate blocks: the covariance of {_fmt(S)} has rank "
                    f"{ld.rank} < dimension {ld.size} (a deterministic linear relation; no density)"
                )
            dets.append(ld)
        qa, qb, qab = (self._quad(S, samples, n, atol) for S in (A, B, AB))
        return 0.5 * (dets[0].value + dets[1].value - dets[2].value) + 0.5 * (qa + qb - qab)

    def _quad(
        self, names: Sequence[str], samples: Mapping[str, np.ndarray], n: int, atol: Tolerance
    ) -> np.ndarray:
        """Quadratic forms ``x_Sᵀ Σ_SS⁻¹ x_S``, (n,), for a non-degenerate S."""
        if self._is_dense(names):
            Sigma = self.covariance(names)
            Lc = np.linalg.cholesky(Sigma)
            X = np.concatenate([self._get(samples, v, slice(None)) for v in names], axis=1)
            Y = np.linalg.solve(Lc, X.T)
            return np.sum(Y * Y, axis=0)
        K = self._K
        groups = []
        H = np.zeros((K, K))
        zero_U = []
        for d, members in self._groups(names).items():
            lam, V = self._group_eig(members)
            Lst = np.stack([self._blocks[m].loadings for m in members])  # (n_g, d, K)
            Up = np.einsum("ai,axk->ixk", V, Lst)  # rotated loadings, (n_g, d, K)
            plus = lam > atol.identity
            for i in np.flatnonzero(plus):
                H += Up[i].T @ Up[i] / lam[i]
            for i in np.flatnonzero(~plus):
                zero_U.append(Up[i])
            groups.append((members, V, lam, plus, Up))
        if zero_U:
            U0 = np.concatenate(zero_U, axis=0)  # (n0, K), n0 ≤ K when non-degenerate
            S00 = U0 @ U0.T
            S00_inv_U0 = np.linalg.solve(S00, U0)
            P = np.linalg.svd(U0, full_matrices=True)[2][U0.shape[0]:].T  # (K, K - n0): range(Π)
        else:
            U0 = np.zeros((0, K))
            P = np.eye(K)
        # tΠ(I + ΠHΠ)⁻¹Πtᵀ = (tP)(I_r + PᵀHP)⁻¹(tP)ᵀ
        M = np.eye(P.shape[1]) + P.T @ H @ P
        scale, chol = _equilibrated_cholesky(M) if M.size else (None, M)
        width = sum(self._blocks[v].size for v in names)
        chunk = max(1, _CHUNK_FLOATS // max(width, 1))
        out = np.empty(n)
        for start in range(0, n, chunk):
            sl = slice(start, min(n, start + chunk))
            m = sl.stop - sl.start
            rot = []
            x0_parts = []
            for members, V, lam, plus, Up in groups:
                Xg = np.stack([self._get(samples, v, sl) for v in members], axis=1)  # (m, n_g, d)
                Xr = np.einsum("ai,max->mix", V, Xg)
                rot.append(Xr)
                for i in np.flatnonzero(~plus):
                    x0_parts.append(Xr[:, i, :])
            q = np.zeros(m)
            c = np.zeros((m, K))
            if zero_U:
                x0 = np.concatenate(x0_parts, axis=1)  # (m, n0)
                c = x0 @ S00_inv_U0
                q += np.sum(x0 * np.linalg.solve(S00, x0.T).T, axis=1)
            t = np.zeros((m, K))
            for (members, V, lam, plus, Up), Xr in zip(groups, rot):
                for i in np.flatnonzero(plus):
                    r = Xr[:, i, :] - c @ Up[i].T if K else Xr[:, i, :]
                    q += np.sum(r * r, axis=1) / lam[i]
                    if K:
                        t += (r @ Up[i]) / lam[i]
            if M.size:
                y = np.linalg.solve(chol, ((t @ P) / scale).T)  # C = chol cholᵀ
                if m and np.max(q) > PMI_CANCEL * max(width, 1):  # the difference keeps ~1e-16 of q
                    raise ArithmeticError(
                        f"the quadratic forms of {_fmt(names)} cancel beyond double precision "
                        f"(terms up to {np.max(q):.2g} for a result of order {width})")
                q -= np.sum(y * y, axis=0)
            out[sl] = q
        return out

    # ---------------------------------------------------------------- sampler
    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Reference sampler (for tests).

        Args:
            n: Number of draws.
            rng: numpy Generator; the scalar protos (n, K) are drawn first, then
                each vector proto (n, m_j) in declaration order.

        Returns:
            Block name -> (n, size_v) float64 array.
        """
        n = int(n)
        u = rng.standard_normal((n, self._K))
        p = {name: rng.standard_normal((n, m)) for name, m in self._vector.items()}
        out = {}
        for name, blk in self._blocks.items():
            x = u @ blk.loadings.T
            for proto, c in blk.identity.items():
                x += c * p[proto]
            for proto, mat in blk.dense.items():
                x += p[proto] @ mat.T
            out[name] = x
        return out
