"""The causal IR: a frozen, fully resolved description of one linear-Gaussian model.

Families are expanded (``n[3]`` is a name of its own), sizes are integers, parameter
values are numbers, and coefficients stay symbolic (:data:`Expr` trees over parameter
and dim names) so later stages can evaluate them numerically or hand them to sympy.
Every node keeps the :class:`Span` of the source text it came from.

The model it describes (see docs/science.md):

    proto-latents u ~ N(0, I)  ->  latents/targets z = A u (linear, acyclic)
    ->  modalities x_i = f_i(z_i) (per-block bijections)  ->  labels y = 1[s > t]

This module imports nothing from the rest of the package.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_serializer


class Node(BaseModel):
    """Base of every IR node: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Span(Node):
    """A 1-based, end-exclusive source range."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int


# ---------------------------------------------------------------- expressions


class Num(Node):
    kind: Literal["num"] = "num"
    value: float


class Sym(Node):
    """A parameter or dim name."""

    kind: Literal["sym"] = "sym"
    name: str


class Neg(Node):
    kind: Literal["neg"] = "neg"
    operand: Expr


class BinOp(Node):
    kind: Literal["bin"] = "bin"
    op: Literal["+", "-", "*", "/", "^"]
    left: Expr
    right: Expr


class Func(Node):
    """A pure math function of constants: sqrt, exp, log, abs, sin, cos, ..."""

    kind: Literal["func"] = "func"
    name: str
    args: tuple[Expr, ...]


Expr = Annotated[Union[Num, Sym, Neg, BinOp, Func], Field(discriminator="kind")]

# Neg, BinOp and Func name Expr before it exists: their deferred builds (Node.model_config) resolve it on first use

MATH_FUNCTIONS: dict[str, tuple[int, object]] = {
    # name -> (arity, implementation)
    "sqrt": (1, math.sqrt),
    "exp": (1, math.exp),
    "log": (1, math.log),
    "abs": (1, abs),
    "sin": (1, math.sin),
    "cos": (1, math.cos),
    "tanh": (1, math.tanh),
    "min": (2, min),
    "max": (2, max),
}


def evaluate(expr: Expr, env: dict[str, float]) -> float:
    """Evaluate a coefficient with parameter and dim values from ``env``."""
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Sym):
        return env[expr.name]
    if isinstance(expr, Neg):
        return -evaluate(expr.operand, env)
    if isinstance(expr, BinOp):
        return apply_op(expr.op, evaluate(expr.left, env), evaluate(expr.right, env))
    if isinstance(expr, Func):
        return apply_func(expr.name, [evaluate(a, env) for a in expr.args])
    raise TypeError(f"not an expression: {expr!r}")


def apply_op(op: str, a: float, b: float) -> float:
    """``a op b`` for a coefficient's binary operators ``+ - * / ^``; ValueError where ``a ^ b`` is not real."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b
    r = a ** b
    if isinstance(r, complex):  # a negative base to a fractional power: no real value
        raise ValueError(f"{a:g} ^ {b:g} is not a real number")
    return r


def apply_func(name: str, args: list[float]) -> float:
    """A math function of a coefficient (``MATH_FUNCTIONS``) at these argument values."""
    return float(MATH_FUNCTIONS[name][1](*args))  # type: ignore[operator]


def symbols(expr: Expr) -> set[str]:
    """Names of the parameters and dims an expression uses."""
    if isinstance(expr, Sym):
        return {expr.name}
    if isinstance(expr, Neg):
        return symbols(expr.operand)
    if isinstance(expr, BinOp):
        return symbols(expr.left) | symbols(expr.right)
    if isinstance(expr, Func):
        return set().union(*(symbols(a) for a in expr.args)) if expr.args else set()
    return set()


_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "^": 4}


def to_text(expr: Expr, parent: int = 0) -> str:
    """Print an expression in .mmi syntax with minimal parentheses."""
    if isinstance(expr, Num):
        v = expr.value
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(expr, Sym):
        return expr.name
    if isinstance(expr, Neg):
        s = "-" + to_text(expr.operand, 3)
        return f"({s})" if parent >= 3 else s
    if isinstance(expr, Func):
        return f"{expr.name}({', '.join(to_text(a) for a in expr.args)})"
    prec = _PREC[expr.op]
    right_prec = prec + (0 if expr.op == "^" else 1)
    left_prec = prec + (1 if expr.op == "^" else 0)
    s = f"{to_text(expr.left, left_prec)} {expr.op} {to_text(expr.right, right_prec)}"
    if expr.op == "^":
        s = s.replace(" ^ ", "^")
    return f"({s})" if prec < parent else s


# ---------------------------------------------------------------- declarations


class Interval(Node):
    """Parameter bounds; ``lower_open`` means ``(`` rather than ``[``."""

    lower: float
    upper: float
    lower_open: bool = True
    upper_open: bool = True

    def contains(self, x: float) -> bool:
        lo = x > self.lower if self.lower_open else x >= self.lower
        hi = x < self.upper if self.upper_open else x <= self.upper
        return lo and hi

    def text(self) -> str:
        return f"{'(' if self.lower_open else '['}{self.lower:g}, {self.upper:g}{')' if self.upper_open else ']'}"


class Param(Node):
    """A symbolic coefficient with a numeric value.

    ``derived`` holds the right-hand side of ``name := expr``; ``value`` is then its
    value at the other parameters' values.
    """

    name: str
    value: float
    bounds: Interval | None = None
    derived: Expr | None = None
    span: Span | None = None


class Dim(Node):
    """An integer size; ``shape`` is set for image shapes such as ``3x32x32``."""

    name: str
    value: int
    shape: tuple[int, ...] | None = None
    span: Span | None = None


class Proto(Node):
    """An independent standard-normal proto-latent, scalar or ``vector[size]``.

    ``size_expr`` keeps the size symbolically (e.g. ``Sym('d')``) for formulas.
    """

    name: str
    kind: Literal["scalar", "vector"]
    size: int
    size_expr: Expr = Field(default_factory=lambda: Num(value=1))  # made on use: no validator built at import
    span: Span | None = None


TemplateKind = Literal["ones", "onehot", "blob", "image", "npy", "random", "normalize"]


class Template(Node):
    """A fixed vector in R^size spreading a scalar cause over a vector latent.

    ``args`` holds the constructor's resolved arguments, e.g. ``{"index": 3}`` for
    ``onehot``, ``{"shape": [3, 32, 32], "row": 16, "col": 16, "sigma": 4}`` for
    ``blob``, ``{"seed": 1}`` for ``random``, ``{"of": "T"}`` for ``normalize``;
    ``path`` is the resolved file of ``image``/``npy`` (relative paths in the spec
    are relative to the spec's directory).
    """

    name: str
    kind: TemplateKind
    size: int
    size_expr: Expr = Field(default_factory=lambda: Num(value=1))  # made on use: no validator built at import
    args: dict[str, int | float | str | tuple[int, ...]] = Field(default_factory=dict)
    path: str | None = None
    span: Span | None = None


MatrixKind = Literal["uniform", "normal", "orthogonal", "npy", "identity", "equicorrelation", "diagonal", "values"]


class Matrix(Node):
    """A fixed (rows x cols) matrix for general linear maps ``M @ v``.

    Kind ``values`` keeps its entries in ``args["values"]`` (rows of floats): a matrix written as rows,
    ``blockdiag(...)``, or the factor F of a covariance block (``latent a, b ~ gaussian(cov = S)``).
    """

    name: str
    kind: MatrixKind
    rows: int
    cols: int
    args: dict[str, int | float | str | tuple[float, ...] | tuple[tuple[float, ...], ...]] = Field(
        default_factory=dict)
    path: str | None = None
    span: Span | None = None


class Term(Node):
    """One additive term of a structural equation.

    ``op`` says how the coefficient-scaled sources enter the left-hand side:

    - ``identity``: ``coef * v`` with v the same size as the left-hand side;
    - ``template``: ``coef * s * T`` with s scalar and T a template (a column);
    - ``dot``: ``coef * dot(T, v)``, a scalar from a vector v;
    - ``matrix``: ``coef * M @ concat(v1, v2, ...)``.

    A *family term* (``index`` set; ops ``identity`` and ``template``) stands for the terms
    of a long ``sum(j in lo..hi, c(j) * n[j])``, one per member: member ``m`` reads
    ``sources[m]`` with coefficient ``coef`` at ``index = first + m`` (``coef`` may use
    ``Sym(index)``). Its members are what :func:`mmmi_dsl.lang.coef.unroll` gives. It keeps
    N^2 terms of N latents as N nodes; the JSON leaves ``index`` and ``first`` out when unset.
    """

    coef: Expr
    op: Literal["identity", "template", "dot", "matrix"]
    sources: tuple[str, ...]
    template: str | None = None
    matrix: str | None = None
    span: Span | None = None
    index: str | None = None
    first: int = 0

    @model_serializer(mode="wrap")
    def _omit_unset_index(self, handler):
        """``index`` and ``first`` are left out of the JSON of an ordinary term: its IR is unchanged."""
        out = handler(self)
        if out.get("index", 0) is None:
            del out["index"]
            out.pop("first", None)
        return out

    @property
    def count(self) -> int:
        """How many terms this stands for: one, or a family term's members."""
        return len(self.sources) if self.index is not None else 1


class Variable(Node):
    """A latent (``z = sum of terms``) or the scalar ``target``."""

    name: str
    role: Literal["latent", "target"]
    size: int
    terms: tuple[Term, ...]
    span: Span | None = None


class FlowStep(Node):
    """One invertible map of a flow chain, applied innermost first."""

    name: str
    args: dict[str, float | int | str] = Field(default_factory=dict)
    span: Span | None = None


class Flow(Node):
    """A modality ``x = f(z)``: a chain of per-sample bijections of one latent."""

    name: str
    latent: str
    steps: tuple[FlowStep, ...]
    shape: tuple[int, ...]
    span: Span | None = None


class Label(Node):
    """A binary label ``y = 1[sum(terms) > threshold]`` (``<`` flips the sign)."""

    name: str
    terms: tuple[Term, ...]
    comparison: Literal[">", ">=", "<", "<="]
    threshold: Expr
    span: Span | None = None


# ---------------------------------------------------------------- non-Gaussian laws


class UniformLaw(Node):
    """A scalar proto-latent uniform on ``[low, high]`` instead of N(0, 1) (``proto x : uniform[lo, hi]``)."""

    low: Expr
    high: Expr
    span: Span | None = None


class StudentGroup(Node):
    """Variables made jointly multivariate Student-t (``student(nu): x, y``).

    Each member is its structural equation's Gaussian value G divided by ``sqrt(W / nu)``,
    with one ``W ~ chi2(nu)`` per sample shared by the whole group (drawn independently of
    everything else). Variables computed from members carry the same scale.
    """

    df: Expr
    members: tuple[str, ...]
    span: Span | None = None


# ---------------------------------------------------------------- queries


#: Query kinds that are exact limits of prediction, not information (no unit; :mod:`mmmi_dsl.mi.limits`).
LIMIT_KINDS = ("MMSE", "RMSE", "ACC")


class Query(Node):
    """An information quantity over named variables.

    ``kind``: ``I`` (two groups, optional ``given``), ``TC`` (total correlation of
    two or more groups), ``II`` (interaction information of three groups); the exact
    limits ``MMSE``, ``RMSE`` (one scalar group) and ``ACC`` (one label), whose ``unit``
    does not apply (:mod:`mmmi_dsl.mi.limits`).
    """

    kind: Literal["I", "TC", "II", "MMSE", "RMSE", "ACC"]
    groups: tuple[tuple[str, ...], ...]
    given: tuple[str, ...] = ()
    unit: Literal["nats", "bits"] = "nats"
    text: str
    span: Span | None = None


class Solve(Node):
    """Find ``param`` in ``bracket`` such that ``query`` equals ``value`` (in ``query.unit``)."""

    param: str
    bracket: Interval
    query: Query
    value: float
    span: Span | None = None


class Sweep(Node):
    """Evaluate ``query`` at each value of ``param``."""

    param: str
    values: tuple[float, ...]
    query: Query
    span: Span | None = None


# ---------------------------------------------------------------- the model


class Model(Node):
    """A whole resolved spec."""

    name: str
    source_file: str = "<string>"
    params: dict[str, Param] = Field(default_factory=dict)
    dims: dict[str, Dim] = Field(default_factory=dict)
    protos: dict[str, Proto] = Field(default_factory=dict)
    templates: dict[str, Template] = Field(default_factory=dict)
    matrices: dict[str, Matrix] = Field(default_factory=dict)
    variables: dict[str, Variable] = Field(default_factory=dict)
    flows: dict[str, Flow] = Field(default_factory=dict)
    labels: dict[str, Label] = Field(default_factory=dict)
    reports: tuple[Query, ...] = ()
    solves: tuple[Solve, ...] = ()
    sweeps: tuple[Sweep, ...] = ()
    families: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    uniform: dict[str, UniformLaw] = Field(default_factory=dict)
    students: tuple[StudentGroup, ...] = ()
    files: dict[str, str] = Field(default_factory=dict)  # each data file read: name as the spec gives it -> path

    @model_serializer(mode="wrap")
    def _omit_empty_extras(self, handler):
        """``uniform``, ``students`` and ``files`` are left out of the JSON when empty: a Gaussian model that
        reads no file has the IR it had before they existed."""
        out = handler(self)
        for key in ("uniform", "students", "files"):
            if not out.get(key, True):
                del out[key]
        return out

    @property
    def gaussian(self) -> bool:
        """Every proto-latent standard normal and no Student group: the linear-Gaussian model alone."""
        return not self.uniform and not self.students

    @property
    def targets(self) -> list[str]:
        return [v.name for v in self.variables.values() if v.role == "target"]

    @property
    def modalities(self) -> list[str]:
        return list(self.flows)

    def env(self) -> dict[str, float]:
        """Values of every parameter and dim, for :func:`evaluate`."""
        out: dict[str, float] = {d.name: float(d.value) for d in self.dims.values()}
        out.update({p.name: p.value for p in self.params.values()})
        return out

    def with_params(self, values: dict[str, float]) -> "Model":
        """A copy with some free parameters set; derived ones re-evaluated (bounds not checked).

        Raises:
            KeyError: an unknown parameter. ValueError: a derived one, or a non-finite result.
        """
        params = dict(self.params)
        for name, value in values.items():
            p = params[name]
            if p.derived is not None:
                raise ValueError(f"`{name}` is derived; set the parameters it uses")
            params[name] = p.model_copy(update={"value": float(value)})
        env = {d.name: float(d.value) for d in self.dims.values()}
        env.update({k: p.value for k, p in params.items() if p.derived is None})
        pending = [k for k, p in params.items() if p.derived is not None]
        while pending:
            ready = [k for k in pending if symbols(params[k].derived) <= env.keys()]
            if not ready:
                raise ValueError(f"derived parameters depend on each other: {', '.join(pending)}")
            for k in ready:
                value = evaluate(params[k].derived, env)
                if not math.isfinite(value):
                    raise ValueError(f"`{k}` is not finite at these parameter values")
                env[k] = value
                params[k] = params[k].model_copy(update={"value": value})
                pending.remove(k)
        return self.model_copy(update={"params": params})

    def size_of(self, name: str) -> int:
        """Size of any variable: proto, latent, target, modality (its latent) or label (1)."""
        if name in self.protos:
            return self.protos[name].size
        if name in self.variables:
            return self.variables[name].size
        if name in self.flows:
            return self.size_of(self.flows[name].latent)  # a latent's, or a proto-latent's
        if name in self.labels:
            return 1
        raise KeyError(name)
