"""Commands that solve for parameters: solve, sweep."""

from __future__ import annotations


from mmmi_dsl.cli.args import add_queries, add_spec_options, load_spec
from mmmi_dsl.errors import SpecError, UsageError
from mmmi_dsl.files import dumps_json


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
    from mmmi_dsl.mi.solve import parse_bracket, parse_target, solve, solve_all, solve_text
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
        query, value, unit, span = parse_target(model, args.target)
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
    from mmmi_dsl.mi.solve import run_sweep_command
    model = load_spec(args)
    print(run_sweep_command(model, args.param, args.values, args.targets, args.query, args.bracket, args.output))
    return 0
