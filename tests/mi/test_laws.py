"""Student-t groups and uniform noise (issue 17 items 2-3): exact MI against independent computations.

- Student-t: Monte Carlo of ``log p(a, b) - log p(a) - log p(b)`` with scipy's multivariate-t
  densities on scipy's own samples (nothing of mmmic in the estimate), BMI's formula as BMI's
  source writes it (differential entropies), the Gaussian limit, ranks of degenerate sides.
- Uniform: the entropy of the density of ``c1 U1 + c2 U2``, computed by numerical convolution and
  quadrature, and BMI's ``1v1-additive`` closed form.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

import mmmi_dsl
from mmmi_dsl.errors import SpecError
from mmmi_dsl.mi.laws import student_correction, uniform_additive_mi

# ---------------------------------------------------------------- BMI's formulas, as BMI writes them
# cbg-ethz/bmi @ 6c569b9, src/bmi/samplers/_split_student_t.py: I = I_normal(dispersion) +
# h(dim_x) + h(dim_y) - h(dim_x + dim_y), h(k) the entropy of Student-t(0, I_k, dof) (their
# _differential_entropy, Arellano-Valle et al. 2013, eq. 7). src/bmi/samplers/_additive_uniform.py:
# I = eps - log(2 eps) for eps <= 1/2, else 1/(4 eps).


def bmi_entropy(k: int, dof: float) -> float:
    half = 0.5 * (dof + k)
    return (-special.gammaln(half) + special.gammaln(0.5 * dof) + 0.5 * k * math.log(dof * math.pi)
            + half * (special.digamma(half) - special.digamma(0.5 * dof)))


def bmi_student_identity(dx: int, dy: int, dof: float) -> float:
    return bmi_entropy(dx, dof) + bmi_entropy(dy, dof) - bmi_entropy(dx + dy, dof)


def bmi_additive(eps: float) -> float:
    return 0.25 / eps if eps > 0.5 else eps - math.log(2 * eps)


def student_identity_spec(dx: int, dy: int, dof: float) -> str:
    return f"""
proto gx : vector[{dx}]
proto gy : vector[{dy}]
latent zx = gx
latent zy = gy
student({dof}): zx, zy
flow x = identity(zx)
flow y = identity(zy)
report I(x; y)
"""


#: BMI's Student-t tasks (task_list.py) and one value from the BMI paper's setting, recorded in
#: docs/science.md section 10: student-identity-1-1-1 = 0.224171 nats.
BMI_STUDENT_TASKS = [(1, 1, 1), (2, 2, 1), (2, 2, 2), (3, 3, 2), (3, 3, 3), (5, 5, 2), (5, 5, 3)]


@pytest.mark.parametrize("dx,dy,dof", BMI_STUDENT_TASKS, ids=lambda v: str(v))
def test_student_identity_tasks_equal_bmi_formula(dx, dy, dof):
    exact = mmmi_dsl.loads(student_identity_spec(dx, dy, dof)).mi("I(x; y)")
    assert exact == pytest.approx(bmi_student_identity(dx, dy, dof), rel=1e-12, abs=1e-14)


def test_student_identity_1_1_1_published_value():
    assert mmmi_dsl.loads(student_identity_spec(1, 1, 1)).mi("I(x; y)") == pytest.approx(0.224171, abs=5e-7)


def test_student_dense_task_equals_bmi_formula():
    """student-dense-2-2-5-0.5: equicorrelation 0.5 dispersion over (x1, x2, y1, y2)."""
    # 0.5 I + 0.5 11ᵀ is the covariance of sqrt(0.5) (u 1 + e): one shared scalar cause
    text = """
proto u : scalar
proto ex : vector[2]
proto ey : vector[2]
latent zx = sqrt(0.5) * u * ones(2) + sqrt(0.5) * ex
latent zy = sqrt(0.5) * u * ones(2) + sqrt(0.5) * ey
student(5): zx, zy
"""
    s = mmmi_dsl.loads(text)
    disp = 0.5 * np.eye(4) + 0.5
    gauss = 0.5 * (np.linalg.slogdet(disp[:2, :2])[1] + np.linalg.slogdet(disp[2:, 2:])[1]
                   - np.linalg.slogdet(disp)[1])
    expected = gauss + bmi_entropy(2, 5) + bmi_entropy(2, 5) - bmi_entropy(4, 5)
    assert s.mi("I(zx; zy)") == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- Monte Carlo with scipy's densities

CORRELATED = """
param nu = 4
proto u : scalar
proto g : vector[2]
proto h : scalar
proto k : scalar
latent a : vector[2] = 0.8 * u * ones(2) + g
latent b = u + 0.5 * h
latent c = 0.7 * h + k
student(nu): a, b, c
"""


def _dispersion(spec: mmmi_dsl.Spec) -> np.ndarray:
    from mmmi_dsl.mi.analysis import Analysis

    return Analysis(spec).covariance(["a", "b", "c"])


def _mc(spec, nu, n, combine):
    """Mean and standard error of combine(logpdf by index set) over scipy's multivariate-t samples."""
    disp = _dispersion(spec)
    x = stats.multivariate_t.rvs(shape=disp, df=nu, size=n, random_state=np.random.default_rng(7))

    def logpdf(idx):
        idx = list(idx)
        return stats.multivariate_t.logpdf(x[:, idx], shape=disp[np.ix_(idx, idx)], df=nu)
    values = combine(logpdf)
    return values.mean(), values.std() / math.sqrt(n)


@pytest.mark.parametrize("nu", [1, 4])
def test_student_mi_and_conditional_mi_against_monte_carlo(nu):
    """Within 5 standard errors of a 40,000-sample Monte Carlo of the exact densities (a, b, c = 0-1, 2, 3)."""
    spec = mmmi_dsl.loads(CORRELATED).at(nu=nu)
    a, b, c = (0, 1), (2,), (3,)
    mean, se = _mc(spec, nu, 40_000, lambda lp: lp(a + b) - lp(a) - lp(b))
    assert abs(spec.mi("I(a; b)") - mean) < 5 * se
    mean, se = _mc(spec, nu, 40_000, lambda lp: lp(a + b + c) + lp(c) - lp(a + c) - lp(b + c))
    assert abs(spec.mi("I(a; b | c)") - mean) < 5 * se
    mean, se = _mc(spec, nu, 40_000, lambda lp: lp(a + b + c) - lp(a) - lp(b) - lp(c))
    assert abs(spec.mi("TC(a; b; c)") - mean) < 5 * se


def test_student_identities_hold():
    spec = mmmi_dsl.loads(CORRELATED)
    mi = spec.mi
    assert mi("I(a; b, c)") == pytest.approx(mi("I(a; c)") + mi("I(a; b | c)"), rel=1e-10)  # chain rule
    assert mi("TC(a; b; c)") == pytest.approx(mi("I(a; b)") + mi("I(a, b; c)"), rel=1e-10)
    assert mi("II(a; b; c)") == pytest.approx(mi("I(a; b)") - mi("I(a; b | c)"), rel=1e-10)
    assert mi("I(a; b | c)") > 0


def test_student_disjoint_gaussian_parts_still_dependent_and_gaussian_limit():
    s = mmmi_dsl.loads(student_identity_spec(2, 3, 1e9))
    assert 0 < s.mi("I(x; y)") < 1e-8  # the shared scale carries information of order 1/nu^2
    gauss = mmmi_dsl.loads(CORRELATED.replace("student(nu): a, b, c", ""))
    heavy = mmmi_dsl.loads(CORRELATED).at(nu=1e7)
    assert heavy.mi("I(a; b | c)") == pytest.approx(gauss.mi("I(a; b | c)"), rel=1e-6)


def test_correction_terms_cancel_exactly_at_large_nu():
    """mpmath keeps the correction at its asymptote m n / (2 nu^2) (-φ'' = 1/(2h^2), h = nu/2, steps m/2 and
    n/2) where float64 would cancel to noise."""
    for nu in (1e4, 1e6, 1e8):
        value = student_correction(nu, [1, 1], [2, 0])
        assert value == pytest.approx(1 / (2 * nu * nu), rel=1e-3)


def test_rank_deficient_side_counts_by_its_support():
    """x = u * ones(3) is an injective image of the scalar u: the same MI as the scalar, with m = 1, not 3."""
    base = """
proto u : scalar
proto e : scalar
latent s = u
latent y = 0.6 * u + e
latent x : vector[3] = u * ones(3)
student(3): s, y, x
"""
    spec = mmmi_dsl.loads(base)
    assert spec.mi("I(x; y)") == pytest.approx(spec.mi("I(s; y)"), rel=1e-12)
    assert spec.mi("I(x; s)") == math.inf  # a linear relation stays deterministic under the shared scale


def test_independent_components_add_up():
    text = CORRELATED + """
proto q : scalar
proto w : scalar
latent gq = q
latent gw = q + w
"""
    spec = mmmi_dsl.loads(text)
    assert spec.mi("I(a, gq; b, gw)") == pytest.approx(spec.mi("I(a; b)") + spec.mi("I(gq; gw)"), rel=1e-12)
    assert spec.mi("I(a; gq)") == 0.0


# ---------------------------------------------------------------- uniform noise


def _trapezoid_mi(signal: float, noise: float) -> float:
    """h(S + N) - h(N) for S ~ U(-signal, signal), N ~ U(-noise, noise), by convolution and quadrature."""
    def p(y):
        lo, hi = max(-signal, y - noise), min(signal, y + noise)
        return max(hi - lo, 0.0) / (4 * signal * noise)

    top = signal + noise
    kinks = sorted({-top, -abs(signal - noise), abs(signal - noise), top})
    h = integrate.quad(lambda y: -p(y) * math.log(p(y)) if p(y) > 0 else 0.0, -top, top, points=kinks[1:-1],
                       epsabs=1e-13, epsrel=1e-12, limit=200)[0]
    return h - math.log(2 * noise)


@pytest.mark.parametrize("signal,noise", [(0.5, 0.1), (0.5, 0.75), (1.0, 1.0), (0.3, 2.5), (2.0, 0.01)])
def test_uniform_closed_form_against_quadrature(signal, noise):
    assert uniform_additive_mi(signal, noise) == pytest.approx(_trapezoid_mi(signal, noise), rel=1e-8, abs=1e-10)


UNIFORM = """
param eps = 0.1 in (0, 10)
proto x0 : uniform[0, 1]
proto n : uniform[-eps, eps]
latent y = x0 + n
flow x = identity(x0)
flow yy = identity(y)
report I(x; yy)
"""


@pytest.mark.parametrize("eps", [0.1, 0.75, 0.5, 3.0])
def test_bmi_additive_tasks(eps):
    assert mmmi_dsl.loads(UNIFORM).at(eps=eps).mi("I(x; yy)") == pytest.approx(bmi_additive(eps), rel=1e-14)


def test_uniform_scaled_and_swapped_roles():
    """y = 2 x - 3 n: signal half-width 2 * 1/2, noise 3 * eps; I(n; y) measures the noise as the signal."""
    text = UNIFORM.replace("latent y = x0 + n", "latent y = 2 * x0 - 3 * n")
    s = mmmi_dsl.loads(text).at(eps=0.2)
    assert s.mi("I(x; yy)") == pytest.approx(_trapezoid_mi(1.0, 0.6), rel=1e-8)
    assert s.mi("I(n; y)") == pytest.approx(_trapezoid_mi(0.6, 1.0), rel=1e-8)
    assert s.mi("I(x0; n)") == 0.0
    assert mmmi_dsl.loads(UNIFORM).mi("I(x; x0)") == math.inf


def test_uniform_solve_finds_eps():
    s = mmmi_dsl.loads(UNIFORM)
    eps = s.solve("eps", "I(x; yy) = 1", bracket=(0.01, 5))
    assert bmi_additive(eps) == pytest.approx(1.0, abs=1e-9)


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("text,query,words", [
    (CORRELATED + "latent z = u + k\n", "I(b; z)", "share proto-latent `u`"),
    (UNIFORM + "proto e : scalar\nlatent w = x0 + e\n", "I(x0; w)", "adds Gaussian"),
    (UNIFORM, "I(x; yy | n)", "only I(a; b) of two scalars"),
    (UNIFORM + "proto m : uniform[0, 1]\nlatent t = x0 + n + m\n", "I(x0; t)", "3 uniform"),
    (UNIFORM + "latent t = x0 - n\n", "I(t; y)", "both sides mix"),
])
def test_queries_without_closed_form_are_refused(text, query, words):
    with pytest.raises(SpecError) as err:
        mmmi_dsl.loads(text).mi(query)
    d = err.value.diagnostics[0]
    assert d.code == "E0220" and words in d.message, d.message


@pytest.mark.parametrize("extra,words", [
    ("latent w = b + k\n", "adds a Student-t"),
    ("latent m2 = 2 * b\nstudent(3): m2\n", "built from a variable that is Student-t"),
    ("label yl = b > 0\n", "label `yl`"),
])
def test_declarations_without_closed_form_are_refused(extra, words):
    with pytest.raises(SpecError) as err:
        mmmi_dsl.loads(CORRELATED + extra)
    d = err.value.diagnostics[0]
    assert d.code == "E0220" and words in d.message and d.span is not None, d.message


def test_bad_laws_are_refused_at_their_spans():
    for text, code in [("proto n : uniform[1, 0]\n", "E0207"), ("proto n : uniform[1]\n", "E0209"),
                       ("proto g : scalar\nlatent z = g\nstudent(0): z\n", "E0207"),
                       ("proto g : scalar\nlatent z = g\nflow x = identity(z)\nstudent(2): x\n", "E0103"),
                       ("proto g : scalar\nlatent z = g\nstudent(2): z\nstudent(3): z\n", "E0102"),
                       ("proto g : scalar\nlatent z : uniform[0, 1] = g\n", "E0209")]:
        with pytest.raises(SpecError) as err:
            mmmi_dsl.loads(text)
        assert err.value.diagnostics[0].code == code, (text, err.value)


def test_formulas_match_numbers():
    import sympy as sp

    s = mmmi_dsl.loads(CORRELATED)
    for q in ("I(a; b)", "I(a; b | c)", "TC(a; b; c)"):
        value = float(s.formula(q).evalf(30, subs={sp.Symbol("nu", real=True): 4}))
        assert value == pytest.approx(s.mi(q), rel=1e-10)
    f = mmmi_dsl.loads(UNIFORM).formula("I(x; yy)")
    for eps in (0.1, 0.75):
        assert float(f.subs(sp.Symbol("eps", real=True), eps)) == pytest.approx(bmi_additive(eps), rel=1e-12)


def test_interaction_information_with_laws_signs_and_messages():
    """II over a Student group takes the Gaussian engine's combination (information.interaction_from_terms):
    an exact 0.0 (no reason, as before the fold), -inf when only the conditional term is infinite, and the
    undefined inf - inf refused with both reasons (E0211) without the Gaussian path's prefix."""
    text = """
proto u : scalar
proto e : scalar
proto g : scalar
proto k : scalar
latent a = u
latent b = e
latent c = g
latent d = 2 * u
latent s = u + e
latent h = k
student(3): a, b, d, s
"""
    spec = mmmi_dsl.loads(text)
    (zero,) = spec.results("II(a; c; h)")  # c, h Gaussian and independent of a
    assert zero.nats == 0.0 and zero.reason is None
    (neg,) = spec.results("II(a; b; s)")  # I(a; b | s) = inf: b = s - a
    assert neg.nats == -math.inf and neg.reason.startswith("I(A;B|C) is infinite: ")
    with pytest.raises(SpecError, match=r"E0211|undefined") as err:
        spec.mi("II(a; d; c)")
    message = str(err.value)
    assert "is undefined: both I(A;B) and I(A;B|C) are infinite (" in message
    assert "interaction information undefined" not in message
    gauss = mmmi_dsl.loads(text.replace("student(3): a, b, d, s", ""))
    with pytest.raises(SpecError, match="is undefined: interaction information undefined: both I"):
        gauss.mi("II(a; d; c)")
    (gzero,) = gauss.results("II(a; c; h)")
    assert gzero.nats == 0.0 and gzero.reason == "both terms are exactly zero by independence"
