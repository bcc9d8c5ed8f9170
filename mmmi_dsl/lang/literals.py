"""Number literals: one rule for a spec's numbers and for ``--set`` values (the language's syntax,
no ``1_0``, no ``inf``, no value that silently underflows to 0 or overflows)."""

from __future__ import annotations

import math
import re

#: Digits an integer literal may have (Python refuses to convert integers of over 4,300 digits).
MAX_LITERAL_DIGITS = 4_000
NUMBER_RANGE_HINT = "numbers run from about 2.2e-308 to 1.8e308 in magnitude (or exactly 0)"
_LITERAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def literal_value(text: str) -> tuple[float, str | None]:
    """A number written as the language writes it (``12``, ``0.5``, ``3e-4``; no ``_``, no ``inf``),
    as a double, and why it cannot be one: ``"too large"``, ``"too small"`` (0 or subnormal from a
    nonzero literal), ``"not a number"``; None when it is fine."""
    text = text.strip()
    if text.lower().lstrip("+-") in ("inf", "infinity", "nan"):
        return math.nan, "not a finite number"
    if not _LITERAL.fullmatch(text):
        return math.nan, "not a number"
    if len(text) > MAX_LITERAL_DIGITS and text.lstrip("+-").isdigit():  # at least 1e3999
        return math.inf, "too large for a double-precision float"
    try:
        value = float(text)
    except (OverflowError, ValueError):
        return math.inf, "too large for a double-precision float"
    mantissa = text.lower().split("e")[0]
    if not math.isfinite(value):
        return value, "too large for a double-precision float"
    if abs(value) < 2.2250738585072014e-308 and any(c in "123456789" for c in mantissa):
        return value, "too small for a double-precision float"
    return value, None
