"""Flags shared by several commands, checked once where they enter.

Domain code never sees a flag: these helpers turn strings from the command line into
plain values (or a :class:`~mmmi_dsl.errors.UsageError` naming the flag, exit 2).
"""

from __future__ import annotations

import argparse
import gc

from mmmi_dsl import load
from mmmi_dsl.errors import OverrideError, UsageError
from mmmi_dsl.mi.targets import number


def integer(least: int = 0):
    """An argparse type: an integer of at least ``least`` (else argparse's usage error, exit 2, naming the flag)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value
    return parse


def integers(least: int = 0, empty: bool = True):
    """An argparse type: integers of at least ``least`` separated by commas (``''``: none, if ``empty``)."""
    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
        if not values and not empty:
            raise argparse.ArgumentTypeError("expected at least one integer")
        if any(v < least for v in values):
            raise argparse.ArgumentTypeError(f"every value must be at least {least}, got {text!r}")
        return values
    return parse


def positive(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
    return value


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """``--set NAME=VALUE`` items as a dict (the values are checked by lowering, with positions)."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"--set {item!r}: expected NAME=VALUE, e.g. --set d=64")
        out[name.strip()] = value.strip()
    return out


def load_spec(args, path: str | None = None):
    """The checked spec at ``path`` (default ``args.spec``) with its ``--set`` overrides and ``--allow-paths``."""
    try:
        spec = load(args.spec if path is None else path, parse_sets(args.set), allow_paths=args.allow_paths)
    except OverrideError as err:
        raise UsageError(f"--set {err.item}: {err.problem}" if err.item else f"--set: {err.problem}") from None
    if getattr(args, "one_shot", False) and not gc.get_freeze_count():
        # the first spec's IR (~10^5 objects at decay N = 300) lives until the process ends with the command
        # (cli.main): moved out of the cyclic collector's generations, so the collections the engine's
        # allocations trigger do not traverse it. Once: a command that loads many specs (check, sweep) keeps
        # collecting the others' cycles. Never in a library user's or a test's process.
        gc.freeze()
    return spec


def add_queries(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--query", "-q", action="append", default=[], metavar='"I(a; b | c)"', help=help)


def add_spec_options(p: argparse.ArgumentParser) -> None:
    """The options of every command that reads a spec: --set and --allow-paths."""
    p.add_argument("--set", action="append", metavar="NAME=VALUE", default=[],
                   help="override a param or dim default (repeatable)")
    p.add_argument("--allow-paths", action="store_true",
                   help="let the spec read files outside its own directory (absolute paths, ../, links out)")


def check_device(name: str) -> str:
    """``--device``: ``cpu``, ``cuda`` or ``cuda:N``, available on this machine (exit 2 otherwise)."""
    from mmmi_dsl.backend import resolve_device

    try:
        resolve_device(name)
    except UsageError as err:
        raise UsageError(f"--{err}") from None
    return name


# ---------------------------------------------------------------- brackets


def parse_bracket(text: str, flag: str = "--bracket") -> tuple[float, float]:
    """``LO,HI`` (a closed interval) given to ``flag``."""
    parts = text.split(",")
    if len(parts) != 2:
        raise UsageError(f"{flag} {text!r}: expected LO,HI, e.g. {flag}=0.001,1")
    lo, hi = (number(p, flag) for p in parts)
    return lo, hi
