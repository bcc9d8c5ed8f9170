"""Parsing alone (mmmi_dsl.lang.parse): statements, precedence, spans, syntax errors with positions.

Nothing here lowers or checks: the tree is what the grammar (grammar/mmi.lark) says.
"""

from __future__ import annotations

import math

import pytest

from mmmi_dsl.errors import SpecError
from mmmi_dsl.lang.parse import (
    BinaryOp,
    Binder,
    Call,
    Kwarg,
    ListLit,
    Name,
    Negate,
    Number,
    Shape,
    String,
    parse_file,
    parse_query,
    parse_text,
)


def parse(text: str):
    return parse_text(text, "f.mmi").statements


def rhs(expr: str):
    """The right-hand side of ``latent z = EXPR``."""
    (stmt,) = parse(f"latent z = {expr}\n")
    return stmt.value


def show(node) -> str:
    """An expression with every operation in parentheses: the tree's shape as text."""
    if isinstance(node, Number):
        return f"{node.value:g}"
    if isinstance(node, Name):
        return node.name + (f"[{show(node.index)}]" if node.index is not None else "")
    if isinstance(node, BinaryOp):
        return f"({show(node.left)} {node.op} {show(node.right)})"
    if isinstance(node, Negate):
        return f"(-{show(node.operand)})"
    if isinstance(node, Call):
        return f"{node.func}({', '.join(show(a) for a in node.args)})"
    if isinstance(node, Kwarg):
        return f"{node.name}={show(node.value)}"
    if isinstance(node, ListLit):
        return "[" + ", ".join(show(a) for a in node.items) + "]"
    if isinstance(node, Shape):
        return "x".join(map(str, node.dims))
    raise TypeError(node)


def syntax_errors(text: str) -> list[tuple[int, int, str]]:
    with pytest.raises(SpecError) as info:
        parse_text(text, "f.mmi")
    assert {d.code for d in info.value.diagnostics} == {"E0001"}, info.value.render()
    return [(d.span.line, d.span.column, d.message) for d in info.value.diagnostics]


# ---------------------------------------------------------------- statements

SPEC = """\
model m
param a = 1 in (0, 2]
b := a * 2
dim d = 3x4
proto n[1..3] : vector[d]
template T = blob(3x32x32, row = 1, col = 2)
matrix M = uniform(4, 3, seed = 1)
target t = a * n[1]
latent z = n[1] + n[2]
flow x = identity(z) : image[3x4]
label y = t > 0
report I(z; x | y) bits
solve a in (0, 2) such that I(z; x) = 1
sweep a in linspace(0, 1, 3): report I(z; x)
for i in 1..2 { latent w[i] = n[i] }
"""


def test_every_statement_kind_in_order():
    kinds = [s.kind for s in parse(SPEC)]
    assert kinds == ["model", "param", "derived", "dim", "proto", "template", "matrix", "target", "latent", "flow",
                     "label", "report", "solve", "sweep", "for"]


def test_statement_fields():
    st = {s.kind: s for s in parse(SPEC)}
    assert st["model"].name == "m"
    assert st["param"].name == "a" and show(st["param"].value) == "1"
    iv = st["param"].interval
    assert (show(iv.lo), show(iv.hi), iv.lo_open, iv.hi_open) == ("0", "2", True, False)
    assert st["derived"].name == "b" and show(st["derived"].value) == "(a * 2)"
    assert st["dim"].value.dims == (3, 4)
    proto = st["proto"]
    assert proto.decl.name == "n" and [show(x) for x in proto.decl.range] == ["1", "3"]
    assert proto.type.name == "vector" and [show(a) for a in proto.type.args] == ["d"]
    assert show(st["template"].value) == "blob(3x32x32, row=1, col=2)"
    assert st["flow"].type.name == "image" and st["flow"].type.args[0].dims == (3, 4)
    assert st["label"].compare == ">" and show(st["label"].value) == "t" and show(st["label"].rhs) == "0"
    assert st["solve"].name == "a" and show(st["solve"].value) == "1" and st["solve"].query.op == "I"
    assert st["sweep"].report.kind == "report" and show(st["sweep"].value) == "linspace(0, 1, 3)"


def test_report_query_groups_given_and_unit():
    (rep,) = parse("report I(a, b[2]; c | d, e) bits\n")
    q = rep.query
    assert q.op == "I" and rep.unit == "bits"
    assert [[v.name for v in g] for g in q.groups] == [["a", "b"], ["c"]]
    assert show(q.groups[0][1].index) == "2"
    assert [v.name for v in q.given] == ["d", "e"]
    (rep,) = parse("report TC(a; b; c)\n")
    assert rep.query.op == "TC" and len(rep.query.groups) == 3 and rep.unit == "nats"


def test_for_loops_single_statement_and_block():
    one, block = parse("for i in 1..N: latent z[i] = n[i]\n"
                       "for j in 2..3 {\n  latent a[j] = n[j]\n  latent b[j] = a[j]\n}\n")
    assert one.name == "i" and [show(x) for x in one.loop_range] == ["1", "N"]
    assert [s.kind for s in one.body] == ["latent"] and show(one.body[0].decl.index) == "i"
    assert [s.decl.name for s in block.body] == ["a", "b"]


def test_comments_continuations_and_newlines_inside_brackets():
    stmts = parse("# a comment\nmodel m  # trailing\n\nlatent z = a + \\\n  b\nlatent w = f(\n  1,\n  2)\n")
    assert [s.kind for s in stmts] == ["model", "latent", "latent"]
    assert show(stmts[1].value) == "(a + b)" and show(stmts[2].value) == "f(1, 2)"


def test_crlf_parses_like_lf():
    lf = parse_text("model m\nparam a = 1\nlatent z = a * u\n", "f.mmi")
    crlf = parse_text("model m\r\nparam a = 1\r\nlatent z = a * u\r\n", "f.mmi")
    assert [show(s.value) for s in crlf.statements[1:]] == [show(s.value) for s in lf.statements[1:]]
    assert crlf.statements[2].span.line == 3


def test_query_keywords_are_names_when_not_called():
    """`I`, `TC`, `II` start a query only before `(`: elsewhere they are plain names."""
    stmts = parse("param I = 1\nlatent z = I * n\n")
    assert stmts[0].name == "I" and show(stmts[1].value) == "(I * n)"


def test_literals():
    num = rhs("2")
    assert num.value == 2.0 and num.is_int
    assert not rhs("2.0").is_int and rhs("1.5e-3").value == pytest.approx(1.5e-3) and not rhs("1e3").is_int
    assert rhs("3x32x32").dims == (3, 32, 32)
    (stmt,) = parse('template T = image("a b.png")\n')
    arg = stmt.value.args[0]
    assert isinstance(arg, String) and arg.value == "a b.png"
    assert show(rhs("[1, 2, 3]")) == "[1, 2, 3]"
    call = rhs("f(x = 1, i in 1..3)")
    assert isinstance(call.args[0], Kwarg) and isinstance(call.args[1], Binder)
    assert call.args[1].var == "i" and (show(call.args[1].lo), show(call.args[1].hi)) == ("1", "3")


# ---------------------------------------------------------------- precedence

@pytest.mark.parametrize("expr,tree", [
    ("a + b * c", "(a + (b * c))"),
    ("a * b + c", "((a * b) + c)"),
    ("a - b - c", "((a - b) - c)"),
    ("a / b / c", "((a / b) / c)"),
    ("a ^ b ^ c", "(a ^ (b ^ c))"),          # power is right-associative
    ("-a ^ 2", "(-(a ^ 2))"),                # and binds tighter than unary minus
    ("a ^ -b", "(a ^ (-b))"),
    ("a * -b", "(a * (-b))"),
    ("+a", "a"),                             # unary plus leaves no node
    ("M @ x * c", "((M @ x) * c)"),          # @ is a product like * and /
    ("(a + b) * c", "((a + b) * c)"),
    ("2 * n[i + 1]", "(2 * n[(i + 1)])"),
    ("f(a, b + c) * d", "(f(a, (b + c)) * d)"),
])
def test_precedence(expr, tree):
    assert show(rhs(expr)) == tree


def test_a_long_sum_keeps_its_terms_in_order():
    """Long sums are rebalanced (no recursion limit); the terms stay as written."""
    value = rhs(" + ".join(f"n[{i}]" for i in range(1, 2001)))

    def leaves(node):
        if isinstance(node, BinaryOp):
            assert node.op == "+"
            return leaves(node.left) + leaves(node.right)
        return [show(node)]

    assert leaves(value) == [f"n[{i}]" for i in range(1, 2001)]


# ---------------------------------------------------------------- spans

def test_spans_of_names_operators_and_statements():
    (stmt,) = parse("latent z = rho * u + n[1]\n")
    assert (stmt.span.line, stmt.span.column) == (1, 1)
    assert (stmt.decl.span.column, stmt.decl.span.end_column) == (8, 9)
    total = stmt.value
    assert (total.span.column, total.span.end_column) == (12, 26)  # the whole sum
    product = total.left
    assert (product.span.column, product.span.end_column) == (12, 19)  # `rho * u`
    assert (product.left.span.column, product.left.span.end_column) == (12, 15)  # `rho`
    assert (total.right.span.column, total.right.span.end_column) == (22, 26)  # `n[1]`


def test_span_of_an_expression_across_lines():
    (stmt,) = parse_text("model m\nmatrix M = uniform(\n  4, 3,\n  seed = 1)\n", "f.mmi").statements[1:]
    s = stmt.value.span
    assert (s.line, s.column, s.end_line, s.end_column) == (2, 12, 4, 12)
    assert stmt.value.func_span.end_column == 19  # `uniform`
    assert stmt.value.args[2].span.line == 4


def test_spans_name_the_file():
    (stmt,) = parse_text("dim d = 4\n", "dir/spec.mmi").statements
    assert stmt.span.file == "dir/spec.mmi" and stmt.value.span.file == "dir/spec.mmi"


# ---------------------------------------------------------------- syntax errors

@pytest.mark.parametrize("text,line,column,needle", [
    ("latent z = rho u\n", 1, 16, "unexpected `u`"),
    ("latent z = (n + 1\n", 1, 17, "expected `)`"),
    ("latent z = n $ 2\n", 1, 14, "unexpected character `$`"),
    ("latent z = a +\n", 1, 15, "unexpected end of line"),
    ("model m\nreport I(a; b\n", 2, 13, "expected one of `)`"),
    ("model m\ndim d = 2x\n", 2, 10, "unexpected `x`"),
])
def test_syntax_error_positions(text, line, column, needle):
    ((got_line, got_column, message),) = syntax_errors(text)
    assert (got_line, got_column) == (line, column)
    assert needle in message


def test_syntax_errors_are_collected_one_per_line():
    errors = syntax_errors("model m\nlatent z = rho u\nparam = 1\nlatent w = a b\n")
    assert [(line, col) for line, col, _ in errors] == [(2, 16), (3, 7), (4, 14)]


def test_max_errors_bounds_the_collection():
    text = "".join(f"latent z{i} = a b\n" for i in range(30))
    with pytest.raises(SpecError) as info:
        parse_text(text, "f.mmi", max_errors=5)
    assert len(info.value.diagnostics) == 5


def test_the_missing_operator_hint():
    with pytest.raises(SpecError) as info:
        parse_text("latent z = rho u\n", "f.mmi")
    assert "put `*` between a coefficient and a variable" in info.value.diagnostics[0].hint


def test_too_deep_nesting_is_a_resource_error_not_a_crash():
    with pytest.raises(SpecError) as info:
        parse_text("latent z = " + "-(" * 150 + "n" + ")" * 150 + "\n", "f.mmi")
    (d,) = info.value.diagnostics
    assert d.code == "E0215" and "nested more than 100 levels" in d.message and d.span.line == 1


# ---------------------------------------------------------------- queries and files

def test_parse_query_with_unit():
    q, unit = parse_query("  I(x1; x2 | theta) bits ")
    assert unit == "bits" and q.op == "I"
    assert [[v.name for v in g] for g in q.groups] == [["x1"], ["x2"]] and [v.name for v in q.given] == ["theta"]
    assert q.span.file == "--query" and q.groups[0][0].span.column == 3
    assert parse_query("II(a; b; c)")[1] == "nats"


@pytest.mark.parametrize("text,column", [("I(x1; )", 7), ("I(x1 x2)", 6)])
def test_parse_query_errors_point_into_the_query(text, column):
    with pytest.raises(SpecError) as info:
        parse_query(text)
    (d,) = info.value.diagnostics
    assert d.code == "E0001" and d.span.file == "--query" and d.span.column == column


def test_parse_file_reads_utf8_and_names_the_path(tmp_path):
    path = tmp_path / "s.mmi"
    path.write_text("model s  # café\nparam a = 1\n", encoding="utf-8")
    program = parse_file(path)
    assert program.file == str(path) and program.statements[1].span.file == str(path)


def test_parse_file_errors(tmp_path):
    with pytest.raises(SpecError) as info:
        parse_file(tmp_path / "absent.mmi")
    assert info.value.diagnostics[0].code == "E0002" and "absent.mmi" in info.value.diagnostics[0].message
    bad = tmp_path / "latin.mmi"
    bad.write_bytes(b"model m\nparam a = 1 # caf\xe9\n")
    with pytest.raises(SpecError) as info:
        parse_file(bad)
    (d,) = info.value.diagnostics
    assert d.code == "E0002" and (d.span.line, d.span.column) == (2, 18)


# ---------------------------------------------------------------- number literals (issue 14, items 6 and 10)


@pytest.mark.parametrize("where", [
    "param p = {n}", "dim d = {n}", "dim d = {n}x3", "proto u : vector[{n}]", "for i in 1..{n}: proto u[i] : scalar",
    "matrix M = uniform(2, 2, seed = {n})",
])
def test_an_integer_literal_of_over_4300_digits_is_a_clear_error_in_every_position(where, mmmic, tmp_path):
    spec = tmp_path / "big.mmi"
    spec.write_text("proto v : scalar\ntarget t = v\n" + where.format(n="9" * 5000) + "\n")
    r = mmmic("check", spec)
    assert r.code == 1 and "error[E0212]" in r.stderr and "too large" in r.stderr, r.stderr
    assert f"{spec}:3:" in r.stderr


@pytest.mark.parametrize("text, value, problem", [
    ("12", 12.0, None), ("0.5", 0.5, None), ("3e-4", 3e-4, None), ("-2.5E+3", -2500.0, None), ("0", 0.0, None),
    ("1e-1000", 0.0, "too small for a double-precision float"),
    ("1e-320", 1e-320, "too small for a double-precision float"),
    ("1e400", math.inf, "too large for a double-precision float"),
    ("1_0", math.nan, "not a number"), ("0x10", math.nan, "not a number"), ("", math.nan, "not a number"),
    ("inf", math.nan, "not a finite number"), ("-Infinity", math.nan, "not a finite number"),
    ("nan", math.nan, "not a finite number"), ("9" * 5000, math.inf, "too large for a double-precision float"),
])
def test_literal_value(text, value, problem):
    from mmmi_dsl.lang.literals import literal_value

    got, why = literal_value(text)
    assert why == problem
    if problem is None or math.isinf(value):
        assert got == value


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "fifo", "folder"])
def test_a_spec_path_that_is_not_a_regular_file_is_refused_before_reading(path, tmp_path, mmmic):
    """/dev/zero read 4 GB, /dev/urandom ran on, a FIFO blocked forever (issue 14, item 11)."""
    import os

    if path == "fifo":
        os.mkfifo(tmp_path / "fifo")
    if path == "folder":
        (tmp_path / "folder").mkdir()
    target = path if path.startswith("/") else tmp_path / path
    r = mmmic("check", target)
    assert r.code == 1 and "error[E0002]" in r.stderr and "a spec is a regular .mmi file" in r.stderr, r.stderr


def test_a_spec_over_the_size_cap_is_refused(tmp_path, mmmic, monkeypatch):
    from mmmi_dsl.lang import parse as parse_module

    monkeypatch.setattr(parse_module, "MAX_SPEC_BYTES", 1000)
    spec = tmp_path / "big.mmi"
    spec.write_text("proto u : scalar\n" * 100)
    r = mmmic("check", spec)
    assert r.code == 1 and "the largest spec read" in r.stderr, r.stderr


def test_a_spec_past_the_token_limit_is_e0215_before_parsing(tmp_path, mmmic, monkeypatch):
    from mmmi_dsl.lang import parse as parse_module

    monkeypatch.setattr(parse_module, "MAX_TOKENS", 500)
    spec = tmp_path / "long.mmi"
    spec.write_text("".join(f"param p{i} = 1\n" for i in range(200)))  # 5 tokens a line
    r = mmmic("check", spec)
    assert r.code == 1 and "error[E0215]" in r.stderr and "more than 500 tokens" in r.stderr, r.stderr
    assert f"{spec}:101:1" in r.stderr

