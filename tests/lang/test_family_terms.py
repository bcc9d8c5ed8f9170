"""Family terms (issue 20): a long ``sum(j in lo..hi, c(j) * f[idx(j)])`` lowered as one
:class:`ir.Term` with ``index`` must be the unrolled sum in disguise: the same terms once unrolled,
the same MI, the same diagnostics (codes, messages, spans) where something is wrong, and the same
IR through JSON.

Each case is lowered twice, with the family path on (``limits.FAMILY_TERMS = 1``) and off (a
threshold no sum reaches: every sum unrolled, the path every spec took before).
"""

from __future__ import annotations

import math

import pytest

from mmmi_dsl import ir, loads
from mmmi_dsl.errors import SpecError
from mmmi_dsl.lang.coef import evaluate_over, unrolled
from mmmi_dsl.lang.lower import limits

HEAD = """model fam
dim N = 12
dim d = 3
param alpha = 1.3 in (0, 100)
param rho = 0.7
proto u : scalar
proto n[1..N] : vector[d]
target theta = u
"""

#: equations of z[i] (i in 1..N): each body is a product of constants and one family member
BODIES = [
    "sum(j in 1..N, alpha^(-abs(i - j)) * rho * n[j])",  # decay's
    "-sum(j in 1..N, rho * n[j] / alpha^j)",
    "2 * sum(j in 1..N, -(alpha * n[N - j + 1]))",
    "sum(j in 2..N, (i - j) * n[j]) + n[1]",  # zero coefficients where i = j
    "sum(j in 1..N, sqrt(j) * exp(-j / alpha) * n[j] * rho) + 0.5 * n[i]",
    "sum(j in 1..N, max(i, j) / 7 * n[j]) + sum(j in 1..N, min(i, j) * w[j])",  # latents as sources
]


def lowered(text: str, family: bool, monkeypatch) -> "ir.Model":
    monkeypatch.setattr(limits, "FAMILY_TERMS", 1 if family else 10**9)
    return loads(text)


def spec_text(body: str) -> str:
    return (HEAD + "for j in 1..N: latent w[j] = j * n[j] + rho * u * ones(d)\n"
            f"for i in 1..N: latent z[i] = {body} + u * ones(d)\n"
            "for i in 1..N: flow x[i] = identity(z[i]) : vector[d]\n"
            "for j in 2..N: report I(x[1]; x[j])\n"
            "for j in 1..N: report I(theta; x[j])\n")


def family_terms(model) -> list[ir.Term]:
    return [t for v in model.variables.values() for t in v.terms if t.index is not None]


@pytest.mark.parametrize("body", BODIES)
def test_a_family_term_is_the_unrolled_sum(body, monkeypatch):
    text = spec_text(body)
    fam, flat = lowered(text, True, monkeypatch), lowered(text, False, monkeypatch)
    assert family_terms(fam), "the family path was not taken"
    assert not family_terms(flat)
    for name, v in flat.variables.items():
        assert tuple(unrolled(fam.variables[name].terms)) == v.terms, name
    a, b = fam.mis(*[q.text for q in fam.reports]), flat.mis(*[q.text for q in flat.reports])
    assert a.keys() == b.keys()
    for q in a:  # the same coefficients; numpy's power may differ from libm's in the last bit
        assert a[q] == pytest.approx(b[q], rel=1e-12, abs=1e-15), q


def test_a_family_term_survives_the_json_round_trip(monkeypatch):
    model = lowered(spec_text(BODIES[0]), True, monkeypatch)
    again = ir.Model.model_validate_json(model.model_dump_json())
    assert again == model
    assert family_terms(again)[0].first == 1 and family_terms(again)[0].index == "j"


def test_an_ordinary_terms_json_has_no_index(monkeypatch):
    model = lowered(spec_text(BODIES[0]), False, monkeypatch)
    assert '"index"' not in model.model_dump_json() and '"first"' not in model.model_dump_json()


def test_decay_at_the_default_n_keeps_its_unrolled_ir():
    """Sums shorter than limits.FAMILY_TERMS stay unrolled: the golden IR of the example specs is unchanged."""
    from pathlib import Path

    from mmmi_dsl import load
    decay = Path(__file__).resolve().parents[2] / "specs" / "decay.mmi"
    assert not family_terms(load(decay))
    assert len(family_terms(load(decay, N=limits.FAMILY_TERMS))) == limits.FAMILY_TERMS


BAD = [
    # an index outside the family, at one member only: E0206 at that index
    ("for i in 1..N: latent z[i] = sum(j in 1..N, rho * n[j + 1]) + u * ones(d)", "lower"),
    # a parameter in an index: E0202
    ("for i in 1..N: latent z[i] = sum(j in 1..N, rho * n[j + rho]) + u * ones(d)", "lower"),
    # an unknown name in the coefficient: E0101
    ("for i in 1..N: latent z[i] = sum(j in 1..N, rhoo * n[j]) + u * ones(d)", "lower"),
    # a member of the wrong size: E0203 at the term, for that member
    ("proto m[1..N] : vector[d]\nproto m2 : vector[2]\n"
     "for i in 1..N: latent z[i] = sum(j in 1..N, rho * n[j]) + u * ones(d)\n"
     "latent q = sum(j in 1..N, rho * n[j]) + sum(j in 1..2, k[j])\nproto k[1..2] : vector[2]", "lower"),
    # a coefficient that divides by zero at j = 5: E0212 from the engine, at the term
    ("for i in 1..N: latent z[i] = sum(j in 1..N, rho / (j - 5) * n[j]) + u * ones(d)", "mi"),
    # a coefficient that underflows at large j: E0212 naming the member's coefficient
    ("for i in 1..N: latent z[i] = sum(j in 1..N, alpha^(-300 * j) * n[j]) + u * ones(d)", "mi"),
    # the square root of a negative number at j < 3
    ("for i in 1..N: latent z[i] = sum(j in 1..N, sqrt(j - 3) * n[j]) + u * ones(d)", "mi"),
]


def diagnostics(text: str, stage: str, family: bool, monkeypatch) -> list[tuple]:
    with pytest.raises(SpecError) as err:
        spec = lowered(text, family, monkeypatch)
        if stage == "mi":
            spec.mi("I(theta; z[2])")
    return [(d.code, d.message, d.label, d.span) for d in err.value.diagnostics]


@pytest.mark.parametrize("body, stage", BAD)
def test_errors_inside_a_family_sum_point_where_the_unrolled_ones_do(body, stage, monkeypatch):
    text = HEAD + body + "\nreport I(theta; z[1])\n"
    fam, flat = diagnostics(text, stage, True, monkeypatch), diagnostics(text, stage, False, monkeypatch)
    assert fam == flat
    if stage == "mi":  # it lowered: the family path was taken, and the engine's exact path spoke
        assert family_terms(lowered(text, True, monkeypatch))
    assert all(span is not None and span.line > HEAD.count("\n") for *_, span in fam)


def test_evaluate_over_sends_doubtful_values_to_the_exact_path():
    j = ir.Sym(name="j")
    tiny = ir.BinOp(op="^", left=ir.Sym(name="a"), right=ir.Neg(operand=ir.BinOp(
        op="*", left=ir.Num(value=300.0), right=j)))
    values = [1.0, 2.0, 3.0]
    import numpy as np
    assert evaluate_over(tiny, {"a": 2.0}, "j", np.array(values), checked=True) is not None
    assert evaluate_over(tiny, {"a": 20.0}, "j", np.array(values), checked=True) is None  # 20^-900 underflows
    zero = ir.BinOp(op="*", left=ir.BinOp(op="-", left=j, right=ir.Num(value=2.0)), right=ir.Num(value=3.0))
    assert evaluate_over(zero, {}, "j", np.array(values), checked=True) is None  # an exact zero: per member
    assert list(evaluate_over(zero, {}, "j", np.array(values))) == [-3.0, 0.0, 3.0]
    assert math.isnan(evaluate_over(ir.Func(name="log", args=(ir.Num(value=-1.0),)), {}, "j", np.array(values)))


def test_unrolled_sums_keep_the_old_term_limit_and_family_sums_do_not_count_against_it(monkeypatch):
    """limits.MAX_UNROLLED_TERMS (100,000, the old MAX_TERMS) bounds terms built one by one; a family
    sum's members count only against MAX_TERMS."""
    monkeypatch.setattr(limits, "MAX_UNROLLED_TERMS", 100)
    text = spec_text(BODIES[0])  # 12 x 12 = 144 family-term members
    assert family_terms(lowered(text, True, monkeypatch))
    with pytest.raises(SpecError) as info:
        lowered(text, False, monkeypatch)  # the same 144 terms unrolled
    d = info.value.diagnostics[0]
    assert d.code == "E0215" and "more than 100 terms that are not sums over a family" in d.message
    assert d.span.line == HEAD.count("\n") + 2  # the `sum` of z[i]'s equation
    monkeypatch.setattr(limits, "MAX_TERMS", 100)
    with pytest.raises(SpecError) as info:
        lowered(text, True, monkeypatch)
    assert "more than 100 terms" in info.value.diagnostics[0].message
