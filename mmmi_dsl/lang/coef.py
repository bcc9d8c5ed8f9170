"""Coefficients of the IR: hash-consed expression nodes, constant folding, family terms' members.

Nodes are hash-consed: each distinct subexpression is built (and validated) once per lowering
run and shared, since IR nodes are immutable. :func:`reset` clears the table between runs.
A family term (:class:`mmmi_dsl.ir.Term` with ``index``) stands for one term per member:
:func:`unroll` gives them, folded exactly as lowering folds an unrolled ``sum``, and
:func:`evaluate_over` evaluates its coefficient at every member at once (numpy).

Lowering (:mod:`mmmi_dsl.lang.lower`) builds with these; the engine and the other readers of
the IR use :func:`unroll` and :func:`evaluate_over`. Imports only :mod:`mmmi_dsl.ir`.
"""

from __future__ import annotations

import math

import numpy as np

from mmmi_dsl import ir
from mmmi_dsl.ir import BinOp, Expr, Func, Neg, Num, Sym

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



def substitute(expr: Expr, name: str, value: float, memo: dict | None = None) -> Expr:
    """``expr`` with ``Sym(name)`` replaced by ``value``, folded bottom-up as lowering folds (``_const``).

    Lowering an unrolled ``sum`` folds each member's coefficient with the loop variable a number;
    folding is idempotent, so substituting into the symbolic coefficient gives the same tree.
    """
    memo = {} if memo is None else memo
    hit = memo.get(id(expr))
    if hit is not None:
        return hit
    if isinstance(expr, Sym):
        out: Expr = num_node(value) if expr.name == name else expr
    elif isinstance(expr, Num):
        out = expr
    elif isinstance(expr, Neg):
        out = neg(substitute(expr.operand, name, value, memo))
    elif isinstance(expr, BinOp):
        out = binop(expr.op, substitute(expr.left, name, value, memo), substitute(expr.right, name, value, memo))
    elif isinstance(expr, Func):
        args = tuple(substitute(a, name, value, memo) for a in expr.args)
        out = num_node(abs(args[0].value)) if expr.name == "abs" and isinstance(args[0], Num) else \
            Func(name=expr.name, args=args)
    else:
        raise TypeError(f"not an expression: {expr!r}")
    memo[id(expr)] = out
    return out


def unroll(term: ir.Term, limit: int | None = None) -> list[ir.Term]:
    """The ordinary terms a term stands for: itself, or a family term's members in order (the
    first ``limit`` of them only, when given)."""
    if term.index is None:
        return [term]
    return [ir.Term(coef=substitute(term.coef, term.index, float(term.first + m)), op=term.op, sources=(src,),
                    template=term.template, matrix=term.matrix, span=term.span)
            for m, src in enumerate(term.sources[:limit])]


def unrolled(terms) -> list[ir.Term]:
    """Every ordinary term of a tuple of terms (family terms unrolled)."""
    return [u for t in terms for u in unroll(t)]


_UFUNCS = {"sqrt": np.sqrt, "exp": np.exp, "log": np.log, "abs": np.abs, "sin": np.sin, "cos": np.cos,
           "tanh": np.tanh, "min": np.minimum, "max": np.maximum}


class _Unsure(ArithmeticError):
    """A value the exact per-member evaluation should look at (see :func:`evaluate_over`)."""


def evaluate_over(expr: Expr, env: dict[str, float], index: str, values: np.ndarray, checked: bool = False):
    """``expr`` at every value of ``index`` (a float64 array of them) and ``env`` for the rest.

    Returns an array (or a float where ``expr`` does not use ``index``); numpy's warnings are
    silenced. ``checked``: None instead where any product, quotient, power or exp is below the
    normal doubles (zero included) or the result is not finite, so that the caller evaluates the
    members one by one, which skips exact zeros and reports a real problem with its position.
    """
    with np.errstate(all="ignore"):
        try:
            out = _over(expr, env, index, values, checked)
        except _Unsure:
            return None
    if checked and not np.all(np.isfinite(out)):
        return None
    return out


_TINY = 2.2250738585072014e-308  # the smallest normal double
_HUGE = 1.7976931348623157e308  # the largest double


def _sure(r, checked: bool):
    """``r``, or :class:`_Unsure` (when ``checked``) where any |r| is below the normal doubles, infinite or NaN."""
    if checked:
        m = np.abs(r)
        if not (m.min() >= _TINY and m.max() <= _HUGE):  # NaN fails both comparisons
            raise _Unsure
    return r


def _over(expr: Expr, env, index, values, checked: bool = False):
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Sym):
        return values if expr.name == index else env[expr.name]
    if isinstance(expr, Neg):
        return -_over(expr.operand, env, index, values, checked)
    if isinstance(expr, BinOp):
        a, b = _over(expr.left, env, index, values, checked), _over(expr.right, env, index, values, checked)
        if isinstance(a, float) and isinstance(b, float):
            try:
                r = ir.apply_op(expr.op, a, b)
            except (ZeroDivisionError, OverflowError, ValueError):
                r = math.nan
            return _sure(r, checked) if expr.op in "*/^" else r
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if expr.op == "+":
            return a + b
        if expr.op == "-":
            return a - b
        if expr.op == "*":
            return _sure(a * b, checked)
        if expr.op == "/":
            return _sure(a / b, checked)
        return _sure(np.power(a, b), checked)  # a negative base to a fractional power: NaN
    if isinstance(expr, Func):
        args = [_over(a, env, index, values, checked) for a in expr.args]
        if all(isinstance(a, float) for a in args):
            try:
                r = ir.apply_func(expr.name, args)
            except (ValueError, OverflowError, ZeroDivisionError):
                r = math.nan
        else:
            r = _UFUNCS[expr.name](*[np.asarray(a, dtype=float) for a in args])
        return _sure(r, checked) if expr.name == "exp" else r
    raise TypeError(f"not an expression: {expr!r}")
