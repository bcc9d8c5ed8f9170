"""Commands that solve for parameters: solve, sweep (and how their tables are written)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from mmmi_dsl.cli.args import add_queries, add_spec_options, load_spec, parse_bracket
from mmmi_dsl.errors import SpecError, UsageError
from mmmi_dsl.files import dumps_json
from mmmi_dsl.mi.targets import parse_target, parse_values


def add_parsers(sub) -> None:
    """Add this family's subcommands to the ``mmmic`` parser."""
    p = sub.add_parser("solve", help="find a parameter value that gives a target MI (exactly)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--for", dest="param", metavar="PARAM", help="the free parameter to solve for")
    p.add_argument("--target", metavar='"I(a; b) = V [bits]"', help="the MI wanted")
    p.add_argument("--bracket", metavar="LO,HI", help="where to search (default: the parameter's bounds)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_spec_options(p)
    p.set_defaults(run=cmd_solve)
    p = sub.add_parser("sweep", help="a table of exact MI over parameter values or target MIs")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--for", dest="param", metavar="PARAM", help="the free parameter to vary")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--values", metavar='"linspace(a, b, n)"|v1,v2', help="parameter values")
    what.add_argument("--targets", metavar="t1,t2,...", help="target MIs of the one --query (in its unit); "
                      "the parameter is solved for each")
    add_queries(p, "a query (repeatable); default: the spec's reports, else I(target; x) and all pairs")
    p.add_argument("--bracket", metavar="LO,HI", help="with --targets: where to search")
    p.add_argument("-o", "--output", metavar="FILE", help="write FILE.csv or FILE.json instead of printing")
    add_spec_options(p)
    p.set_defaults(run=cmd_sweep)


def cmd_solve(args) -> int:
    from mmmi_dsl.mi.solve import solve, solve_all
    model = load_spec(args)
    errors = []
    if args.param is None and args.target is None:
        if args.bracket is not None:
            raise UsageError("--bracket goes with --for PARAM --target \"QUERY = VALUE\"")
        if not model.solves:
            raise UsageError(f"{args.spec} has no `solve` statements; give --for PARAM --target \"QUERY = VALUE\"")
        results, errors = solve_all(model)
    elif args.param is None or args.target is None:
        raise UsageError("--for PARAM and --target \"QUERY = VALUE\" go together")
    else:
        query, value, unit, span = parse_target(model, args.target, "--target")
        bracket = parse_bracket(args.bracket) if args.bracket else None
        results = [solve(model, args.param, query, value, unit, bracket, span=span,
                         sources={"--target": args.target.strip()})]
    if args.json:
        print(dumps_json({"model": model.name, "solves": [r.to_json() for r in results]}))
    elif results:
        print(solve_text(model, results))
    if errors:
        raise SpecError([d for err in errors for d in err.diagnostics])
    return 0


def cmd_sweep(args) -> int:
    """``mmmic sweep``: the spec's own sweeps, or ``--for`` with ``--values``/``--targets``;
    prints the tables, or writes them to ``-o`` (one file per table: FILE-1.csv, ...)."""
    model = load_spec(args)
    output = args.output
    if output is not None and Path(output).suffix.lower() not in (".csv", ".json"):
        raise UsageError(f"-o {output}: the output must end in .csv or .json")
    tables = _sweep_tables(model, args.param, args.values, args.targets, args.query, args.bracket)
    if output is None:
        print("\n\n".join(table_text(model, t) for t in tables))
        return 0
    out = Path(output)
    paths = [out] if len(tables) == 1 else [out.with_name(f"{out.stem}-{i}{out.suffix}")
                                              for i in range(1, len(tables) + 1)]
    for path, t in zip(paths, tables):
        write_table(path, model, t)
    print("\n".join(f"wrote {path} ({len(t.rows)} rows)" for path, t in zip(paths, tables)))
    return 0


def _sweep_tables(model, param: str | None, values: str | None, targets: str | None, queries: list[str],
                  bracket: str | None):
    """The tables ``mmmic sweep`` asks for (the options checked together)."""
    from mmmi_dsl.mi.analysis import default_queries
    from mmmi_dsl.mi.solve import resolve_with_unit
    from mmmi_dsl.mi.sweep import SweepTable, spec_sweeps, sweep, sweep_targets

    if param is None:
        if values is not None or targets is not None or queries or bracket is not None:
            raise UsageError("--values, --targets, --query and --bracket go with --for PARAM")
        if not model.sweeps:
            raise UsageError("the spec has no `sweep` statements; give --for PARAM --values ... or --targets ...")
        return spec_sweeps(model)
    if values is None and targets is None:
        raise UsageError("--for PARAM needs --values \"linspace(a, b, n)\" or --targets t1,t2,...")
    qs = [resolve_with_unit(model, q) for q in queries]
    if values is not None:
        if bracket is not None:
            raise UsageError("--bracket goes with --targets")
        rows = sweep(model, param, parse_values(values), qs or default_queries(model))
        return [SweepTable(param, rows, f"sweep of {param}")]
    if len(qs) != 1:
        raise UsageError(f"--targets needs exactly one --query (the MI to hit), got {len(qs)}")
    ts = parse_values(targets, "--targets")
    rows = sweep_targets(model, param, qs[0], ts, parse_bracket(bracket) if bracket else None,
                         qs[0].unit, sources={"--query": queries[0].strip()})
    return [SweepTable(param, rows, f"{param} solved for each target {qs[0].text}")]


# ---------------------------------------------------------------- rendering


def solve_text(model, results) -> str:
    """What ``mmmic solve`` prints: the value, the MI it gives, and a ``--set`` to use it."""
    from mmmi_dsl.mi.analysis import LN2
    from mmmi_dsl.mi.solve import num_text

    lines = [f"# model {model.name}: solve"]
    for r in results:
        lines.append(f"{r.param} = {r.value!r}")
        lines.append(f"  {r.query} = {num_text(r.achieved)} nats = {num_text(r.achieved / LN2)} bits "
                     f"(target {num_text(r.target_in())} {r.unit}, |error| {r.error:.1e})")
        lines.append(f"  searched {r.param} in {r.interval or r.bracket} with {r.evaluations} exact evaluations; "
                     f"use it with --set {r.param}={r.value!r}")
    return "\n".join(lines)


def table_json(model, table) -> dict:
    """``{"model", "param", "rows": [{PARAM: v, "results": [{query, nats, bits}]}]}``."""
    out_rows = []
    for r in table.rows:
        row: dict = {table.param: r.value, "results": [res.to_json() for res in r.results]}
        if r.target is not None:
            row["target"] = r.target
            row["unit"] = r.unit
        out_rows.append(row)
    return {"model": model.name, "param": table.param, "rows": out_rows}


def _columns(table) -> list[str]:
    """The column heads after PARAM: ``<query> [nats]``, ``<query> [bits]`` per MI, ``<query> [value]`` per limit."""
    from mmmi_dsl.mi.limits import is_limit

    out: list[str] = []
    for res in (table.rows[0].results if table.rows else ()):
        out += [f"{res.query} [value]"] if is_limit(res) else [f"{res.query} [nats]", f"{res.query} [bits]"]
    return out


def _numbers(res) -> tuple[float, ...]:
    """A result's cells: (nats, bits) for an MI, (value,) for a limit."""
    from mmmi_dsl.mi.limits import is_limit

    return (res.value,) if is_limit(res) else (res.nats, res.bits)


def table_csv(table) -> str:
    """Header ``PARAM,<query> [nats],<query> [bits],...`` (``<query> [value]`` for MMSE, RMSE, ACC; then
    ``target [unit]`` for target sweeps)."""
    rows = table.rows
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = [table.param] + _columns(table)
    targets = bool(rows) and rows[0].target is not None
    if targets:
        header.append(f"target [{rows[0].unit}]")
    w.writerow(header)
    for r in rows:
        line = [repr(r.value)]
        for res in r.results:
            line += [_csv_num(x) for x in _numbers(res)]
        if targets:
            line.append(repr(r.target))
        w.writerow(line)
    return buf.getvalue()


def _csv_num(x: float) -> str:
    return ("inf" if x > 0 else "-inf") if math.isinf(x) else repr(x)


def table_text(model, table) -> str:
    """A plain-text table (nats and bits per MI query, the value of each limit)."""
    from mmmi_dsl.mi.solve import num_text

    rows = table.rows
    head = [table.param] + _columns(table)
    targets = bool(rows) and rows[0].target is not None
    if targets:
        head.append(f"target [{rows[0].unit}]")
    body = []
    for r in rows:
        cells = [f"{r.value:.10g}"] + [num_text(x) for res in r.results for x in _numbers(res)]
        if targets:
            cells.append(num_text(r.target))
        body.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in body)) if body else len(h) for i, h in enumerate(head)]
    lines = [f"# model {model.name}: {table.title or 'sweep of ' + table.param}",
             "  ".join(h.rjust(w) for h, w in zip(head, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(cells, widths)) for cells in body]
    return "\n".join(lines)


def write_table(path: Path, model, table) -> None:
    """Write CSV or JSON, chosen by the extension (``.csv``, ``.json``, checked before); atomic."""
    from mmmi_dsl.files import write_atomic, write_json

    if path.suffix.lower() == ".csv":
        write_atomic(path, table_csv(table))
    else:
        write_json(path, table_json(model, table))
