"""Targets and value lists as text: ``"I(x1; x2) = 0.5 bits"``, ``"linspace(0.1, 1, 5)"``, ``"0.1,0.2"``.

Shared by ``solve``/``sweep`` on the command line and :class:`mmmi_dsl.spec.Spec` in Python; the
caller names what it parses (``what``, ``file``) so messages point at a flag only when one was given.
"""

from __future__ import annotations

import math

from mmmi_dsl import ir
from mmmi_dsl.errors import SpecError, UsageError
from mmmi_dsl.mi.solve import resolve_with_unit, spec_error


def number(text: str, what: str) -> float:
    try:
        v = float(text.strip())
    except ValueError:
        raise UsageError(f"{what}: {text.strip()!r} is not a number") from None
    if not math.isfinite(v):
        raise UsageError(f"{what}: {text.strip()!r} is not a finite number")
    return v


def parse_values(text: str, what: str = "--values") -> list[float]:
    """``linspace(a, b, n)``, ``logspace(a, b, n)`` (10^a .. 10^b) or ``v1,v2,...``."""
    s = text.strip()
    for name in ("linspace", "logspace"):
        if s.startswith(name):
            inner = s[len(name):].strip()
            if not (inner.startswith("(") and inner.endswith(")")):
                raise UsageError(f"{what} {text!r}: expected {name}(start, stop, count)")
            parts = inner[1:-1].split(",")
            if len(parts) != 3:
                raise UsageError(f"{what} {text!r}: {name}() takes (start, stop, count)")
            a, b = number(parts[0], what), number(parts[1], what)
            c = number(parts[2], what)
            if c != int(c) or not 1 <= c <= 100_000:
                raise UsageError(f"{what} {text!r}: the count must be an integer from 1 to 100000")
            n = int(c)
            xs = [a + (b - a) * i / (n - 1) if n > 1 else a for i in range(n)]
            return [10 ** x for x in xs] if name == "logspace" else xs
    items = [v for v in s.strip("[]").split(",")]
    if not s or any(not v.strip() for v in items):
        raise UsageError(f"{what} {text!r}: expected linspace(a, b, n), logspace(a, b, n) or v1,v2,...")
    return [number(v, what) for v in items]


def parse_target(model: ir.Model, text: str, file: str = "<target>") -> tuple[ir.Query, float, str, ir.Span]:
    """Parse ``<query> = <number> [bits|nats]``; returns (query, value, unit, span of the value).

    Errors are :class:`SpecError` with a caret into ``text`` (``file`` names it in the rendering).
    """
    full = text.strip()
    sources = {file: full}

    def caret(start: int, end: int, message: str, label: str, hint: str) -> SpecError:
        span = ir.Span(file=file, line=1, column=start + 1, end_line=1, end_column=max(end, start + 1) + 1)
        return spec_error("E0001", message, span, label, hint, sources)

    head, eq, tail = full.partition("=")
    if not eq:
        resolve_with_unit(model, full, file)  # a caret at a bad query, else:
        raise caret(len(full), len(full), "missing `= VALUE` in the target", "expected `= VALUE` here",
                    'e.g. "I(x1; x2) = 0.5"  or  "I(x1; x2) = 1 bits"')
    try:
        query = resolve_with_unit(model, head, file)
    except SpecError as err:
        err.sources[file] = full  # the query is a prefix of the whole: its columns hold
        raise
    start = len(head) + 1 + (len(tail) - len(tail.lstrip()))
    words = tail.split()
    if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("bits", "nats")):
        raise caret(start, len(full), "expected a number and an optional unit after `=`",
                    "expected NUMBER [bits|nats]", 'e.g. "I(x1; x2) = 0.5 bits"')
    head_words = head.split()
    head_unit = head_words[-1] if head_words and head_words[-1] in ("bits", "nats") else None
    if head_unit and len(words) == 2 and words[1] != head_unit:
        raise caret(0, len(head.rstrip()), "two different units in the target", "",
                    "give the unit once, after the number")
    unit = words[1] if len(words) == 2 else (head_unit or "nats")
    try:
        value = float(words[0])
    except ValueError:
        raise caret(start, start + len(words[0]), f"`{words[0]}` is not a number", "expected a number",
                    'e.g. "I(x1; x2) = 0.5"') from None
    if not math.isfinite(value) or value < 0:
        raise caret(start, start + len(words[0]), f"a target MI is a finite number >= 0, got {words[0]}",
                    "not a valid MI", "")
    span = ir.Span(file=file, line=1, column=start + 1, end_line=1, end_column=len(full) + 1)
    return query.model_copy(update={"unit": unit}), value, unit, span
