"""The syntax tree of a spec: plain dataclasses with spans, produced by :mod:`.parse`.

This stage knows only syntax; names are resolved and values evaluated by :mod:`.lower`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from mmmi_dsl.ir import Span


@dataclass(frozen=True)
class Number:
    value: float
    is_int: bool
    span: Span


@dataclass(frozen=True)
class Shape:
    dims: tuple[int, ...]
    span: Span


@dataclass(frozen=True)
class String:
    value: str
    span: Span


@dataclass(frozen=True)
class Name:
    name: str
    index: "Node | None"
    span: Span


@dataclass(frozen=True)
class Kwarg:
    name: str
    value: "Node"
    span: Span


@dataclass(frozen=True)
class Binder:
    var: str
    lo: "Node"
    hi: "Node"
    span: Span


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple["Node | Kwarg | Binder", ...]
    span: Span
    func_span: Span


@dataclass(frozen=True)
class BinaryOp:
    op: str  # + - * / ^ @
    left: "Node"
    right: "Node"
    span: Span


@dataclass(frozen=True)
class Negate:
    operand: "Node"
    span: Span


@dataclass(frozen=True)
class ListLit:
    items: tuple["Node", ...]
    span: Span


Node = Union[Number, Shape, String, Name, Call, BinaryOp, Negate, ListLit]


@dataclass(frozen=True)
class Decl:
    """``name``, ``name[index]`` (inside a loop) or ``name[lo..hi]`` (a family)."""

    name: str
    index: Node | None
    range: tuple[Node, Node] | None
    span: Span


@dataclass(frozen=True)
class TypeAnn:
    name: str
    args: tuple[Node, ...]
    span: Span


@dataclass(frozen=True)
class IntervalAst:
    lo: Node
    hi: Node
    lo_open: bool
    hi_open: bool
    span: Span


@dataclass(frozen=True)
class VarRef:
    name: str
    index: Node | None
    span: Span


@dataclass(frozen=True)
class QueryAst:
    op: str
    groups: tuple[tuple[VarRef, ...], ...]
    given: tuple[VarRef, ...]
    span: Span


@dataclass(frozen=True)
class Statement:
    """One statement; ``kind`` is the keyword (``param``, ``latent``, ...).

    Fields used per kind: ``name``/``decl``, ``value`` (right-hand side), ``type``,
    ``interval``, ``query``, ``unit``, ``compare``/``rhs`` (labels), ``body`` (for),
    ``decls`` (``gaussian``: the latents ``a, b : vector[2] ~ ...`` declares, each with its type);
    ``value``/``members`` (``student(nu): x, y``).
    """

    kind: str
    span: Span
    name: str = ""
    name_span: Span | None = None
    decl: Decl | None = None
    value: Node | None = None
    type: TypeAnn | None = None
    interval: IntervalAst | None = None
    query: QueryAst | None = None
    unit: str = "nats"
    compare: str = ""
    rhs: Node | None = None
    loop_range: tuple[Node, Node] | None = None
    body: tuple["Statement", ...] = ()
    report: "Statement | None" = None
    decls: tuple[tuple[Decl, "TypeAnn | None"], ...] = ()
    members: tuple[VarRef, ...] = ()  # student(nu): x, y


@dataclass(frozen=True)
class Program:
    file: str
    text: str
    statements: tuple[Statement, ...] = field(default_factory=tuple)
