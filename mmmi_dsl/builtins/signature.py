"""How a built-in is declared: its name, typed arguments with defaults and bounds.

One :class:`Builtin` per template, matrix and flow constructor (``templates.py``,
``matrices.py``, ``flows.py`` beside this file). Lowering binds a call to it and checks each
argument with :meth:`Arg.problem` (a diagnostic with the argument's position); a flow built
from Python checks the same way (a ``ValueError``). Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

#: The default of a required argument.
REQUIRED = object()

#: Largest seed numpy's generators take from a spec (they refuse negative ones).
MAX_SEED = 2**63 - 1

#: Argument types: what a value of each must be.
TYPES = {
    "int": "an integer",
    "float": "a number",
    "str": "a string in double quotes",
    "file": "a file name in double quotes",
    "shape": "an image shape such as 3x32x32 or a dim holding one",
    "size": "a positive integer size or a dim",
    "template": "a template",
    "latent": "a latent",
    "list": "a list of numbers [a, b, ...]",
    "matrix": "a matrix: a name, a constructor or rows [[a, b], [c, d]]",
    "matrices": "matrices separated by commas",
}


@dataclass(frozen=True)
class Arg:
    """One argument: ``type`` (a key of :data:`TYPES`), ``default`` (or :data:`REQUIRED`),
    bounds ``low``/``high`` on its value (on ``|value|`` when ``magnitude``; ``high`` excluded when ``open_high``),
    ``choices`` for strings, ``nonzero``, and a one-line ``help`` used in hints and docs."""

    name: str
    type: str
    default: object = REQUIRED
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    nonzero: bool = False
    magnitude: bool = False
    open_high: bool = False
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def bounds_text(self) -> str:
        """The allowed values in words, e.g. ``1..10,000`` or ``one of "rk4", "euler"``."""
        if self.choices:
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        if self.low is None and self.high is None:
            return "nonzero" if self.nonzero else ""
        def fmt(v):
            return f"{int(v):,}" if self.type == "int" else f"{v:g}"
        what = "|value|" if self.magnitude else ""
        if self.low is not None and self.high is not None:
            text = (f"{what} in [{fmt(self.low)}, {fmt(self.high)})" if self.open_high
                    else f"{what} in {fmt(self.low)}..{fmt(self.high)}").strip()
        elif self.low is not None:
            text = f"{what} >= {fmt(self.low)}".strip()
        else:
            text = f"{what} <= {fmt(self.high)}".strip()
        return text + (", nonzero" if self.nonzero else "")

    def problem(self, value) -> str | None:
        """Why ``value`` is not allowed for this argument, or None if it is."""
        if self.type == "str":
            if not isinstance(value, str):
                return f"`{self.name}` must be a string in double quotes"
            if self.choices and value not in self.choices:
                return f"`{self.name}` must be {self.bounds_text()}, got \"{value}\""
            return None
        if self.type not in ("int", "float"):
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"`{self.name}` must be {TYPES[self.type]}, got {value!r}"
        v = float(value)
        if not math.isfinite(v):
            return f"`{self.name}` must be a finite number, got {value}"
        if self.type == "int" and not v.is_integer():
            return f"`{self.name}` must be an integer, got {value:g}"
        if self.nonzero and v == 0:
            return f"`{self.name}` must be nonzero"
        m = abs(v) if self.magnitude else v
        above = self.high is not None and (m >= self.high if self.open_high else m > self.high)
        if (self.low is not None and m < self.low) or above:
            shown = f"{int(v):,}" if self.type == "int" else f"{v:g}"
            return f"`{self.name}` must be {self.bounds_text()}, got {shown}"
        return None

    def text(self) -> str:
        """``name = default`` (or ``name``) as the docs and hints show it."""
        if self.required:
            return self.name
        d = self.default
        shown = f'"{d}"' if isinstance(d, str) else (f"{d:g}" if isinstance(d, float) else str(d))
        return f"{self.name} = {shown}"


@dataclass(frozen=True)
class Builtin:
    """A template, matrix or flow constructor, declared once.

    ``positional`` arguments come first in a call, in order; ``keywords`` are optional
    ``name = value`` arguments. For flows the latent is the one positional argument, and
    ``implementation`` (``"module:Class"``) names the torch class that builds it, imported only
    when a flow is built. ``realise`` (templates and matrices) computes the numbers (numpy).
    ``min_size``/``max_size`` bound the latent's size for flows and ``rule`` checks the rest (memory);
    ``weights`` names where a learned flow's weights come from (an argument name, or ``"shipped:NAME"``).
    ``standardize`` is what ``--standardize auto`` applies before the flow (``"whiten"`` for flows trained
    on N(0, I), ``"scale"`` for bounded or fast-growing ones, else ``"none"``); ``linear`` flows keep
    a Gaussian latent Gaussian.
    """

    name: str
    kind: str  # "template" | "matrix" | "flow" | "distribution"
    summary: str
    positional: tuple[Arg, ...] = ()
    keywords: tuple[Arg, ...] = ()
    implementation: str = ""
    realise: Callable | None = field(default=None, compare=False)
    min_size: int = 1
    max_size: int | None = None
    weights: str | None = None
    rule: Callable[[int, dict], str | None] | None = field(default=None, compare=False)
    standardize: str = "none"
    linear: bool = False
    expands: int = 1

    def __post_init__(self):
        if self.expands < 1:
            raise ValueError(f"{self.name}: a flow's output has at least its input's size (expands >= 1)")

    def size_problem(self, size: int, args: dict) -> str | None:
        """Why a latent of ``size`` cannot go through this flow with ``args`` (complete), or None."""
        if size < self.min_size:
            return f"{self.name} needs a latent of size {self.min_size} or more, got {size}"
        if self.max_size is not None and size > self.max_size:
            return (f"{self.name} builds a {size:,} x {size:,} matrix; latents up to size {self.max_size:,} "
                    "are allowed")
        return self.rule(size, args) if self.rule else None

    @property
    def args(self) -> tuple[Arg, ...]:
        return self.positional + self.keywords

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name), None)

    def defaults(self) -> dict[str, object]:
        """The keyword arguments' defaults (required ones left out)."""
        return {a.name: a.default for a in self.keywords if not a.required}

    def signature(self) -> str:
        """``name(a, b, key = default, ...)`` as docs and hints show it."""
        return f"{self.name}({', '.join(a.text() for a in self.args)})"

    def complete(self, given: dict[str, object]) -> dict[str, object]:
        """``given`` keyword arguments checked (names and values) and completed with defaults.

        Raises:
            ValueError: an unknown argument or a value out of bounds (the message names it).
        """
        known = {a.name: a for a in self.keywords}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"{self.name}: unknown argument(s) {', '.join(unknown)}; "
                             f"it takes {', '.join(known) or 'none'}")
        out = self.defaults()
        for name, value in given.items():
            problem = known[name].problem(value)
            if problem:
                raise ValueError(f"{self.name}: {problem}")
            out[name] = value
        missing = [a.name for a in self.keywords if a.required and a.name not in out]
        if missing:
            raise ValueError(f"{self.name}: missing {', '.join(missing)}")
        return out
