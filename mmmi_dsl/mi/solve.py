"""Ask for a dataset by its MI: solve a parameter for a target MI, and sweep tables.

``solve`` finds the value of one free parameter at which an information quantity
takes a given exact value. The MI is evaluated exactly (:class:`Analysis` on
``model.with_params``, no re-parsing) and the root is found by
``scipy.optimize.brentq`` to full double precision, after a grid of the MI across the
bracket has shown that it is strictly monotone there and that the target is
reachable. ``sweep`` tabulates queries over parameter values; ``sweep_targets``
solves the parameter for each of several target MIs. ``write_table`` writes a
table as CSV or JSON.

Errors about the model's answer (out of reach, not monotone, not finite) are
:class:`SpecError` (exit 1), with the span of the request when there is one (the
``solve`` statement, or ``--target``); errors in naming the parameter or the bracket
are :class:`UsageError` (exit 2).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from mmmi_dsl import ir
from mmmi_dsl.mi.analysis import LN2, Analysis, Result
from mmmi_dsl.errors import Diagnostic, SpecError, UsageError, did_you_mean

GRID_POINTS = 25        # MI samples across the bracket for the monotonicity/reach check
TOLERANCE = 1e-9        # |MI(value) - target| in the requested unit, relative above 1
_EPS = 2.220446049250313e-16

__all__ = ["SolveResult", "SweepRow", "solve", "solve_all", "sweep", "sweep_targets", "table_csv", "table_json",
           "table_text", "write_table", "parse_values", "parse_bracket", "parse_target", "GRID_POINTS", "TOLERANCE"]


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class SolveResult:
    """One solved parameter.

    ``value`` is the parameter value; ``achieved`` and ``target`` are in nats
    (``achieved_in``/``target_in`` convert); ``bracket`` is the closed interval the
    root was searched in (open ends already moved one ulp inside).
    """

    model: str
    param: str
    value: float
    query: str
    unit: str
    target: float
    achieved: float
    bracket: tuple[float, float]
    evaluations: int
    interval: str = ""

    def target_in(self, unit: str | None = None) -> float:
        return _to_unit(self.target, unit or self.unit)

    def achieved_in(self, unit: str | None = None) -> float:
        return _to_unit(self.achieved, unit or self.unit)

    @property
    def error(self) -> float:
        """|achieved - target| in the requested unit."""
        return abs(self.achieved_in() - self.target_in())

    def to_json(self) -> dict:
        return {"param": self.param, "value": self.value, "query": self.query, "unit": self.unit,
                "target": self.target_in(), "achieved": self.achieved_in(),
                "achieved_nats": self.achieved, "achieved_bits": self.achieved / LN2,
                "bracket": list(self.bracket), "evaluations": self.evaluations}


@dataclass(frozen=True)
class SweepRow:
    """One row of a table: the parameter value and each query's exact MI.

    ``target`` (in ``unit``) is set for rows of :func:`sweep_targets`.
    """

    value: float
    results: tuple[Result, ...]
    target: float | None = None
    unit: str = "nats"
    solve: SolveResult | None = field(default=None, compare=False, repr=False)


def _to_unit(nats: float, unit: str) -> float:
    return nats / LN2 if unit == "bits" else nats


def _from_unit(x: float, unit: str) -> float:
    return x * LN2 if unit == "bits" else x


# ---------------------------------------------------------------- helpers


def _free_param(model: ir.Model, name: str) -> ir.Param:
    p = model.params.get(name)
    if p is None:
        free = [k for k, v in model.params.items() if v.derived is None]
        raise UsageError(f"`{name}` is not a parameter of model `{model.name}`; "
                         + did_you_mean(name, free))
    if p.derived is not None:
        uses = sorted(n for n in ir.symbols(p.derived) if n in model.params)
        hint = f"; solve for a free parameter it uses ({', '.join(uses)})" if uses else ""
        raise UsageError(f"`{name}` is derived ({name} := {ir.to_text(p.derived)}), not a free parameter{hint}")
    return p


def _fail(code: str, message: str, span: ir.Span | None, label: str = "", hint: str = "",
          sources: dict[str, str] | None = None) -> SpecError:
    return SpecError([Diagnostic(code, message, span, label, hint)], sources)


def _g(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:.10g}"


def _bracket_ends(param: ir.Param, bracket: ir.Interval | tuple | None, span: ir.Span | None = None,
                  sources: dict[str, str] | None = None) -> tuple[float, float, str]:
    """The closed search interval [a, b] (open ends moved one ulp inside, within the bounds), and its text."""
    bounds = param.bounds
    if bracket is None:
        if bounds is None:
            raise UsageError(f"`{param.name}` has no bounds to search in; give a bracket: --bracket LO,HI")
        bracket = bounds
    if isinstance(bracket, ir.Interval):
        lo, hi, lo_open, hi_open = bracket.lower, bracket.upper, bracket.lower_open, bracket.upper_open
    else:
        try:
            lo, hi = (float(v) for v in bracket)
        except (TypeError, ValueError):
            raise UsageError(f"a bracket is two numbers LO,HI, got {bracket!r}") from None
        # a closed bracket, except where it touches an open end of the declared bounds
        lo_open = bounds is not None and bounds.lower_open and lo == bounds.lower
        hi_open = bounds is not None and bounds.upper_open and hi == bounds.upper
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise UsageError(f"the bracket of `{param.name}` must be finite, got [{lo:g}, {hi:g}]; "
                         "give one: --bracket LO,HI")
    if not lo < hi:
        raise UsageError(f"empty bracket for `{param.name}`: {lo:g} is not below {hi:g}")
    a = math.nextafter(lo, math.inf) if lo_open else lo
    b = math.nextafter(hi, -math.inf) if hi_open else hi
    text = ir.Interval(lower=lo, upper=hi, lower_open=lo_open, upper_open=hi_open).text()
    if bounds is not None and not (bounds.contains(a) and bounds.contains(b)):
        message = f"the bracket {text} leaves the bounds {bounds.text()} of `{param.name}`"
        if isinstance(bracket, ir.Interval) and span is not None:  # a spec's own solve statement
            raise _fail("E0207", message, span, "", "give a bracket inside the bounds", sources)
        raise UsageError(message + "; give a bracket inside them")
    return a, b, text


class _Curve:
    """The exact MI of one query as a function of one parameter (memoised)."""

    def __init__(self, model: ir.Model, param: str, query: ir.Query, span: ir.Span | None,
                 sources: dict[str, str] | None):
        self.model, self.param, self.query = model, param, query
        self.span, self.sources = span, sources
        self.calls = 0
        self._memo: dict[float, float] = {}

    def __call__(self, x: float) -> float:
        x = float(x)
        hit = self._memo.get(x)
        if hit is not None:
            return hit
        self.calls += 1
        try:
            moved = self.model.with_params({self.param: x})
        except ValueError as err:
            raise _fail("E0212", f"cannot evaluate the model at {self.param} = {x!r}: {err}", self.span, "",
                        "narrow the bracket", self.sources) from None
        try:
            nats = Analysis(moved).evaluate(self.query).nats
        except SpecError as err:
            err.sources.update(self.sources or {})
            raise
        if math.isnan(nats):  # pragma: no cover - the engine never returns nan
            raise _fail("E0212", f"{self.query.text} is undefined at {self.param} = {x!r}", self.span, "", "",
                        self.sources)
        self._memo[x] = nats
        return nats


@dataclass
class _Grid:
    xs: list[float]
    ms: list[float]      # nats
    increasing: bool


def _scan(curve: _Curve, a: float, b: float, unit: str, where: str) -> _Grid:
    """Sample the MI on a grid over [a, b]; it must be strictly monotone."""
    n = GRID_POINTS
    xs = [a + (b - a) * i / (n - 1) for i in range(n)]
    xs[0], xs[-1] = a, b
    xs = sorted(set(xs))
    ms = [curve(x) for x in xs]
    q, p = curve.query.text, curve.param
    if all(m == ms[0] for m in ms):
        raise _fail("E0206", f"{q} does not change with `{p}` on {where} "
                             f"(it is {_g(_to_unit(ms[0], unit))} {unit} throughout)", curve.span, "",
                    "solve for a parameter this quantity depends on", curve.sources)
    increasing = ms[-1] > ms[0] if ms[-1] != ms[0] else ms[1] > ms[0]
    for i in range(len(xs) - 1):
        up = ms[i + 1] > ms[i]
        down = ms[i + 1] < ms[i]
        if (up if increasing else down):
            continue
        way = "increases" if increasing else "decreases"
        turn = "is flat" if not (up or down) else ("decreases" if increasing else "increases")
        left = xs[i - 1] if i > 0 else xs[0]
        right = xs[i + 1]
        hint = (f"use a narrower bracket on one side of {p} = {_g(xs[i])}: one that ends at or below {_g(left)}, "
                f"or one that starts at or above {_g(right)} (--bracket LO,HI)")
        raise _fail("E0206",
                    f"{q} is not monotone in `{p}` on {where}: it {way} up to {p} = {_g(xs[i])} "
                    f"({_g(_to_unit(ms[i], unit))} {unit}) and then {turn} "
                    f"({_g(_to_unit(ms[i + 1], unit))} {unit} at {p} = {_g(xs[i + 1])})",
                    curve.span, "", hint, curve.sources)
    return _Grid(xs, ms, increasing)


def _solve_on(curve: _Curve, grid: _Grid, target_nats: float, unit: str, target_text: str,
              where: str) -> tuple[float, float]:
    """The root of MI(x) = target on a checked grid; returns (x, MI(x) in nats)."""
    from scipy.optimize import brentq

    q, p = curve.query.text, curve.param
    lo_m, hi_m = min(grid.ms[0], grid.ms[-1]), max(grid.ms[0], grid.ms[-1])
    if not lo_m <= target_nats <= hi_m:
        reach = (f"[{_g(_to_unit(lo_m, unit))}, inf)" if math.isinf(hi_m)
                 else f"[{_g(_to_unit(lo_m, unit))}, {_g(_to_unit(hi_m, unit))}]")
        raise _fail("E0207", f"{q} = {target_text} {unit} is out of reach: over {p} in "
                             f"{where} it covers {reach} {unit}",
                    curve.span, "", f"ask for a value in {reach} {unit}, or widen the bracket of `{p}`",
                    curve.sources)
    s = 1.0 if grid.increasing else -1.0

    def g(x: float) -> float:  # oriented so that g < 0 left of the root, g > 0 right of it
        return s * (curve(x) - target_nats)

    for x, m in zip(grid.xs, grid.ms):
        if m == target_nats:
            return x, m
    i = next(i for i in range(len(grid.xs) - 1) if s * (grid.ms[i + 1] - target_nats) > 0)
    a, b = grid.xs[i], grid.xs[i + 1]
    ga, gb = g(a), g(b)
    # an infinite end (a deterministic relation) is no value for brentq: bisect it away
    while math.isinf(ga) or math.isinf(gb):
        mid = 0.5 * (a + b)
        if mid in (a, b):
            break
        gm = g(mid)
        if gm == 0:
            return mid, curve(mid)
        if gm < 0:
            a, ga = mid, gm
        else:
            b, gb = mid, gm
    if math.isinf(ga) or math.isinf(gb):
        fin, inf_at = (a, b) if math.isinf(gb) else (b, a)
        top = _g(_to_unit(curve(fin), unit))
        raise _fail("E0207", f"{q} = {target_text} {unit} is out of reach: the MI is finite up to {top} {unit} "
                             f"(at {p} = {fin!r}) and infinite at the next double, {p} = {inf_at!r} (the covariance "
                             "is singular to double precision there: a deterministic relation)",
                    curve.span, "", f"ask for at most {top} {unit}", curve.sources)
    x = brentq(g, a, b, xtol=1e-300, rtol=4 * _EPS, maxiter=500)
    best = (abs(g(x)), x)
    if not _close(curve(x), target_nats, unit):  # the closest double may be an ulp away
        for y in (math.nextafter(x, a), math.nextafter(x, b)):
            best = min(best, (abs(g(y)), y))
    x = best[1]
    return x, curve(x)


def _close(achieved_nats: float, target_nats: float, unit: str) -> bool:
    t, m = _to_unit(target_nats, unit), _to_unit(achieved_nats, unit)
    return abs(m - t) <= TOLERANCE * max(1.0, abs(t))


def _check_target(target: float, curve: _Curve, unit: str) -> float:
    if unit not in ("nats", "bits"):
        raise UsageError(f"unit must be nats or bits, got {unit!r}")
    target = float(target)
    if not math.isfinite(target):
        raise _fail("E0207", f"the target of {curve.query.text} must be a finite number, got {target}", curve.span,
                    "", "", curve.sources)
    if target < 0:
        raise _fail("E0207", f"mutual information is never negative, got {_g(target)} {unit}", curve.span, "",
                    "", curve.sources)
    return _from_unit(target, unit)


# ---------------------------------------------------------------- solve


def solve(model: ir.Model, param: str, query: ir.Query, target: float, unit: str = "nats",
          bracket: ir.Interval | tuple | None = None, *, span: ir.Span | None = None,
          sources: dict[str, str] | None = None) -> SolveResult:
    """Find ``param`` such that ``query`` equals ``target`` (in ``unit``), exactly.

    Args:
        model: a checked IR; only ``param`` moves (derived parameters follow).
        param: a free parameter.
        query: the information quantity.
        target: the MI wanted, in ``unit`` (``nats`` or ``bits``).
        bracket: where to search: an :class:`ir.Interval` (open ends are searched from
            one ulp inside), a closed ``(lo, hi)``, or ``None`` for the parameter's bounds.
        span, sources: where the request came from, for error messages.

    Raises:
        UsageError: unknown or derived parameter, no usable bracket.
        SpecError: the MI is not strictly monotone on the bracket (E0206), the target
            is out of reach (E0207, the message gives the reachable range), or the
            root misses the target by more than :data:`TOLERANCE` (E0212).
    """
    return _Solver(model, param, query, unit, bracket, span, sources).solve(target)


def solve_all(model: ir.Model) -> tuple[list[SolveResult], list[SpecError]]:
    """Answer the spec's own ``solve`` statements; every one is tried (errors are collected)."""
    results, errors = [], []
    for s in model.solves:
        try:
            results.append(solve(model, s.param, s.query, s.value, s.query.unit, s.bracket, span=s.span))
        except SpecError as err:
            errors.append(err)
    return results, errors


class _Solver:
    def __init__(self, model, param, query, unit, bracket, span, sources):
        p = _free_param(model, param)
        self.model, self.param, self.query, self.unit = model, param, query, unit
        self.curve = _Curve(model, param, query, span, sources)
        self.a, self.b, self.text = _bracket_ends(p, bracket, span, sources)
        self._grid: _Grid | None = None

    def solve(self, target: float) -> SolveResult:
        curve, unit = self.curve, self.unit
        target_nats = _check_target(target, curve, unit)
        before = curve.calls
        if self._grid is None:
            self._grid = _scan(curve, self.a, self.b, unit, self.text)
        x, achieved = _solve_on(curve, self._grid, target_nats, unit, _g(float(target)), self.text)
        if not _close(achieved, target_nats, unit):
            raise _fail("E0212", f"the closest value {self.param} = {x!r} gives {self.query.text} = "
                                 f"{_to_unit(achieved, unit)!r} {unit}, not {_g(float(target))} {unit} to "
                                 f"{TOLERANCE:g}", curve.span, "",
                        "the MI changes too fast here for double precision", curve.sources)
        return SolveResult(model=self.model.name, param=self.param, value=x, query=self.query.text, unit=unit,
                           target=target_nats, achieved=achieved, bracket=(self.a, self.b),
                           evaluations=curve.calls - before, interval=self.text)


# ---------------------------------------------------------------- sweeps


def sweep(model: ir.Model, param: str, values: Iterable[float], queries: Sequence[ir.Query]) -> list[SweepRow]:
    """Every query's exact MI at each value of ``param`` (values must lie in its bounds)."""
    p = _free_param(model, param)
    rows = []
    for v in values:
        v = float(v)
        if not math.isfinite(v) or (p.bounds is not None and not p.bounds.contains(v)):
            raise UsageError(f"sweep value {v:g} is outside the bounds {p.bounds.text()} of `{param}`"
                             if p.bounds is not None else f"sweep value {v} is not a finite number")
        try:
            moved = model.with_params({param: v})
        except ValueError as err:
            raise _fail("E0212", f"cannot evaluate the model at {param} = {v!r}: {err}", None) from None
        engine = Analysis(moved)
        rows.append(SweepRow(v, tuple(engine.evaluate(q) for q in queries)))
    return rows


def sweep_targets(model: ir.Model, param: str, query: ir.Query, targets: Iterable[float],
                  bracket: ir.Interval | tuple | None = None, unit: str = "nats", *,
                  also: Sequence[ir.Query] = (), span: ir.Span | None = None,
                  sources: dict[str, str] | None = None) -> list[SweepRow]:
    """Solve ``param`` for each target MI of ``query`` (in ``unit``); one row per target.

    The grid check is done once. Each row holds ``query``'s exact MI at the solved
    value, then each query of ``also``.
    """
    solver = _Solver(model, param, query, unit, bracket, span, sources)
    rows = []
    for t in targets:
        r = solver.solve(t)
        results: tuple[Result, ...] = (Result(query.text, r.achieved),)
        if also:
            engine = Analysis(model.with_params({param: r.value}))
            results += tuple(engine.evaluate(q) for q in also)
        rows.append(SweepRow(r.value, results, target=float(t), unit=unit, solve=r))
    return rows


# ---------------------------------------------------------------- parsing CLI values


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


# ---------------------------------------------------------------- writers


def _columns(rows: Sequence[SweepRow]) -> list[str]:
    return [r.query for r in rows[0].results] if rows else []


def table_json(model: ir.Model, param: str, rows: Sequence[SweepRow]) -> dict:
    """``{"model", "param", "rows": [{PARAM: v, "results": [{query, nats, bits}]}]}``."""
    out_rows = []
    for r in rows:
        row: dict = {param: r.value, "results": [res.to_json() for res in r.results]}
        if r.target is not None:
            row["target"] = r.target
            row["unit"] = r.unit
        out_rows.append(row)
    return {"model": model.name, "param": param, "rows": out_rows}


def table_csv(param: str, rows: Sequence[SweepRow]) -> str:
    """Header ``PARAM,<query> [nats],<query> [bits],...`` (then ``target [unit]`` for target sweeps)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = [param]
    for q in _columns(rows):
        header += [f"{q} [nats]", f"{q} [bits]"]
    targets = bool(rows) and rows[0].target is not None
    if targets:
        header.append(f"target [{rows[0].unit}]")
    w.writerow(header)
    for r in rows:
        line = [repr(r.value)]
        for res in r.results:
            line += [_csv_num(res.nats), _csv_num(res.bits)]
        if targets:
            line.append(repr(r.target))
        w.writerow(line)
    return buf.getvalue()


def _csv_num(x: float) -> str:
    return "inf" if math.isinf(x) else repr(x)


def table_text(model: ir.Model, param: str, rows: Sequence[SweepRow], title: str = "") -> str:
    """A plain-text table (nats and bits per query)."""
    head = [param] + [f"{q} [{u}]" for q in _columns(rows) for u in ("nats", "bits")]
    targets = bool(rows) and rows[0].target is not None
    if targets:
        head.append(f"target [{rows[0].unit}]")
    body = []
    for r in rows:
        cells = [f"{r.value:.10g}"] + [_g(x) for res in r.results for x in (res.nats, res.bits)]
        if targets:
            cells.append(_g(r.target))
        body.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in body)) if body else len(h) for i, h in enumerate(head)]
    lines = [f"# model {model.name}: {title or 'sweep of ' + param}",
             "  ".join(h.rjust(w) for h, w in zip(head, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(cells, widths)) for cells in body]
    return "\n".join(lines)


def write_table(path: str | Path, model: ir.Model, param: str, rows: Sequence[SweepRow]) -> Path:
    """Write CSV or JSON, chosen by the extension (``.csv``, ``.json``); atomic."""
    from mmmi_dsl.files import dumps_json, write_atomic

    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".csv":
        write_atomic(path, table_csv(param, rows))
    elif ext == ".json":
        write_atomic(path, dumps_json(table_json(model, param, rows)) + "\n")
    else:
        raise UsageError(f"-o {path}: the output must end in .csv or .json")
    return path


# ---------------------------------------------------------------- --target


def parse_target(model: ir.Model, text: str, file: str = "--target") -> tuple[ir.Query, float, str, ir.Span]:
    """Parse ``<query> = <number> [bits|nats]``; returns (query, value, unit, span of the value).

    Errors are :class:`SpecError` with a caret into ``text`` (as for ``--query``).
    """
    full = text.strip()
    sources = {file: full}

    def caret(start: int, end: int, message: str, label: str, hint: str) -> SpecError:
        span = ir.Span(file=file, line=1, column=start + 1, end_line=1, end_column=max(end, start + 1) + 1)
        return _fail("E0001", message, span, label, hint, sources)

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


# ---------------------------------------------------------------- the CLI's text


def solve_text(model: ir.Model, results: Sequence[SolveResult]) -> str:
    """What ``mmmic solve`` prints: the value, the MI it gives, and a ``--set`` to use it."""
    lines = [f"# model {model.name}: solve"]
    for r in results:
        lines.append(f"{r.param} = {r.value!r}")
        lines.append(f"  {r.query} = {_g(r.achieved)} nats = {_g(r.achieved / LN2)} bits "
                     f"(target {_g(r.target_in())} {r.unit}, |error| {r.error:.1e})")
        lines.append(f"  searched {r.param} in {r.interval or r.bracket} with {r.evaluations} exact evaluations; "
                     f"use it with --set {r.param}={r.value!r}")
    return "\n".join(lines)


def run_sweep_command(model: ir.Model, param: str | None, values: str | None, targets: str | None,
                      queries: Sequence[str], bracket: str | None, output: str | None) -> str:
    """``mmmic sweep``: the spec's own sweeps, or ``--for`` with ``--values``/``--targets``.

    Returns the text to print (the tables, or the files written).
    """
    from mmmi_dsl.mi.analysis import default_queries

    if output is not None and Path(output).suffix.lower() not in (".csv", ".json"):
        raise UsageError(f"-o {output}: the output must end in .csv or .json")
    tables: list[tuple[str, list[SweepRow], str]] = []  # (param, rows, title)
    if param is None:
        if values is not None or targets is not None or queries or bracket is not None:
            raise UsageError("--values, --targets, --query and --bracket go with --for PARAM")
        if not model.sweeps:
            raise UsageError("the spec has no `sweep` statements; give --for PARAM --values ... or --targets ...")
        merged: dict[tuple, list[ir.Sweep]] = {}
        for s in model.sweeps:  # sweeps over the same values share one table
            merged.setdefault((s.param, s.values), []).append(s)
        for (p, vals), group in merged.items():
            tables.append((p, sweep(model, p, vals, [s.query for s in group]), f"sweep of {p}"))
    else:
        if values is None and targets is None:
            raise UsageError("--for PARAM needs --values \"linspace(a, b, n)\" or --targets t1,t2,...")
        qs = [resolve_with_unit(model, q) for q in queries]
        if values is not None:
            if bracket is not None:
                raise UsageError("--bracket goes with --targets")
            rows = sweep(model, param, parse_values(values), qs or default_queries(model))
            tables.append((param, rows, f"sweep of {param}"))
        else:
            if len(qs) != 1:
                raise UsageError(f"--targets needs exactly one --query (the MI to hit), got {len(qs)}")
            ts = parse_values(targets, "--targets")
            rows = sweep_targets(model, param, qs[0], ts, parse_bracket(bracket) if bracket else None,
                                 qs[0].unit, sources={"--query": queries[0].strip()})
            tables.append((param, rows, f"{param} solved for each target {qs[0].text}"))
    if output is None:
        return "\n\n".join(table_text(model, p, rows, title) for p, rows, title in tables)
    out = Path(output)
    paths = [out] if len(tables) == 1 else [out.with_name(f"{out.stem}-{i}{out.suffix}")
                                              for i in range(1, len(tables) + 1)]
    written = [write_table(path, model, p, rows) for path, (p, rows, _) in zip(paths, tables)]
    return "\n".join(f"wrote {path} ({len(rows)} rows)" for path, (_, rows, _) in zip(written, tables))


def resolve_with_unit(model: ir.Model, text: str, file: str = "--query") -> ir.Query:
    """``resolve_query`` with a trailing unit taken off the query's text (it is in ``unit``)."""
    from mmmi_dsl.lang.lower import resolve_query
    q = resolve_query(model, text, file)
    words = q.text.rsplit(None, 1)
    if len(words) == 2 and words[1] in ("bits", "nats"):
        q = q.model_copy(update={"text": words[0]})
    return q
