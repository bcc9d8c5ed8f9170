"""Lowering's shared state: declared names, loops and constant evaluation.

:class:`Scope` is the base of the lowering passes (constructors, linearisation, statements,
each a module of this package): it holds what has been declared so far, evaluates constant
expressions (numbers, dims, parameters, loop variables) and records diagnostics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from mmmi_dsl import builtins, ir
from mmmi_dsl.errors import Collector, did_you_mean
from mmmi_dsl.ir import Expr, Span
from mmmi_dsl.lang.check import gib, physical_memory
from mmmi_dsl.lang.lower import limits
from mmmi_dsl.lang.lower.algebra import num_node, real_pow, sym_node
from mmmi_dsl.lang.syntax import (
    BinaryOp,
    Binder,
    Call,
    Decl,
    Kwarg,
    Name,
    Negate,
    Number,
    Program,
    Shape,
    Statement,
    String,
)

VARIABLE_KINDS = ("proto", "latent", "target")


class Skip(Exception):
    """Abandon the current statement after its diagnostic was recorded."""


@dataclass
class Declared:
    kind: str  # param dim proto template matrix latent target flow label family
    span: Span
    stmt: Statement | None = None
    env: dict[str, int] = field(default_factory=dict)


class Scope:
    """One lowering run's names and values; the passes below extend it."""

    def __init__(self, program: Program, overrides: dict[str, str] | None = None,
                 base_dir: Path | None = None, allow_paths: bool = False):
        self.program = program
        self.allow_paths = allow_paths  # files outside base_dir (absolute, ../, links out) only if True
        self.file = program.file
        self.overrides = dict(overrides or {})
        self.base_dir = base_dir if base_dir is not None else (
            Path(program.file).resolve().parent if program.file != "<string>" else Path.cwd())
        self.errors = Collector()
        self.names: dict[str, Declared] = {}
        self.families: dict[str, list[str]] = {}
        self.family_decl: dict[str, Span] = {}
        self.dims: dict[str, ir.Dim] = {}
        self.params: dict[str, ir.Param] = {}
        self.values: dict[str, float] = {}
        self.templates: dict[str, ir.Template] = {}
        self.files: dict[str, str] = {}  # each data file read (templates, matrices, weights): given name -> path
        self.matrices: dict[str, ir.Matrix] = {}
        self.protos: dict[str, ir.Proto] = {}
        self.uniform: dict[str, ir.UniformLaw] = {}  # proto n : uniform[lo, hi]
        self.sizes: dict[str, int] = {}
        self._constant: dict[int, bool] = {}
        self.member_cache: dict[tuple, tuple[str, ...] | None] = {}  # family sums: members by (family, index, range)
        self.n_terms = 0  # terms expanded by sum(...) so far (limits.MAX_TERMS)
        self.n_unrolled = 0  # of them, those unrolled one by one (limits.MAX_UNROLLED_TERMS)
        self.hidden: dict[str, tuple] = {}  # hidden scalar latents of rank-one terms: name -> (term, span)
        self.work = 0  # expression nodes evaluated so far (limits.MAX_WORK)
        self._hints: dict[tuple, str] = {}
        self._weights: dict = {}  # weights files inspected, by path (ten digits modalities read one)

    @classmethod
    def over_model(cls, model: ir.Model, program: Program):
        """A scope that sees every name of an already lowered ``model`` (to lower a query against it)."""
        low = cls(program, base_dir=Path.cwd())
        low.dims = dict(model.dims)
        low.values = {k: p.value for k, p in model.params.items()}
        low.protos, low.templates, low.matrices = dict(model.protos), dict(model.templates), dict(model.matrices)
        nowhere = Span(file=program.file, line=1, column=1, end_line=1, end_column=1)
        for fam, members in model.families.items():
            low.families[fam] = list(members)
            low.names[fam] = Declared("family", nowhere)
        for kind, table in (("proto", model.protos), ("flow", model.flows), ("label", model.labels)):
            for name, node in table.items():
                low.names[name] = Declared(kind, node.span)
        for name, v in model.variables.items():
            low.names[name] = Declared(v.role, v.span)
        for table, kind in ((model.templates, "template"), (model.matrices, "matrix"), (model.params, "param"),
                            (model.dims, "dim")):
            for name, node in table.items():
                low.names.setdefault(name, Declared(kind, node.span))
        return low

    def attempt(self, fn, *args):
        try:
            return fn(*args)
        except Skip:
            return None

    def fail(self, code: str, message: str, span: Span | None, label: str = "", hint: str = ""):
        self.errors.error(code, message, span, label, hint)
        raise Skip

    def _check_placement(self, stmts, depth: int = 0) -> None:
        """Parameters and dims only at the top level; loops nested at most ``limits.MAX_LOOP_DEPTH`` deep."""
        for s in stmts:
            if depth and s.kind in ("model", "param", "derived", "dim"):
                self.errors.error("E0214", f"`{s.kind}` statements cannot be inside a `for` loop",
                                  s.span, "", "declare parameters and dims once, at the top level")
            if s.kind == "for":
                if depth + 1 > limits.MAX_LOOP_DEPTH:
                    self.errors.error("E0215", f"`for` loops are nested more than {limits.MAX_LOOP_DEPTH} deep",
                                      s.span, "this loop is one too many",
                                      "a family `name[1..N]` or one loop over a longer range says the same")
                    self.errors.raise_if_any({self.file: self.program.text})  # expanding would recurse too deep
                self._check_placement(s.body, depth + 1)

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
                lo, hi = self._int_range(s.loop_range, env, s.span, allow_empty=True)
            except Skip:
                continue
            for k in range(lo, hi + 1):  # an empty range (3..2) repeats nothing
                yield from self._expand(s.body, {**env, s.name: k})

    def _int_range(self, rng, env, span: Span, allow_empty: bool = False) -> tuple[int, int]:
        """(lo, hi) of an inclusive range; ``allow_empty`` (loops, sums): hi = lo - 1 has no members."""
        lo = self.int_value(rng[0], env)
        hi = self.int_value(rng[1], env)
        if allow_empty and hi < lo:
            return lo, lo - 1
        if hi < lo:
            self.fail("E0206", f"empty range {lo}..{hi}", span, "the upper end is below the lower end",
                      "ranges are inclusive: 1..N has N members")
        if hi - lo + 1 > limits.MAX_VARIABLES:
            self.fail("E0215", f"range {lo}..{hi} has {hi - lo + 1:,} members", span, "",
                      f"at most {limits.MAX_VARIABLES:,} are allowed: each member is a variable of its own (a Python "
                      "object when compiled, a block of loadings in the MI engine); one vector[k] proto holds k "
                      "values under one name")
        return lo, hi

    def _tick(self, node) -> None:
        """Count one expression node evaluated; E0215 past limits.MAX_WORK (a loop times a huge expression)."""
        self.work += 1
        if self.work > limits.MAX_WORK:
            self.fail("E0215", f"expanding the loops evaluates more than {limits.MAX_WORK:,} expression nodes",
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
                    r = real_pow(a, b)
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

    def _decl_name(self, decl: Decl, env) -> str:
        if decl.index is None:
            return decl.name
        return f"{decl.name}[{self.int_value(decl.index, env, 'index')}]"

    def _declare(self, instances) -> None:
        """Register every declared name (order-free) before lowering any equation."""
        count = 0
        over: Span | None = None  # the declaration that went past limits.MAX_VARIABLES
        for s, env, d in ((s, env, d) for s, env in instances
                          for d in ((s.decl,) if s.decl is not None else (d for d, _ in s.decls))):
            try:
                if d.range is not None:
                    if env:
                        self.fail("E0214", "a family `name[lo..hi]` cannot be declared inside a loop", d.span,
                                  "", "inside a loop declare one member: `name[i]`")
                    lo, hi = self._int_range(d.range, env, d.span)
                    members = [f"{d.name}[{k}]" for k in range(lo, hi + 1)]
                else:
                    members = [self._decl_name(d, env)]
            except Skip:
                continue
            if d.index is not None or d.range is not None:
                fam = self.families.setdefault(d.name, [])
                if d.name in self.names and self.names[d.name].kind != "family":
                    self.errors.error("E0102", f"`{d.name}` is both a family and a single {self.names[d.name].kind}",
                                      d.span)
                    continue
                self.names.setdefault(d.name, Declared("family", d.span, s, env))
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
                if count > limits.MAX_VARIABLES and over is None:
                    over = d.span
                self.names[m] = Declared("latent" if s.kind == "gaussian" else s.kind, d.span, s, env)
        if count > limits.MAX_VARIABLES:
            self.errors.error("E0215", f"the spec declares {count:,} names; the limit is {limits.MAX_VARIABLES:,}",
                              over,
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
            return "scalar", 1, num_node(1)
        if t.name in ("vector", "image"):
            if len(t.args) != 1:
                self.fail("E0209", f"`{t.name}` takes one size: {t.name}[d]", t.span)
            node = t.args[0]
            size = math.prod(self.shape_of(node, env))
            if size <= 0:
                self.fail("E0206", f"size must be positive, got {size}", node.span)
            self.check_vector_size(size, node.span)
            sym: Expr = sym_node(node.name) if isinstance(node, Name) and node.index is None else num_node(size)
            return "vector", size, sym
        if t.name == "uniform":
            self.fail("E0209", "`uniform[lo, hi]` is the law of a proto-latent, not a type", t.span, "",
                      "declare proto n : uniform[lo, hi] and use n in the equation")
        self.fail("E0209", f"unknown type `{t.name}`", t.span, "", did_you_mean(t.name, builtins.TYPES))

    def check_vector_size(self, size: int, span: Span | None) -> None:
        """E0215 for a vector longer than limits.MAX_VECTOR_SIZE, with the memory one copy of it takes."""
        if size > limits.MAX_VECTOR_SIZE:
            self.fail("E0215", f"a vector of size {size:,} needs {gib(size * 8)} as float64 (one copy)", span,
                      f"more than the limit of {limits.MAX_VECTOR_SIZE:,}",
                      f"the exact-MI engine keeps several such vectors; this machine has {gib(physical_memory())}")

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
            raise Skip
        self.fail("E0101", f"`{ref}` could not be defined", span)

    def _unknown(self, name: str, span: Span, what: str):
        key = (name, span, what)
        if key not in self._hints:  # a loop of 100,000 members repeats the same mistake: one search
            self._hints[key] = did_you_mean(name, list(self.names) + list(self.families))
        self.fail("E0101", f"unknown name `{name}`", span, f"expected {what}", self._hints[key])

