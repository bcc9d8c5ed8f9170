"""Blocks of a linear-Gaussian model and the Gram matrices of their loadings.

Every named variable ("block") is a linear map of independent standard-normal
proto-latents: K scalar ones ``ũ = (ũ_1..ũ_K)`` and named vector ones
``p_j ∈ R^{m_j}``::

    x_v = Σ_j identity_v[j] · p_j  +  L_v ũ  +  Σ_j dense_v[j] @ p_j

:class:`BlockSet` holds the checked blocks of one model with what every query
reuses: block scales, dependencies, same-size groups, the K×K Grams
``L_aᵀ L_b`` (cached per pair) and the dense factor ``A_S`` (``Σ_SS = A Aᵀ``).
Pure numpy; imports nothing from the rest of the package.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

__all__ = ["Block", "BlockSet", "TooLargeError", "as_names", "checked_block", "fmt", "union"]


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
        identity = dict(self.identity)
        if not (set(map(type, identity)) <= {str} and set(map(type, identity.values())) <= {float}):
            identity = {str(p): float(c) for p, c in identity.items()}
        if not all(map(math.isfinite, identity.values())):  # one pass in C; then say which
            proto = next(p for p, c in identity.items() if not math.isfinite(c))
            raise ValueError(f"block {self.name!r}: identity coefficient on {proto!r} is not finite")
        loadings = np.array(self.loadings, dtype=np.float64, copy=True)
        if loadings.ndim == 1 and size == 1:
            loadings = loadings.reshape(1, -1)
        if loadings.ndim != 2 or loadings.shape[0] != size:
            raise ValueError(
                f"block {self.name!r}: loadings must have shape (size={size}, K), got {loadings.shape}"
            )
        if not np.isfinite(loadings).all():
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
            if not np.isfinite(mat).all():
                raise ValueError(f"block {self.name!r}: dense map on {proto!r} is not finite")
            mat.flags.writeable = False
            dense[str(proto)] = mat
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "identity", MappingProxyType(identity))
        object.__setattr__(self, "loadings", loadings)
        object.__setattr__(self, "dense", MappingProxyType(dense))


def checked_block(name: str, size: int, identity: dict[str, float], loadings: np.ndarray,
                  dense: dict[str, np.ndarray]) -> Block:
    """A :class:`Block` from parts its caller made and checked, without checking or copying them again.

    For the analysis stage, which builds every block from linear forms whose coefficients it has
    already refused when not finite (E0212): ``identity`` maps str to float, ``loadings`` is a
    finite (size, K) float64 array and each dense map a finite (size, m) one, all new (no one
    else holds them). They are made read-only and frozen as :class:`Block` does.
    """
    blk = object.__new__(Block)
    loadings.flags.writeable = False
    for mat in dense.values():
        mat.flags.writeable = False
    for attr, value in (("name", name), ("size", int(size)), ("identity", MappingProxyType(identity)),
                        ("loadings", loadings), ("dense", MappingProxyType(dense))):
        object.__setattr__(blk, attr, value)
    return blk


def as_names(x: str | Iterable[str], what: str) -> tuple[str, ...]:
    """A tuple of distinct block names (a single string is one name)."""
    if isinstance(x, str):
        return (x,)
    names = tuple(x)
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"{what}: block names must be strings, got {n!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: a block is listed twice in {list(names)}")
    return names


def union(*sets: Sequence[str]) -> tuple[str, ...]:
    """The names of all ``sets``, each once, in first-seen order."""
    out: dict[str, None] = {}
    for s in sets:
        for n in s:
            out[n] = None
    return tuple(out)


def fmt(names: Sequence[str]) -> str:
    """``{a, b}`` for messages."""
    return "{" + ", ".join(names) + "}"


class BlockSet:
    """The checked blocks of one model, with the caches every query shares.

    Args:
        scalar_protos: Names of the K scalar protos (column order of every block's loadings).
        vector_protos: Vector-proto name -> size m_j.
        blocks: Block name -> Block (the key must equal ``Block.name``).
        dense_limit: Largest number of rows :meth:`dense_matrix` may build.
    """

    def __init__(
        self,
        scalar_protos: Sequence[str],
        vector_protos: Mapping[str, int],
        blocks: Mapping[str, Block],
        dense_limit: int = 8192,
    ) -> None:
        self.scalar = tuple(str(s) for s in scalar_protos)
        if len(set(self.scalar)) != len(self.scalar):
            raise ValueError(f"duplicate scalar proto names in {list(self.scalar)}")
        self.vector: dict[str, int] = {}
        for name, m in vector_protos.items():
            if int(m) != m or m < 1:
                raise ValueError(f"vector proto {name!r}: size must be a positive integer, got {m!r}")
            if name in self.scalar:
                raise ValueError(f"proto name {name!r} is both scalar and vector")
            self.vector[str(name)] = int(m)
        self.K = len(self.scalar)
        self.blocks: dict[str, Block] = {}
        of_size: dict[int, set[str]] = {}  # vector protos by size
        for name, m in self.vector.items():
            of_size.setdefault(m, set()).add(name)
        for key, blk in blocks.items():
            if not isinstance(blk, Block):
                raise TypeError(f"blocks[{key!r}] is not a Block")
            if key != blk.name:
                raise ValueError(f"blocks key {key!r} differs from Block.name {blk.name!r}")
            if blk.loadings.shape[1] != self.K:
                raise ValueError(
                    f"block {key!r}: loadings have {blk.loadings.shape[1]} columns, expected K={self.K}"
                )
            fits = blk.identity.keys() <= of_size.get(blk.size, set())  # every identity proto fits: a set test in C
            for proto in () if fits else [p for p in blk.identity if self.vector.get(p) != blk.size]:
                if proto not in self.vector:
                    raise ValueError(f"block {key!r}: unknown vector proto {proto!r} in identity")
                if self.vector[proto] != blk.size:
                    raise ValueError(
                        f"block {key!r}: identity map needs proto {proto!r} of size {blk.size}, "
                        f"it has size {self.vector[proto]}"
                    )
            for proto, mat in blk.dense.items():
                if proto not in self.vector:
                    raise ValueError(f"block {key!r}: unknown vector proto {proto!r} in dense")
                if mat.shape[1] != self.vector[proto]:
                    raise ValueError(
                        f"block {key!r}: dense map on {proto!r} has {mat.shape[1]} columns, "
                        f"proto size is {self.vector[proto]}"
                    )
            self.blocks[key] = blk
        self.dense_limit = int(dense_limit)
        self._gram_cache: dict[tuple[str, str], np.ndarray] = {}
        self._scale_cache: dict[str, tuple[float, float, float]] = {}
        self._eig_cache: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._eig_gram_cache: dict[tuple[str, ...], np.ndarray] = {}
        self._identity_rows: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
        self._deps: dict[str, frozenset[str]] = {}
        for key, blk in self.blocks.items():
            loaded = (blk.loadings != 0).any(axis=0).tolist()  # (K,): one pass over the loadings
            deps = {s for s, nz in zip(self.scalar, loaded) if nz}
            ident = blk.identity
            deps |= ident.keys() if all(ident.values()) else {p for p, c in ident.items() if c != 0}
            deps |= {p for p, mat in blk.dense.items() if (mat != 0).any()}
            self._deps[key] = frozenset(deps)

    # ------------------------------------------------------------------ names
    def check(self, names: str | Sequence[str], what: str) -> tuple[str, ...]:
        """``names`` as a tuple of distinct known block names (KeyError names ``what``)."""
        names = as_names(names, what)
        for n in names:
            if n not in self.blocks:
                raise KeyError(f"{what}: unknown block {n!r}")
        return names

    def size(self, names: Sequence[str]) -> int:
        """Total dimension ``Σ size_v`` of checked names."""
        return sum(self.blocks[n].size for n in names)

    def dependencies(self, names: str | Sequence[str]) -> frozenset[str]:
        """Protos with a nonzero coefficient in any of the blocks ``names``."""
        out: set[str] = set()
        for n in self.check(names, "names"):
            out |= self._deps[n]
        return frozenset(out)

    def independent(self, a: Sequence[str], b: Sequence[str], c: Sequence[str]) -> bool:
        """A or B shares no proto with the other two sets (so ``I(A; B | C) = 0`` exactly)."""
        da, db, dc = self.dependencies(a), self.dependencies(b), self.dependencies(c)
        return (da.isdisjoint(db) and da.isdisjoint(dc)) or (db.isdisjoint(da) and db.isdisjoint(dc))

    def is_dense(self, names: Sequence[str]) -> bool:
        """Some block of ``names`` has a dense map (the structured path does not apply)."""
        return any(self.blocks[n].dense for n in names)

    # ----------------------------------------------------------------- scales
    def block_scales(self, name: str) -> tuple[float, float, float]:
        """``(Σ_j c_j², ‖L‖₂², Σ_j (|c_j| + ‖D_j‖₂)² + ‖L‖₂²)``: identity, loadings, whole-block scales."""
        s = self._scale_cache.get(name)
        if s is None:
            blk = self.blocks[name]
            L = blk.loadings
            if L.shape[1] == 1:  # one column: ‖L‖₂² is its sum of squares (no SVD; it only sets thresholds)
                loading = float(L[:, 0] @ L[:, 0])
            else:
                loading = float(np.linalg.norm(L, 2) ** 2) if L.size else 0.0
            identity, total = 0.0, loading
            if not blk.dense:  # (|c| + 0)² = c²: the identity sum, in one pass
                c = np.fromiter(blk.identity.values(), float, len(blk.identity))
                identity = float(c @ c)
                s = self._scale_cache[name] = (identity, loading, loading + identity)
                return s
            for proto in set(blk.identity) | set(blk.dense):
                c = abs(blk.identity.get(proto, 0.0))
                identity += c * c
                part = c + (float(np.linalg.norm(blk.dense[proto], 2)) if proto in blk.dense else 0.0)
                total += part * part
            s = self._scale_cache[name] = (identity, loading, total)
        return s

    # ------------------------------------------------------------------ dense
    def dense_matrix(self, names: Sequence[str]) -> np.ndarray:
        """A_S: (Σ size_v, K + Σ m_j over involved vector protos) with Σ_SS = A Aᵀ.

        Raises:
            TooLargeError: If the rows exceed ``dense_limit``.
        """
        rows, cols = self.dense_shape(names)
        offs = self.dense_columns(names)
        if rows > self.dense_limit:
            small = min(rows, cols)
            mib = 8.0 * (rows * cols + 2 * small * small) / 2**20
            raise TooLargeError(
                f"dense covariance of {fmt(names)} needs a {rows}×{cols} matrix and a {small}×{small} "
                f"eigendecomposition (~{mib:.0f} MiB, O({rows}·{cols}·{small}) work): {rows} rows exceed "
                f"dense_limit={self.dense_limit}"
            )
        A = np.zeros((rows, cols))
        r0 = 0
        for n in names:
            blk = self.blocks[n]
            r1 = r0 + blk.size
            A[r0:r1, : self.K] = blk.loadings
            for p, c in blk.identity.items():
                A[r0:r1, offs[p]] += c * np.eye(blk.size)
            for p, mat in blk.dense.items():
                A[r0:r1, offs[p]] += mat
            r0 = r1
        return A

    def dense_shape(self, names: Sequence[str]) -> tuple[int, int]:
        """The shape of :meth:`dense_matrix` of ``names`` (nothing built)."""
        offs = self.dense_columns(names)
        return self.size(names), self.K + sum(self.vector[p] for p in offs if p in self.vector)

    def dense_columns(self, names: Sequence[str]) -> dict[str, slice]:
        """Proto name -> its columns in :meth:`dense_matrix` of ``names``: the K scalar protos
        first, then the vector protos the blocks use, in declaration order."""
        used = {p for n in names for p in (*self.blocks[n].identity, *self.blocks[n].dense)}
        out = {p: slice(k, k + 1) for k, p in enumerate(self.scalar)}
        c0 = self.K
        for p, m in self.vector.items():
            if p in used:
                out[p] = slice(c0, c0 + m)
                c0 += m
        return out

    def covariance(self, names: Sequence[str]) -> np.ndarray:
        """Dense ``Σ_SS = A_S A_Sᵀ``, (Σ size_v, Σ size_v), of checked names."""
        A = self.dense_matrix(names)
        return A @ A.T

    # ------------------------------------------------------------- structured
    def groups(self, names: Sequence[str]) -> dict[int, list[str]]:
        """The names grouped by block size d_g (first-seen order)."""
        groups: dict[int, list[str]] = {}
        for n in names:
            groups.setdefault(self.blocks[n].size, []).append(n)
        return groups

    def gram(self, members: Sequence[str]) -> np.ndarray:
        """(n, n, K, K) Gram tensor ``G_ab = L_aᵀ L_b`` of same-size blocks (cached per pair)."""
        n, K = len(members), self.K
        missing = any((a, b) not in self._gram_cache for a in members for b in members)
        if missing:
            flat = np.concatenate([self.blocks[m].loadings.T for m in members])  # (n K, d): rows L_a[:, k]
            full = (flat @ flat.T).reshape(n, K, n, K)
            for i, a in enumerate(members):
                for j, b in enumerate(members):
                    self._gram_cache[(a, b)] = full[i, :, j, :].copy()
        G = np.empty((n, n, K, K))
        for i, a in enumerate(members):
            for j, b in enumerate(members):
                G[i, j] = self._gram_cache[(a, b)]
        return G

    def group_eig(self, members: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Eigen-decomposition ``F_g = V diag(λ) Vᵀ`` via the SVD of R_g: λ (n,), V (n, n), read-only.

        Cached per member tuple: the queries of a family repeat their groups (``{z[1]}`` in every
        ``I(x[1]; x[j])``), and the thresholds are applied by the caller.
        """
        key = tuple(members)
        hit = self._eig_cache.get(key)
        if hit is None:
            lam, V = self._group_eig(key)
            lam.flags.writeable = V.flags.writeable = False
            hit = self._eig_cache[key] = (lam, V)
        return hit

    def group_gram(self, members: Sequence[str]) -> np.ndarray:
        """``Gi = Σ_ab V_ai V_bi G_ab``, (n, K, K): the loadings' Gram in the eigenbasis of :meth:`group_eig`,
        read-only and cached per member tuple (it does not depend on a query's thresholds)."""
        key = tuple(members)
        hit = self._eig_gram_cache.get(key)
        if hit is None:
            _, V = self.group_eig(key)
            G = self.gram(key)
            # one member: V = [[±1]], so the product is G itself, bit for bit
            hit = G[0] if len(key) == 1 and abs(V[0, 0]) == 1.0 else np.einsum("ai,bi,abkl->ikl", V, V, G)
            hit.flags.writeable = False
            self._eig_gram_cache[key] = hit
        return hit

    def prefetch(self, name_sets: Iterable[Sequence[str]]) -> None:
        """Fill :meth:`group_eig` and :meth:`group_gram`'s caches for the structured log-determinants of
        ``name_sets`` (in the order queries will ask for them): a family of queries (decay's
        ``I(x[1]; x[j])``) then costs a few stacked SVDs instead of one per group.

        The uncached same-size groups of the sets without dense maps whose members mix one tuple of
        identity protos are stacked by shape, one SVD each (numpy runs LAPACK on each matrix exactly
        as for one); the Grams follow group by group in first-seen order, as the queries would make
        them. Only caches change: every value is the one the per-group path computes.
        """
        todo: dict[tuple[str, ...], None] = {}
        for names in name_sets:
            if names and not self.is_dense(names):
                for members in self.groups(names).values():
                    if (key := tuple(members)) not in self._eig_gram_cache:
                        todo[key] = None
        by_shape: dict[tuple[int, int], list[tuple[tuple[str, ...], list]]] = {}
        for key in todo:
            rows = [self._identity_row(m) for m in key]
            protos = rows[0][0]
            if key not in self._eig_cache and protos and all(r[0] == protos for r in rows):
                by_shape.setdefault((len(key), len(protos)), []).append((key, rows))
        for (n, m), shaped in by_shape.items():
            if len(shaped) < 2:
                continue  # nothing to share: group_eig decomposes it
            step = max(1, self.PREFETCH_FLOATS // (n * m))  # R and the SVD's right vectors stay ~PREFETCH_FLOATS
            for items in (shaped[i:i + step] for i in range(0, len(shaped), step)):
                self._stacked_eig(items, n, m)
        for key in todo:  # gram() keeps the product of the first group that needs a pair: keep the order
            self.group_gram(key)

    #: Most floats of one stacked SVD's input (its right singular vectors are as large again).
    PREFETCH_FLOATS = 2**23

    def _stacked_eig(self, items: list, n: int, m: int) -> None:
        """:meth:`group_eig`'s cache for same-shape groups ``(key, identity rows)``, by one stacked SVD."""
        R = np.array([[r[1] for r in rows] for _, rows in items])  # (P, n, m)
        V, sv, _ = np.linalg.svd(R, full_matrices=n > m)  # V (P, n, n)
        lam = np.zeros((len(items), n))
        lam[:, : sv.shape[1]] = sv * sv
        for (key, _), lam_i, V_i in zip(items, lam, V):
            lam_i, V_i = lam_i.copy(), V_i.copy()
            lam_i.flags.writeable = V_i.flags.writeable = False
            self._eig_cache[key] = (lam_i, V_i)

    def _group_eig(self, members: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        n = len(members)
        rows = [self._identity_row(m) for m in members]
        if all(r[0] == rows[0][0] for r in rows):  # the same protos (decay: every z[i] mixes all n[j])
            protos, R = rows[0][0], np.array([r[1] for r in rows]).reshape(n, len(rows[0][0]))
        else:
            protos = tuple(sorted({p for m in members for p in self.blocks[m].identity}))
            R = np.array([[self.blocks[m].identity.get(p, 0.0) for p in protos] for m in members])
        if not protos:
            return np.zeros(n), np.eye(n)
        V, sv, _ = np.linalg.svd(R, full_matrices=n > len(protos))  # V is (n, n) either way
        lam = np.zeros(n)
        lam[: sv.size] = sv * sv
        return lam, V

    def _identity_row(self, name: str) -> tuple[tuple[str, ...], np.ndarray]:
        """A block's identity protos, sorted, and their coefficients in that order (cached)."""
        hit = self._identity_rows.get(name)
        if hit is None:
            identity = self.blocks[name].identity
            protos = tuple(sorted(identity))
            hit = self._identity_rows[name] = (protos, np.array([identity[p] for p in protos], dtype=np.float64))
        return hit
