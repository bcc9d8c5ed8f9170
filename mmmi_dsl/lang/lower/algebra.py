"""Linear forms of lowering: draft terms and the values of subexpressions of an equation.

The coefficient algebra (hash-consed nodes, folding) is :mod:`mmmi_dsl.lang.coef`, re-exported
here: a family of N^2 terms costs a few hundred node constructions, not N^2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from mmmi_dsl import ir
from mmmi_dsl.ir import Expr, Span
from mmmi_dsl.lang.coef import binop, fold, mul, neg, num_node, real_pow, reset, sym_node, underflows, unroll

__all__ = ["DraftTerm", "LinearValue", "binop", "draft_term", "fold", "mul", "neg", "num_node", "real_pow",
           "reset", "scaled", "sym_node", "underflows"]


class DraftTerm(NamedTuple):
    """A term while it is being built; turned into an :class:`ir.Term` at the end."""

    coef: Expr
    op: str
    sources: tuple[str, ...]
    template: str | None = None
    matrix: str | None = None
    span: Span | None = None
    index: str | None = None  # a family term (ir.Term): coef uses Sym(index), member m reads sources[m]
    first: int = 0

    def to_ir(self) -> ir.Term:
        return ir.Term(coef=self.coef, op=self.op, sources=self.sources, template=self.template,
                       matrix=self.matrix, span=self.span, index=self.index, first=self.first)

    def members(self) -> list["DraftTerm"]:
        """The ordinary draft terms this stands for (a family term's members, folded as if unrolled)."""
        if self.index is None:
            return [self]
        return [DraftTerm(t.coef, t.op, t.sources, t.template, t.matrix, t.span) for t in unroll(self.to_ir())]


def draft_term(coef: Expr, op: str, sources: tuple[str, ...], template: str | None = None,
          matrix: str | None = None, span: Span | None = None) -> DraftTerm:
    return DraftTerm(coef, op, tuple(sources), template, matrix, span)


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
