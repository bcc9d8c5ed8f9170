"""``mmmic``: the parser of every command and the one place that turns errors into exit codes.

Exit codes: 0 ok, 1 spec or data error, 2 usage error (3 only for a bug in mmmic). Errors
go to stderr, rendered with file:line:col, the source line and a caret; never a traceback
for a user mistake (set ``MMMIC_DEBUG=1`` to see tracebacks of internal errors).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import traceback

from mmmi_dsl.cli import bench, data, pictures, solve, spec, suite
from mmmi_dsl.errors import MmmicError, SpecError
from mmmi_dsl.process import keep_freed_memory, skip_pydantic_plugins
from mmmi_dsl.version import __version__

#: The command families, in the order ``mmmic --help`` lists them.
FAMILIES = (spec, solve, pictures, data, bench, suite)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmmic", description="Compile .mmi specs of multimodal datasets with exact mutual information.")
    parser.add_argument("--version", action="version", version=f"mmmic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for family in FAMILIES:
        family.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    # The console script passes no argv: this process ends with the command (tests call main([...]) in
    # theirs). Then the objects alive at the end are moved out of the cyclic collector, so the
    # interpreter's final full collection does not traverse them (85-390 ms after `mi` of decay at
    # N = 300); objects outside reference cycles are still freed and atexit handlers still run.
    # args.one_shot tells load_spec.
    args.one_shot = argv is None
    if args.one_shot:  # nothing has built a pydantic validator yet (mmmi_dsl.process)
        skip_pydantic_plugins()
        keep_freed_memory()
    try:
        return _run(args)
    finally:
        if args.one_shot:
            gc.freeze()


def _run(args) -> int:
    """Run the parsed command; every error becomes its exit code (module docstring)."""
    try:
        code = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return code
    except BrokenPipeError:  # `mmmic compile SPEC | head -1`: the reader has all it wanted
        _silence_stdout()
        return 0
    except MmmicError as err:
        msg = err.render() if isinstance(err, SpecError) else f"error: {err}"
        print(msg, file=sys.stderr)
        return err.exit_code
    except OSError as err:  # the file system said no (permissions, a file where a folder goes, disk full)
        print(f"error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:  # check refuses what clearly will not fit; this is the rest
        from mmmi_dsl.lang.check import gib, physical_memory
        print(f"error: mmmic ran out of memory (this machine has {gib(physical_memory())})\n"
              "  = help: use smaller dims (--set d=...), fewer variables or smaller matrices", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - last resort: an internal error, not the user's
        if os.environ.get("MMMIC_DEBUG"):
            traceback.print_exc()
        print(f"internal error: {type(err).__name__}: {err}\n"
              "  = note: this is a bug in mmmic, not in your spec; rerun with MMMIC_DEBUG=1 for a traceback",
              file=sys.stderr)
        return 3


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test's capture)
        pass
