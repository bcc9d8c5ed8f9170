"""Exact limits of prediction: the minimum mean squared error and the Bayes accuracy.

Every variable of a spec is a linear map of jointly Gaussian proto-latents, and each
modality is a bijection of its latent, so what any model can learn from a set of
modalities X_S is what the Gaussian latents z_S hold. Two limits follow exactly:

- ``MMSE(θ | X_S) = Var(θ | z_S) = Var(θ) e^{−2 I(θ; X_S)}`` for a scalar Gaussian θ
  (target, latent or proto-latent): E[θ | z_S] is linear in z_S and the residual is
  Gaussian with that variance. ``RMSE`` is its square root; ``R² = 1 − e^{−2I}``.
- ``ACC(y | X_S)`` for a label ``y = 1[s > t]`` of a Gaussian score s:
  ``P(y = 1 | z_S) = Φ((E[s|z_S] − t) / sd(s|z_S))`` and the Bayes classifier predicts
  ``1[E[s|z_S] > t]``; its accuracy is ``E[max(p, 1 − p)]``, a one-dimensional integral
  over the Gaussian ``E[s | z_S]`` (:func:`bayes_accuracy_from_mi`).

The public functions take an :class:`mmmi_dsl.mi.analysis.Analysis` (``Analysis(model)``)
and names as a spec writes them: :func:`mmse`, :func:`rmse`, :func:`r2_limit`,
:func:`bayes_accuracy`. :func:`evaluate` answers the queries ``MMSE(θ | x1)``,
``RMSE(θ | x1)`` and ``ACC(y | x1)`` as :class:`LimitResult` s. numpy and scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mmmi_dsl.ir import LIMIT_KINDS
from mmmi_dsl.lang.check import limit_target_problem
from mmmi_dsl.mi.values import MIValue

__all__ = ["KINDS", "LimitResult", "bayes_accuracy", "bayes_accuracy_from_mi", "bayes_error_from_mi", "evaluate",
           "is_limit",
           "mmse", "mmse_from_mi", "r2_limit", "rmse"]

#: The query kinds that are limits, not information: their results carry a ``value``.
KINDS = LIMIT_KINDS

#: What each kind is, for tables and docs.
MEANING = {"MMSE": "minimum mean squared error", "RMSE": "root of the minimum mean squared error",
           "ACC": "Bayes accuracy"}


@dataclass(frozen=True)
class LimitResult:
    """One answered limit query: ``value`` (a squared error, an error, or an accuracy in [½, 1]).

    ``reason`` says why the value is exact by structure (0 error, accuracy 1, nothing given), else None.
    """

    query: str
    kind: str
    value: float
    reason: str | None = None

    def to_json(self) -> dict:
        out = {"query": self.query, "kind": self.kind, "value": self.value}
        if self.reason:
            out["reason"] = self.reason
        return out


def is_limit(result) -> bool:
    """Whether a result of :meth:`Analysis.evaluate` is a limit (``.value``) rather than an MI (``.nats``)."""
    return isinstance(result, LimitResult)


# ---------------------------------------------------------------- the maths


def mmse_from_mi(variance: float, mi_nats: float) -> float:
    """``Var(θ | X) = Var(θ) e^{−2 I(θ; X)}`` for jointly Gaussian θ and X (0 when I is infinite)."""
    if math.isinf(mi_nats):
        return 0.0
    return float(variance) * math.exp(-2.0 * float(mi_nats))


def bayes_error_from_mi(mi_nats: float, tau: float) -> float:
    """``1 − ACC``: the Bayes error of ``y = 1[s > τ]`` for a standard normal s with ``I(s; X) = mi_nats``
    (accurate relative to itself, also where ``1 − ACC`` would round: 1e-9 at I = 15 nats).

    Note:
        ``s | X ~ N(m, c²)`` with ``c = e^{−I}`` and ``m = ρ z``, ``z ~ N(0, 1)``, ``ρ² = 1 − c²``.
        The Bayes rule errs with probability ``Φ(−|m − τ| / c)`` given X, so
        ``err = ∫ φ(z) Φ(−|ρ z − τ| / c) dz``. Where ``c < ρ`` the integrand is a bump of
        width c/ρ at ``z = τ/ρ``: it is integrated in ``u = (ρ z − τ)/c`` instead,
        ``err = (c/ρ) ∫ φ((c u + τ)/ρ) Φ(−|u|) du``. Each is integrated where both factors exceed
        1e-300 (a finite window) and split at its kink (scipy ``quad``, relative tolerance 1e-12), so
        the error rate keeps its relative accuracy near accuracy 1.
    """
    from scipy.special import ndtr  # scipy on first use: `mmmic check` and `mi` start 0.8 s sooner

    if mi_nats == 0.0:
        return float(ndtr(-abs(tau)))
    if math.isinf(mi_nats):
        return 0.0
    c = math.exp(-mi_nats)
    rho = math.sqrt(-math.expm1(-2.0 * mi_nats))
    W = _WINDOW
    if c < rho:  # the bump is narrower: u = (rho z - tau)/c; phi((c u + tau)/rho) lives on |c u + tau| <= W rho
        lo, hi = max(-W, (-W * rho - tau) / c), min(W, (W * rho - tau) / c)

        def f(u: float) -> float:
            return _PHI0 * math.exp(-0.5 * ((c * u + tau) / rho) ** 2) * ndtr(-abs(u))
        return min(0.5, (c / rho) * _quad(f, lo, hi, 0.0))
    lo, hi = max(-W, (tau - W * c) / rho), min(W, (tau + W * c) / rho)

    def g(z: float) -> float:
        return _PHI0 * math.exp(-0.5 * z * z) * ndtr(-abs(rho * z - tau) / c)
    return min(0.5, _quad(g, lo, hi, tau / rho))


#: Both factors of the integrands are below 1e-300 beyond 37 standard units.
_WINDOW = 37.0
_PHI0 = 1.0 / math.sqrt(2.0 * math.pi)


def _quad(f, lo: float, hi: float, kink: float) -> float:
    """∫ f over [lo, hi] by scipy ``quad``, split at ``kink`` where it lies inside (0 for an empty window)."""
    from scipy import integrate

    if not hi > lo:
        return 0.0
    edges = [lo, kink, hi] if lo < kink < hi else [lo, hi]
    return sum(integrate.quad(f, a, b, epsabs=0.0, epsrel=1e-12, limit=200)[0] for a, b in zip(edges, edges[1:]))


def bayes_accuracy_from_mi(mi_nats: float, tau: float) -> float:
    """The Bayes accuracy of ``y = 1[s > τ·sd(s)]`` from ``I(s; X)`` (Gaussian s and X).

    Args:
        mi_nats: ``I(s; X)`` in [0, inf]; 0 (nothing given) gives ``max(P, 1 − P)`` = ``Φ(|τ|)``,
            inf (s known) gives 1.
        tau: the threshold in standard deviations of s.

    Note:
        No closed form in elementary functions in general. With ``ρ = √(1 − e^{−2I})`` and
        ``E[s|X] = ρ z``, ``ACC = P(s > τ, z > τ/ρ) + P(s < τ, z < τ/ρ)`` for standard normals
        of correlation ρ: at ``τ = 0`` it is ``½ + arcsin(ρ)/π``; in general a bivariate normal
        probability (Owen's T, which the tests use to check the quadrature). Near I = 0,
        ``ACC − max(P, 1 − P)`` grows like √I: an absolute error δ of I moves ACC by up to
        about √(2δ)/π (1.4e-8 for δ = 1e-15).
    """
    mi_nats, tau = float(mi_nats), float(tau)
    if math.isnan(mi_nats) or mi_nats < 0:
        raise ValueError(f"mi_nats must be in [0, inf], got {mi_nats}")
    if not math.isfinite(tau):
        raise ValueError(f"tau must be finite, got {tau}")
    return 1.0 - bayes_error_from_mi(mi_nats, tau)


# ---------------------------------------------------------------- on a model


def _blocks(analysis, names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(analysis.block_of(n) for n in names))


def _information(analysis, target: str, given: Sequence[str]) -> MIValue:
    """``I(target; given)`` between blocks, with the structural cases named; a label in ``given`` is a
    ValueError (given a label the posterior is not Gaussian: ``mmmic check``'s E0211 rule)."""
    labels = [n for n in given if n in analysis.model.labels]
    if labels:
        raise ValueError(f"a Bayes limit cannot be given a label (`{labels[0]}`); give modalities, latents, "
                         "targets or proto-latents")
    blocks = _blocks(analysis, given)
    if not blocks:
        return MIValue(0.0, "nothing is given", "independent")
    if target in blocks:
        return MIValue(math.inf, f"`{target}` is among the given variables", "structured")
    return analysis.system.mi([target], blocks, [])


def _check_scalar(analysis, target: str) -> str:
    """The block of a Python caller's MMSE target, by the query rules
    (:func:`mmmi_dsl.lang.check.limit_target_problem`); ValueError for a name the model lacks."""
    m = analysis.model
    if not any(target in names for names in (m.protos, m.variables, m.flows, m.labels)):
        raise ValueError(f"`{target}` is not a variable of model `{m.name}`")
    problem = limit_target_problem(m, "MMSE", target)
    if problem == "not scalar":
        raise ValueError(f"the MMSE is of a scalar; `{target}` has size {m.size_of(target)}")
    if problem is not None:
        raise ValueError(f"the MMSE is of a scalar Gaussian variable; `{target}` is {problem}")
    return analysis.block_of(target)


def _mmse_value(analysis, target: str, given: Sequence[str]) -> tuple[float, str | None]:
    block = _check_scalar(analysis, target)
    variance = float(analysis.covariance([target])[0, 0])
    info = _information(analysis, block, given)
    reason = info.reason
    if variance == 0.0:
        return 0.0, f"`{target}` is constant (zero variance)"
    if math.isinf(info.nats):
        return 0.0, reason or f"`{target}` is a function of the given variables"
    return mmse_from_mi(variance, info.nats), reason


def mmse(analysis, target: str, given: Sequence[str] = ()) -> float:
    """``MMSE(target | given)``: the least mean squared error of any predictor of a scalar variable.

    Args:
        analysis: an :class:`mmmi_dsl.mi.analysis.Analysis` of the model.
        target: a scalar target, latent or proto-latent (IR names, e.g. ``"theta"``, ``"z[1]"``).
        given: modalities, latents, targets or proto-latents (may be empty: ``Var(θ)``).

    Raises:
        ValueError: the target is a label, a modality or not a scalar.
    """
    return _mmse_value(analysis, target, given)[0]


def rmse(analysis, target: str, given: Sequence[str] = ()) -> float:
    """``√MMSE(target | given)`` (see :func:`mmse`)."""
    return math.sqrt(mmse(analysis, target, given))


def r2_limit(analysis, target: str, given: Sequence[str] = ()) -> float:
    """The best R² of any predictor: ``1 − MMSE / Var = 1 − e^{−2 I(target; given)}`` (1 when I is infinite)."""
    block = _check_scalar(analysis, target)
    info = _information(analysis, block, given)
    return 1.0 if math.isinf(info.nats) else -math.expm1(-2.0 * info.nats)


def _accuracy_value(analysis, label: str, given: Sequence[str]) -> tuple[float, str | None]:
    m = analysis.model
    if limit_target_problem(m, "ACC", label) is not None:
        raise ValueError(f"`{label}` is not a label of model `{m.name}`; ACC is of a label (`label y = s > t`)")
    var_s = float(analysis.covariance([label])[0, 0])
    threshold = analysis.label_threshold(label)
    if var_s == 0.0:
        return 1.0, f"the score of `{label}` is constant, and so is the label"
    tau = threshold / math.sqrt(var_s)
    info = _information(analysis, analysis.block_of(label), given)
    reason = info.reason
    if math.isinf(info.nats):
        return 1.0, reason or f"the score of `{label}` is a function of the given variables"
    return bayes_accuracy_from_mi(info.nats, tau), reason


def bayes_accuracy(analysis, label: str, given: Sequence[str] = ()) -> float:
    """``ACC(label | given)``: the accuracy of the Bayes classifier of a threshold label.

    Args:
        analysis: an :class:`mmmi_dsl.mi.analysis.Analysis` of the model.
        label: a label's name (``label y = theta > 0``).
        given: modalities, latents, targets or proto-latents; empty gives ``max(P, 1 − P)``.

    Raises:
        ValueError: ``label`` is not a label.
    """
    return _accuracy_value(analysis, label, given)[0]


def evaluate(analysis, query) -> LimitResult:
    """Answer an ``MMSE``, ``RMSE`` or ``ACC`` :class:`mmmi_dsl.ir.Query` (checked by lowering)."""
    (target,) = query.groups[0]
    if query.kind == "ACC":
        value, reason = _accuracy_value(analysis, target, query.given)
    else:
        value, reason = _mmse_value(analysis, target, query.given)
        if query.kind == "RMSE":
            value = math.sqrt(value)
    return LimitResult(query.text, query.kind, value, reason)
