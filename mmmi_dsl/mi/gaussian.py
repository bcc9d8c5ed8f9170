"""Exact mutual information of linear-Gaussian block models, at scale.

Every named variable ("block") is a linear map of independent standard-normal
proto-latents: K scalar ones ``ũ = (ũ_1..ũ_K)`` and named vector ones
``p_j ∈ R^{m_j}``::

    x_v = Σ_j identity_v[j] · p_j  +  L_v ũ  +  Σ_j dense_v[j] @ p_j

:class:`GaussianSystem` evaluates log pseudo-determinants of covariance sub-matrices
and, from them, (conditional) mutual information, total correlation, interaction
information, the MI of a thresholded score, and pointwise MI. When no block of a set
has dense maps it never forms a d×d matrix: only K×K Gram matrices of the loadings
touch d. Pure numpy; imports nothing from the rest of the package but its pieces:

- :mod:`mmmi_dsl.mi.blocks`: :class:`Block`, the checked :class:`BlockSet`, Grams, dense factors;
- :mod:`mmmi_dsl.mi.logdet`: :class:`LogDet`, ranks, the thresholds (:class:`Tolerance`, its Note);
- :mod:`mmmi_dsl.mi.information`: conditional MI, total correlation, interaction information;
- :mod:`mmmi_dsl.mi.labels`: binary-label information (quadrature);
- :mod:`mmmi_dsl.mi.pmi`: pointwise MI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np

from mmmi_dsl.mi import information, labels, logdet, pmi
from mmmi_dsl.mi.blocks import Block, BlockSet, TooLargeError
from mmmi_dsl.mi.information import MIValue
from mmmi_dsl.mi.labels import binary_entropy, binary_label_information
from mmmi_dsl.mi.logdet import HTOL, RTOL, LogDet, Tolerance
from mmmi_dsl.mi.pmi import PMI_CANCEL

__all__ = [
    "HTOL",
    "PMI_CANCEL",
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
        they are cached per pair of same-size blocks (:class:`BlockSet`).
    """

    def __init__(
        self,
        scalar_protos: Sequence[str],
        vector_protos: Mapping[str, int],
        blocks: Mapping[str, Block],
        dense_limit: int = 8192,
    ) -> None:
        self._set = BlockSet(scalar_protos, vector_protos, blocks, dense_limit)

    # ------------------------------------------------------------------ basics
    @property
    def dense_limit(self) -> int:
        """Largest number of rows the dense path may build."""
        return self._set.dense_limit

    @dense_limit.setter
    def dense_limit(self, value: int) -> None:
        self._set.dense_limit = int(value)

    @property
    def scalar_protos(self) -> tuple[str, ...]:
        """Names of the K scalar protos, in loading-column order."""
        return self._set.scalar

    @property
    def vector_protos(self) -> Mapping[str, int]:
        """Vector-proto name -> size."""
        return MappingProxyType(self._set.vector)

    @property
    def blocks(self) -> Mapping[str, Block]:
        """Block name -> Block."""
        return MappingProxyType(self._set.blocks)

    def dependencies(self, names: str | Sequence[str]) -> frozenset[str]:
        """Protos with a nonzero coefficient in any of the blocks ``names``."""
        return self._set.dependencies(names)

    def tolerance(self, names: str | Sequence[str]) -> Tolerance:
        """The eigenvalue thresholds (``RTOL`` times each scale) of a query over ``names``."""
        return logdet.tolerance(self._set, self._set.check(names, "names"))

    def covariance(self, names: str | Sequence[str]) -> np.ndarray:
        """Dense ``Σ_SS`` (for tests and small sizes only).

        Args:
            names: Block names, concatenated in this order.

        Returns:
            (Σ size_v, Σ size_v) covariance matrix.

        Raises:
            TooLargeError: If the rows exceed ``dense_limit``.
        """
        return self._set.covariance(self._set.check(names, "names"))

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
        return logdet.logdet(self._set, self._set.check(names, "names"), atol)

    # --------------------------------------------------------------------- MI
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
            threshold of the union. When C partly determines A or B (the supports
            do not add up), the MI of the residuals given C, densely.
        """
        return information.mi(self._set, a, b, given)

    def prefetch(self, queries: Sequence[tuple[Sequence[str], Sequence[str], Sequence[str]]]) -> None:
        """Prepare the answers of many :meth:`mi` queries ``(a, b, given)`` at once (batched
        decompositions of the groups they share; :meth:`BlockSet.prefetch`). Changes no value."""
        sets = []
        for a, b, c in queries:
            if self._set.independent(a, b, c):
                continue  # answered from structure: no log-determinant
            sets += [(*a, *c), (*b, *c), (*a, *b, *c), tuple(c)]
            if c:
                sets += [tuple(a), tuple(b)]
        self._set.prefetch(sets)

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
        return information.total_correlation(self._set, groups)

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
        return information.interaction_information(self._set, a, b, c)

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
        return labels.label_mi(self._set, score, threshold, others, given)

    # -------------------------------------------------------------------- PMI
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
        return pmi.pmi(self._set, a, b, samples)

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
        u = rng.standard_normal((n, self._set.K))
        p = {name: rng.standard_normal((n, m)) for name, m in self._set.vector.items()}
        out = {}
        for name, blk in self._set.blocks.items():
            x = u @ blk.loadings.T
            for proto, c in blk.identity.items():
                x += c * p[proto]
            for proto, mat in blk.dense.items():
                x += p[proto] @ mat.T
            out[name] = x
        return out
