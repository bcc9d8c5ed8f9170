"""Closed forms: exact symbolic equalities, agreement with the numeric engine at random
parameter values, and golden files of every spec's formulas (`pytest --update-golden`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from mmmi_dsl import load
from mmmi_dsl.errors import SpecError
from mmmi_dsl.lang.lower import resolve_query
from mmmi_dsl.mi.analysis import Analysis
from mmmi_dsl.mi.symbolic import derive, derive_all, evaluate_formula

from ..conftest import ROOT

SPECS = ROOT / "specs"
GOLDEN = ROOT / "tests" / "golden"
SYMBOLIC_SPECS = {"two_views": {}, "telescopes": {}, "ablation": {}, "decay": {}}


def positive(expr: sp.Expr) -> sp.Expr:
    """Replace real symbols by positive ones, so that log identities apply."""
    return expr.subs({s: sp.Symbol(s.name, positive=True) for s in expr.free_symbols})


def equal(a: sp.Expr, b: sp.Expr) -> bool:
    """Exact equality of two MI expressions (logs of rational functions)."""
    diff = sp.expand_log(positive(a) - positive(b), force=True)
    return sp.simplify(diff) == 0


def test_two_views_theta_formula_is_exactly_the_closed_form():
    m = load(SPECS / "two_views.mmi")
    f = derive(m, m.reports[0])
    d, rt, rh = (sp.Symbol(n, positive=True) for n in ("d", "rho_t1", "rho_h1"))
    want = -sp.Rational(1, 2) * sp.log(1 - d * rt**2 / (rh**2 + d * rt**2))
    assert equal(f.expr, want)


def test_two_views_pair_formula_is_exactly_science_section_5():
    m = load(SPECS / "two_views.mmi")
    f = derive(m, m.reports[2])
    d, t1, t2, h1, h2 = (sp.Symbol(n, positive=True) for n in ("d", "rho_t1", "rho_t2", "rho_h1", "rho_h2"))
    o, q, p = t1**2, t2**2, t1 * t2
    b, c, ff = o + h1**2, q + h2**2, p  # independent noises: f = p
    want = ((d - 1) / 2 * sp.log((b - o) * (c - q) / ((b - o) * (c - q) - (ff - p) ** 2))
            + sp.Rational(1, 2) * sp.log((b + (d - 1) * o) * (c + (d - 1) * q)
                                         / ((b + (d - 1) * o) * (c + (d - 1) * q) - (ff + (d - 1) * p) ** 2)))
    assert equal(f.expr, want)
    simplest = -sp.Rational(1, 2) * sp.log(1 - d**2 * t1**2 * t2**2 / ((h1**2 + d * t1**2) * (h2**2 + d * t2**2)))
    assert equal(f.expr, simplest)


def test_a_wrong_formula_is_not_equal():
    m = load(SPECS / "two_views.mmi")
    f = derive(m, m.reports[0])
    d, rt, rh = (sp.Symbol(n, positive=True) for n in ("d", "rho_t1", "rho_h1"))
    assert not equal(f.expr, -sp.Rational(1, 2) * sp.log(1 - (d + 1) * rt**2 / (rh**2 + d * rt**2)))


@pytest.mark.parametrize("spec,sets", [("two_views", {}), ("telescopes", {}), ("ablation", {}),
                                       ("decay", {"N": "4"})])
def test_formulas_match_the_engine_at_random_points(spec, sets):
    model = load(SPECS / f"{spec}.mmi", sets)
    formulas = derive_all(model, model.reports)
    rng = np.random.default_rng(0)
    free = [p for p in model.params.values() if p.derived is None]
    for _ in range(4):
        point = {}
        for p in free:
            lo, hi = (p.bounds.lower, p.bounds.upper) if p.bounds else (0.1, 2.0)
            point[p.name] = float(rng.uniform(max(lo, 0.05), min(hi, 3.0)))
        moved = model.with_params(point)
        engine = Analysis(moved)
        for f in formulas:
            want = engine.evaluate(f.query).nats
            got = evaluate_formula(f, moved)
            assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), (f.query.text, point, got, want)


def test_numeric_option_replaces_symbols():
    m = load(SPECS / "two_views.mmi")
    f = derive(m, m.reports[0], numeric={"d", "rho_h1"})
    assert {s.name for s in f.expr.free_symbols} == {"rho_t1"}
    g = derive(load(SPECS / "telescopes.mmi"), load(SPECS / "telescopes.mmi").reports[0], numeric={"templates"})
    assert not any(s.name.startswith(("ip_", "nsq_")) for s in g.expr.free_symbols)


def test_bits_divide_by_log_2():
    m = load(SPECS / "two_views.mmi")
    q = resolve_query(m, "I(theta; x1) bits")
    assert math.isclose(evaluate_formula(derive(m, q), m), Analysis(m).evaluate(q).nats / math.log(2), rel_tol=1e-12)


def test_total_correlation_and_interaction_information():
    m = load(SPECS / "decay.mmi", {"N": "3", "d": "5"})
    engine = Analysis(m)
    for text in ("TC(x[1]; x[2]; x[3])", "II(x[1]; x[2]; theta)", "I(x[1]; x[3] | x[2])"):
        q = resolve_query(m, text)
        assert math.isclose(evaluate_formula(derive(m, q), m), engine.evaluate(q).nats, rel_tol=1e-9), text


@pytest.mark.parametrize("text", ["I(x1; x2)", "I(y_c; x1)"])
def test_outside_the_structure_is_a_clear_error(text):
    m = load(SPECS / "disentangled.mmi")
    with pytest.raises(SpecError) as info:
        derive(m, resolve_query(m, text))
    assert "no closed form" in info.value.render() and "mmmic mi" in info.value.render()


def test_sympy_output_parses_back():
    m = load(SPECS / "ablation.mmi")
    for f in derive_all(m, m.reports):
        again = sp.sympify(f.sympy())
        assert sp.simplify(positive(again) - positive(f.expr)) == 0 or equal(again, f.expr)


@pytest.mark.parametrize("spec", sorted(SYMBOLIC_SPECS))
def test_golden_formulas(spec, request):
    model = load(SPECS / f"{spec}.mmi", SYMBOLIC_SPECS[spec])
    text = "\n".join(f.text() for f in derive_all(model, model.reports)) + "\n"
    path = GOLDEN / f"{spec}.formulas.txt"
    if request.config.getoption("--update-golden") or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), f"formulas of {spec} changed; rerun with --update-golden if intended"
