"""Coefficient algebra of lowering: hash-consed IR expressions, constant folding, linear forms.

Coefficient nodes are hash-consed: each distinct subexpression is built (and validated) once
per lowering run and shared, since IR nodes are immutable. A family of N^2 terms then costs a
few hundred node constructions, not N^2. :func:`reset` clears the table between runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from mmmi_dsl import ir
from mmmi_dsl.ir import BinOp, Expr, Neg, Num, Span, Sym

_NODES: dict[tuple, Expr] = {}


def reset() -> None:
    """Forget the hash-consed nodes of the previous lowering run."""
    _NODES.clear()


def num_node(v: float) -> Num:
    key = ("num", float(v))
    node = _NODES.get(key)
    if node is None:
        node = _NODES[key] = Num(value=float(v))
    return node  # type: ignore[return-value]


def sym_node(name: str) -> Sym:
    key = ("sym", name)
    node = _NODES.get(key)
    if node is None:
        node = _NODES[key] = Sym(name=name)
    return node  # type: ignore[return-value]


def _bin(op: str, a: Expr, b: Expr) -> BinOp:
    key = ("bin", op, id(a), id(b))
    node = _NODES.get(key)
    if node is None:
        node = _NODES[key] = BinOp(op=op, left=a, right=b)
    return node  # type: ignore[return-value]


def _neg(a: Expr) -> Neg:
    key = ("neg", id(a))
    node = _NODES.get(key)
    if node is None:
        node = _NODES[key] = Neg(operand=a)
    return node  # type: ignore[return-value]


class DraftTerm(NamedTuple):
    """A term while it is being built; turned into an :class:`ir.Term` at the end."""

    coef: Expr
    op: str
    sources: tuple[str, ...]
    template: str | None = None
    matrix: str | None = None
    span: Span | None = None

    def to_ir(self) -> ir.Term:
        return ir.Term(coef=self.coef, op=self.op, sources=self.sources, template=self.template,
                       matrix=self.matrix, span=self.span)


def draft_term(coef: Expr, op: str, sources: tuple[str, ...], template: str | None = None,
          matrix: str | None = None, span: Span | None = None) -> DraftTerm:
    return DraftTerm(coef, op, tuple(sources), template, matrix, span)


def mul(a: Expr, b: Expr) -> Expr:
    """Product with the obvious simplifications (1*x, -1*x, constant folding)."""
    if isinstance(a, Num) and isinstance(b, Num) and not underflows(a.value, b.value, a.value * b.value):
        return num_node(a.value * b.value)
    for x, y in ((a, b), (b, a)):
        if isinstance(x, Num) and x.value == 1:
            return y
        if isinstance(x, Num) and x.value == -1:
            return neg(y)
    return _bin("*", a, b)


def neg(a: Expr) -> Expr:
    if isinstance(a, Num):
        return num_node(-a.value)
    if isinstance(a, Neg):
        return a.operand
    return _neg(a)


def binop(op: str, a: Expr, b: Expr) -> Expr:
    """A binary operation on constants, folded when both sides are numbers."""
    if op == "*":
        return mul(a, b)
    if isinstance(a, Num) and isinstance(b, Num):
        v = fold(op, a.value, b.value)
        if math.isfinite(v) and not (op in "/^" and underflows(a.value, b.value if op == "/" else 1.0, v)):
            return num_node(v)  # an underflow stays unfolded: the MI engine reports it with its position
    if op == "^" and isinstance(b, Num):
        if b.value == 0:
            return num_node(1.0)
        if b.value == 1:
            return a
    if op == "/" and isinstance(b, Num) and b.value == 1:
        return a
    return _bin(op, a, b)  # type: ignore[arg-type]


def fold(op: str, a: float, b: float) -> float:
    """``a op b`` for ``+ - / ^`` (only the one asked for), NaN where it has no finite real value.

    Only ``op`` is computed: ``150 - 298`` folds even though ``150 ^ 298`` would overflow.
    """
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "/":
            return a / b if b != 0 else math.nan
        return real_pow(a, b)
    except (OverflowError, ZeroDivisionError):
        return math.nan


def underflows(a: float, b: float, result: float) -> bool:
    """Whether an operation on nonzero a, b lost its value to underflow (0 or a subnormal)."""
    return a != 0 and b != 0 and math.isfinite(result) and abs(result) < 2.2250738585072014e-308


def real_pow(a: float, b: float) -> float:
    """a^b, NaN where it is not real (a negative base, a fractional power): refused as E0212."""
    r = a ** b
    return math.nan if isinstance(r, complex) else r


@dataclass
class LinearValue:
    """The value of a subexpression of an equation while it is being linearised.

    Exactly one of the kinds is set: a constant coefficient, a sum of terms, a
    scaled template, a scaled matrix, or a ``concat(...)`` of variables.
    """

    const: Expr | None = None
    terms: list[DraftTerm] | None = None
    template: tuple[Expr, str] | None = None
    matrix: tuple[Expr, str] | None = None
    concat: tuple[str, ...] | None = None
    span: Span | None = None

    def describe(self, kinds: dict | None = None) -> str:
        if self.const is not None:
            return "a constant"
        if self.terms is not None:
            srcs = sorted({s for t in self.terms for s in t.sources})
            def kind(s: str) -> str:
                return f"{kinds[s].kind} " if kinds and s in kinds else ""

            return ", ".join(f"{kind(s)}`{s}`" for s in srcs[:3]) + (" ..." if len(srcs) > 3 else "")
        if self.template is not None:
            return f"template `{self.template[1]}`"
        if self.matrix is not None:
            return f"matrix `{self.matrix[1]}`"
        return "concat(...)"


def scaled(lin: LinearValue, c: Expr, span: Span | None = None) -> LinearValue:
    """Multiply by a constant; ``span`` (the product's) replaces the terms' spans."""
    if lin.const is not None:
        return LinearValue(const=mul(c, lin.const), span=span or lin.span)
    if lin.terms is not None:
        return LinearValue(terms=[t._replace(coef=mul(c, t.coef), span=span or t.span) for t in lin.terms],
                    span=span or lin.span)
    if lin.template is not None:
        return LinearValue(template=(mul(c, lin.template[0]), lin.template[1]), span=lin.span)
    if lin.matrix is not None:
        return LinearValue(matrix=(mul(c, lin.matrix[0]), lin.matrix[1]), span=lin.span)
    return lin
