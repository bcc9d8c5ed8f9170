"""Ask for a dataset by its MI: solve a parameter for a target MI.

``solve`` finds the value of one free parameter at which an information quantity
takes a given exact value. The MI is evaluated exactly (:class:`Analysis` on
``model.with_params``, no re-parsing) and the root is found by
``scipy.optimize.brentq`` to full double precision, after a grid of the MI across the
bracket has shown that it is strictly monotone there and that the target is
reachable. Tables over parameter values or targets are in :mod:`mmmi_dsl.mi.sweep`.

Errors about the model's answer (out of reach, not monotone, not finite) are
:class:`SpecError` (exit 1), with the span of the request when there is one (the
``solve`` statement, or the target given on the command line); errors in naming the
parameter or the bracket are :class:`UsageError` (exit 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mmmi_dsl import ir
from mmmi_dsl.errors import Diagnostic, SpecError, UsageError, did_you_mean
from mmmi_dsl.mi.analysis import LN2, Analysis

GRID_POINTS = 25        # MI samples across the bracket for the monotonicity/reach check
TOLERANCE = 1e-9        # |MI(value) - target| in the requested unit, relative above 1
_EPS = 2.220446049250313e-16

__all__ = ["SolveResult", "Solver", "solve", "solve_all", "free_param", "resolve_with_unit", "spec_error",
           "num_text", "to_unit", "GRID_POINTS", "TOLERANCE"]


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
        return to_unit(self.target, unit or self.unit)

    def achieved_in(self, unit: str | None = None) -> float:
        return to_unit(self.achieved, unit or self.unit)

    @property
    def error(self) -> float:
        """|achieved - target| in the requested unit."""
        return abs(self.achieved_in() - self.target_in())

    def to_json(self) -> dict:
        return {"param": self.param, "value": self.value, "query": self.query, "unit": self.unit,
                "target": self.target_in(), "achieved": self.achieved_in(),
                "achieved_nats": self.achieved, "achieved_bits": self.achieved / LN2,
                "bracket": list(self.bracket), "evaluations": self.evaluations}


def to_unit(nats: float, unit: str) -> float:
    """Nats in ``unit`` (``nats`` or ``bits``)."""
    return nats / LN2 if unit == "bits" else nats


def _from_unit(x: float, unit: str) -> float:
    return x * LN2 if unit == "bits" else x


# ---------------------------------------------------------------- helpers


def free_param(model: ir.Model, name: str) -> ir.Param:
    """The free parameter ``name`` of ``model`` (a UsageError for an unknown or derived one)."""
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


def spec_error(code: str, message: str, span: ir.Span | None, label: str = "", hint: str = "",
               sources: dict[str, str] | None = None) -> SpecError:
    """A :class:`SpecError` of one diagnostic."""
    return SpecError([Diagnostic(code, message, span, label, hint)], sources)


def num_text(x: float) -> str:
    """``x`` to 10 significant digits, ``inf`` for an infinite MI (``-inf`` for an ``II``)."""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
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
            raise spec_error("E0207", message, span, "", "give a bracket inside the bounds", sources)
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
            raise spec_error("E0212", f"cannot evaluate the model at {self.param} = {x!r}: {err}", self.span, "",
                        "narrow the bracket", self.sources) from None
        try:
            nats = Analysis(moved).evaluate(self.query).nats
        except SpecError as err:
            err.sources.update(self.sources or {})
            raise
        if math.isnan(nats):  # pragma: no cover - the engine never returns nan
            raise spec_error("E0212", f"{self.query.text} is undefined at {self.param} = {x!r}", self.span, "", "",
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
        raise spec_error("E0206", f"{q} does not change with `{p}` on {where} "
                             f"(it is {num_text(to_unit(ms[0], unit))} {unit} throughout)", curve.span, "",
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
        hint = (f"use a narrower bracket on one side of {p} = {num_text(xs[i])}: one that ends at or below "
                f"{num_text(left)}, "
                f"or one that starts at or above {num_text(right)} (--bracket LO,HI)")
        raise spec_error("E0206",
                    f"{q} is not monotone in `{p}` on {where}: it {way} up to {p} = {num_text(xs[i])} "
                    f"({num_text(to_unit(ms[i], unit))} {unit}) and then {turn} "
                    f"({num_text(to_unit(ms[i + 1], unit))} {unit} at {p} = {num_text(xs[i + 1])})",
                    curve.span, "", hint, curve.sources)
    return _Grid(xs, ms, increasing)


def _solve_on(curve: _Curve, grid: _Grid, target_nats: float, unit: str, target_text: str,
              where: str) -> tuple[float, float]:
    """The root of MI(x) = target on a checked grid; returns (x, MI(x) in nats)."""
    from scipy.optimize import brentq

    q, p = curve.query.text, curve.param
    lo_m, hi_m = min(grid.ms[0], grid.ms[-1]), max(grid.ms[0], grid.ms[-1])
    if not lo_m <= target_nats <= hi_m:
        reach = (f"[{num_text(to_unit(lo_m, unit))}, inf)" if math.isinf(hi_m)
                 else f"[{num_text(to_unit(lo_m, unit))}, {num_text(to_unit(hi_m, unit))}]")
        raise spec_error("E0207", f"{q} = {target_text} {unit} is out of reach: over {p} in "
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
        top = num_text(to_unit(curve(fin), unit))
        raise spec_error("E0207", f"{q} = {target_text} {unit} is out of reach: the MI is finite up to {top} {unit} "
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
    t, m = to_unit(target_nats, unit), to_unit(achieved_nats, unit)
    return abs(m - t) <= TOLERANCE * max(1.0, abs(t))


def _check_target(target: float, curve: _Curve, unit: str) -> float:
    if unit not in ("nats", "bits"):
        raise UsageError(f"unit must be nats or bits, got {unit!r}")
    target = float(target)
    if not math.isfinite(target):
        raise spec_error("E0207", f"the target of {curve.query.text} must be a finite number, got {target}", curve.span,
                    "", "", curve.sources)
    if target < 0:
        raise spec_error("E0207", f"mutual information is never negative, got {num_text(target)} {unit}",
                         curve.span, "",
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
    return Solver(model, param, query, unit, bracket, span, sources).solve(target)


def solve_all(model: ir.Model) -> tuple[list[SolveResult], list[SpecError]]:
    """Answer the spec's own ``solve`` statements; every one is tried (errors are collected)."""
    results, errors = [], []
    for s in model.solves:
        try:
            results.append(solve(model, s.param, s.query, s.value, s.query.unit, s.bracket, span=s.span))
        except SpecError as err:
            errors.append(err)
    return results, errors


class Solver:
    """Solves ``param`` for targets of one query on one bracket; the grid check is done once."""

    def __init__(self, model, param, query, unit, bracket, span, sources):
        if query.kind in ir.LIMIT_KINDS:
            raise spec_error("E0211", f"solve takes an information quantity; {query.kind}(...) is a limit of "
                             "prediction", query.span or span, "",
                             f"tabulate it over the parameter instead: mmmic sweep SPEC --for {param} "
                             f"--values \"linspace(a, b, n)\" --query \"{query.text}\"", sources)
        p = free_param(model, param)
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
        x, achieved = _solve_on(curve, self._grid, target_nats, unit, num_text(float(target)), self.text)
        if not _close(achieved, target_nats, unit):
            raise spec_error("E0212", f"the closest value {self.param} = {x!r} gives {self.query.text} = "
                                 f"{to_unit(achieved, unit)!r} {unit}, not {num_text(float(target))} {unit} to "
                                 f"{TOLERANCE:g}", curve.span, "",
                        "the MI changes too fast here for double precision", curve.sources)
        return SolveResult(model=self.model.name, param=self.param, value=x, query=self.query.text, unit=unit,
                           target=target_nats, achieved=achieved, bracket=(self.a, self.b),
                           evaluations=curve.calls - before, interval=self.text)


def resolve_with_unit(model: ir.Model, text: str, file: str = "--query") -> ir.Query:
    """``resolve_query`` with a trailing unit taken off the query's text (it is in ``unit``)."""
    from mmmi_dsl.lang.lower import resolve_query
    q = resolve_query(model, text, file)
    words = q.text.rsplit(None, 1)
    if len(words) == 2 and words[1] in ("bits", "nats"):
        q = q.model_copy(update={"text": words[0]})
    return q
