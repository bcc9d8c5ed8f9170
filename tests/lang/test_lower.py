"""Lowering alone (mmmi_dsl.lang.lower): names, constants, --set overrides, families and for loops,
linear terms, templates and queries. No check pass runs here: these are lowering's own rules.
"""

from __future__ import annotations

import numpy as np
import pytest

import mmmi_dsl
from mmmi_dsl import ir
from mmmi_dsl.errors import SpecError, UsageError
from mmmi_dsl.lang.lower import lower, resolve_query
from mmmi_dsl.lang.parse import parse_text

from ..conftest import ROOT


def low(text: str, sets: dict[str, str] | None = None, base_dir=None, **kw) -> ir.Model:
    return lower(parse_text(text, "f.mmi"), sets, base_dir, **kw)


def errors(text: str, sets=None, base_dir=None, **kw) -> list[tuple[str, int, int, str]]:
    with pytest.raises(SpecError) as info:
        low(text, sets, base_dir, **kw)
    return [(d.code, d.span.line, d.span.column, d.message) for d in info.value.diagnostics]


def usage(text: str, sets: dict[str, str]) -> str:
    with pytest.raises(UsageError) as info:
        low(text, sets)
    return str(info.value)


def terms(model: ir.Model, name: str) -> list[tuple]:
    """A variable's terms as (op, coefficient, sources, template or matrix)."""
    return [(t.op, t.coef, t.sources, t.template or t.matrix) for t in model.variables[name].terms]


def num(v: float) -> ir.Num:
    return ir.Num(value=v)


def sym(name: str) -> ir.Sym:
    return ir.Sym(name=name)


# ---------------------------------------------------------------- names and constants

def test_model_name_from_the_statement_or_the_file():
    assert low("model two\n").name == "two"
    assert low("dim d = 1\n").name == "f" and low("dim d = 1\n").source_file == "f.mmi"


def test_params_bounds_and_derived_values():
    m = low("param a = 0.5 in (0, 1]\nb := 2 * a + sqrt(4)\nparam c = exp(0) - 1\n")
    a, b, c = m.params["a"], m.params["b"], m.params["c"]
    assert a.value == 0.5 and a.derived is None
    assert (a.bounds.lower, a.bounds.upper, a.bounds.lower_open, a.bounds.upper_open) == (0, 1, True, False)
    assert b.value == 3.0 and b.derived is not None and b.bounds is None
    assert c.value == 0.0


def test_dims_from_expressions_and_shapes():
    m = low("dim d = 4\ndim k = d * 2 + 1\ndim img = 3x2x2\nproto n : vector[img]\n")
    assert (m.dims["d"].value, m.dims["k"].value) == (4, 9)
    assert m.dims["img"].value == 12 and m.dims["img"].shape == (3, 2, 2)
    assert m.protos["n"].size == 12 and m.protos["n"].size_expr == sym("img")


@pytest.mark.parametrize("text,code,column,needle", [
    ("dim d = 2.5\n", "E0206", 9, "expected an integer size"),
    ("dim d = 0\n", "E0206", 9, "must be positive"),
    ("param a = 1 / 0\n", "E0212", 11, "division by zero"),
    ("param a = 2 in (0, 1)\n", "E0207", 11, "outside its bounds"),
])
def test_bad_constants(text, code, column, needle):
    ((got, line, col, message),) = errors(text)
    assert (got, line, col) == (code, 1, column) and needle in message


def test_unknown_name_with_its_position():
    ((code, line, col, message),) = errors("param rho = 1\nproto n : vector[2]\nlatent z = rhoo * n\n")
    assert (code, line, col) == ("E0101", 3, 12) and "`rhoo`" in message


def test_unknown_type_suggests_the_known_one():
    with pytest.raises(SpecError) as info:
        low("proto u : scalr\n")
    (d,) = info.value.diagnostics
    assert d.code == "E0209" and "unknown type `scalr`" in d.message and "`scalar`" in d.hint


def test_duplicates_of_any_kind():
    assert errors("param a = 1\nparam a = 2\n")[0][:3] == ("E0102", 2, 7)
    assert errors("param a = 1\ndim a = 2\n")[0][0] == "E0102"
    assert errors("proto u : scalar\nlatent z = u\nlatent z = u\n")[0][:3] == ("E0102", 3, 8)


def test_a_modality_inside_an_equation_is_the_wrong_kind():
    ((code, line, col, message),) = errors(
        "proto u : scalar\nproto n : scalar\nlatent z = u\nflow x = identity(z)\nlatent w = x + n\n")
    assert (code, line, col) == ("E0103", 5, 12) and "modality" in message


# ---------------------------------------------------------------- --set overrides

BASE = "param a = 0.5 in (0, 1]\nb := 2 * a\ndim d = 4\nproto n : vector[d]\n"


def test_set_overrides_params_dims_and_what_follows_from_them():
    m = low(BASE, {"a": "1", "d": "8"})
    assert m.params["a"].value == 1.0 and m.params["b"].value == 2.0  # the closed upper bound admits 1
    assert m.dims["d"].value == 8 and m.protos["n"].size == 8


def test_set_a_dim_to_a_shape():
    m = low(BASE, {"d": "2x3"})
    assert m.dims["d"].value == 6 and m.dims["d"].shape == (2, 3) and m.protos["n"].size == 6


@pytest.mark.parametrize("sets,needle", [
    ({"a": "0"}, "outside the bounds (0, 1] of `a`"),
    ({"a": "x"}, "not a number"),
    ({"a": "inf"}, "not a finite number"),
    ({"d": "-1"}, "positive integer"),
    ({"b": "1"}, "`b` is derived"),
    ({"zz": "1"}, "unknown name zz; known parameters and dims: a, d"),
])
def test_bad_overrides_are_usage_errors(sets, needle):
    assert needle in usage(BASE, sets)


# ---------------------------------------------------------------- families and for loops

FAMILY = "dim N = 3\ndim d = 2\nproto n[1..N] : vector[d]\n"


def test_a_family_declares_its_members():
    m = low(FAMILY)
    assert m.families == {"n": ("n[1]", "n[2]", "n[3]")}
    assert set(m.protos) == {"n[1]", "n[2]", "n[3]"} and m.protos["n[2]"].size == 2
    assert low(FAMILY, {"N": "5"}).families["n"][-1] == "n[5]"


def test_a_for_loop_expands_with_index_arithmetic():
    m = low(FAMILY + "for i in 1..N-1: latent z[i] = n[i] + n[i+1]\n")
    assert m.families["z"] == ("z[1]", "z[2]")
    assert [src for _, _, src, _ in terms(m, "z[2]")] == [("n[2]",), ("n[3]",)]


def test_a_block_loop_may_use_its_own_members():
    m = low(FAMILY + "for i in 1..2 {\n  latent a[i] = n[i]\n  latent b[i] = a[i] + n[3]\n}\n")
    assert m.families["b"] == ("b[1]", "b[2]")
    assert [src for _, _, src, _ in terms(m, "b[2]")] == [("a[2]",), ("n[3]",)]


def test_family_errors():
    assert errors(FAMILY + "latent z = n[4]\n")[0][:3] == ("E0206", 4, 14)
    assert errors("proto m[3..1] : scalar\n")[0][:3] == ("E0206", 1, 7)
    # a loop that defines the same member twice
    assert {e[0] for e in errors(FAMILY + "for i in 1..2 { for j in 1..2: latent z[i] = n[j] }\n")} == {"E0102"}
    # a dim inside a loop
    assert errors(FAMILY + "for i in 1..2: dim k = 1\n")[0][:3] == ("E0214", 4, 16)


# ---------------------------------------------------------------- linear terms

TERMS = "param a = 0.5\nb := 2 * a\nproto u : scalar\nproto n[1..3] : vector[4]\n"


def test_terms_collect_coefficients_per_source():
    m = low(TERMS + "latent z = (a + b) * u * ones(4) - n[1] / 2\n")
    assert terms(m, "z") == [
        ("template", ir.BinOp(op="+", left=sym("a"), right=sym("b")), ("u",), "ones(4)"),
        ("identity", num(-0.5), ("n[1]",), None),
    ]


def test_a_latent_of_latents_and_subtraction():
    m = low(TERMS + "latent z = n[1]\nlatent w = 2 * z - z + a * n[2]\n")
    assert terms(m, "w") == [("identity", num(2.0), ("z",), None), ("identity", num(-1.0), ("z",), None),
                             ("identity", sym("a"), ("n[2]",), None)]
    assert m.variables["w"].size == 4 and m.variables["w"].role == "latent"


def test_matrix_dot_and_target_terms():
    m = low(TERMS + "matrix M = uniform(4, 8, seed = 1)\nlatent y = M @ concat(n[1], n[2])\n"
                    "target t = dot(ones(4), n[3])\n")
    assert terms(m, "y") == [("matrix", num(1.0), ("n[1]", "n[2]"), "M")]
    assert (m.matrices["M"].rows, m.matrices["M"].cols, m.matrices["M"].args["seed"]) == (4, 8, 1)
    assert terms(m, "t") == [("dot", num(1.0), ("n[3]",), "ones(4)")]
    assert m.variables["t"].role == "target" and m.variables["t"].size == 1


@pytest.mark.parametrize("body,code,needle", [
    ("latent z = u * u\n", "E0201", "not linear"),
    ("latent z = n[1] + 1\n", "E0201", ""),
    ("latent z = 2\n", "E0201", "found a constant"),
    ("latent z = sqrt(n[1])\n", "E0202", "sqrt()"),
    ("latent z = u * [1, 2, 3, 4]\n", "E0209", "cannot appear in an equation"),
])
def test_what_is_not_linear(body, code, needle):
    ((got, line, _, message),) = errors(TERMS + body)
    assert (got, line) == (code, 5) and needle in message


def test_flows_and_labels():
    m = low(TERMS + "target t = u\nlatent z = u * ones(6)\nflow x = affine(z, scale = 2) : image[1x2x3]\n"
                    "label y = t > 0.5\n")
    (step,) = m.flows["x"].steps
    assert m.flows["x"].latent == "z" and step.name == "affine" and step.args == {"scale": 2.0}
    assert m.flows["x"].shape == (1, 2, 3)
    lab = m.labels["y"]
    assert lab.comparison == ">" and lab.threshold == num(0.5) and lab.terms[0].sources == ("t",)
    ((code, line, col, message),) = errors(TERMS + "latent z = u * ones(3)\nflow x = identity(z) : image[2x3]\n")
    assert (code, line, col) == ("E0203", 6, 24) and "6 values but latent `z` has 3" in message
    assert errors(TERMS + "latent z = n[1]\nflow x = idenity(z)\n")[0][0] == "E0210"


# ---------------------------------------------------------------- templates

def test_inline_templates_are_named_by_their_call():
    m = low("proto u : scalar\nlatent z = u * onehot(3, index = 2)\nlatent w = u * ones(3)\n")
    t = m.templates["onehot(3, index=2)"]
    assert (t.kind, t.size, t.args) == ("onehot", 3, {"index": 2})
    assert terms(m, "w")[0][3] == "ones(3)"


def test_a_named_template_is_shared():
    m = low("proto u : scalar\ntemplate T = ones(3)\nlatent z = u * T\nlatent w = 2 * u * T\n")
    assert list(m.templates) == ["T"] and terms(m, "w")[0][3] == "T"


def test_a_template_alone_is_not_an_equation():
    assert "found template `T`" in errors("proto u : scalar\ntemplate T = ones(3)\nlatent z = T\n")[0][3]
    assert errors("template T = onehot(4)\n")[0][0] == "E0209"


def test_file_templates_resolve_against_the_base_dir(tmp_path):
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "w.npy", np.arange(4.0))
    np.save(tmp_path / "out.npy", np.arange(5.0))
    spec = "proto u : scalar\ntemplate T = npy(\"{}\")\nlatent z = u * T\n"
    t = low(spec.format("w.npy"), base_dir=tmp_path / "sub").templates["T"]
    assert (t.kind, t.size, t.path) == ("npy", 4, str(tmp_path / "sub" / "w.npy"))
    ((code, line, col, message),) = errors(spec.format("../out.npy"), base_dir=tmp_path / "sub")
    assert (code, line, col) == ("E0216", 2, 18) and "outside the spec's directory" in message
    t = low(spec.format("../out.npy"), base_dir=tmp_path / "sub", allow_paths=True).templates["T"]
    assert t.size == 5
    assert errors(spec.format("nope.npy"), base_dir=tmp_path)[0][0] == "E0208"


# ---------------------------------------------------------------- queries

QUERIES = ("proto u : scalar\nproto n : vector[3]\ntarget t = u\nlatent z = u * ones(3) + n\n"
           "flow x = identity(z)\nlabel y = t > 0\n")


def test_reports_are_resolved_with_their_text_and_unit():
    m = low(QUERIES + "report I(t; x | z) bits\nreport TC(t; z; x)\n")
    first, second = m.reports
    assert (first.kind, first.groups, first.given, first.unit, first.text) == ("I", (("t",), ("x",)), ("z",),
                                                                                 "bits", "I(t; x | z)")
    assert second.kind == "TC" and len(second.groups) == 3 and second.unit == "nats"


def test_resolve_query_keeps_the_text_and_positions_errors():
    m = low(QUERIES)
    q = resolve_query(m, "  I(z;x) ")
    assert (q.text, q.groups, q.span.file) == ("I(z;x)", (("z",), ("x",)), "--query")
    with pytest.raises(SpecError) as info:
        resolve_query(m, "I(zz; x)")
    (d,) = info.value.diagnostics
    assert (d.code, d.span.file, d.span.column) == ("E0101", "--query", 3) and "`z`" in d.hint


def test_a_query_with_one_group():
    assert errors(QUERIES + "report I(z)\n")[0][:3] == ("E0211", 7, 8)


def test_override_errors_name_no_flag_from_python_and_the_flag_from_the_cli(capsys):
    """Lowering raises OverrideError("d=abc", why); only the CLI adds `--set`."""
    from mmmi_dsl.cli import main
    from mmmi_dsl.errors import OverrideError

    with pytest.raises(OverrideError) as err:
        mmmi_dsl.load(ROOT / "specs" / "two_views.mmi", {"d": "abc"})
    assert str(err.value) == "d=abc: a dim takes a positive integer or a shape like 3x32x32"
    assert "--set" not in str(err.value)
    assert main(["mi", str(ROOT / "specs" / "two_views.mmi"), "--set", "d=abc"]) == 2
    assert "error: --set d=abc: a dim takes a positive integer" in capsys.readouterr().err
    assert main(["check", str(ROOT / "specs" / "two_views.mmi"), "--set", "nope=1"]) == 2
    assert "error: --set: unknown name nope; known parameters and dims:" in capsys.readouterr().err


@pytest.mark.parametrize("value, problem", [
    ("1e-1000", "too small for a double-precision float"),  # became 0: MI 0, "independent"
    ("1_0", "not a number"),                                # read as 10
    ("inf", "not a finite number"),
    ("1e400", "too large for a double-precision float"),
])
def test_a_set_value_that_changes_silently_is_refused(value, problem, mmmic):
    r = mmmic("mi", ROOT / "specs" / "two_views.mmi", "--set", f"eta={value}")
    assert r.code == 2 and f"error: --set eta={value}: {problem}" in r.stderr, r.stderr


@pytest.mark.parametrize("coef", ["abs((-2)^0.5)", "min((-2)^0.5, 1)", "sqrt((-2)^p)", "log(p^0.5)", "(-8)^(1/3)"])
def test_a_non_real_intermediate_is_e0212_at_its_coefficient(coef, mmmic, tmp_path):
    """abs((-2)^0.5) was accepted as sqrt(2) (MI 0.804719); the others ended in a TypeError (exit 3)."""
    spec = tmp_path / "c.mmi"
    spec.write_text(f"param p = -0.3\nproto u : scalar\nproto n : scalar\nlatent z = {coef} * u + n\n"
                    "flow x = identity(z)\ntarget t = u\nreport I(t; x)\n")
    r = mmmic("mi", spec)
    assert r.code == 1 and "error[E0212]" in r.stderr and "is not a real number" in r.stderr, r.stderr
    assert f"{spec}:4:12" in r.stderr


def test_for_loops_nested_a_thousand_deep_are_e0215_not_a_recursion_error(mmmic, tmp_path):
    spec = tmp_path / "deep.mmi"
    spec.write_text("proto u : scalar\n" + "".join(f"for i{k} in 1..1 {{ " for k in range(1000))
                    + "proto n : scalar" + " }" * 1000 + "\n")
    r = mmmic("check", spec)
    assert r.code == 1 and "error[E0215]" in r.stderr and "nested more than 64 deep" in r.stderr, r.stderr


def test_loops_nested_to_the_limit_still_lower():
    from mmmi_dsl.lang.lower import limits

    depth = limits.MAX_LOOP_DEPTH
    text = "".join(f"for i{k} in 1..1 {{ " for k in range(depth)) + "proto n : scalar" + " }" * depth + "\n"
    model = lower(parse_text(text, "<deep>"))
    assert "n" in model.protos


def test_an_inline_matrix_constructor_says_how_to_declare_it():
    """`uniform(3, 3, seed = 1) @ g` said "unknown function `uniform` ... did you mean `uniform`"."""
    with pytest.raises(SpecError) as err:
        lower(parse_text("proto g : vector[3]\nlatent z = uniform(3, 3, seed = 1) @ g\n", "<inline>"))
    d = err.value.diagnostics[0]
    assert d.code == "E0209" and "builds a matrix, which is declared" in d.message
    assert d.hint == "matrix M = uniform(rows, cols, seed, low = -1, high = 1), then M @ z"
