"""Commands that read a spec and print what it means: check, compile, mi, formula."""

from __future__ import annotations

import sys
from pathlib import Path

from mmmi_dsl.cli.args import add_queries, add_spec_options, load_spec, parse_sets
from mmmi_dsl.errors import SpecError, UsageError
from mmmi_dsl.files import dumps_json

#: `mmmic formula`: the symbolic engine's default time budget (decay.mmi at N = 20 takes about 56 s).
FORMULA_TIMEOUT_S = 120.0

DATASET_HELP = ("a .mmi file, or a dataset (DIR or DIR/manifest.json): the spec its manifest records, at the "
                "recorded parameter values, with its files read from DIR")


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
    p = sub.add_parser("mi", help="exact mutual information of a spec's reports or of --query (and the exact "
                       "limits MMSE(theta | x1), RMSE(...), ACC(y | x1))")
    p.add_argument("spec", metavar="SPEC", help=DATASET_HELP)
    add_queries(p, "a query (repeatable); default: the spec's reports, else I(target; x) and all pairs. "
                   "Each is answered on its own: one that fails is reported (exit 1), the others still printed")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_spec_options(p)
    p.set_defaults(run=cmd_mi)
    p = sub.add_parser("formula", help="closed-form MI (sympy): LaTeX, text or sympy")
    p.add_argument("spec", metavar="SPEC", help=DATASET_HELP)
    add_queries(p, "a query (repeatable); default: the spec's reports. Every closed form found is printed; "
                   "why the others have none goes to stderr (exit 1)")
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


def load_target(args):
    """``args.spec`` as a checked model: a spec file, or a dataset (``DIR`` or ``DIR/manifest.json``).

    A dataset's spec is the one recorded in its manifest, at its recorded values
    (:func:`mmmi_dsl.dataset.recorded.load_dataset_spec`); notes about it go to stderr.
    """
    from mmmi_dsl.dataset.recorded import load_dataset_spec, manifest_path

    if manifest_path(args.spec) is None:
        return load_spec(args)
    if args.set:
        raise UsageError(f"--set does not apply to a dataset: {args.spec} was generated at the values its "
                         "manifest records; run the command on the spec file to change them")
    found = load_dataset_spec(args.spec, allow_paths=args.allow_paths)
    for d in found.drift:
        print(f"warning: {found.path} records {d.query} = {d.recorded} nats; its spec now gives {d.now!r}: a file "
              "it reads (template, matrix, weights) or mmmic changed since generation", file=sys.stderr)
    if found.upper_bound:
        print(f"note: {found.path}: the modalities were saved as 8-bit (--uint8); the MI of its files is at most "
              "the exact MI of the model shown here", file=sys.stderr)
    return found.model


def answer_each(model, texts: list[str], answer, prepare=None) -> tuple[list, list]:
    """``answer(query)`` for every query text (default: the model's default queries), after
    ``prepare(queries)`` (if given) has seen all those that resolve.

    Returns (answers, errors): one failure (a query that does not resolve, or has no
    answer) is a :class:`SpecError` in ``errors``, with its source so its caret renders,
    and the other queries are still answered.
    """
    from mmmi_dsl.lang.lower import resolve_query
    from mmmi_dsl.mi.analysis import default_queries

    resolved, errors = [], []
    for item in texts or default_queries(model):
        try:
            resolved.append(resolve_query(model, item) if isinstance(item, str) else item)
        except SpecError as err:
            resolved.append(_failed(err, item))
    if prepare is not None:
        prepare([q for q in resolved if not isinstance(q, SpecError)])
    answers = []
    for item, q in zip(texts or resolved, resolved):
        if isinstance(q, SpecError):  # did not resolve: already has its source
            errors.append(q)
            continue
        try:
            answers.append(answer(q))
        except SpecError as err:
            errors.append(_failed(err, item))
    return answers, errors


def _failed(err: SpecError, item) -> SpecError:
    """``err`` with the query text it came from as its ``--query`` source (for the caret)."""
    if isinstance(item, str):
        err.sources.setdefault("--query", item.strip())
    return err


def report_errors(errors: list) -> int:
    """Print each error (stderr, a blank line between them); exit status 1 if there was any."""
    if errors:
        print("\n\n".join(err.render() for err in errors), file=sys.stderr)
    return 1 if errors else 0


def cmd_mi(args) -> int:
    from mmmi_dsl.mi.analysis import Analysis
    from mmmi_dsl.report import mi_json, mi_table
    model = load_target(args)
    engine = Analysis(model)
    results, errors = answer_each(model, args.query, engine.evaluate, engine.prepare)
    if args.json:
        out = mi_json(model, results)
        if errors:
            out["errors"] = [error_json(e) for e in errors]
        print(dumps_json(out))
    elif results:
        print(mi_table(model, [], results))
    return report_errors(errors)


def error_json(err: SpecError) -> dict:
    """A failed query in JSON: its first diagnostic's code and message, with its position."""
    d = err.diagnostics[0]
    out = {"code": d.code, "message": d.message}
    if d.span is not None:
        out["at"] = f"{d.span.file}:{d.span.line}:{d.span.column}"
    return out


def cmd_formula(args) -> int:
    from mmmi_dsl.mi.symbolic import derive_each
    from mmmi_dsl.report import formula_failures, formula_lines
    model = load_target(args)
    if args.timeout < 0:
        raise UsageError("--timeout must be 0 (no limit) or a positive number of seconds")
    queries, errors = answer_each(model, args.query, lambda q: q)
    derived = derive_each(model, queries, set(args.numeric), args.timeout or None)
    lines = formula_lines([r for r in derived if r.formula is not None], args.format)
    if lines:
        print("\n".join(lines))
    return report_errors(errors + formula_failures(derived))
