"""Commands that read a spec and print what it means: check, compile, mi, formula."""

from __future__ import annotations

import sys
from pathlib import Path

from mmmi_dsl.cli.args import add_queries, add_spec_options, load_spec, parse_sets
from mmmi_dsl.errors import SpecError, UsageError
from mmmi_dsl.files import dumps_json


#: `mmmic formula`: the symbolic engine's default time budget (decay.mmi at N = 20 takes about 56 s).
FORMULA_TIMEOUT_S = 120.0


def add_parsers(sub) -> None:
    """Add this family's subcommands to the ``mmmic`` parser."""
    p = sub.add_parser("check", help="check specs; exit 1 on errors")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--flows", action="store_true",
                   help="also build each modality's flow and report its round-trip error |f^-1(f(z)) - z|")
    add_spec_options(p)
    p.set_defaults(run=cmd_check)
    p = sub.add_parser("compile", help="compile a spec to a bundle (ir.json)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--output", metavar="DIR", help="write the bundle here (default: print the IR)")
    add_spec_options(p)
    p.set_defaults(run=cmd_compile)
    p = sub.add_parser("mi", help="exact mutual information of a spec's reports or of --query")
    p.add_argument("spec", metavar="SPEC")
    add_queries(p, "a query (repeatable); default: the spec's reports, else I(target; x) and all pairs")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_spec_options(p)
    p.set_defaults(run=cmd_mi)
    p = sub.add_parser("formula", help="closed-form MI (sympy): LaTeX, text or sympy")
    p.add_argument("spec", metavar="SPEC")
    add_queries(p, "a query (repeatable); default: the spec's reports")
    p.add_argument("--format", default="latex", choices=["latex", "text", "sympy"])
    p.add_argument("--numeric", nargs="+", default=[], metavar="NAME",
                   help="replace these params, dims or templates by their values ('templates': every "
                        "template inner product; 'all': everything)")
    p.add_argument("--timeout", type=float, default=FORMULA_TIMEOUT_S, metavar="SECONDS",
                   help=f"give up after this many seconds (default {FORMULA_TIMEOUT_S:g}; 0: no limit)")
    add_spec_options(p)
    p.set_defaults(run=cmd_formula)


def cmd_check(args) -> int:
    parse_sets(args.set)  # a malformed --set is a usage error before any spec is read
    from mmmi_dsl.report import summary
    failed = 0
    for spec in args.specs:
        try:
            model = load_spec(args, spec)
        except SpecError as err:
            print(err.render(), file=sys.stderr)
            failed += 1
            continue
        print(f"ok {spec}: {summary(model)}")
        if args.flows:
            from mmmi_dsl.backend import Sampler
            try:
                sampler = Sampler(model, standardize="auto")
                report = sampler.flow_roundtrip()
            except SpecError as err:
                print(err.render(), file=sys.stderr)
                failed += 1
                continue
            for name, r in report.items():
                print(f"  flow {name} = {r['chain']}: round trip max {r['roundtrip_max']:.2e}, "
                      f"mean {r['roundtrip_mean']:.2e}")
            problems = sampler.flow_problems()
            if problems:
                print(SpecError(problems).render(), file=sys.stderr)
                failed += 1
    return 1 if failed else 0


def cmd_compile(args) -> int:
    from mmmi_dsl.report import ir_json, write_bundle
    model = load_spec(args)
    if args.output is None:
        print(ir_json(model))
        return 0
    for path in write_bundle(model, Path(args.output)):
        print(f"wrote {path}")
    return 0


def cmd_mi(args) -> int:
    from mmmi_dsl.mi.analysis import Analysis, default_queries
    from mmmi_dsl.lang.lower import resolve_query
    from mmmi_dsl.report import mi_json, mi_table
    model = load_spec(args)
    queries = [resolve_query(model, q) for q in args.query] or default_queries(model)
    engine = Analysis(model)
    results = []
    for q in queries:
        try:
            results.append(engine.evaluate(q))
        except SpecError as err:
            if q.span is not None and q.span.file == "--query":
                err.sources["--query"] = q.text
            raise
    if args.json:
        print(dumps_json(mi_json(model, results)))
    else:
        print(mi_table(model, queries, results))
    return 0


def cmd_formula(args) -> int:
    from mmmi_dsl.mi.analysis import default_queries
    from mmmi_dsl.lang.lower import resolve_query
    from mmmi_dsl.report import formula_text
    model = load_spec(args)
    queries = [resolve_query(model, q) for q in args.query] or default_queries(model)
    if args.timeout < 0:
        raise UsageError("--timeout must be 0 (no limit) or a positive number of seconds")
    print(formula_text(model, queries, args.format, set(args.numeric), budget_s=args.timeout or None))
    return 0
