"""Stage 2, lower: syntax tree -> causal IR (:class:`mmmi_dsl.ir.Model`).

Resolves names (declarations are order-free), evaluates dims and parameter
values (with ``--set`` overrides), expands families and ``for`` loops, and turns
each structural equation into linear :class:`~mmmi_dsl.ir.Term` s. Errors are
collected, not raised at the first one. Whole-model checks (cycles, sizes,
queries) follow in :mod:`mmmi_dsl.check`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple
from pathlib import Path

from mmmi_dsl import builtins
from mmmi_dsl import ir
from mmmi_dsl.lang.check import gib as _gib, physical_memory, postorder
from mmmi_dsl.errors import Collector, UsageError, did_you_mean
from mmmi_dsl.ir import BinOp, Expr, Func, Neg, Num, Span, Sym
from mmmi_dsl.lang.parse import (Binder, BinaryOp, Call, Decl, Kwarg, ListLit, Name, Negate, Number,
                    Program, Shape, Statement, String)

# A spec may not ask for more than this many floats in one template or matrix,
# nor more modalities/latents than this (a clear error instead of an OOM).
MAX_VECTOR_SIZE = 50_000_000
MAX_MATRIX_ENTRIES = 100_000_000
MAX_VARIABLES = 100_000
# Terms that sum(...) may expand to in all: lowering costs ~50 us a term (decay.mmi at N = 316: 100,000).
MAX_TERMS = 100_000
# Expression nodes lowering may evaluate in all (~2 us each): a 100,000-member loop over a statement
# with a 10,000-node index took minutes. decay.mmi at N = 316 evaluates about 1.5 million.
MAX_WORK = 5_000_000


class _Skip(Exception):
    """Abandon the current statement after its diagnostic was recorded."""


# ---------------------------------------------------------------- coefficient algebra


# Coefficient nodes are hash-consed: each distinct subexpression is built (and
# validated) once per lowering run and shared, since IR nodes are immutable. A
# family of N^2 terms then costs a few hundred node constructions, not N^2.
_NODES: dict[tuple, Expr] = {}


def _num(v: float) -> Num:
    key = ("num", float(v))
    node = _NODES.get(key)
    if node is None:
        node = _NODES[key] = Num(value=float(v))
    return node  # type: ignore[return-value]


def _sym(name: str) -> Sym:
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


class _T(NamedTuple):
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


def _term(coef: Expr, op: str, sources: tuple[str, ...], template: str | None = None,
          matrix: str | None = None, span: Span | None = None) -> _T:
    return _T(coef, op, tuple(sources), template, matrix, span)


def _with(t: _T, **update) -> _T:
    return t._replace(**update)


def mul(a: Expr, b: Expr) -> Expr:
    """Product with the obvious simplifications (1*x, -1*x, constant folding)."""
    if isinstance(a, Num) and isinstance(b, Num) and not _underflows(a.value, b.value, a.value * b.value):
        return _num(a.value * b.value)
    for x, y in ((a, b), (b, a)):
        if isinstance(x, Num) and x.value == 1:
            return y
        if isinstance(x, Num) and x.value == -1:
            return neg(y)
    return _bin("*", a, b)


def neg(a: Expr) -> Expr:
    if isinstance(a, Num):
        return _num(-a.value)
    if isinstance(a, Neg):
        return a.operand
    return _neg(a)


def binop(op: str, a: Expr, b: Expr) -> Expr:
    """A binary operation on constants, folded when both sides are numbers."""
    if op == "*":
        return mul(a, b)
    if isinstance(a, Num) and isinstance(b, Num):
        try:
            v = {"+": a.value + b.value, "-": a.value - b.value,
                 "/": a.value / b.value if b.value != 0 else math.nan,
                 "^": _pow(a.value, b.value)}[op]
        except (OverflowError, ZeroDivisionError):
            v = math.nan
        if math.isfinite(v) and not (op in "/^" and _underflows(a.value, b.value if op == "/" else 1.0, v)):
            return _num(v)  # an underflow stays unfolded: the MI engine reports it with its position
    if op == "^" and isinstance(b, Num):
        if b.value == 0:
            return _num(1.0)
        if b.value == 1:
            return a
    if op == "/" and isinstance(b, Num) and b.value == 1:
        return a
    return _bin(op, a, b)  # type: ignore[arg-type]


def _underflows(a: float, b: float, result: float) -> bool:
    """Whether an operation on nonzero a, b lost its value to underflow (0 or a subnormal)."""
    return a != 0 and b != 0 and math.isfinite(result) and abs(result) < 2.2250738585072014e-308


def _pow(a: float, b: float) -> float:
    """a^b, NaN where it is not real (a negative base, a fractional power): refused as E0212."""
    r = a ** b
    return math.nan if isinstance(r, complex) else r


# ---------------------------------------------------------------- linear forms


@dataclass
class _Lin:
    """The value of a subexpression of an equation while it is being linearised.

    Exactly one of the kinds is set: a constant coefficient, a sum of terms, a
    scaled template, a scaled matrix, or a ``concat(...)`` of variables.
    """

    const: Expr | None = None
    terms: list[_T] | None = None
    template: tuple[Expr, str] | None = None
    matrix: tuple[Expr, str] | None = None
    concat: tuple[str, ...] | None = None
    span: Span | None = None

    def describe(self, kinds: dict | None = None) -> str:
        if self.const is not None:
            return "a constant"
        if self.terms is not None:
            srcs = sorted({s for t in self.terms for s in t.sources})
            kind = (lambda s: f"{kinds[s].kind} " if kinds and s in kinds else "")
            return ", ".join(f"{kind(s)}`{s}`" for s in srcs[:3]) + (" ..." if len(srcs) > 3 else "")
        if self.template is not None:
            return f"template `{self.template[1]}`"
        if self.matrix is not None:
            return f"matrix `{self.matrix[1]}`"
        return "concat(...)"


def _scale(lin: _Lin, c: Expr, span: Span | None = None) -> _Lin:
    """Multiply by a constant; ``span`` (the product's) replaces the terms' spans."""
    if lin.const is not None:
        return _Lin(const=mul(c, lin.const), span=span or lin.span)
    if lin.terms is not None:
        return _Lin(terms=[_with(t, coef=mul(c, t.coef), span=span or t.span) for t in lin.terms],
                    span=span or lin.span)
    if lin.template is not None:
        return _Lin(template=(mul(c, lin.template[0]), lin.template[1]), span=lin.span)
    if lin.matrix is not None:
        return _Lin(matrix=(mul(c, lin.matrix[0]), lin.matrix[1]), span=lin.span)
    return lin


# ---------------------------------------------------------------- the lowering pass


VARIABLE_KINDS = ("proto", "latent", "target")


@dataclass
class _Decl:
    kind: str  # param dim proto template matrix latent target flow label
    span: Span
    stmt: Statement | None = None
    env: dict[str, int] = field(default_factory=dict)


class Lowerer:
    """One lowering run over a parsed program."""

    def __init__(self, program: Program, overrides: dict[str, str] | None = None,
                 base_dir: Path | None = None, allow_paths: bool = False):
        self.program = program
        self.allow_paths = allow_paths  # files outside base_dir (absolute, ../, links out) only if True
        self.file = program.file
        self.overrides = dict(overrides or {})
        self.base_dir = base_dir if base_dir is not None else (
            Path(program.file).resolve().parent if program.file != "<string>" else Path.cwd())
        self.errors = Collector()
        self.names: dict[str, _Decl] = {}
        self.families: dict[str, list[str]] = {}
        self.family_decl: dict[str, Span] = {}
        self.dims: dict[str, ir.Dim] = {}
        self.params: dict[str, ir.Param] = {}
        self.values: dict[str, float] = {}
        self.templates: dict[str, ir.Template] = {}
        self.matrices: dict[str, ir.Matrix] = {}
        self.protos: dict[str, ir.Proto] = {}
        self.sizes: dict[str, int] = {}
        self._constant: dict[int, bool] = {}
        self.n_terms = 0  # terms expanded by sum(...) so far (MAX_TERMS)
        self.work = 0  # expression nodes evaluated so far (MAX_WORK)
        self._hints: dict[tuple, str] = {}  # did-you-mean hints by (name, span, what)

    # --------------------------------------------------------- entry point

    def run(self) -> ir.Model:
        stmts = self.program.statements
        model_name = Path(self.file).stem if self.file != "<string>" else "model"
        model_stmts = [s for s in stmts if s.kind == "model"]
        for s in model_stmts[1:]:
            self.errors.error("E0102", "the model is named twice", s.name_span,
                              "second `model` statement", "keep one `model` line")
        if model_stmts:
            model_name = model_stmts[0].name
        self._check_placement(stmts, top=True)
        self._lower_dims([s for s in stmts if s.kind == "dim"])
        self._lower_params([s for s in stmts if s.kind in ("param", "derived")])
        self._check_overrides_used()
        instances = list(self._expand(stmts, {}))
        self._declare(instances)
        for s, env in instances:
            if s.kind == "proto":
                self._try(self._lower_proto, s, env)
        for s, env in instances:
            if s.kind == "template":
                self._try(self._lower_named_template, s, env)
            elif s.kind == "matrix":
                self._try(self._lower_matrix, s, env)
        eqs: dict[str, tuple[Statement, dict, list[ir.Term]]] = {}
        for s, env in instances:
            if s.kind in ("latent", "target"):
                name = self._try(self._decl_name, s.decl, env)
                terms = self._try(self._lower_equation, s.value, env) if name is not None else None
                if terms is not None:
                    eqs[name] = (s, env, terms)
        variables = self._lower_variables(eqs)
        flows: dict[str, ir.Flow] = {}
        labels: dict[str, ir.Label] = {}
        reports: list[ir.Query] = []
        solves: list[ir.Solve] = []
        sweeps: list[ir.Sweep] = []
        for s, env in instances:
            if s.kind == "flow":
                f = self._try(self._lower_flow, s, env, variables)
                if f is not None:
                    flows[f.name] = f
            elif s.kind == "label":
                lab = self._try(self._lower_label, s, env)
                if lab is not None:
                    labels[lab.name] = lab
            elif s.kind == "report":
                q = self._try(self._lower_query, s.query, s.unit, env)
                if q is not None:
                    reports.append(q)
            elif s.kind == "solve":
                sv = self._try(self._lower_solve, s, env)
                if sv is not None:
                    solves.append(sv)
            elif s.kind == "sweep":
                sw = self._try(self._lower_sweep, s, env)
                if sw is not None:
                    sweeps.append(sw)
        self.errors.raise_if_any({self.file: self.program.text})
        return ir.Model(
            name=model_name, source_file=self.file, params=self.params, dims=self.dims,
            protos=self.protos, templates=self.templates, matrices=self.matrices,
            variables=variables, flows=flows, labels=labels, reports=tuple(reports),
            solves=tuple(solves), sweeps=tuple(sweeps),
            families={k: tuple(v) for k, v in self.families.items()})

    def _try(self, fn, *args):
        try:
            return fn(*args)
        except _Skip:
            return None

    def fail(self, code: str, message: str, span: Span | None, label: str = "", hint: str = ""):
        self.errors.error(code, message, span, label, hint)
        raise _Skip

    # --------------------------------------------------------- placement and loops

    def _check_placement(self, stmts, top: bool) -> None:
        for s in stmts:
            if not top and s.kind in ("model", "param", "derived", "dim"):
                self.errors.error("E0214", f"`{s.kind}` statements cannot be inside a `for` loop",
                                  s.span, "", "declare parameters and dims once, at the top level")
            if s.kind == "for":
                self._check_placement(s.body, top=False)

    def _expand(self, stmts, env: dict[str, int]):
        """Yield (statement, loop environment) with every ``for`` unrolled."""
        for s in stmts:
            if s.kind in ("model", "param", "derived", "dim"):
                continue
            if s.kind != "for":
                yield s, env
                continue
            if s.name in env or s.name in self.values or s.name in self.dims:
                self.errors.error("E0102", f"loop variable `{s.name}` hides another name", s.name_span,
                                  "", "pick a fresh loop variable")
                continue
            try:
                lo, hi = self._int_range(s.loop_range, env, s.span)
            except _Skip:
                continue
            for k in range(lo, hi + 1):
                yield from self._expand(s.body, {**env, s.name: k})

    def _int_range(self, rng, env, span: Span) -> tuple[int, int]:
        lo = self.int_value(rng[0], env)
        hi = self.int_value(rng[1], env)
        if hi < lo:
            self.fail("E0206", f"empty range {lo}..{hi}", span, "the upper end is below the lower end",
                      "ranges are inclusive: 1..N has N members")
        if hi - lo + 1 > MAX_VARIABLES:
            self.fail("E0215", f"range {lo}..{hi} has {hi - lo + 1:,} members", span, "",
                      f"at most {MAX_VARIABLES:,} are allowed: each member is a variable of its own (a Python "
                      "object when compiled, a block of loadings in the MI engine); one vector[k] proto holds k "
                      "values under one name")
        return lo, hi

    # --------------------------------------------------------- constants

    def _tick(self, node) -> None:
        """Count one expression node evaluated; E0215 past MAX_WORK (a loop times a huge expression)."""
        self.work += 1
        if self.work > MAX_WORK:
            self.fail("E0215", f"expanding the loops evaluates more than {MAX_WORK:,} expression nodes",
                      getattr(node, "span", None), "",
                      "a loop repeats its statement once per member: use shorter loops or simpler expressions")

    def value(self, node, env: dict[str, int], allow_params: bool = True) -> float:
        """Evaluate a constant expression (numbers, dims, parameters, loop variables)."""
        self._tick(node)
        if isinstance(node, Number):
            return node.value
        if isinstance(node, Name):
            if node.index is not None:
                self.fail("E0202", f"`{node.name}[...]` is not a constant", node.span, "",
                          "only numbers, dims, parameters and loop variables may appear here")
            if node.name in env:
                return float(env[node.name])
            if node.name in self.dims:
                return float(self.dims[node.name].value)
            if node.name in self.values:
                if not allow_params:
                    self.fail("E0202", f"parameter `{node.name}` cannot be used here", node.span, "",
                              "sizes, indices and seeds must be fixed numbers or dims; "
                              "for a parameter computed from others write `name := expr`")
                return self.values[node.name]
            self._unknown(node.name, node.span, "a constant")
        if isinstance(node, Negate):
            return -self.value(node.operand, env, allow_params)
        if isinstance(node, BinaryOp):
            if node.op == "@":
                self.fail("E0202", "a matrix product is not a constant", node.span)
            a = self.value(node.left, env, allow_params)
            b = self.value(node.right, env, allow_params)
            try:
                if node.op == "+":
                    r = a + b
                elif node.op == "-":
                    r = a - b
                elif node.op == "*":
                    r = a * b
                elif node.op == "/":
                    r = a / b
                else:
                    r = _pow(a, b)
            except ZeroDivisionError:
                self.fail("E0212", "division by zero", node.span)
            except OverflowError:
                r = math.inf
            if not math.isfinite(r):
                self.fail("E0212", "this expression is not a finite number", node.span)
            return float(r)
        if isinstance(node, Call):
            if node.func == "size":
                if len(node.args) != 1 or not isinstance(node.args[0], (Name, Shape)):
                    self.fail("E0209", "size() takes one dim or shape", node.span, "", "size(img)")
                return float(math.prod(self.shape_of(node.args[0], env)))
            if node.func in ir.MATH_FUNCTIONS:
                arity, fn = ir.MATH_FUNCTIONS[node.func]
                args = [a for a in node.args if not isinstance(a, (Kwarg, Binder))]
                if len(args) != arity or len(args) != len(node.args):
                    self.fail("E0209", f"{node.func}() takes {arity} argument{'s' * (arity > 1)}", node.span)
                vals = [self.value(a, env, allow_params) for a in args]
                try:
                    r = float(fn(*vals))  # type: ignore[operator]
                except (ValueError, OverflowError):
                    self.fail("E0212", f"{node.func}() is undefined at {', '.join(f'{v:g}' for v in vals)}",
                              node.span)
                return r
            self.fail("E0202", f"`{node.func}(...)` is not a constant here", node.span, "",
                      "only numbers, dims, parameters and math functions may appear here")
        if isinstance(node, Shape):
            self.fail("E0202", "a shape is not a number here", node.span, "", "use size(3x32x32)")
        if isinstance(node, String):
            self.fail("E0202", "a string is not a number", node.span)
        self.fail("E0202", "expected a number", getattr(node, "span", None))

    def seed_value(self, node, env) -> int:
        """A random seed: a non-negative integer (numpy's generators refuse negative ones)."""
        seed = self.int_value(node, env, "seed")
        if seed < 0:
            self.fail("E0206", f"a seed is a non-negative integer, got {seed}", node.span)
        return seed

    def int_value(self, node, env, what: str = "value") -> int:
        v = self.value(node, env, allow_params=False)
        if not float(v).is_integer():
            self.fail("E0206", f"expected an integer {what}, got {v:g}", node.span)
        return int(v)

    def shape_of(self, node, env) -> tuple[int, ...]:
        if isinstance(node, Shape):
            return node.dims
        if isinstance(node, Name) and node.name in self.dims:
            d = self.dims[node.name]
            return d.shape if d.shape is not None else (d.value,)
        return (self.int_value(node, env, "size"),)

    # --------------------------------------------------------- dims and params

    def _lower_dims(self, stmts: list[Statement]) -> None:
        by_name: dict[str, Statement] = {}
        for s in stmts:
            if s.name in by_name:
                self.errors.error("E0102", f"dim `{s.name}` is defined twice", s.name_span,
                                  "", f"first defined on line {by_name[s.name].span.line}")
                continue
            by_name[s.name] = s
            self.names[s.name] = _Decl("dim", s.name_span, s)
        self._in_dependency_order(by_name, "dims", self._lower_dim)

    def _in_dependency_order(self, by_name: dict[str, Statement], what: str, lower_one) -> None:
        """Lower each statement after the ones its right-hand side names; a cycle is E0205.

        A statement that fails (its diagnostic recorded) counts as done, so the ones
        that depend on it are still tried and no false cycle is reported.
        """
        failed: set[str] = set()

        def deps(name: str) -> list[str]:
            return sorted(d for d in _names_in(by_name[name].value) if d in by_name and d != name)

        def cycle(path: list[str], dep: str) -> None:  # the statement that closes it fails, and its chain
            if dep in failed:
                return
            cyc = " -> ".join(path[path.index(dep):] + [dep])
            self._try(self.fail, "E0205", f"{what} depend on each other in a cycle: {cyc}",
                      by_name[dep].name_span, "", "give one of them a value that does not use the others")
            failed.update(path)

        for name in postorder(by_name, deps, on_cycle=cycle):
            if name not in failed:
                self._try(lower_one, by_name[name])

    def _lower_dim(self, s: Statement) -> None:
        over = self.overrides.pop(s.name, None)
        if over is not None:
            shape = _parse_shape(over)
            if shape is None:
                raise UsageError(f"--set {s.name}={over}: a dim takes a positive integer or a shape like 3x32x32")
            value = math.prod(shape)
            if value > MAX_VECTOR_SIZE:
                raise UsageError(f"--set {s.name}={over}: {value:,} values, more than the limit of {MAX_VECTOR_SIZE:,}; "
                                 f"one vector of this size needs {_gib(value * 8)} as float64 (this machine has "
                                 f"{_gib(physical_memory())})")
            self.dims[s.name] = ir.Dim(name=s.name, value=value, shape=shape if len(shape) > 1 else None,
                                       span=s.name_span)
            return
        if isinstance(s.value, Shape):
            shape = s.value.dims
            if any(d <= 0 for d in shape):
                self.fail("E0206", "shape sizes must be positive", s.value.span)
            self.check_vector_size(math.prod(shape), s.value.span)
            self.dims[s.name] = ir.Dim(name=s.name, value=math.prod(shape), shape=shape, span=s.name_span)
            return
        if isinstance(s.value, Name) and s.value.name in self.dims and self.dims[s.value.name].shape:
            src = self.dims[s.value.name]
            self.dims[s.name] = ir.Dim(name=s.name, value=src.value, shape=src.shape, span=s.name_span)
            return
        v = self.int_value(s.value, {}, "size")
        if v <= 0:
            self.fail("E0206", f"dim `{s.name}` must be positive, got {v}", s.value.span)
        if v > MAX_VECTOR_SIZE:
            self.fail("E0215", f"dim `{s.name}` = {v:,} is larger than {MAX_VECTOR_SIZE:,}: one vector of this size "
                      f"needs {_gib(v * 8)} as float64", s.value.span, "",
                      f"the exact-MI engine keeps several vectors of each size; this machine has "
                      f"{_gib(physical_memory())}")
        self.dims[s.name] = ir.Dim(name=s.name, value=v, span=s.name_span)

    def _lower_params(self, stmts: list[Statement]) -> None:
        plain = [s for s in stmts if s.kind == "param"]
        derived = [s for s in stmts if s.kind == "derived"]
        for s in stmts:
            if s.name in self.names:
                prev = self.names[s.name]
                self.errors.error("E0102", f"`{s.name}` is defined twice", s.name_span, "",
                                  f"first defined as a {prev.kind} on line {prev.span.line}")
                continue
            self.names[s.name] = _Decl("param", s.name_span, s)
        for s in plain:
            if self.names[s.name].stmt is not s:
                continue
            try:
                self._lower_param(s)
            except _Skip:
                pass
        by_name = {s.name: s for s in derived if self.names[s.name].stmt is s}
        self._in_dependency_order(by_name, "derived parameters", self._lower_derived)

    def _lower_derived(self, s: Statement) -> None:
        if s.name in self.overrides:
            raise UsageError(f"--set {s.name}: `{s.name}` is derived (`{s.name} := ...`); set the parameters it uses")
        expr = self.constant_expr(s.value, {})
        try:
            value = ir.evaluate(expr, {**self.values, **{d.name: float(d.value) for d in self.dims.values()}})
        except (ValueError, ZeroDivisionError, OverflowError):
            value = math.nan
        if isinstance(value, complex) or not math.isfinite(value):  # complex: a negative base to a fractional power
            self.fail("E0212", f"`{s.name}` is not a finite real number at the parameters' values", s.value.span)
        self.values[s.name] = value
        self.params[s.name] = ir.Param(name=s.name, value=value, derived=expr, span=s.name_span)

    def _lower_param(self, s: Statement) -> None:
        bounds = None
        if s.interval is not None:
            lo = self.value(s.interval.lo, {}, allow_params=False)
            hi = self.value(s.interval.hi, {}, allow_params=False)
            if hi <= lo:
                self.fail("E0206", f"empty interval: {lo:g} is not below {hi:g}", s.interval.span)
            bounds = ir.Interval(lower=lo, upper=hi, lower_open=s.interval.lo_open, upper_open=s.interval.hi_open)
        over = self.overrides.pop(s.name, None)
        if over is not None:
            try:
                value = float(over)
            except ValueError:
                raise UsageError(f"--set {s.name}={over}: not a number") from None
            if not math.isfinite(value):
                raise UsageError(f"--set {s.name}={over}: not a finite number")
            if bounds is not None and not bounds.contains(value):
                raise UsageError(f"--set {s.name}={over}: outside the bounds {bounds.text()} of `{s.name}`")
        else:
            value = self.value(s.value, {}, allow_params=False)
            if bounds is not None and not bounds.contains(value):
                self.fail("E0207", f"the default {value:g} of `{s.name}` is outside its bounds {bounds.text()}",
                          s.value.span, "", "change the default or widen the bounds")
        self.values[s.name] = value
        self.params[s.name] = ir.Param(name=s.name, value=value, bounds=bounds, span=s.name_span)

    def _check_overrides_used(self) -> None:
        if self.overrides:
            known = sorted(set(self.dims) | {p for p, v in self.params.items() if v.derived is None})
            bad = ", ".join(sorted(self.overrides))
            raise UsageError(f"--set: unknown name {bad}; known parameters and dims: {', '.join(known) or '(none)'}")

    def constant_expr(self, node, env) -> Expr:
        """A symbolic coefficient: numbers, parameters, dims, loop variables, math functions."""
        lin = self.linear(node, env)
        if lin.const is None:
            self.fail("E0202", f"expected a constant here, found {lin.describe()}", node.span, "",
                      "coefficients may use numbers, parameters and dims only")
        return lin.const

    # --------------------------------------------------------- declarations

    def _decl_name(self, decl: Decl, env) -> str:
        if decl.index is None:
            return decl.name
        return f"{decl.name}[{self.int_value(decl.index, env, 'index')}]"

    def _declare(self, instances) -> None:
        """Register every declared name (order-free) before lowering any equation."""
        count = 0
        over: Span | None = None  # the declaration that went past MAX_VARIABLES
        for s, env in instances:
            if s.decl is None:
                continue
            d = s.decl
            try:
                if d.range is not None:
                    if env:
                        self.fail("E0214", "a family `name[lo..hi]` cannot be declared inside a loop", d.span,
                                  "", "inside a loop declare one member: `name[i]`")
                    lo, hi = self._int_range(d.range, env, d.span)
                    members = [f"{d.name}[{k}]" for k in range(lo, hi + 1)]
                else:
                    members = [self._decl_name(d, env)]
            except _Skip:
                continue
            if d.index is not None or d.range is not None:
                fam = self.families.setdefault(d.name, [])
                if d.name in self.names and self.names[d.name].kind != "family":
                    self.errors.error("E0102", f"`{d.name}` is both a family and a single {self.names[d.name].kind}",
                                      d.span)
                    continue
                self.names.setdefault(d.name, _Decl("family", d.span, s, env))
                fam.extend(members)
            elif d.name in self.families:
                self.errors.error("E0102", f"`{d.name}` is already a family", d.span)
                continue
            for m in members:
                if m in self.names:
                    prev = self.names[m]
                    self.errors.error("E0102", f"`{m}` is defined twice", d.span, "",
                                      f"first defined as a {prev.kind} on line {prev.span.line}")
                    continue
                count += 1
                if count > MAX_VARIABLES and over is None:
                    over = d.span
                self.names[m] = _Decl(s.kind, d.span, s, env)
        if count > MAX_VARIABLES:
            self.errors.error("E0215", f"the spec declares {count:,} names; the limit is {MAX_VARIABLES:,}", over,
                              "this declaration goes past the limit",
                              "fewer, larger variables (vector[d]) describe the same model with fewer names")
            self.errors.raise_if_any({self.file: self.program.text})  # lowering them all would take minutes
        for fam, members in self.families.items():
            members.sort(key=lambda m: int(m[m.index("[") + 1:-1]))

    def _members(self, s: Statement, env) -> list[str]:
        d = s.decl
        if d.range is not None:
            lo, hi = self._int_range(d.range, env, d.span)
            return [f"{d.name}[{k}]" for k in range(lo, hi + 1)]
        return [self._decl_name(d, env)]

    def _type_size(self, t, env) -> tuple[str, int, Expr]:
        """(kind, size, symbolic size) of a type annotation."""
        if t.name == "scalar":
            if t.args:
                self.fail("E0209", "`scalar` takes no size", t.span)
            return "scalar", 1, _num(1)
        if t.name in ("vector", "image"):
            if len(t.args) != 1:
                self.fail("E0209", f"`{t.name}` takes one size: {t.name}[d]", t.span)
            node = t.args[0]
            size = math.prod(self.shape_of(node, env))
            if size <= 0:
                self.fail("E0206", f"size must be positive, got {size}", node.span)
            self.check_vector_size(size, node.span)
            sym: Expr = _sym(node.name) if isinstance(node, Name) and node.index is None else _num(size)
            return "vector", size, sym
        self.fail("E0209", f"unknown type `{t.name}`", t.span, "", did_you_mean(t.name, builtins.TYPES))

    def check_vector_size(self, size: int, span: Span | None) -> None:
        """E0215 for a vector longer than MAX_VECTOR_SIZE, with the memory one copy of it takes."""
        if size > MAX_VECTOR_SIZE:
            self.fail("E0215", f"a vector of size {size:,} needs {_gib(size * 8)} as float64 (one copy)", span,
                      f"more than the limit of {MAX_VECTOR_SIZE:,}",
                      f"the exact-MI engine keeps several such vectors; this machine has {_gib(physical_memory())}")

    def _lower_proto(self, s: Statement, env) -> None:
        kind, size, sym = self._type_size(s.type, env)
        if s.type.name == "matrix":
            self.fail("E0209", "a proto-latent is `scalar` or `vector[d]`", s.type.span)
        for m in self._members(s, env):
            self.protos[m] = ir.Proto(name=m, kind=kind, size=size, size_expr=sym, span=s.decl.span)
            self.sizes[m] = size

    # --------------------------------------------------------- templates and matrices

    def _lower_named_template(self, s: Statement, env) -> None:
        for m in self._members(s, env):
            if not isinstance(s.value, Call):
                if isinstance(s.value, Name) and self._kind(s.value, env)[0] == "template":
                    src = self.templates[self._ref(s.value, env)]
                    t = src.model_copy(update={"name": m, "span": s.decl.span})
                else:
                    self.fail("E0209", "a template is built by a constructor", s.value.span, "",
                              "ones(d), onehot(d, k), blob(img, row, col, sigma), image(\"f.png\"), "
                              "npy(\"f.npy\"), random(d, seed), normalize(T)")
            else:
                t = self.template_call(s.value, env, name=m, span=s.decl.span)
            if s.type is not None:
                _, size, _ = self._type_size(s.type, env)
                if size != t.size:
                    self.fail("E0203", f"template `{m}` has {t.size} entries but is declared with {size}",
                              s.value.span, f"{t.size} entries", "make the declared size match the constructor")
            self.templates[m] = t

    def _args(self, call: Call, params: tuple[str, ...], defaults: dict[str, object], what: str) -> dict:
        """Bind a call's positional and keyword arguments to parameter names."""
        out: dict[str, object] = {}
        pos = [a for a in call.args if not isinstance(a, (Kwarg, Binder))]
        if len(pos) > len(params):
            self.fail("E0209", f"{call.func}() takes {len(params)} positional argument"
                      f"{'s' * (len(params) != 1)}, got {len(pos)}", call.span, "",
                      f"{call.func}({', '.join(params)}{''.join(f', {k}=...' for k in defaults)})")
        for p, a in zip(params, pos):
            out[p] = a
        for a in call.args:
            if isinstance(a, Binder):
                self.fail("E0209", f"`{a.var} in ...` is only allowed in sum(...)", a.span)
            if isinstance(a, Kwarg):
                if a.name not in params and a.name not in defaults:
                    self.fail("E0209", f"{call.func}() has no argument `{a.name}`", a.span, "",
                              did_you_mean(a.name, list(params) + list(defaults)))
                if a.name in out:
                    self.fail("E0209", f"argument `{a.name}` given twice", a.span)
                out[a.name] = a.value
        missing = [p for p in params if p not in out]
        if missing:
            self.fail("E0209", f"{call.func}() is missing {', '.join(f'`{m}`' for m in missing)}", call.span, "",
                      f"{what}: {call.func}({', '.join(params)})")
        return out

    def _path(self, node, env) -> tuple[str, Path]:
        if not isinstance(node, String):
            self.fail("E0209", "expected a file name in double quotes", node.span, "", 'image("templates/mass.png")')
        if "\x00" in node.value:  # the OS refuses such names (ValueError from every path call)
            self.fail("E0208", "a file name cannot contain a NUL character", node.span)
        p = Path(node.value)
        full = p if p.is_absolute() else self.base_dir / p
        if not self.allow_paths:
            root = self.base_dir.resolve()
            try:
                real = full.resolve()  # follows links: a link inside pointing outside is outside
            except (OSError, RuntimeError):  # a link loop
                real = full
            if not real.is_relative_to(root):
                self.fail("E0216", f"file `{node.value}` is outside the spec's directory", node.span,
                          f"resolves to {real}", f"pass --allow-paths to allow files outside {root} "
                          "(allow_paths=True from Python)")
        if not full.is_file():
            self.fail("E0208", f"file `{node.value}` not found", node.span, f"looked for {full}",
                      "paths are relative to the spec file's directory")
        return node.value, full

    def template_call(self, call: Call, env, name: str | None = None, span: Span | None = None) -> ir.Template:
        """Resolve a template constructor call (named or inline)."""
        if call.func not in builtins.TEMPLATES:
            self.fail("E0209", f"`{call.func}` is not a template constructor", call.func_span, "",
                      did_you_mean(call.func, builtins.TEMPLATES))
        params, defaults = builtins.TEMPLATES[call.func]
        a = self._args(call, params, defaults, "template")
        kind = call.func
        args: dict[str, object] = {}
        path = None
        size_expr: Expr | None = None
        if kind in ("ones", "onehot", "random"):
            size = self.int_value(a["size"], env, "size")
            node = a["size"]
            if isinstance(node, Name) and node.index is None and node.name in self.dims:
                size_expr = _sym(node.name)
            if size <= 0 or size > MAX_VECTOR_SIZE:
                self.fail("E0215" if size > 0 else "E0206", f"template size {size:,} is out of range",
                          a["size"].span, "", f"sizes run from 1 to {MAX_VECTOR_SIZE:,}")
            if kind == "onehot":
                k = self.int_value(a["index"], env, "index")
                if not 1 <= k <= size:
                    self.fail("E0206", f"onehot index {k} is outside 1..{size}", a["index"].span, "",
                              "indices are 1-based")
                args["index"] = k
            if kind == "random":
                args["seed"] = self.seed_value(a["seed"], env)
        elif kind == "blob":
            shape = self.shape_of(a["shape"], env)
            if len(shape) not in (2, 3):
                self.fail("E0203", "blob() needs an image shape CxHxW or HxW", a["shape"].span)
            size = math.prod(shape)
            self.check_vector_size(size, a["shape"].span)
            args["shape"] = tuple(shape)
            for key in ("row", "col", "sigma"):
                args[key] = self.value(a[key], env, allow_params=False)
            if not 1e-100 <= args["sigma"] <= 1e100:  # sigma^2 must neither overflow nor vanish
                self.fail("E0206", f"blob sigma must be between 1e-100 and 1e100, got {args['sigma']:g}",
                          a["sigma"].span, "", "sigma is the blob's width in pixels, e.g. 3")
        elif kind == "image":
            given, full = self._path(a["file"], env)
            mode = a.get("mode")
            mode_value = mode.value if isinstance(mode, String) else "RGB"
            if mode_value not in ("RGB", "L"):
                self.fail("E0209", f"image mode must be \"RGB\" or \"L\", got {mode_value!r}", mode.span)
            try:
                from PIL import Image
                with Image.open(full) as img:
                    w, h = img.size
            except Exception as err:  # noqa: BLE001 - any decoder failure is a data error
                self.fail("E0208", f"cannot read image `{given}`: {err}", a["file"].span)
            channels = 3 if mode_value == "RGB" else 1
            size = channels * h * w
            args.update({"mode": mode_value, "shape": (channels, h, w), "file": given})
            path = str(full)
        elif kind == "npy":
            given, full = self._path(a["file"], env)
            shape = _npy_shape(full)
            if shape is None:
                self.fail("E0208", f"`{given}` is not a readable .npy array", a["file"].span, "",
                          "save with numpy.save (no pickled objects)")
            size = math.prod(shape)
            args["file"] = given
            path = str(full)
        else:  # normalize
            inner = a["template"]
            t = self.template_of(inner, env)
            size = t.size
            args["of"] = t.name
        if name is None:
            name = _canonical_call_text(call, self, env)
        return ir.Template(name=name, kind=kind, size=size, size_expr=size_expr or _num(size), args=args,
                           path=path, span=span or call.span)

    def template_of(self, node, env) -> ir.Template:
        """The template a node denotes: a named one or an inline constructor."""
        if isinstance(node, Call):
            t = self.template_call(node, env)
            self.templates.setdefault(t.name, t)
            return self.templates[t.name]
        if isinstance(node, Name):
            kind, ref = self._kind(node, env)
            if kind == "template":
                return self.templates[ref]
            self.fail("E0103", f"`{ref}` is a {kind}, not a template", node.span)
        self.fail("E0209", "expected a template", node.span)

    def _lower_matrix(self, s: Statement, env) -> None:
        for m in self._members(s, env):
            call = s.value
            if not isinstance(call, Call) or call.func not in builtins.MATRICES:
                self.fail("E0209", "a matrix is built by a constructor", s.value.span, "",
                          did_you_mean(getattr(call, "func", ""), builtins.MATRICES))
            params, defaults = builtins.MATRICES[call.func]
            a = self._args(call, params, defaults, "matrix")
            args: dict[str, object] = {}
            path = None
            if call.func in ("uniform", "normal"):
                rows = self.int_value(a["rows"], env, "size")
                cols = self.int_value(a["cols"], env, "size")
                args["seed"] = self.seed_value(a["seed"], env)
                for k, v in defaults.items():
                    args[k] = self.value(a[k], env, allow_params=False) if k in a else v
            elif call.func in ("orthogonal", "identity"):
                rows = cols = self.int_value(a["size"], env, "size")
                if call.func == "orthogonal":
                    args["seed"] = self.seed_value(a["seed"], env)
            else:
                given, full = self._path(a["file"], env)
                shape = _npy_shape(full)
                if shape is None or len(shape) != 2:
                    self.fail("E0208", f"`{given}` is not a 2-D .npy array", a["file"].span)
                rows, cols = shape
                args["file"] = given
                path = str(full)
            if rows <= 0 or cols <= 0:
                self.fail("E0206", f"matrix shape {rows}x{cols} must be positive", call.span)
            if rows * cols > MAX_MATRIX_ENTRIES:
                self.fail("E0215", f"matrix {rows}x{cols} needs {_gib(rows * cols * 8)} as float64", call.span, "",
                          f"at most {MAX_MATRIX_ENTRIES:,} entries ({_gib(MAX_MATRIX_ENTRIES * 8)}) are allowed; "
                          f"this machine has {_gib(physical_memory())}")
            if s.type is not None:
                if s.type.name != "matrix" or len(s.type.args) != 2:
                    self.fail("E0209", "a matrix type is matrix[rows, cols]", s.type.span)
                r = self.int_value(s.type.args[0], env, "size")
                c = self.int_value(s.type.args[1], env, "size")
                if (r, c) != (rows, cols):
                    self.fail("E0203", f"matrix `{m}` is {rows}x{cols} but declared {r}x{c}", call.span)
            self.matrices[m] = ir.Matrix(name=m, kind=call.func, rows=rows, cols=cols, args=args,
                                         path=path, span=s.decl.span)

    # --------------------------------------------------------- names in equations

    def _ref(self, node: Name, env) -> str:
        """The concrete name ``n[3]`` a (possibly indexed) name denotes."""
        if node.index is None:
            if node.name in self.families:
                self.fail("E0206", f"`{node.name}` is a family; pick a member like `{node.name}[1]`", node.span,
                          "", f"`{node.name}` has {len(self.families[node.name])} members")
            return node.name
        if node.name not in self.families:
            if node.name in self.names or node.name in env:
                self.fail("E0206", f"`{node.name}` is not a family and cannot be indexed", node.span)
            self._unknown(node.name, node.span, "a family")
        k = self.int_value(node.index, env, "index")
        ref = f"{node.name}[{k}]"
        if ref not in self.names:
            members = self.families[node.name]
            self.fail("E0206", f"index {k} is outside the family `{node.name}`", node.index.span,
                      f"`{node.name}` has {members[0]}..{members[-1]}" if members else "")
        return ref

    def _kind(self, node: Name, env) -> tuple[str, str]:
        """(kind, concrete name) of a name in an equation."""
        if node.index is None and node.name in env:
            return "loop", node.name
        if node.index is None and node.name in self.dims:
            return "dim", node.name
        if node.index is None and node.name in self.values:
            return "param", node.name
        ref = self._ref(node, env)
        if ref in self.names:
            kind = self.names[ref].kind
            made = {"template": self.templates, "matrix": self.matrices, "proto": self.protos, "param": self.values,
                    "dim": self.dims}.get(kind)
            if made is not None and ref not in made:
                self._failed_before(ref, node.span)
            return kind, ref
        self._unknown(node.name, node.span, "a variable")

    def _failed_before(self, ref: str, span: Span | None):
        """Skip a statement that uses ``ref`` whose own definition failed (its error is already recorded)."""
        if self.errors.diagnostics:
            raise _Skip
        self.fail("E0101", f"`{ref}` could not be defined", span)

    def _unknown(self, name: str, span: Span, what: str):
        key = (name, span, what)
        if key not in self._hints:  # a loop of 100,000 members repeats the same mistake: one search
            self._hints[key] = did_you_mean(name, list(self.names) + list(self.families))
        self.fail("E0101", f"unknown name `{name}`", span, f"expected {what}", self._hints[key])

    # --------------------------------------------------------- linearisation

    def linear(self, node, env) -> _Lin:
        """Linearise an equation's right-hand side into terms, or a constant."""
        if self._is_constant(node):
            return _Lin(const=self._const(node, env), span=node.span)
        return self._linear(node, env)

    def _is_constant(self, node) -> bool:
        """Whether a subtree uses only numbers, parameters, dims, loop variables and math functions."""
        hit = self._constant.get(id(node))
        if hit is None:
            hit = self._constant[id(node)] = _constant_tree(node, self)
        return hit

    def _const(self, node, env) -> Expr:
        """Fast path of :meth:`linear` for constant subtrees (checked by ``_is_constant``)."""
        self._tick(node)
        if isinstance(node, BinaryOp):
            return binop(node.op, self._const(node.left, env), self._const(node.right, env))
        if isinstance(node, Name):
            if node.name in env:
                return _num(env[node.name])
            if node.name in self.values or node.name in self.dims:
                return _sym(node.name)
            return self._linear(node, env).const  # an unknown name: reports E0101
        if isinstance(node, Number):
            return _num(node.value)
        if isinstance(node, Negate):
            return neg(self._const(node.operand, env))
        if isinstance(node, Call) and len(node.args) == ir.MATH_FUNCTIONS[node.func][0]:
            args = tuple(self._const(a, env) for a in node.args)
            if node.func == "abs" and isinstance(args[0], Num):
                return _num(abs(args[0].value))
            return Func(name=node.func, args=args)
        return self._linear(node, env).const  # reports the problem

    def _linear(self, node, env) -> _Lin:
        self._tick(node)
        span = getattr(node, "span", None)
        if isinstance(node, Number):
            return _Lin(const=_num(node.value), span=span)
        if isinstance(node, Name):
            kind, ref = self._kind(node, env)
            if kind == "loop":
                return _Lin(const=_num(float(env[ref])), span=span)
            if kind in ("dim", "param"):
                return _Lin(const=_sym(ref), span=span)
            if kind in VARIABLE_KINDS:
                return _Lin(terms=[_term(coef=_num(1), op="identity", sources=(ref,), span=span)], span=span)
            if kind == "template":
                return _Lin(template=(_num(1), ref), span=span)
            if kind == "matrix":
                return _Lin(matrix=(_num(1), ref), span=span)
            if kind == "flow":
                self.fail("E0103", f"`{ref}` is a modality (an output); equations use latents", span, "",
                          f"use the latent that flow `{ref}` reads")
            self.fail("E0103", f"`{ref}` is a {kind} and cannot appear in an equation", span)
        if isinstance(node, Negate):
            return _scale(self.linear(node.operand, env), _num(-1))
        if isinstance(node, BinaryOp):
            return self._linear_binop(node, env)
        if isinstance(node, Call):
            return self._linear_call(node, env)
        if isinstance(node, (Shape, String, ListLit)):
            self.fail("E0209", "this value cannot appear in an equation", span)
        self.fail("E0209", "unexpected expression", span)

    def _linear_binop(self, node: BinaryOp, env) -> _Lin:
        a, b = self.linear(node.left, env), self.linear(node.right, env)
        span = node.span
        if node.op in "+-":
            if a.const is not None and b.const is not None:
                return _Lin(const=binop(node.op, a.const, b.const), span=span)
            if a.terms is not None and b.terms is not None:
                rhs = b.terms if node.op == "+" else _scale(b, _num(-1)).terms
                return _Lin(terms=a.terms + rhs, span=span)
            if a.const is not None or b.const is not None:
                self.fail("E0201", "a constant added to a variable", span, "latents have mean zero",
                          "each term is coefficient * variable [* template]; drop the constant")
            self.fail("E0201", f"cannot add {a.describe()} and {b.describe()}", span, "",
                      "a template must multiply a scalar cause: rho * u * T")
        if node.op == "*":
            if a.const is not None:
                return _scale(b, a.const, span)
            if b.const is not None:
                return _scale(a, b.const, span)
            if a.template is not None and b.terms is not None:
                return self._spread(b, a.template, span)
            if b.template is not None and a.terms is not None:
                return self._spread(a, b.template, span)
            if a.matrix is not None or b.matrix is not None:
                self.fail("E0201", "a matrix is applied with `@`, not `*`", span, "", "M @ v")
            self.fail("E0201", "term is not linear in proto-latents", span,
                      f"multiplies {a.describe(self.names)} by {b.describe(self.names)}",
                      "each term is coefficient * variable [* template]")
        if node.op == "/":
            if b.const is None:
                self.fail("E0201", f"division by {b.describe()} is not linear", node.right.span, "",
                          "divide by constants only")
            return _scale(a, binop("/", _num(1), b.const), span)
        if node.op == "^":
            if a.const is not None and b.const is not None:
                return _Lin(const=binop("^", a.const, b.const), span=span)
            self.fail("E0201", "a power of a variable is not linear", span, "", "powers apply to constants")
        # matrix product
        if a.matrix is None:
            self.fail("E0201", f"`@` needs a matrix on its left, found {a.describe()}", node.left.span, "",
                      "declare one with `matrix M = uniform(rows, cols, seed)`")
        coef, mname = a.matrix
        if b.concat is not None:
            return _Lin(terms=[_term(coef=coef, op="matrix", sources=b.concat, matrix=mname, span=span)], span=span)
        if b.terms is not None and all(t.op == "identity" for t in b.terms):
            return _Lin(terms=[_term(coef=mul(coef, t.coef), op="matrix", sources=t.sources, matrix=mname,
                                       span=span) for t in b.terms], span=span)
        self.fail("E0201", f"`@` needs variables on its right, found {b.describe()}", node.right.span, "",
                  "M @ z or M @ concat(z1, z2)")

    def _spread(self, lin: _Lin, template: tuple[Expr, str], span) -> _Lin:
        coef, tname = template
        out = []
        for t in lin.terms:
            if t.op != "identity":
                self.fail("E0201", "a term is multiplied by two templates", span, "",
                          "a template spreads one scalar cause: rho * u * T")
            src = t.sources[0]
            size = self._size(src)
            if size not in (1, None):
                self.fail("E0201", f"template `{tname}` multiplies vector `{src}` (size {size})", span,
                          "a template spreads a scalar cause", "use a scalar proto-latent or latent: rho * u * T")
            out.append(_term(coef=mul(coef, t.coef), op="template", sources=t.sources, template=tname, span=span))
        return _Lin(terms=out, span=span)

    def _linear_call(self, node: Call, env) -> _Lin:
        f = node.func
        if f == "sum":
            if len(node.args) != 2 or not isinstance(node.args[0], Binder):
                self.fail("E0209", "sum() takes a range and a body", node.span, "", "sum(j in 1..N, rho * n[j])")
            binder, body = node.args
            if binder.var in env or binder.var in self.values or binder.var in self.dims:
                self.fail("E0102", f"`{binder.var}` hides another name", binder.span)
            lo, hi = self._int_range((binder.lo, binder.hi), env, binder.span)
            self.n_terms += hi - lo + 1
            if self.n_terms > MAX_TERMS:
                self.fail("E0215", f"the equations expand to more than {MAX_TERMS:,} terms", node.span,
                          f"this sum adds {hi - lo + 1:,} terms each time it is expanded",
                          "N latents that each sum over N sources have N^2 terms (about 50 us each to compile); "
                          "use fewer of them or sparser sums")
            parts = [self.linear(body, {**env, binder.var: k}) for k in range(lo, hi + 1)]
            if all(p.const is not None for p in parts):
                acc = parts[0].const
                for p in parts[1:]:
                    acc = binop("+", acc, p.const)
                return _Lin(const=acc, span=node.span)
            if all(p.terms is not None for p in parts):
                return _Lin(terms=[t for p in parts for t in p.terms], span=node.span)
            self.fail("E0201", "sum() mixes constants and variables", node.span)
        if f == "dot":
            if len(node.args) != 2:
                self.fail("E0209", "dot() takes a template and a vector variable", node.span, "", "dot(T, z)")
            t = self.template_of(node.args[0], env)
            v = self.linear(node.args[1], env)
            if v.terms is None or any(x.op != "identity" for x in v.terms):
                self.fail("E0201", "dot() needs a vector variable as its second argument", node.args[1].span)
            return _Lin(terms=[_with(x, op="dot", template=t.name) for x in v.terms],
                        span=node.span)
        if f == "concat":
            names = []
            for a in node.args:
                if not isinstance(a, Name):
                    self.fail("E0209", "concat() takes variable names", a.span)
                kind, ref = self._kind(a, env)
                if kind not in VARIABLE_KINDS:
                    self.fail("E0103", f"`{ref}` is a {kind}, not a variable", a.span)
                names.append(ref)
            if not names:
                self.fail("E0209", "concat() needs at least one variable", node.span)
            return _Lin(concat=tuple(names), span=node.span)
        if f in builtins.TEMPLATES:
            t = self.template_of(node, env)
            return _Lin(template=(_num(1), t.name), span=node.span)
        if f in ir.MATH_FUNCTIONS:
            arity = ir.MATH_FUNCTIONS[f][0]
            if len(node.args) != arity or any(isinstance(a, (Kwarg, Binder)) for a in node.args):
                self.fail("E0209", f"{f}() takes {arity} argument{'s' * (arity > 1)}", node.span)
            args = [self.linear(a, env) for a in node.args]
            for a, src in zip(args, node.args):
                if a.const is None:
                    self.fail("E0202", f"{f}() of {a.describe()} is not linear", src.span, "",
                              "functions apply to constants only")
            consts = [a.const for a in args]
            if f == "abs" and isinstance(consts[0], Num):
                return _Lin(const=_num(abs(consts[0].value)), span=node.span)
            return _Lin(const=Func(name=f, args=tuple(consts)), span=node.span)
        if f == "size":
            return _Lin(const=_num(self.value(node, env)), span=node.span)
        if f in builtins.FLOWS:
            self.fail("E0103", f"`{f}` is a flow; flows belong in `flow` statements", node.span)
        self.fail("E0209", f"unknown function `{f}`", node.func_span, "",
                  did_you_mean(f, builtins.all_function_names()))

    def _size(self, name: str) -> int | None:
        return self.sizes.get(name)

    # --------------------------------------------------------- equations

    def _lower_equation(self, node, env) -> list[ir.Term]:
        lin = self.linear(node, env)
        if lin.terms is None:
            self.fail("E0201", f"an equation must be a sum of terms, found {lin.describe()}", node.span, "",
                      "e.g. latent z = rho * u * T + n")
        return [t.to_ir() for t in lin.terms]

    def _lower_variables(self, eqs) -> dict[str, ir.Variable]:
        """Infer each latent's size from its terms (latents may use latents, order-free)."""
        state: dict[str, str] = {}

        def size_of_source(src: str) -> int | None:
            if src in self.protos:
                return self.protos[src].size
            if src in eqs:
                return infer(src)
            return None

        def infer(name: str) -> int | None:
            if state.get(name) == "done":
                return self.sizes.get(name)
            if state.get(name) == "busy":
                return None  # a cycle; reported by check
            state[name] = "busy"
            s, env, terms = eqs[name]
            size = None
            for t in terms:
                if t.op == "identity":
                    size = size_of_source(t.sources[0])
                elif t.op == "template":
                    size = self.templates[t.template].size
                elif t.op == "dot":
                    size = 1
                elif t.op == "matrix":
                    size = self.matrices[t.matrix].rows
                if size is not None:
                    break
            if size is not None:
                self.sizes[name] = size
            state[name] = "done"
            return size

        def sources(name: str) -> list[str]:
            return [src for t in eqs[name][2] for src in t.sources if src in eqs] if name in eqs else []

        for name in postorder(eqs, sources):  # sources first: infer() then never recurses deeply
            infer(name)
        out = {}
        for name, (s, env, terms) in eqs.items():
            size = infer(name)
            if s.type is not None:
                try:
                    kind, declared, _ = self._type_size(s.type, env)
                except _Skip:
                    continue
                if size is not None and size != declared:
                    self.errors.error("E0203", f"`{name}` is declared with size {declared} but its terms have "
                                      f"size {size}", s.type.span)
                size = declared
            # template/scalar checks that needed sizes
            for t in terms:
                if t.op == "template":
                    src_size = size_of_source(t.sources[0])
                    if src_size not in (None, 1):
                        self.errors.error("E0201", f"template `{t.template}` multiplies vector `{t.sources[0]}` "
                                          f"(size {src_size})", t.span, "a template spreads a scalar cause",
                                          "use a scalar proto-latent or latent: rho * u * T")
            out[name] = ir.Variable(name=name, role=s.kind, size=size or 0, terms=tuple(terms), span=s.decl.span)
        return out

    # --------------------------------------------------------- flows and labels

    def _lower_flow(self, s: Statement, env, variables) -> ir.Flow:
        name = self._decl_name(s.decl, env)
        steps: list[ir.FlowStep] = []
        node = s.value
        while True:
            if not isinstance(node, Call):
                self.fail("E0210", "a flow is written as a call of a flow on a latent", node.span, "",
                          "flow x1 = identity(z1)")
            plugins = builtins.plugin_flows() if node.func not in builtins.FLOWS else {}
            if node.func not in builtins.FLOWS and node.func not in plugins:
                known = list(builtins.FLOWS) + list(plugins)
                self.fail("E0210", f"unknown flow `{node.func}`", node.func_span, "",
                          f"{did_you_mean(node.func, known)} (flows: {', '.join(known)})")
            pos = [a for a in node.args if not isinstance(a, (Kwarg, Binder))]
            if len(pos) != 1:
                self.fail("E0209", f"{node.func}() takes the latent as its one positional argument", node.span,
                          "", f"{node.func}(z, key = value)")
            allowed = builtins.FLOWS.get(node.func)  # None for a plugin: it checks its own arguments
            args: dict[str, object] = {}
            for a in node.args:
                if isinstance(a, Binder):
                    self.fail("E0209", "`in` is only allowed in sum(...)", a.span)
                if isinstance(a, Kwarg):
                    if allowed is not None and a.name not in allowed:
                        self.fail("E0209", f"flow {node.func}() has no argument `{a.name}`", a.span, "",
                                  did_you_mean(a.name, allowed) if allowed else f"{node.func}() takes no arguments")
                    if a.name == "weights":
                        args[a.name] = str(self._path(a.value, env)[1])  # relative to the spec
                        problem = _weights_problem(Path(args[a.name]))
                        if problem:
                            self.fail("E0208", f"weights `{a.value.value}` {problem}", a.value.span, "",
                                      "convert them with safetensors.torch.save_file; pickles are refused "
                                      "unread because unpickling runs code")
                    elif isinstance(a.value, String):
                        args[a.name] = a.value.value
                    else:
                        v = self.value(a.value, env)
                        wants_int = allowed is None or isinstance(allowed[a.name], int)
                        args[a.name] = int(v) if wants_int and v.is_integer() else v
            steps.append(ir.FlowStep(name=node.func, args=args, span=node.span))
            node = pos[0]
            if isinstance(node, Name):
                break
        kind, latent = self._kind(node, env)
        if kind not in ("latent", "proto"):
            self.fail("E0103", f"a flow reads a latent; `{latent}` is a {kind}", node.span)
        if latent not in variables and latent not in self.protos:
            self._failed_before(latent, node.span)
        size = variables[latent].size if latent in variables else self.protos[latent].size
        if s.type is not None:
            if s.type.name not in ("image", "vector"):
                self.fail("E0209", "a modality's type is image[shape] or vector[d]", s.type.span)
            if len(s.type.args) != 1:
                self.fail("E0209", f"`{s.type.name}` takes one size", s.type.span)
            shape = tuple(self.shape_of(s.type.args[0], env))
        else:
            shape = (size,)
        if size and math.prod(shape) != size:
            self.fail("E0203", f"flow `{name}` outputs {'x'.join(map(str, shape))} = {math.prod(shape)} values "
                      f"but latent `{latent}` has {size}", s.type.span if s.type else s.span, "",
                      "flows are bijections: the output has the latent's size")
        return ir.Flow(name=name, latent=latent, steps=tuple(reversed(steps)), shape=shape, span=s.decl.span)

    def _lower_label(self, s: Statement, env) -> ir.Label:
        name = self._decl_name(s.decl, env)
        lin = self.linear(s.value, env)
        if lin.terms is None:
            self.fail("E0213", "a label thresholds a linear function of variables", s.value.span, "",
                      "label y = dot(w, z) > 0  or  label y = theta > 0")
        threshold = self.constant_expr(s.rhs, env)
        return ir.Label(name=name, terms=tuple(t.to_ir() for t in lin.terms), comparison=s.compare, threshold=threshold,
                        span=s.decl.span)

    # --------------------------------------------------------- queries, solve, sweep

    def resolve_var(self, v, env) -> str:
        if v.index is None and v.name in self.families:
            self.fail("E0211", f"`{v.name}` is a family; name its members", v.span, "",
                      f"e.g. {v.name}[1], or a list {v.name}[1], {v.name}[2]")
        node = Name(v.name, v.index, v.span)
        kind, ref = self._kind(node, env)
        if kind not in ("proto", "latent", "target", "flow", "label"):
            self.fail("E0211", f"`{ref}` is a {kind}; queries name variables", v.span, "",
                      "modalities, latents, targets, proto-latents or labels")
        return ref

    def _lower_query(self, q, unit: str, env, text: str | None = None) -> ir.Query:
        groups = tuple(tuple(self.resolve_var(v, env) for v in g) for g in q.groups)
        given = tuple(self.resolve_var(v, env) for v in q.given)
        if q.op == "I" and len(groups) != 2:
            self.fail("E0211", f"I(...) takes two groups separated by `;`, got {len(groups)}", q.span, "",
                      "use TC(a; b; c) for total correlation or II(a; b; c) for interaction information")
        if q.op == "II" and len(groups) != 3:
            self.fail("E0211", "II(...) takes three groups", q.span)
        if q.op in ("TC", "II") and given:
            self.fail("E0211", f"{q.op}(...) takes no `| given` part", q.span)
        if text is None:
            body = "; ".join(", ".join(g) for g in groups)
            if given:
                body += " | " + ", ".join(given)
            text = f"{q.op}({body})"
        return ir.Query(kind=q.op, groups=groups, given=given, unit=unit, text=text, span=q.span)

    def _lower_solve(self, s: Statement, env) -> ir.Solve:
        p = self.params.get(s.name)
        if p is None or p.derived is not None:
            self.fail("E0103" if p else "E0101", f"`{s.name}` is not a free parameter", s.name_span, "",
                      did_you_mean(s.name, [k for k, v in self.params.items() if v.derived is None]))
        lo = self.value(s.interval.lo, env, allow_params=False)
        hi = self.value(s.interval.hi, env, allow_params=False)
        if hi <= lo:
            self.fail("E0206", f"empty bracket: {lo:g} is not below {hi:g}", s.interval.span)
        bracket = ir.Interval(lower=lo, upper=hi, lower_open=s.interval.lo_open, upper_open=s.interval.hi_open)
        q = self._lower_query(s.query, s.unit, env)
        value = self.value(s.value, env, allow_params=False)
        if value < 0:
            self.fail("E0207", "mutual information is never negative", s.value.span)
        return ir.Solve(param=s.name, bracket=bracket, query=q, value=value, span=s.span)

    def _lower_sweep(self, s: Statement, env) -> ir.Sweep:
        p = self.params.get(s.name)
        if p is None or p.derived is not None:
            self.fail("E0103" if p else "E0101", f"`{s.name}` is not a free parameter", s.name_span, "",
                      did_you_mean(s.name, [k for k, v in self.params.items() if v.derived is None]))
        node = s.value
        if isinstance(node, ListLit):
            values = tuple(self.value(v, env, allow_params=False) for v in node.items)
        elif isinstance(node, Call) and node.func in ("linspace", "logspace"):
            if len(node.args) != 3:
                self.fail("E0209", f"{node.func}() takes (start, stop, count)", node.span)
            a = self.value(node.args[0], env, allow_params=False)
            b = self.value(node.args[1], env, allow_params=False)
            n = self.int_value(node.args[2], env, "count")
            if not 1 <= n <= MAX_VARIABLES:
                self.fail("E0206", f"a sweep has 1 to {MAX_VARIABLES:,} points, got {n}", node.args[2].span)
            if node.func == "linspace":
                values = tuple(a + (b - a) * i / (n - 1) if n > 1 else a for i in range(n))
            else:
                values = tuple(10 ** (a + (b - a) * i / (n - 1)) if n > 1 else 10 ** a for i in range(n))
        else:
            self.fail("E0209", "a sweep runs over linspace(a, b, n), logspace(a, b, n) or a list [v1, v2]",
                      node.span)
        if not values:
            self.fail("E0206", "a sweep needs at least one value", node.span)
        if p.bounds is not None:
            for v in values:
                if not p.bounds.contains(v):
                    self.fail("E0207", f"sweep value {v:g} is outside the bounds {p.bounds.text()} of `{s.name}`",
                              node.span)
        q = self._lower_query(s.report.query, s.report.unit, env)
        return ir.Sweep(param=s.name, values=values, query=q, span=s.span)


# ---------------------------------------------------------------- helpers


def _names_in(node) -> set[str]:
    """Plain names used by a syntax subtree (for dependency ordering)."""
    out: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Name):
            out.add(n.name)
            if n.index is not None:
                stack.append(n.index)
        elif isinstance(n, BinaryOp):
            stack += [n.left, n.right]
        elif isinstance(n, Negate):
            stack.append(n.operand)
        elif isinstance(n, Call):
            stack += [a.value if isinstance(a, Kwarg) else a for a in n.args if not isinstance(a, Binder)]
        elif isinstance(n, ListLit):
            stack += list(n.items)
    return out


def _constant_tree(node, low: "Lowerer") -> bool:
    """Whether a syntax subtree is a coefficient: numbers, params, dims, loop variables
    (any plain name that is not declared as something else) and math functions."""
    if isinstance(node, Number):
        return True
    if isinstance(node, Name):
        return node.index is None and node.name not in low.names or node.name in low.values or \
            node.name in low.dims
    if isinstance(node, Negate):
        return _constant_tree(node.operand, low)
    if isinstance(node, BinaryOp):
        return node.op != "@" and _constant_tree(node.left, low) and _constant_tree(node.right, low)
    if isinstance(node, Call):
        return node.func in ir.MATH_FUNCTIONS and all(
            not isinstance(a, (Kwarg, Binder)) and _constant_tree(a, low) for a in node.args)
    return False


def _parse_shape(text: str) -> tuple[int, ...] | None:
    parts = text.strip().split("x")
    if not all(p.isdigit() for p in parts):
        return None
    shape = tuple(int(p) for p in parts)
    return shape if all(s > 0 for s in shape) else None


_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib")


def _weights_problem(path: Path) -> str | None:
    """Why a weights file is not a safetensors file (read 9 bytes, never unpickled), or None."""
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        return f"is a pickled checkpoint ({path.suffix})"
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as err:
        return f"cannot be read: {err.strerror}"
    # safetensors: an 8-byte little-endian header length, then the JSON header's '{'
    return None if len(head) == 9 and head[8:9] == b"{" else "is not a safetensors file"


def _npy_shape(path: Path) -> tuple[int, ...] | None:
    """Shape of a .npy file from its header alone (no pickle, no data read)."""
    import numpy as np
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)  # the public readers (numpy 2.4 has no _read_array_header)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                return None
            shape, _, dtype = read[version](f)
    except Exception:  # noqa: BLE001 - any malformed header is a data error
        return None
    if dtype.hasobject:
        return None
    return tuple(int(s) for s in shape)


def _canonical_call_text(call: Call, low: Lowerer, env) -> str:
    """A stable name for an inline template: its call with arguments evaluated."""
    parts = []
    for a in call.args:
        if isinstance(a, Kwarg):
            parts.append(f"{a.name}={_arg_text(a.value, low, env)}")
        else:
            parts.append(_arg_text(a, low, env))
    return f"{call.func}({', '.join(parts)})"


def _arg_text(node, low: Lowerer, env) -> str:
    if isinstance(node, String):
        return f'"{node.value}"'
    if isinstance(node, Shape):
        return "x".join(map(str, node.dims))
    if isinstance(node, Name) and node.index is None and node.name in low.dims and low.dims[node.name].shape:
        return "x".join(map(str, low.dims[node.name].shape))
    if isinstance(node, Name) and low._kind(node, env)[0] == "template":  # noqa: SLF001
        return low._ref(node, env)  # noqa: SLF001
    if isinstance(node, Call):
        return _canonical_call_text(node, low, env)
    v = low.value(node, env, allow_params=False)
    return str(int(v)) if v.is_integer() else repr(v)


def resolve_query(model: ir.Model, text: str, file: str = "--query") -> ir.Query:
    """Resolve a query string against a lowered model (for ``--query``).

    The query's text is kept as given. Raises SpecError (E0001, E0101, E0211).
    """
    from mmmi_dsl.lang.check import check_query
    from mmmi_dsl.lang.parse import parse_query

    text = text.strip()
    q, unit = parse_query(text, file)
    low = Lowerer(Program(file=file, text=text), base_dir=Path.cwd())
    low.dims = dict(model.dims)
    low.values = {k: p.value for k, p in model.params.items()}
    low.protos, low.templates, low.matrices = dict(model.protos), dict(model.templates), dict(model.matrices)
    for fam, members in model.families.items():
        low.families[fam] = list(members)
        low.names[fam] = _Decl("family", Span(file=file, line=1, column=1, end_line=1, end_column=1))
    kinds = [("proto", model.protos), ("flow", model.flows), ("label", model.labels)]
    for kind, table in kinds:
        for name, node in table.items():
            low.names[name] = _Decl(kind, node.span)
    for name, v in model.variables.items():
        low.names[name] = _Decl(v.role, v.span)
    for table, kind in ((model.templates, "template"), (model.matrices, "matrix"), (model.params, "param"),
                        (model.dims, "dim")):
        for name, node in table.items():
            low.names.setdefault(name, _Decl(kind, node.span))
    query = low._try(low._lower_query, q, unit, {}, text)
    if query is not None:
        check_query(model, query, low.errors)
    low.errors.raise_if_any({file: text})
    return query


def lower(program: Program, overrides: dict[str, str] | None = None, base_dir: Path | None = None, *,
          allow_paths: bool = False) -> ir.Model:
    """Lower a parsed program to the IR.

    File paths (templates, matrices, flow weights) resolve against ``base_dir`` (default:
    the spec's directory); one outside it is an error (E0216) unless ``allow_paths``.

    Raises:
        SpecError: all the problems found, each with a span.
        UsageError: a bad ``--set``.
    """
    _NODES.clear()
    try:
        return Lowerer(program, overrides, base_dir, allow_paths).run()
    finally:
        _NODES.clear()
