"""Stage 7, the command line: ``mmmic check | compile``.

Exit codes: 0 ok, 1 spec or data error, 2 usage error. Errors go to stderr, rendered
with file:line:col, the source line and a caret; never a traceback for a user
mistake (set ``MMMIC_DEBUG=1`` to see tracebacks of internal errors).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from . import __version__, load
from .errors import MmmicError, SpecError, UsageError
from .output import dumps_json


def _parse_sets(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"--set {item!r}: expected NAME=VALUE, e.g. --set d=64")
        out[name.strip()] = value.strip()
    return out


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", metavar="NAME=VALUE", default=[],
                   help="override a param or dim default (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmmic", description="Compile .mmi specs of multimodal datasets with exact mutual information.")
    parser.add_argument("--version", action="version", version=f"mmmic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("check", help="check specs; exit 1 on errors")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    _add_set(p)
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("compile", help="compile a spec to a bundle (ir.json)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--output", metavar="DIR", help="write the bundle here (default: print the IR)")
    _add_set(p)
    p.set_defaults(run=cmd_compile)

    p = sub.add_parser("mi", help="exact mutual information of a spec's reports or of --query")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--query", "-q", action="append", default=[], metavar='"I(a; b | c)"',
                   help="a query (repeatable); default: the spec's reports, else I(target; x) and all pairs")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_set(p)
    p.set_defaults(run=cmd_mi)
    return parser


def cmd_check(args) -> int:
    overrides = _parse_sets(args.set)
    from .output import summary
    failed = 0
    for spec in args.specs:
        try:
            model = load(spec, dict(overrides))
        except SpecError as err:
            print(err.render(), file=sys.stderr)
            failed += 1
            continue
        print(f"ok {spec}: {summary(model)}")
    return 1 if failed else 0


def cmd_mi(args) -> int:
    from .analysis import Analysis, default_queries
    from .lower import resolve_query
    from .output import mi_json, mi_table
    model = load(args.spec, _parse_sets(args.set))
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


def cmd_compile(args) -> int:
    from .output import ir_json, write_bundle
    model = load(args.spec, _parse_sets(args.set))
    if args.output is None:
        print(ir_json(model))
        return 0
    for path in write_bundle(model, Path(args.output)):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except MmmicError as err:
        msg = err.render() if isinstance(err, SpecError) else f"error: {err}"
        print(msg, file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # noqa: BLE001 - last resort: an internal error, not the user's
        if os.environ.get("MMMIC_DEBUG"):
            traceback.print_exc()
        print(f"internal error: {type(err).__name__}: {err}\n"
              "  = note: this is a bug in mmmic, not in your spec; rerun with MMMIC_DEBUG=1 for a traceback",
              file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
