"""Pointwise mutual information ``log p(a, b) − log p(a) − log p(b)`` per sample.

``PMI = I(A;B) + ½(q_A + q_B − q_AB)``, ``q_S = x_Sᵀ Σ_SS⁻¹ x_S``. Without dense
maps, ``Σ⁻¹`` is applied in the rotated frame of :class:`GaussianSystem`'s Note:
the zero-λ part (≤ K dims) by a Schur complement, the rest by Woodbury on
``Λ+ ⊗ I + (U+Π)(U+Π)ᵀ``; memory O(n_g·d·K) plus a chunk of samples. When a
covariance is singular, the densities on the blocks' supports (pseudo-inverses).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mmmi_dsl.mi.blocks import BlockSet, fmt, union
from mmmi_dsl.mi.logdet import Tolerance, equilibrated_cholesky, logdet, tolerance

__all__ = ["PMI_CANCEL", "pmi"]

#: pmi refuses when its Woodbury terms exceed this times the dimension: their difference
#: (of order the dimension) would be off by more than ~1e-6 of the dimension, in nats.
PMI_CANCEL = 1e10

# Samples per chunk in pmi: keeps the rotated copy of the data below ~32 MiB.
_CHUNK_FLOATS = 1 << 22


def _check_samples(bs: BlockSet, names: Sequence[str], samples: Mapping[str, np.ndarray]) -> int:
    n = None
    for v in names:
        if v not in samples:
            raise KeyError(f"samples lack block {v!r}")
        x = np.asarray(samples[v])
        size = bs.blocks[v].size
        if x.ndim == 1 and size == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != size:
            raise ValueError(f"samples[{v!r}] must have shape (n, {size}), got {x.shape}")
        if n is None:
            n = x.shape[0]
        elif x.shape[0] != n:
            raise ValueError("samples have different numbers of rows")
    return int(n or 0)


def _get(samples: Mapping[str, np.ndarray], v: str, sl: slice) -> np.ndarray:
    x = np.asarray(samples[v], dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    return x[sl]


def pmi(bs: BlockSet, a: str | Sequence[str], b: str | Sequence[str],
        samples: Mapping[str, np.ndarray]) -> np.ndarray:
    """(n,) pointwise MI of the samples (see :meth:`GaussianSystem.pmi`)."""
    A, B = bs.check(a, "a"), bs.check(b, "b")
    if not A or not B:
        raise ValueError("pmi needs non-empty sets a and b")
    shared = set(A) & set(B)
    if shared:
        raise ValueError(f"a and b share blocks {sorted(shared)}")
    AB = union(A, B)
    n = _check_samples(bs, AB, samples)
    if bs.independent(A, B, ()):
        return np.zeros(n)
    atol = tolerance(bs, AB)
    dets = [logdet(bs, S, atol) for S in (A, B, AB)]
    if any(ld.rank < ld.size for ld in dets):
        return _pmi_on_supports(bs, A, B, samples, n, atol)
    qa, qb, qab = (_quad(bs, S, samples, n, atol) for S in (A, B, AB))
    return 0.5 * (dets[0].value + dets[1].value - dets[2].value) + 0.5 * (qa + qb - qab)


def _pmi_on_supports(bs: BlockSet, A: Sequence[str], B: Sequence[str], samples: Mapping[str, np.ndarray],
                     n: int, atol: Tolerance) -> np.ndarray:
    """PMI when a covariance is singular: the densities on each block's support.

    Note:
        A degenerate Gaussian ``x_S = A_S s`` has a density on ``range(Σ_SS)``:
        ``log p(x) = −½[r log 2π + lpdet Σ_SS + xᵀ Σ_SS⁺ x]``. With ``A_S = U diag(σ) Vᵀ``
        (σ² > ``atol.total``) ``lpdet = Σ log σ²`` and ``xᵀΣ⁺x = ‖diag(σ)⁻¹ Uᵀ x‖²``. When
        ``rank(AB) = rank(A) + rank(B)`` the joint support is the product of the two,
        the 2π terms cancel and the mean of the PMI is ``I(A; B)``; otherwise I is
        infinite and so is every PMI (ValueError). Dense (sizes up to ``dense_limit``).
    """
    parts = []
    for S in (A, B, union(A, B)):
        U, sv, _ = np.linalg.svd(bs.dense_matrix(S), full_matrices=False)
        keep = sv * sv > atol.total
        U, sv = U[:, keep], sv[keep]
        X = np.concatenate([_get(samples, v, slice(None)) for v in S], axis=1)
        Y = (X @ U) / sv
        parts.append((float(np.sum(np.log(sv * sv))), sv.size, np.sum(Y * Y, axis=1)))
    (la, ra, qa), (lb, rb, qb), (lab, rab, qab) = parts
    if rab < ra + rb:
        raise ValueError(
            f"the PMI of {fmt(A)} and {fmt(B)} is infinite: a deterministic linear relation between them "
            f"(rank {rab} < {ra} + {rb}); so is their MI")
    return 0.5 * (la + lb - lab) + 0.5 * (qa + qb - qab)


def _quad(bs: BlockSet, names: Sequence[str], samples: Mapping[str, np.ndarray], n: int,
          atol: Tolerance) -> np.ndarray:
    """Quadratic forms ``x_Sᵀ Σ_SS⁻¹ x_S``, (n,), for a non-degenerate S."""
    if bs.is_dense(names):
        Sigma = bs.covariance(names)
        Lc = np.linalg.cholesky(Sigma)
        X = np.concatenate([_get(samples, v, slice(None)) for v in names], axis=1)
        Y = np.linalg.solve(Lc, X.T)
        return np.sum(Y * Y, axis=0)
    K = bs.K
    groups = []
    H = np.zeros((K, K))
    zero_U = []
    for d, members in bs.groups(names).items():
        lam, V = bs.group_eig(members)
        Lst = np.stack([bs.blocks[m].loadings for m in members])  # (n_g, d, K)
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
    scale, chol = equilibrated_cholesky(M) if M.size else (None, M)
    width = bs.size(names)
    chunk = max(1, _CHUNK_FLOATS // max(width, 1))
    out = np.empty(n)
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        m = sl.stop - sl.start
        rot = []
        x0_parts = []
        for members, V, lam, plus, Up in groups:
            Xg = np.stack([_get(samples, v, sl) for v in members], axis=1)  # (m, n_g, d)
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
                    f"the quadratic forms of {fmt(names)} cancel beyond double precision "
                    f"(terms up to {np.max(q):.2g} for a result of order {width})")
            q -= np.sum(y * y, axis=0)
        out[sl] = q
    return out
