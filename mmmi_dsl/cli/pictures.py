"""Commands that draw: graph, plot."""

from __future__ import annotations

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
    from mmmi_dsl.plot import run_plot_command
    model = load_spec(args)
    print(run_plot_command(model, args.kind, args.output, args.param, args.values, args.over, args.query,
                           args.by, args.unit, args.names))
    return 0
