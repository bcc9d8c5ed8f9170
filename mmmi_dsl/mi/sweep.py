"""Tables of exact MI: over parameter values (:func:`sweep`), or over target MIs, the
parameter solved for each (:func:`sweep_targets`); the spec's own ``sweep`` statements
as tables (:func:`spec_sweeps`). The rows are data; the CLI renders them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from mmmi_dsl import ir
from mmmi_dsl.errors import UsageError
from mmmi_dsl.mi.analysis import Analysis, Result
from mmmi_dsl.mi.solve import Solver, SolveResult, free_param, spec_error

__all__ = ["SweepRow", "SweepTable", "spec_sweeps", "sweep", "sweep_targets"]


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


@dataclass(frozen=True)
class SweepTable:
    """The rows of one table over ``param``, and its title."""

    param: str
    rows: list[SweepRow]
    title: str

    @property
    def queries(self) -> list[str]:
        """The column queries (those of the first row)."""
        return [r.query for r in self.rows[0].results] if self.rows else []


def sweep(model: ir.Model, param: str, values: Iterable[float], queries: Sequence[ir.Query]) -> list[SweepRow]:
    """Every query's exact MI at each value of ``param`` (values must lie in its bounds)."""
    p = free_param(model, param)
    rows = []
    for v in values:
        v = float(v)
        if not math.isfinite(v) or (p.bounds is not None and not p.bounds.contains(v)):
            raise UsageError(f"sweep value {v:g} is outside the bounds {p.bounds.text()} of `{param}`"
                             if p.bounds is not None else f"sweep value {v} is not a finite number")
        try:
            moved = model.with_params({param: v})
        except ValueError as err:
            raise spec_error("E0212", f"cannot evaluate the model at {param} = {v!r}: {err}", None) from None
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
    solver = Solver(model, param, query, unit, bracket, span, sources)
    rows = []
    for t in targets:
        r = solver.solve(t)
        results: tuple[Result, ...] = (Result(query.text, r.achieved),)
        if also:
            engine = Analysis(model.with_params({param: r.value}))
            results += tuple(engine.evaluate(q) for q in also)
        rows.append(SweepRow(r.value, results, target=float(t), unit=unit, solve=r))
    return rows


def spec_sweeps(model: ir.Model) -> list[SweepTable]:
    """The spec's own ``sweep`` statements, one table per (param, values): sweeps over the same
    values share a table. Empty when the spec has none."""
    merged: dict[tuple, list[ir.Sweep]] = {}
    for s in model.sweeps:
        merged.setdefault((s.param, s.values), []).append(s)
    return [SweepTable(p, sweep(model, p, vals, [s.query for s in group]), f"sweep of {p}")
            for (p, vals), group in merged.items()]
