"""Coefficient folding in lowering (issue 20): only the operation asked for is computed, so one that
would overflow in another operator (``150 ^ 298``) does not stop ``150 - 298`` from folding; and
the garbage collector is paused during lowering and always re-enabled."""

from __future__ import annotations

import gc
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmmi_dsl import ir, loads
from mmmi_dsl.lang.lower import algebra, gc_paused, lower
from mmmi_dsl.lang.parse import parse_text

N = algebra.num_node


@pytest.fixture(autouse=True)
def fresh_nodes():
    algebra.reset()
    yield
    algebra.reset()


def test_a_difference_folds_where_the_power_of_the_same_numbers_overflows():
    with pytest.raises(OverflowError):
        150.0 ** 298.0  # the branch the old fold computed too, and gave up on
    assert algebra.binop("-", N(150), N(298)) == N(-148)
    assert algebra.binop("+", N(150), N(298)) == N(448)
    assert algebra.binop("/", N(150), N(298)) == N(150 / 298)


def test_a_sum_folds_where_the_power_of_the_same_numbers_divides_by_zero():
    with pytest.raises(ZeroDivisionError):
        0.0 ** -1.0
    assert algebra.binop("-", N(0), N(-1)) == N(1)
    assert algebra.binop("+", N(0), N(-1)) == N(-1)


def test_an_overflowing_power_itself_stays_unfolded_for_the_engine_to_report():
    node = algebra.binop("^", N(150), N(298))
    assert isinstance(node, ir.BinOp) and node.op == "^"
    assert isinstance(algebra.binop("/", N(1), N(0)), ir.BinOp)  # division by zero: E0212 at the engine
    assert isinstance(algebra.binop("^", N(1e-200), N(2)), ir.BinOp)  # an underflow: the engine reports it


@given(st.sampled_from("+-/^"), st.integers(-400, 400), st.integers(-400, 400))
def test_a_fold_is_the_value_the_engine_would_compute(op, a, b):
    """Folded or not, the coefficient's value is ir.apply_op's (so MI cannot change by folding)."""
    node = algebra.binop(op, N(a), N(b))
    try:
        expected = ir.apply_op(op, float(a), float(b))
    except (OverflowError, ZeroDivisionError, ValueError):
        expected = math.nan
    if isinstance(node, ir.Num):
        assert node.value == expected
    else:
        assert not math.isfinite(expected) or (op in "/^" and abs(expected) < 2.3e-308)  # underflow: unfolded


SPEC = """model m
dim d = 2
param alpha = 1.2 in (0, 100)
param rho_h = 1
proto n[297..300] : vector[d]
for i in 297..300: latent z[i] = sum(j in 297..300, alpha^(-abs(i - j)) * rho_h * n[j])
for i in 297..300: flow x[i] = identity(z[i]) : vector[d]
report I(x[297]; x[300])
"""


def test_alpha_to_the_minus_abs_i_minus_j_reduces_to_a_number_power_at_large_indices():
    """decay.mmi's noise weights at i, j near 300 (297^300 overflows): `alpha^-k * rho_h`, k a number."""
    model = lower(parse_text(SPEC, "f.mmi"))
    coefs = [t.coef for t in model.variables["z[300]"].terms]
    assert [ir.to_text(c) for c in coefs] == ["alpha^-3 * rho_h", "alpha^-2 * rho_h", "alpha^-1 * rho_h", "rho_h"]
    env = model.env()
    assert [ir.evaluate(c, env) for c in coefs] == [1.2 ** -3, 1.2 ** -2, 1.2 ** -1, 1.0]


def test_the_reduced_coefficients_give_the_mi_of_the_same_model_at_small_indices():
    """Shifting the indices (297..300 -> 1..4) leaves the model, hence the MI, the same; exactly
    (the same coefficient trees; folding never changes a value, see the property test above)."""
    small = SPEC.replace("297..300", "1..4").replace("x[297]", "x[1]").replace("x[300]", "x[4]")
    big, ref = loads(SPEC).results(), loads(small).results()
    assert [r.nats for r in big] == [r.nats for r in ref] and 0 < ref[0].nats < math.inf


def test_gc_is_paused_inside_and_re_enabled_after_lowering_even_on_an_error():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError
    assert gc.isenabled()
    with pytest.raises(Exception):
        lower(parse_text("model m\nlatent z = q * u\n", "f.mmi"))
    assert gc.isenabled()


def test_gc_paused_leaves_a_disabled_collector_disabled():
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
