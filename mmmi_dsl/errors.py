"""Diagnostics: one error root, a code per kind, rendered like a compiler's.

Every user mistake becomes a :class:`Diagnostic` with a span; stages collect them
and raise one :class:`SpecError` holding all of them, which the CLI renders as

    error[E0201]: term is not linear in proto-latents
      --> specs/two_views.mmi:23:13
       |
    23 | latent z1 = rho1 * u_c * n[1]
       |             ^^^^^^^^^^^^^^^^^ multiplies proto `u_c` by proto `n[1]`
       = help: each term is coefficient * proto [* template]
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Iterable

from mmmi_dsl.ir import Span

# The catalogue of error codes: code -> one-line title. Tests and docs read it.
CODES: dict[str, str] = {
    "E0001": "syntax error",
    "E0002": "file cannot be read",
    "E0101": "unknown name",
    "E0102": "duplicate definition",
    "E0103": "wrong kind of name",
    "E0104": "bad value for --set",
    "E0201": "term is not linear in proto-latents",
    "E0202": "coefficient is not a constant",
    "E0203": "dimension mismatch",
    "E0204": "target is not scalar",
    "E0205": "cycle in the causal graph",
    "E0206": "bad range or index",
    "E0207": "value out of bounds",
    "E0208": "missing file",
    "E0209": "bad call to a built-in",
    "E0210": "unknown flow, or one that cannot be built or inverted",
    "E0211": "bad information query",
    "E0212": "bad number",
    "E0213": "bad label",
    "E0214": "statement in the wrong place",
    "E0215": "resource limit exceeded",
    "E0216": "file outside the spec's directory",
    "E0220": "no exact answer: a non-Gaussian construction outside the closed forms",
}


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a spec.

    Args:
        code: an entry of :data:`CODES`.
        message: what is wrong, in a sentence.
        span: where; ``None`` for problems without a place (e.g. ``--set``).
        label: a short note printed under the caret.
        hint: how to fix it (printed as ``= help:``).
    """

    code: str
    message: str
    span: Span | None = None
    label: str = ""
    hint: str = ""

    def render(self, sources: dict[str, str] | None = None) -> str:
        """Render as text; ``sources`` maps file names to their text."""
        lines = [f"error[{self.code}]: {_shorten(self.message)}"]
        pad = "  "
        if self.span is not None:
            s = self.span
            lines.append(f"  --> {s.file}:{s.line}:{s.column}")
            text = (sources or {}).get(s.file)
            if text is None:
                text = _read_source(s.file)
            if text is not None:
                src_lines = [ln.rstrip("\r") for ln in text.split("\n")]  # lines as the lexer counts them
                if 1 <= s.line <= len(src_lines):
                    src = src_lines[s.line - 1].expandtabs(1)
                    gutter = len(str(s.line))
                    end = s.end_column if s.end_line == s.line else len(src) + 1
                    col = s.column
                    if len(src) > MAX_SHOWN:  # a huge line: show a window around the caret
                        start = max(0, min(col - 1 - MAX_SHOWN // 4, len(src) - MAX_SHOWN))
                        src = ("..." if start else "") + src[start:start + MAX_SHOWN] + \
                            ("..." if start + MAX_SHOWN < len(src) else "")
                        shift = start - (3 if start else 0)
                        col, end = col - shift, min(end - shift, len(src) + 1)
                    src = _printable(src)
                    width = max(1, end - col)
                    pad = " " * (gutter + 1)
                    lines.append(f"{pad}|")
                    lines.append(f"{s.line} | {src}")
                    caret = " " * (col - 1) + "^" * width
                    lines.append(f"{pad}| {caret}" + (f" {_shorten(self.label)}" if self.label else ""))
        elif self.label:
            lines.append(f"{pad}= note: {_shorten(self.label)}")
        if self.hint:
            lines.append(f"{pad}= help: {_shorten(self.hint)}")
        return "\n".join(lines)


class MmmicError(Exception):
    """Root of every error mmmic reports to a user."""

    exit_code = 1


class SpecError(MmmicError):
    """One or more diagnostics about a spec (exit code 1)."""

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = _dedupe(diagnostics)
        self.sources = dict(sources or {})
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.diagnostics)
        body = "\n\n".join(d.render(self.sources) for d in self.diagnostics[:MAX_RENDERED])
        tail = f"\n\n{n} error{'s' if n != 1 else ''} found" if n > 1 else ""
        if n > MAX_RENDERED:
            tail += f" ({n - MAX_RENDERED} more not shown)"
        return body + tail


class UsageError(MmmicError):
    """A mistake on the command line rather than in the spec (exit code 2)."""

    exit_code = 2


class OverrideError(UsageError):
    """A parameter or dim override that cannot be used: ``item`` (``"d=abc"``, or None) and why.

    Lowering raises it without naming a flag; the CLI renders it as ``--set d=abc: ...``.
    """

    def __init__(self, item: str | None, problem: str):
        self.item, self.problem = item, problem
        super().__init__(f"{item}: {problem}" if item else problem)


@dataclass
class Collector:
    """Collects diagnostics across a pass instead of stopping at the first."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, code: str, message: str, span: Span | None = None,
              label: str = "", hint: str = "") -> None:
        assert code in CODES, code
        self.diagnostics.append(Diagnostic(code, message, span, label, hint))

    def raise_if_any(self, sources: dict[str, str] | None = None) -> None:
        if self.diagnostics:
            raise SpecError(self.diagnostics, sources)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """A hint naming the closest known names, or listing a few if none is close."""
    known = sorted(k for k in set(known) if "(" not in k)  # inline templates are not names
    # difflib is quadratic in the name's length: a 60,000-character name took seconds a call
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5) if len(name) <= 64 else []
    if close:
        return "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"
    if not known:
        return "nothing of that kind is defined yet"
    shown = ", ".join(f"`{k}`" for k in known[:12])
    more = f" (and {len(known) - 12} more)" if len(known) > 12 else ""
    return f"known: {shown}{more}"


def _dedupe(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Drop repeats (a family expanded N times reports its error once), keep order."""
    seen: set[tuple] = set()
    out: list[Diagnostic] = []
    for d in diagnostics:
        key = (d.code, d.message, d.span and (d.span.file, d.span.line, d.span.column))
        if key not in seen:
            seen.add(key)
            out.append(d)
    out.sort(key=lambda d: (d.span is None, d.span and (d.span.file, d.span.line, d.span.column)))
    return out


#: Most diagnostics rendered at once (a fuzzed spec produced 1,410).
MAX_RENDERED = 50

#: Longest source line shown under an error; longer ones are cut around the caret.
MAX_SHOWN = 160


def _shorten(text: str) -> str:
    """Cut quoted names longer than 60 characters (a fuzzed 100,000-character name stays readable)."""
    return _printable(re.sub(r"`([^`\n]{60})[^`\n]+`", r"`\1...`", text))


def _printable(line: str) -> str:
    """The line with control characters (NUL, escape sequences) shown as U+FFFD, one column each."""
    return "".join(ch if ch.isprintable() or ch == " " else "\ufffd" for ch in line)


def _read_source(file: str) -> str | None:
    """The text of a spec file named in a span, for rendering (None if unreadable)."""
    try:
        with open(file, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError, ValueError):
        return None
