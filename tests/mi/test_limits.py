"""The exact limits MMSE, RMSE and ACC (mmmi_dsl.mi.limits), checked four ways: closed forms
(ACC = ½ + arcsin(r)/π, MMSE = Var(θ)(1 − r²)), Owen's T for the quadrature, a naive dense
conditional variance at small d, and Monte Carlo on the sampler's tuples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from mmmi_dsl import loads
from mmmi_dsl.lang.lower import resolve_query
from mmmi_dsl.mi import limits
from mmmi_dsl.mi.analysis import Analysis
from mmmi_dsl.mi.symbolic import derive, evaluate_formula

from ..conftest import ROOT
from ..dense_reference import dense_rows

#: theta = eta * u, x = r u + sqrt(1 - r^2) e: corr(theta, x) = r, Var(theta) = eta^2.
PAIR = """
model pair
param r = 0.6 in [-1, 1]
param eta = 2 in (0, 10)
param t = 0 in [-10, 10]
proto u : scalar
proto e : scalar
target theta = eta * u
latent z = r * u + sqrt(1 - r^2) * e
flow x = identity(z) : vector[1]
label y = theta > t
"""


def pair(**values):
    return loads(PAIR, **values)


def limit(spec, text: str) -> float:
    return Analysis(spec).evaluate(resolve_query(spec, text)).value


def _phi2(h: float, k: float, rho: float) -> float:
    """P(X < h, Y < k) for standard normals of correlation rho, by Owen's T (h k > 0, or h = k = 0)."""
    if h == 0 and k == 0:
        return 0.25 + math.asin(rho) / (2 * math.pi)
    s = math.sqrt(1 - rho * rho)
    return (0.5 * (special.ndtr(h) + special.ndtr(k)) - special.owens_t(h, (k - rho * h) / (h * s))
            - special.owens_t(k, (h - rho * k) / (k * s)))


def owen_accuracy(mi_nats: float, tau: float) -> float:
    """ACC = P(s > τ, z > τ/ρ) + P(s < τ, z < τ/ρ): E[s | X] = ρ z with corr(s, z) = ρ = √(1 − e^{−2I}),
    an independent closed form in Owen's T (Owen 1956) of what the engine integrates by quadrature."""
    rho = math.sqrt(-math.expm1(-2 * mi_nats))
    return float(_phi2(tau, tau / rho, rho) + _phi2(-tau, -tau / rho, rho))


# ---------------------------------------------------------------- closed forms


CORRELATIONS = st.one_of(st.just(0.0), st.floats(1e-9, 0.999), st.floats(-0.999, -1e-9))


@settings(max_examples=40, deadline=None)
@given(CORRELATIONS)
def test_pair_closed_forms(r):
    spec = pair(r=r)
    # the engine's I is exact to ~1e-15 absolute; exp(-2I) keeps that relative to Var(theta) = 4
    assert limit(spec, "MMSE(theta | x)") == pytest.approx(4 * (1 - r * r), rel=1e-9, abs=1e-12)
    assert limit(spec, "RMSE(theta | x)") == pytest.approx(2 * math.sqrt(1 - r * r), rel=1e-9, abs=1e-9)
    # ACC comes from I: near I = 0, ACC - 1/2 = sqrt(2 I)/pi, so an absolute error of 1e-15 in I (the
    # engine's; it rounds I below about that to 0) moves ACC by up to sqrt(2e-15)/pi = 1.4e-8
    assert limit(spec, "ACC(y | x)") == pytest.approx(0.5 + math.asin(abs(r)) / math.pi, abs=1e-7)


@pytest.mark.parametrize("mi_nats", [1e-6, 0.01, 0.3, 1.0, 3.0, 8.0])  # beyond, Owen's T arguments cancel
@pytest.mark.parametrize("tau", [-3.0, -0.7, 0.0, 0.4, 2.5])
def test_quadrature_matches_owens_t(mi_nats, tau):
    got = limits.bayes_accuracy_from_mi(mi_nats, tau)
    # the oracle loses digits, not the quadrature (checked against mpmath below): owens_t(h, a) with
    # a ~ 1/sqrt(1 - rho^2) large is good to ~1e-13 only
    assert got == pytest.approx(owen_accuracy(mi_nats, tau), abs=1e-11)
    assert limits.bayes_error_from_mi(mi_nats, tau) == pytest.approx(1 - got, abs=1e-15)


@pytest.mark.parametrize("mi_nats, tau", [(15.0, -3.0), (12.0, 0.0), (20.0, 1.5), (0.5, 6.0), (8.0, -0.7),
                                          (1.0, 0.4)])
def test_error_rate_to_full_relative_precision(mi_nats, tau):
    """Where the error rate is 1e-9 or less, 1 - ACC rounds; the error rate itself keeps ~1e-11."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    c, rho = mp.e ** -mp.mpf(mi_nats), mp.sqrt(1 - mp.e ** (-2 * mp.mpf(mi_nats)))
    z0 = mp.mpf(tau) / rho
    want = mp.quad(lambda z: mp.npdf(z) * mp.ncdf(-abs(rho * z - tau) / c),
                   [-mp.inf, z0 - 1e-4, z0 - 1e-7, z0, z0 + 1e-7, z0 + 1e-4, mp.inf])
    assert limits.bayes_error_from_mi(mi_nats, tau) == pytest.approx(float(want), rel=1e-9)


def test_structural_cases():
    spec = pair(r=0.6, t=0.5)
    assert limit(spec, "ACC(y)") == float(special.ndtr(0.25))  # max(P, 1-P) = Phi(|t| / sd)
    assert limit(spec, "MMSE(theta)") == pytest.approx(4.0, rel=1e-15)
    assert limit(spec, "ACC(y | theta)") == 1.0
    assert limit(spec, "MMSE(theta | theta, x)") == 0.0
    assert limit(spec, "MMSE(z | x)") == 0.0  # a modality and its latent are one variable
    assert limit(pair(r=0.0), "MMSE(theta | x)") == 4.0  # independent: exactly Var(theta)
    assert limit(pair(r=0.0), "ACC(y | x)") == 0.5
    assert limit(pair(r=1.0), "ACC(y | x)") == 1.0  # x determines theta
    assert limit(pair(r=1.0), "MMSE(theta | x)") == 0.0
    result = Analysis(spec).evaluate(resolve_query(spec, "ACC(y)"))
    assert result.reason == "nothing is given" and result.to_json()["value"] == result.value


def test_public_functions():
    spec = pair(r=0.8)
    a = Analysis(spec)
    assert limits.mmse(a, "theta", ["x"]) == pytest.approx(4 * 0.36, rel=1e-12)
    assert limits.rmse(a, "theta", ["x"]) == pytest.approx(1.2, rel=1e-12)
    assert limits.r2_limit(a, "theta", ["x"]) == pytest.approx(0.64, rel=1e-12)
    assert limits.bayes_accuracy(a, "y", ["x"]) == pytest.approx(0.5 + math.asin(0.8) / math.pi, abs=1e-12)
    with pytest.raises(ValueError, match="a label"):
        limits.mmse(a, "y", ["x"])
    with pytest.raises(ValueError, match="not a label"):
        limits.bayes_accuracy(a, "theta", ["x"])


def test_public_functions_refuse_targets_by_the_query_rules():
    """A Python caller's target is refused by the rules `mmmic check` applies to a query
    (lang.check.limit_target_problem), each with its own plain message."""
    spec = loads(PAIR + "proto v : vector[2]\nlatent w : vector[2] = v\n")
    a = Analysis(spec)
    cases = [(limits.mmse, "y", "the MMSE is of a scalar Gaussian variable; `y` is a label"),
             (limits.rmse, "x", "the MMSE is of a scalar Gaussian variable; `x` is a modality"),
             (limits.r2_limit, "w", "the MMSE is of a scalar; `w` has size 2"),
             (limits.mmse, "v", "the MMSE is of a scalar; `v` has size 2"),
             (limits.mmse, "nope", "`nope` is not a variable of model `pair`"),
             (limits.bayes_accuracy, "z", "`z` is not a label of model `pair`; ACC is of a label")]
    for function, target, message in cases:
        with pytest.raises(ValueError) as err:
            function(a, target, ["x"])
        assert str(err.value).startswith(message), (target, str(err.value))
    assert limits.mmse(a, "u", ["x"]) == pytest.approx(1 - 0.36, rel=1e-12)  # a scalar proto-latent is allowed
    for function, target in ((limits.mmse, "u"), (limits.r2_limit, "u"), (limits.bayes_accuracy, "y")):
        with pytest.raises(ValueError, match="cannot be given a label"):  # once answered given the label's score
            function(a, target, ["x", "y"])


def test_formula_matches_the_engine():
    spec = loads((ROOT / "specs/two_views.mmi").read_text(), d=16)
    for text in ("MMSE(theta | x1)", "MMSE(theta | x1, x2)", "RMSE(theta | x2)", "MMSE(theta)"):
        q = resolve_query(spec, text)
        f = derive(spec, q)
        assert evaluate_formula(f, spec) == pytest.approx(limit(spec, text), rel=1e-10), text


# ---------------------------------------------------------------- dense numerics at small d

SMALL = """
model small
param a = 0.7
dim d = 3
proto u : scalar
proto w : scalar
proto n1 : vector[d]
proto n2 : vector[d]
template T = random(d, 5)
matrix M = uniform(d, d, seed = 3)
target theta = u + 0.5 * w
latent h1 = a * u * T + n1
latent h2 = M @ h1 + w * T + 0.3 * n2
flow x1 = identity(h1) : vector[d]
flow x2 = identity(h2) : vector[d]
template v = random(d, 7)
proto q : scalar
label y = dot(v, h2) + 0.8 * q > 0.4
"""


def dense_conditional_variance(model, target: str, given: list[str]) -> float:
    """Var(target | given) = Σ_tt − Σ_tS Σ_SS⁺ Σ_St from the naive dense rows (tests/dense_reference.py)."""
    rows, _ = dense_rows(model)
    t = rows[target]
    var = float((t @ t.T)[0, 0])
    if not given:
        return var
    s = np.vstack([rows[n] for n in given])
    cross = t @ s.T
    return var - float((cross @ np.linalg.pinv(s @ s.T, rcond=1e-12) @ cross.T)[0, 0])


@pytest.mark.parametrize("given", [["x1"], ["x2"], ["x1", "x2"], ["x2", "u"]])
def test_mmse_against_dense(given):
    spec = loads(SMALL)
    want = dense_conditional_variance(spec, "theta", given)
    # pinv of a 3x3 to 6x6 covariance: ~1e-12 relative
    assert limit(spec, f"MMSE(theta | {', '.join(given)})") == pytest.approx(want, rel=1e-8)


@pytest.mark.parametrize("given", [["x1"], ["x2"], ["x1", "x2"], []])
def test_accuracy_against_dense(given):
    spec = loads(SMALL)
    score = "score of y"
    var_s = dense_conditional_variance(spec, score, [])
    cond = dense_conditional_variance(spec, score, given)
    mi = 0.5 * math.log(var_s / cond)
    want = owen_accuracy(mi, 0.4 / math.sqrt(var_s)) if given else float(special.ndtr(0.4 / math.sqrt(var_s)))
    text = f"ACC(y | {', '.join(given)})" if given else "ACC(y)"
    assert limit(spec, text) == pytest.approx(want, abs=1e-9)
    assert limit(spec, "ACC(y | x2, q)") == 1.0  # the score is a function of x2 and q: exactly 1, by structure


# ---------------------------------------------------------------- Monte Carlo on samples


def test_accuracy_and_mmse_on_samples():
    """The Bayes rules' empirical accuracy and squared error on the sampler's tuples."""
    spec = pair(r=0.7, t=0.3)
    n = 50_000
    data = spec.sampler(dtype="float64", standardize="none", seed=5).sample(n)
    x = data["x"].numpy()[:, 0]
    theta = data["theta"].numpy().reshape(-1)
    y = (theta > 0.3).astype(float)
    # E[theta | x] = Cov/Var x = 2 r x (Var x = 1); the Bayes classifier thresholds it at t
    guess = 2 * 0.7 * x
    hits = ((guess > 0.3) == (y > 0.5)).astype(float)
    acc, se = hits.mean(), hits.std() / math.sqrt(n)
    assert abs(acc - limit(spec, "ACC(y | x)")) < 4 * se
    sq = (theta - guess) ** 2
    assert abs(sq.mean() - limit(spec, "MMSE(theta | x)")) < 4 * sq.std() / math.sqrt(n)


# ---------------------------------------------------------------- the command line and the Python API

SPEC = PAIR + """
report MMSE(theta | x)
report ACC(y | x)
report I(theta; x)
sweep r in [0, 0.5]: report RMSE(theta | x)
"""


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "pair.mmi"
    path.write_text(SPEC)
    return path


def test_cli_mi_json_and_table(mmmic, spec_file):
    import json

    code, out, err = mmmic("mi", str(spec_file), "--json", "-q", "ACC(y | x)", "-q", "I(theta; x)")
    assert code == 0, err
    acc, info = json.loads(out)["results"]
    assert set(acc) == {"query", "kind", "value"} and acc["kind"] == "ACC"
    assert acc["value"] == pytest.approx(0.5 + math.asin(0.6) / math.pi, abs=1e-12)
    assert "nats" in info and "value" not in info
    code, out, err = mmmic("mi", str(spec_file))
    assert code == 0, err
    assert "exact mutual information" in out and "exact limits of prediction" in out
    assert f"MMSE(theta | x)  {4 * 0.64:12.6f}  minimum mean squared error" in out


def test_cli_sweep_formula_and_bundle(mmmic, spec_file, tmp_path):
    import json

    code, out, err = mmmic("sweep", str(spec_file), "-o", str(tmp_path / "s.csv"))
    assert code == 0, err
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "r,RMSE(theta | x) [value]" and lines[1] == "0.0,2.0"
    code, out, err = mmmic("formula", str(spec_file), "--format", "text", "-q", "MMSE(theta | x)", "-q", "ACC(y | x)")
    assert code == 1 and "MMSE(theta | x) = -eta**2*(r - 1)*(r + 1)" in out
    assert "no closed form for ACC(y | x)" in err and "one-dimensional Gaussian integral" in err
    code, out, err = mmmic("compile", str(spec_file), "-o", str(tmp_path / "bundle"))
    assert code == 0, err
    results = json.loads((tmp_path / "bundle/mi.json").read_text())["results"]
    assert [r.get("kind") for r in results] == ["MMSE", "ACC", None]
    assert "\\mathrm{MMSE}" in (tmp_path / "bundle/formulas.tex").read_text()


@pytest.mark.parametrize("query, message", [
    ("MMSE(theta | x) bits", "takes no unit"),
    ("ACC(theta | x)", "is the Bayes accuracy of a label; `theta` is a target"),
    ("MMSE(y | x)", "`y` is a label"),
    ("MMSE(x | theta)", "`x` is a modality"),
    ("MMSE(theta, z | x)", "takes one variable"),
    ("ACC(y | y)", "cannot be given a label"),
])
def test_cli_bad_limit_queries(mmmic, spec_file, query, message):
    code, out, err = mmmic("mi", str(spec_file), "-q", query)
    assert code == 1 and message in err and "--> --query:1:" in err and "^" in err, err


def test_cli_solve_refuses_a_limit(mmmic, spec_file):
    code, out, err = mmmic("solve", str(spec_file), "--for", "r", "--target", "MMSE(theta | x) = 1")
    assert code == 1 and "solve takes an information quantity" in err


def test_python_api():
    from mmmi_dsl.errors import UsageError

    spec = pair(r=0.6)
    assert spec.limit("MMSE(theta | x)") == pytest.approx(2.56, rel=1e-12)
    assert spec.mis("RMSE(theta | x)", "I(theta; x)", unit="bits") == pytest.approx(
        {"RMSE(theta | x)": 1.6, "I(theta; x)": -0.5 * math.log2(0.64)}, rel=1e-12)
    with pytest.raises(UsageError, match="spec.limit"):
        spec.mi("ACC(y | x)")
    with pytest.raises(UsageError, match="spec.mi"):
        spec.limit("I(theta; x)")
    rows = spec.sweep("r", [0.0, 0.8], "ACC(y | x)")
    assert rows[1]["ACC(y | x)"] == pytest.approx(0.5 + math.asin(0.8) / math.pi, abs=1e-12)


def test_limits_of_a_student_t_variable_are_refused_not_computed_as_gaussian(mmmic, tmp_path):
    """Var(theta) e^{-2I} holds for jointly Gaussian variables only: a Student-t group gets E0220."""
    spec = tmp_path / "t.mmi"
    spec.write_text("model t\nproto gx : scalar\nproto gy : scalar\ntarget theta = gx\n"
                    "latent y = 0.5 * gx + gy\nstudent(3): theta, y\nflow Y = identity(y)\n"
                    "report MMSE(theta | Y)\n")
    r = mmmic("mi", str(spec))
    assert r.code == 1 and "E0220" in r.stderr and "jointly Gaussian" in r.stderr
