"""Commands that draw: graph, plot."""

from __future__ import annotations

import re
from pathlib import Path

from mmmi_dsl.cli.args import add_queries, add_spec_options, load_spec
from mmmi_dsl.errors import UsageError


def add_parsers(sub) -> None:
    """Add this family's subcommands to the ``mmmic`` parser."""
    p = sub.add_parser("graph", help="the causal DAG: DOT, SVG, PNG or dagitty (default: print DOT)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--output", metavar="FILE", help="FILE.dot, FILE.svg or FILE.png (or any name with "
                   "--format dagitty); default: print the DOT text")
    p.add_argument("--format", choices=["dot", "svg", "png", "dagitty"], help="default: from the suffix of -o")
    p.add_argument("--collapse", type=int, default=8, metavar="N",
                   help="draw a family with more than N members as one node n[1..N] (default 8); smaller "
                        "families are drawn as plates")
    add_spec_options(p)
    p.set_defaults(run=cmd_graph)
    p = sub.add_parser("plot", help="plots of exact MI: the pairwise MI matrix, or MI against a parameter")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--kind", required=True, choices=["mi-matrix", "mi-vs-param"])
    p.add_argument("-o", "--output", required=True, metavar="FILE.png", help="FILE.png, FILE.svg or FILE.pdf")
    p.add_argument("--param", metavar="NAME", help="mi-vs-param: the parameter on the x axis")
    p.add_argument("--values", metavar='"a:b:n"|"linspace(a, b, n)"|v1,v2',
                   help="mi-vs-param: its values (default: 50 points across its bounds)")
    p.add_argument("--over", metavar="INDEX=LO..HI", help='mi-vs-param: a family index on the x axis instead, '
                   'e.g. --over j=2..N with -q "I(x[1]; x[j])" (default queries: I(x[1]; x[j]), I(target; x[j]))')
    add_queries(p, "mi-vs-param: a query (repeatable); default: the spec's reports")
    p.add_argument("--by", metavar="NAME=v1,v2,...", help="mi-vs-param: one line per value of another "
                   "parameter, one panel per query")
    p.add_argument("--names", metavar="a,b,...", help="mi-matrix: the variables (default: targets and modalities)")
    p.add_argument("--unit", default="nats", choices=["nats", "bits"])
    add_spec_options(p)
    p.set_defaults(run=cmd_plot)


def cmd_graph(args) -> int:
    """Write the graph file, or print DOT/dagitty text when there is no ``-o``."""
    from mmmi_dsl.graph import causal_graph, suffix_format, to_dagitty, to_dot, write_graph
    model = load_spec(args)
    fmt = args.format
    if args.output is not None and fmt is None:
        fmt = suffix_format(args.output)
        if fmt is None:
            raise UsageError(f"{Path(args.output)}: cannot tell the format from the suffix; use .dot, .svg, .png "
                             "or --format dot|svg|png|dagitty")
    collapse = None if fmt == "dagitty" else args.collapse  # dagitty: every family member
    if collapse is not None and collapse < 1:
        raise UsageError(f"--collapse must be at least 1, got {collapse}")
    if args.output is None:
        if fmt in ("svg", "png"):
            raise UsageError(f"--format {fmt} needs -o FILE.{fmt}")
        print((to_dagitty(model) if fmt == "dagitty" else to_dot(causal_graph(model, collapse))).rstrip("\n"))
        return 0
    path = write_graph(model, args.output, fmt, collapse)
    g = causal_graph(model, collapse)
    print(f"wrote {path} ({g.number_of_nodes()} nodes, {g.number_of_edges()} edges)")
    return 0


def cmd_plot(args) -> int:
    """Check the options of ``--kind``, draw, and print what was drawn."""
    from mmmi_dsl.plot import PICTURE_SUFFIXES, default_values, plot_mi_matrix, plot_mi_vs_index, plot_mi_vs_param
    model = load_spec(args)
    output = args.output
    if Path(output).suffix.lower() not in PICTURE_SUFFIXES:
        raise UsageError(f"-o {Path(output)}: a plot must end in {', '.join(PICTURE_SUFFIXES)}")
    if args.kind == "mi-matrix":
        extra = [flag for flag, v in (("--param", args.param), ("--values", args.values), ("--over", args.over),
                                      ("--query", args.query), ("--by", args.by)) if v]
        if extra:
            raise UsageError(f"{', '.join(extra)} {'goes' if len(extra) == 1 else 'go'} with --kind mi-vs-param, "
                             "not mi-matrix")
        chosen = [n.strip() for n in args.names.split(",")] if args.names else None
        if chosen is not None and (len(chosen) < 2 or not all(chosen)):
            raise UsageError(f"--names {args.names!r}: give two or more names separated by commas, "
                             "e.g. x1,x2,theta")
        m = plot_mi_matrix(model, output, chosen, unit=args.unit)
        shown = ", ".join(m.names) if len(m.names) <= 8 else f"{', '.join(m.names[:4])}, ..., {m.names[-1]}"
        print(f"wrote {output}: exact MI of {len(m.names)} variables ({shown})")
        return 0
    if args.kind != "mi-vs-param":
        raise UsageError(f"--kind {args.kind!r}: expected mi-matrix or mi-vs-param")
    if args.names is not None:
        raise UsageError("--names goes with --kind mi-matrix")
    by_values = parse_by(args.by) if args.by else None
    queries = list(args.query)
    if args.over is not None:
        if args.param is not None or args.values is not None:
            raise UsageError("--over (a family index) and --param/--values (a parameter) are two x axes: give one")
        index, xs = parse_index_range(model, args.over)
        curves = plot_mi_vs_index(model, output, index, xs, queries or None, by_values, args.unit)
        x_text = f"{index} = {xs[0]}..{xs[-1]}"
    else:
        if args.param is None:
            raise UsageError("--kind mi-vs-param needs --param NAME [--values ...] or --over INDEX=LO..HI")
        from mmmi_dsl.mi.solve import resolve_with_unit
        if args.values is not None:
            xs = parse_axis_values(args.values)
        else:
            xs = default_values(model, args.param)
            if xs is None:
                raise UsageError(f"--param {args.param} has no finite bounds: give --values \"linspace(a, b, n)\" "
                                 "or a:b:n")
        qs = [resolve_with_unit(model, q) for q in queries]
        curves = plot_mi_vs_param(model, output, args.param, xs, qs or None, by_values, args.unit)
        x_text = f"{args.param} in [{min(xs):g}, {max(xs):g}] ({len(xs)} points)"
    n_queries = len(dict.fromkeys(c.query for c in curves))
    print(f"wrote {output}: {n_queries} quer{'y' if n_queries == 1 else 'ies'} over {x_text}"
          + (f", one line per {by_values[0]} = {', '.join(f'{v:g}' for v in by_values[1])}" if by_values else ""))
    return 0


def parse_by(text: str) -> tuple[str, list[float]]:
    """``--by NAME=v1,v2,...`` or ``NAME=linspace(a, b, n)``."""
    from mmmi_dsl.mi.targets import parse_values
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not values.strip():
        raise UsageError(f"--by {text!r}: expected NAME=v1,v2,..., e.g. --by beta=0.5,1,2")
    return name.strip(), parse_values(values, "--by")


def parse_axis_values(text: str) -> list[float]:
    """``--values``: ``a:b:n`` (n points from a to b), ``linspace(a, b, n)``, ``logspace(a, b, n)`` or ``v1,v2``."""
    from mmmi_dsl.mi.targets import parse_values
    parts = text.split(":")
    if len(parts) == 3:
        return parse_values(f"linspace({parts[0]}, {parts[1]}, {parts[2]})", "--values")
    return parse_values(text, "--values")


_INDEX_RANGE = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*([^.]+?)\s*\.\.\s*(.+?)\s*$")


def parse_index_range(model, text: str) -> tuple[str, list[int]]:
    """``--over j=2..N`` (ends are integers or the model's dims) -> ("j", [2, ..., N])."""
    m = _INDEX_RANGE.match(text)
    if m is None:
        raise UsageError(f"--over {text!r}: expected NAME=LO..HI, e.g. --over j=2..N")

    def end(s: str) -> int:
        if s in model.dims:
            return model.dims[s].value
        try:
            return int(s)
        except ValueError:
            raise UsageError(f"--over {text!r}: {s!r} is neither an integer nor a dim "
                             f"({', '.join(model.dims) or 'no dims'})") from None
    lo, hi = end(m[2]), end(m[3])
    if hi < lo:
        raise UsageError(f"--over {text!r}: the range is empty ({lo} > {hi})")
    if hi - lo >= 10_000:
        raise UsageError(f"--over {text!r}: at most 10000 points")
    return m[1], list(range(lo, hi + 1))
