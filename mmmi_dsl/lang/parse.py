"""Stage 1, parse: .mmi text -> a syntax tree (:class:`Program`) with spans.

The grammar is ``grammar/mmi.lark`` (shipped inside the wheel as
``mmmi_dsl/grammar/mmi.lark``); :mod:`mmmi_dsl.lang.grammar` reads it and gives the parser, from
its shipped tables. This stage knows only syntax: names are not
resolved and families are not expanded; :mod:`mmmi_dsl.lang.lower` does that. The tree's
node classes live in :mod:`mmmi_dsl.lang.syntax`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from lark import Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.tree import Meta
from lark.visitors import Transformer_NonRecursive

from mmmi_dsl.errors import Collector, Diagnostic, SpecError
from mmmi_dsl.ir import LIMIT_KINDS, Span
from mmmi_dsl.lang.grammar import grammar_text
from mmmi_dsl.lang.grammar import parser as _parser
from mmmi_dsl.lang.literals import MAX_LITERAL_DIGITS, NUMBER_RANGE_HINT, literal_value
from mmmi_dsl.lang.syntax import (  # noqa: F401 - re-exported
    BinaryOp,
    Binder,
    Call,
    Decl,
    IntervalAst,
    Kwarg,
    ListLit,
    Name,
    Negate,
    Number,
    Program,
    QueryAst,
    Shape,
    Statement,
    String,
    TypeAnn,
    VarRef,
)

# ---------------------------------------------------------------- tree -> AST


def _span(file: str, meta_or_tok) -> Span:
    m = meta_or_tok
    return Span(file=file, line=m.line, column=m.column, end_line=m.end_line, end_column=m.end_column)


class _ToAst(Transformer_NonRecursive):
    """Lark tree -> AST, without recursion (a 100,000-term sum is fine)."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file
        self.bad_numbers: list[Diagnostic] = []

    def sp(self, meta) -> Span:
        return _span(self.file, meta)

    # --- expressions
    @v_args(meta=True)
    def number(self, meta, children):
        (tok,) = children
        value, problem = literal_value(str(tok))
        if problem:
            self.bad_numbers.append(Diagnostic("E0212", f"the number {_short(str(tok))} is {problem}", self.sp(meta),
                                               "", NUMBER_RANGE_HINT))
        return Number(value, tok.type == "INT", self.sp(meta))

    @v_args(meta=True)
    def shape(self, meta, children):
        text = str(children[0])
        if len(text) > MAX_LITERAL_DIGITS:
            self.bad_numbers.append(Diagnostic("E0212", f"the shape {_short(text)} has sizes too large to be sizes",
                                               self.sp(meta), "", NUMBER_RANGE_HINT))
            return Shape((1,), self.sp(meta))
        return Shape(tuple(int(p) for p in text.split("x")), self.sp(meta))

    @v_args(meta=True)
    def string(self, meta, children):
        return String(str(children[0])[1:-1], self.sp(meta))

    @v_args(meta=True)
    def name(self, meta, children):
        return Name(str(children[0]), children[1], self.sp(meta))

    @v_args(meta=True)
    def kwarg(self, meta, children):
        return Kwarg(str(children[0]), children[1], self.sp(meta))

    @v_args(meta=True)
    def binder(self, meta, children):
        lo, hi = children[1]
        return Binder(str(children[0]), lo, hi, self.sp(meta))

    @v_args(meta=True)
    def call(self, meta, children):
        tok = children[0]
        args = tuple(a for a in children[1:] if a is not None)
        return Call(str(tok), args, self.sp(meta), _span(self.file, tok))

    def _bin(op):  # noqa: N805 - helper building the binary-operator callbacks
        @v_args(meta=True)
        def f(self, meta, children):
            return BinaryOp(op, children[0], children[1], self.sp(meta))
        return f

    add = _bin("+")
    sub = _bin("-")
    mul = _bin("*")
    div = _bin("/")
    matmul = _bin("@")
    pow = _bin("^")

    @v_args(meta=True)
    def neg(self, meta, children):
        return Negate(children[0], self.sp(meta))

    def pos(self, children):
        return children[0]

    @v_args(meta=True)
    def list(self, meta, children):
        return ListLit(tuple(c for c in children if c is not None), self.sp(meta))

    # --- pieces of statements
    def range(self, children):
        return (children[0], children[1])

    @v_args(meta=True)
    def decl(self, meta, children):
        name, sub = str(children[0]), children[1]
        if isinstance(sub, tuple):
            return Decl(name, None, sub, self.sp(meta))
        return Decl(name, sub, None, self.sp(meta))

    @v_args(meta=True)
    def interval(self, meta, children):
        open_tok, lo, _comma, hi, close_tok = children
        return IntervalAst(lo, hi, str(open_tok) == "(", str(close_tok) == ")", self.sp(meta))

    @v_args(meta=True)
    def type(self, meta, children):
        return TypeAnn(str(children[0]), tuple(c for c in children[1:] if c is not None), self.sp(meta))

    @v_args(meta=True)
    def var(self, meta, children):
        return VarRef(str(children[0]), children[1], self.sp(meta))

    def varlist(self, children):
        return tuple(children)

    @v_args(meta=True)
    def query(self, meta, children):
        op, *lists, given = children
        return QueryAst(str(op), tuple(lists), given or (), self.sp(meta))

    def given(self, children):
        return children[0]

    # --- statements
    def _stmt(self, kind, meta, **kw):
        return Statement(kind=kind, span=self.sp(meta), **kw)

    @v_args(meta=True)
    def model_stmt(self, meta, c):
        return self._stmt("model", meta, name=str(c[0]), name_span=_span(self.file, c[0]))

    @v_args(meta=True)
    def param_stmt(self, meta, c):
        return self._stmt("param", meta, name=str(c[0]), name_span=_span(self.file, c[0]),
                          value=c[1], interval=c[2])

    @v_args(meta=True)
    def derived_stmt(self, meta, c):
        return self._stmt("derived", meta, name=str(c[0]), name_span=_span(self.file, c[0]), value=c[1])

    @v_args(meta=True)
    def dim_stmt(self, meta, c):
        return self._stmt("dim", meta, name=str(c[0]), name_span=_span(self.file, c[0]), value=c[1])

    @v_args(meta=True)
    def proto_stmt(self, meta, c):
        return self._stmt("proto", meta, decl=c[0], type=c[1])

    def _decl_value(kind):  # noqa: N805
        @v_args(meta=True)
        def f(self, meta, c):
            return self._stmt(kind, meta, decl=c[0], type=c[1], value=c[2])
        return f

    template_stmt = _decl_value("template")
    matrix_stmt = _decl_value("matrix")
    target_stmt = _decl_value("target")
    latent_stmt = _decl_value("latent")

    @v_args(meta=True)
    def gaussian_stmt(self, meta, c):
        return self._stmt("gaussian", meta, decls=tuple(c[:-1]), value=c[-1])

    def typed_decl(self, children):
        return (children[0], children[1])

    @v_args(meta=True)
    def flow_stmt(self, meta, c):
        return self._stmt("flow", meta, decl=c[0], value=c[1], type=c[2])

    @v_args(meta=True)
    def label_stmt(self, meta, c):
        return self._stmt("label", meta, decl=c[0], value=c[1], compare=str(c[2]), rhs=c[3])

    @v_args(meta=True)
    def report_stmt(self, meta, c):
        if c[1] is not None and c[0].op in LIMIT_KINDS:
            self.bad_numbers.append(unit_on_limit(c[0], c[1], self.file))  # collected like bad numbers
        return self._stmt("report", meta, query=c[0], unit=str(c[1]) if c[1] else "nats")

    @v_args(meta=True)
    def solve_stmt(self, meta, c):
        return self._stmt("solve", meta, name=str(c[0]), name_span=_span(self.file, c[0]),
                          interval=c[1], query=c[2], value=c[3], unit=str(c[4]) if c[4] else "nats")

    @v_args(meta=True)
    def sweep_stmt(self, meta, c):
        return self._stmt("sweep", meta, name=str(c[0]), name_span=_span(self.file, c[0]),
                          value=c[1], report=c[2])

    @v_args(meta=True)
    def student_stmt(self, meta, c):
        return self._stmt("student", meta, value=c[0], members=c[1])

    @v_args(meta=True)
    def for_stmt(self, meta, c):
        var, rng, rest = c[0], c[1], c[2:]
        body = rest[-1] if rest and isinstance(rest[-1], tuple) else tuple(r for r in rest if r is not None)
        return self._stmt("for", meta, name=str(var), name_span=_span(self.file, var),
                          loop_range=rng, body=tuple(body))

    def block(self, children):
        return tuple(c for c in children if c is not None)

    def start(self, children):
        return tuple(c for c in children if c is not None)


# ---------------------------------------------------------------- errors

_READABLE = {
    "_NL": "end of line", "NAME": "a name", "INT": "an integer", "FLOAT": "a number",
    "SHAPE": "a shape like 3x32x32", "STRING": 'a "string"', "LPAR": "`(`", "RPAR": "`)`",
    "LSQB": "`[`", "RSQB": "`]`", "LBRACE": "`{`", "RBRACE": "`}`", "COMMA": "`,`",
    "COLON": "`:`", "SEMICOLON": "`;`", "EQUAL": "`=`", "PLUS": "`+`", "MINUS": "`-`",
    "STAR": "`*`", "SLASH": "`/`", "CIRCUMFLEX": "`^`", "AT": "`@`", "VBAR": "`|`",
    "COMPARE": "a comparison (`>`, `<`)", "UNIT": "`bits` or `nats`", "QUERY_OP": "I(...)",
    "$END": "end of file", "__ANON_0": "`:=`", "__ANON_1": "`..`", "TILDE": "`~`",
}

STATEMENT_KEYWORDS = ("model", "param", "dim", "proto", "template", "matrix", "target",
                      "latent", "flow", "label", "report", "solve", "sweep", "for", "student")
RESERVED = STATEMENT_KEYWORDS + ("in", "such", "that", "bits", "nats")


def _readable(term: str) -> str:
    if term in _READABLE:
        return _READABLE[term]
    pattern = _parser().get_terminal(term).pattern if term in {t.name for t in _parser().terminals} else None
    if pattern is not None and pattern.type == "str":
        return f"`{pattern.value}`"
    return term.lower()


def _syntax_diagnostic(err: UnexpectedInput, file: str, text: str) -> Diagnostic:
    line = err.line if err.line and err.line > 0 else text.count("\n") + 1
    column = err.column if err.column and err.column > 0 else 1
    width = 1
    hint = ""
    if isinstance(err, UnexpectedToken):
        tok = err.token
        expected = sorted({_readable(t) for t in err.expected})
        if tok.type == "$END":
            what = "unexpected end of file"
        elif tok.type == "_NL":
            what = "unexpected end of line"
        else:
            what = f"unexpected `{tok}`"
            width = max(1, len(str(tok)))
        message = f"{what}; expected {_one_of(expected)}"
        if str(tok) in RESERVED:
            hint = f"`{tok}` is a reserved word; choose another name"
        elif tok.type == "NAME" and "`*`" in expected:
            hint = "put `*` between a coefficient and a variable (`rho * u`)"
        elif tok.type == "_NL" and "`)`" in expected:
            hint = "a `(` is not closed"
    elif isinstance(err, UnexpectedCharacters):
        lines = text.split("\n")  # lark counts lines by "\n" only (not \x0b, \x0c, \u2028 ...)
        src = lines[line - 1] if line <= len(lines) else ""
        ch = src[column - 1] if column <= len(src) else "?"
        message = f"unexpected character `{ch}`" if ch.isprintable() else f"unexpected character U+{ord(ch):04X}"
        allowed = sorted({_readable(t) for t in (err.allowed or ())})
        if allowed:
            message += f"; expected {_one_of(allowed)}"
        if ch == "|":
            hint = "`|` appears only inside I(...); absolute value is abs(x)"
        elif ch in "'":
            hint = 'strings use double quotes: "file.png"'
        elif ch == ".":
            hint = "ranges are written lo..hi and numbers 0.5"
    elif isinstance(err, UnexpectedEOF):
        message = "unexpected end of file"
    else:  # pragma: no cover - lark has no other kinds
        message = str(err)
    span = Span(file=file, line=line, column=column, end_line=line, end_column=column + width)
    return Diagnostic("E0001", message, span, "", hint or "see docs/language.md for the syntax")


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _one_of(items: list[str]) -> str:
    if len(items) > 8:
        items = items[:8] + ["..."]
    return items[0] if len(items) == 1 else "one of " + ", ".join(items)


# ---------------------------------------------------------------- entry points


#: Error recovery stops after parsing about this many characters in all: a 10 kB spec reports up
#: to 20 syntax errors, a 100 kB one 2, a 1 MB one 1 (Lark parses about 50-500 kB/s).
RECOVERY_CHARS = 200_000


#: Tokens a spec may have: parsing takes about 20 us a token (600,000: about 12 s, a spec of
#: 120,000 one-line statements); past it, E0215 before the parser starts.
MAX_TOKENS = 600_000
_TOKEN = re.compile(r"[A-Za-z_0-9.]+|[^\sA-Za-z_0-9.]|\n")


def _check_token_count(text: str, file: str) -> None:
    """E0215 at the first token past MAX_TOKENS (counted by one regex pass, far faster than the parse)."""
    if len(text) < MAX_TOKENS:  # fewer characters than the limit: fewer tokens too
        return
    for k, m in enumerate(_TOKEN.finditer(text)):
        if k == MAX_TOKENS:
            line = text.count("\n", 0, m.start()) + 1
            col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
            span = Span(file=file, line=line, column=col, end_line=line, end_column=col + len(m.group()))
            raise SpecError([Diagnostic("E0215", f"the spec has more than {MAX_TOKENS:,} tokens", span,
                                        "the limit is reached here",
                                        "families (`proto n[1..N] : vector[d]`), `for` loops and `sum(...)` "
                                        "write large models in a few lines")], {file: text})


def parse_text(text: str, file: str = "<string>", max_errors: int = 20) -> Program:
    """Parse .mmi source text.

    Syntax errors are collected: after each one the offending line is blanked and
    the text parsed again, so one run reports up to ``max_errors`` of them.

    Raises:
        SpecError: with one E0001 diagnostic per syntax error.
    """
    errors = Collector()
    _check_token_count(text, file)
    work = text if text.endswith("\n") else text + "\n"
    # each recovery parses the whole text again: bound the total to about RECOVERY_CHARS
    max_errors = max(1, min(max_errors, RECOVERY_CHARS // max(1, len(work))))
    for _ in range(max_errors):
        try:
            tree = _parser().parse(work, start="start")
        except UnexpectedInput as err:
            diag = _syntax_diagnostic(err, file, text)
            errors.diagnostics.append(diag)
            lines = work.split("\n")
            idx = diag.span.line - 1 if diag.span else 0
            if not (0 <= idx < len(lines)) or not lines[idx].strip():
                break
            lines[idx] = ""
            work = "\n".join(lines)
            continue
        if errors.diagnostics:
            break
        return Program(file=file, text=text, statements=_to_ast(tree, file, text))
    raise SpecError(errors.diagnostics, {file: text})


#: Deepest expression nesting accepted. Later stages (lowering, the IR, sympy) walk
#: expressions recursively; long sums are rebalanced first, so this bounds only
#: genuinely nested expressions (``-(-(-...))``, ``a^a^a...``, ``f(f(f(...)))``).
MAX_NESTING = 100

# A chain of more `+`/`-` terms than this is rebalanced into a tree of depth log2(n).
_CHAIN = 16


def _to_ast(tree: Tree, file: str, text: str):
    """Rebalance long sums, refuse too deep nesting, then build the AST (E0212 for bad numbers)."""
    _rebalance_sums(tree)
    deep = _too_deep(tree)
    if deep is not None:
        depth, meta = deep
        span = Span(file=file, line=meta.line, column=meta.column, end_line=meta.line, end_column=meta.column + 1)
        raise SpecError([Diagnostic(
            "E0215", f"this expression is nested more than {MAX_NESTING} levels deep", span, "",
            "split it into named parameters (`a := ...`) or latents; a long sum is fine, "
            "and sum(j in 1..N, ...) writes one compactly")], {file: text})
    ast = _ToAst(file)
    result = ast.transform(tree)
    if ast.bad_numbers:
        raise SpecError(ast.bad_numbers, {file: text})
    return result


def _meta_of(node) -> Meta:
    if isinstance(node, Tree):
        return node.meta
    m = Meta()
    m.line, m.column, m.end_line, m.end_column = node.line, node.column, node.end_line, node.end_column
    m.start_pos, m.end_pos, m.empty = node.start_pos, node.end_pos, False
    return m


def _joined_meta(first, last) -> Meta:
    a, b = _meta_of(first), _meta_of(last)
    m = Meta()
    m.line, m.column, m.start_pos = a.line, a.column, getattr(a, "start_pos", None)
    m.end_line, m.end_column, m.end_pos = b.end_line, b.end_column, getattr(b, "end_pos", None)
    m.empty = False
    return m


def _balanced(items: list) -> Tree:
    if len(items) == 1:
        return items[0]
    mid = len(items) // 2
    left, right = _balanced(items[:mid]), _balanced(items[mid:])
    return Tree("add", [left, right], meta=_joined_meta(left, right))


def _rebalance_sums(tree: Tree) -> None:
    """Turn each left-deep chain ``a + b - c + ...`` of more than ``_CHAIN`` terms into a
    balanced tree of ``add`` (``- c`` becomes ``+ (-c)``), in place and without recursion."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if not isinstance(node, Tree):
            continue
        if node.data in ("add", "sub"):
            ops, cur = [], node
            while isinstance(cur, Tree) and cur.data in ("add", "sub"):
                ops.append((cur.data, cur.children[1]))
                cur = cur.children[0]
            if len(ops) >= _CHAIN:
                items = [cur]
                for op, operand in reversed(ops):
                    items.append(operand if op == "add" else Tree("neg", [operand], meta=_meta_of(operand)))
                mid = len(items) // 2
                node.data, node.children = "add", [_balanced(items[:mid]), _balanced(items[mid:])]
                stack.extend(items)
                continue
        stack.extend(node.children)


def _too_deep(tree: Tree):
    """(depth, meta) of the first node nested deeper than ``MAX_NESTING`` expression levels, or None."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, Tree):
            continue
        if node.data in _NESTING:
            depth += 1
            if depth > MAX_NESTING:
                return depth, node.meta
        for child in node.children:
            stack.append((child, depth))
    return None


_NESTING = frozenset({"add", "sub", "mul", "div", "matmul", "pow", "neg", "call", "name", "list", "var"})


def unit_on_limit(query: QueryAst, unit_token, file: str) -> Diagnostic:
    """E0001 for ``MMSE(theta | x1) bits``: the limits are not information and take no unit."""
    return Diagnostic("E0001", f"{query.op}(...) takes no unit: it is not an information quantity",
                      _span(file, unit_token), f"`{unit_token}` here",
                      f"drop `{unit_token}`; {query.op} is in the units of its variable" if query.op != "ACC"
                      else f"drop `{unit_token}`; ACC is an accuracy, a number in [0.5, 1]")


def parse_query(text: str, file: str = "--query") -> tuple[QueryAst, str]:
    """Parse a query such as ``I(x1; x2 | theta) bits``; returns (query, unit).

    Raises:
        SpecError: E0001 with the position inside ``text``.
    """
    try:
        tree = _parser().parse(text.strip() + "\n", start="query_only")
    except UnexpectedInput as err:
        raise SpecError([_syntax_diagnostic(err, file, text.strip())], {file: text.strip()}) from None
    query = _to_ast(tree.children[0], file, text.strip())
    unit = str(tree.children[1]) if len(tree.children) > 1 and tree.children[1] is not None else "nats"
    if query.op in LIMIT_KINDS and len(tree.children) > 1 and tree.children[1] is not None:
        raise SpecError([unit_on_limit(query, tree.children[1], file)], {file: text.strip()})
    return query, unit


#: The largest spec file read (a spec of a million statements is about 30 MB).
MAX_SPEC_BYTES = 64 << 20


def _read_regular_file(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_SPEC_BYTES; a device, FIFO or folder is refused
    before anything is read (``/dev/zero`` never ends, a FIFO blocks), opened without blocking."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            mode = st.st_mode
            kind = ("a folder with no dataset manifest.json in it" if stat.S_ISDIR(mode)
                    else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
            raise OSError(errno.EINVAL, f"it is {kind}; a spec is a regular .mmi file")
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            data = f.read(MAX_SPEC_BYTES + 1)  # the size is checked on what is read: the file may grow
        if len(data) > MAX_SPEC_BYTES:
            raise OSError(errno.EFBIG, f"it is over {MAX_SPEC_BYTES >> 20} MiB, the largest spec read")
        return data
    finally:
        if fd >= 0:
            os.close(fd)


def parse_file(path: str | Path) -> Program:
    """Read and parse a spec file (UTF-8)."""
    path = Path(path)
    try:
        raw = _read_regular_file(path)
    except OSError as err:
        raise SpecError([Diagnostic("E0002", f"cannot read `{path}`: {err.strerror or err}",
                                    hint="check the path")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        span = Span(file=str(path), line=line, column=col, end_line=line, end_column=col + 1)
        raise SpecError([Diagnostic("E0002", "the file is not valid UTF-8", span,
                                    hint="save the spec as UTF-8 text")]) from None
    return parse_text(text, str(path))


__all__ = ["Program", "Statement", "parse_text", "parse_file", "grammar_text", "SpecError"]
