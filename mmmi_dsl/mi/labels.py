"""The information of a binary label ``y = 1[s > t]`` thresholded from a Gaussian score.

Binary entropies of normal tails (``erfc``, no cancellation), a composite
Gauss–Legendre quadrature, and :func:`label_mi`, ``I(y; X | C)`` from the exact
``I(s; ·)`` of :mod:`mmmi_dsl.mi.information`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mmmi_dsl.mi.blocks import BlockSet, fmt, union
from mmmi_dsl.mi.information import MIValue, clamp, mi

__all__ = ["binary_entropy", "binary_label_information", "label_mi"]


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


def label_mi(bs: BlockSet, score: str, threshold: float, others: str | Sequence[str],
             given: str | Sequence[str] = ()) -> MIValue:
    """``I(y; X | C)`` for ``y = 1[s > threshold]`` (see :meth:`GaussianSystem.label_mi`).

    Note:
        ``I(y; X | C) = I(y; X, C) − I(y; C)`` and, for Gaussian s and X,
        ``I(y; X) = H(y) − E_X[h(Φ((μ(X) − t)/σ_c))]`` with
        ``σ_c² = Var(s) exp(−2 I(s; X))`` (see binary_label_information).
        If s is in X∪C, ``I(s; X,C) = inf`` and ``I(y; X,C) = H(y)``.
    """
    (s,) = bs.check([score], "score")
    if bs.blocks[s].size != 1:
        raise ValueError(f"score {s!r} must be a size-1 block, it has size {bs.blocks[s].size}")
    X = bs.check(others, "others")
    C = bs.check(given, "given")
    if not X:
        raise ValueError("label_mi needs non-empty others")
    threshold = float(threshold)
    var_s = float(bs.covariance([s])[0, 0])
    if var_s <= 0:
        return MIValue(0.0, f"score {s!r} has zero variance: the label is constant", "independent")
    tau = threshold / math.sqrt(var_s)

    def s_info(S: tuple[str, ...]) -> MIValue:
        if s in S:
            return MIValue(math.inf, f"{s!r} is among the conditioning blocks", "structured")
        return mi(bs, [s], S)

    m_xc = s_info(union(X, C))
    if m_xc.method == "independent":
        return MIValue(0.0, f"score {s!r} is independent of {fmt(union(X, C))}", "independent")
    i_xc = binary_label_information(m_xc.nats, tau)
    i_c = 0.0
    method = m_xc.method
    if C:
        m_c = s_info(C)
        i_c = binary_label_information(m_c.nats, tau)
        if m_c.method == "dense":
            method = "dense"
    value = clamp(i_xc - i_c, (i_xc, i_c), "label MI")
    return MIValue(value, None, method)
