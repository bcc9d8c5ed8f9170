"""Flags shared by several commands, checked once where they enter.

Domain code never sees a flag: these helpers turn strings from the command line into
plain values (or a :class:`~mmmi_dsl.errors.UsageError` naming the flag, exit 2).
"""

from __future__ import annotations

import argparse
import math

from mmmi_dsl import ir, load
from mmmi_dsl.errors import SpecError, UsageError


def at_least(value: int, minimum: int, flag: str) -> None:
    """A usage error unless an integer option is at least ``minimum``."""
    if value < minimum:
        raise UsageError(f"{flag} must be at least {minimum}")


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """``--set NAME=VALUE`` items as a dict (the values are checked by lowering, with positions)."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"--set {item!r}: expected NAME=VALUE, e.g. --set d=64")
        out[name.strip()] = value.strip()
    return out


def load_spec(args):
    """The checked IR of ``args.spec`` with its ``--set`` overrides and ``--allow-paths``."""
    return load(args.spec, parse_sets(args.set), allow_paths=args.allow_paths)


def add_queries(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--query", "-q", action="append", default=[], metavar='"I(a; b | c)"', help=help)


def add_spec_options(p: argparse.ArgumentParser) -> None:
    """The options of every command that reads a spec: --set and --allow-paths."""
    p.add_argument("--set", action="append", metavar="NAME=VALUE", default=[],
                   help="override a param or dim default (repeatable)")
    p.add_argument("--allow-paths", action="store_true",
                   help="let the spec read files outside its own directory (absolute paths, ../, links out)")


def check_device(name: str) -> str:
    """``--device``: ``cpu``, ``cuda`` or ``cuda:N``, available on this machine (exit 2 otherwise)."""
    from mmmi_dsl.backend import resolve_device

    try:
        resolve_device(name)
    except UsageError as err:
        raise UsageError(f"--{err}") from None
    return name


# ---------------------------------------------------------------- values, brackets, targets


def _number(text: str, what: str) -> float:
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
            a, b = _number(parts[0], what), _number(parts[1], what)
            c = _number(parts[2], what)
            if c != int(c) or not 1 <= c <= 100_000:
                raise UsageError(f"{what} {text!r}: the count must be an integer from 1 to 100000")
            n = int(c)
            xs = [a + (b - a) * i / (n - 1) if n > 1 else a for i in range(n)]
            return [10 ** x for x in xs] if name == "logspace" else xs
    items = [v for v in s.strip("[]").split(",")]
    if not s or any(not v.strip() for v in items):
        raise UsageError(f"{what} {text!r}: expected linspace(a, b, n), logspace(a, b, n) or v1,v2,...")
    return [_number(v, what) for v in items]


def parse_bracket(text: str, flag: str = "--bracket") -> tuple[float, float]:
    """``LO,HI`` (a closed interval) given to ``flag``."""
    parts = text.split(",")
    if len(parts) != 2:
        raise UsageError(f"{flag} {text!r}: expected LO,HI, e.g. {flag}=0.001,1")
    lo, hi = (_number(p, flag) for p in parts)
    return lo, hi


def parse_target(model: ir.Model, text: str, file: str = "--target") -> tuple[ir.Query, float, str, ir.Span]:
    """Parse ``<query> = <number> [bits|nats]``; returns (query, value, unit, span of the value).

    Errors are :class:`SpecError` with a caret into ``text`` (as for ``--query``).
    """
    from mmmi_dsl.mi.solve import resolve_with_unit, spec_error

    full = text.strip()
    sources = {file: full}

    def caret(start: int, end: int, message: str, label: str, hint: str) -> SpecError:
        span = ir.Span(file=file, line=1, column=start + 1, end_line=1, end_column=max(end, start + 1) + 1)
        return spec_error("E0001", message, span, label, hint, sources)

    head, eq, tail = full.partition("=")
    if not eq:
        resolve_with_unit(model, full, file)  # a caret at a bad query, else:
        raise caret(len(full), len(full), "missing `= VALUE` in --target", "expected `= VALUE` here",
                    'e.g. --target "I(x1; x2) = 0.5"  or  "I(x1; x2) = 1 bits"')
    try:
        query = resolve_with_unit(model, head, file)
    except SpecError as err:
        err.sources[file] = full  # the query is a prefix of the whole: its columns hold
        raise
    start = len(head) + 1 + (len(tail) - len(tail.lstrip()))
    words = tail.split()
    if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("bits", "nats")):
        raise caret(start, len(full), "expected a number and an optional unit after `=`",
                    "expected NUMBER [bits|nats]", 'e.g. --target "I(x1; x2) = 0.5 bits"')
    head_words = head.split()
    head_unit = head_words[-1] if head_words and head_words[-1] in ("bits", "nats") else None
    if head_unit and len(words) == 2 and words[1] != head_unit:
        raise caret(0, len(head.rstrip()), "two different units in --target", "",
                    "give the unit once, after the number")
    unit = words[1] if len(words) == 2 else (head_unit or "nats")
    try:
        value = float(words[0])
    except ValueError:
        raise caret(start, start + len(words[0]), f"`{words[0]}` is not a number", "expected a number",
                    'e.g. --target "I(x1; x2) = 0.5"') from None
    if not math.isfinite(value) or value < 0:
        raise caret(start, start + len(words[0]), f"a target MI is a finite number >= 0, got {words[0]}",
                    "not a valid MI", "")
    span = ir.Span(file=file, line=1, column=start + 1, end_line=1, end_column=len(full) + 1)
    return query.model_copy(update={"unit": unit}), value, unit, span
