"""Stage 2, lower: syntax tree -> causal IR (:class:`mmmi_dsl.ir.Model`).

Resolves names (declarations are order-free), evaluates dims and parameter values (with
``--set`` overrides), expands families and ``for`` loops, and turns each structural equation
into linear :class:`~mmmi_dsl.ir.Term` s. Errors are collected, not raised at the first one.
Whole-model checks (cycles, sizes, queries) follow in :mod:`mmmi_dsl.lang.check`.

The passes, one module each, in the order a statement meets them: :mod:`.scope` (names,
loops, constants), :mod:`.constructors` (protos, templates, matrices, flows),
:mod:`.linear` (equations), :mod:`.statements` (the run, dims, params, labels, queries);
:mod:`.algebra` holds the coefficient algebra and :mod:`.limits` the size limits.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmmi_dsl import ir
from mmmi_dsl.lang.lower import algebra
from mmmi_dsl.lang.lower.statements import Lowerer
from mmmi_dsl.lang.syntax import Program


def resolve_query(model: ir.Model, text: str, file: str = "--query") -> ir.Query:
    """Resolve a query string against a lowered model (for ``--query``).

    The query's text is kept as given. Raises SpecError (E0001, E0101, E0211).
    """
    from mmmi_dsl.lang.check import check_query
    from mmmi_dsl.lang.parse import parse_query

    text = text.strip()
    q, unit = parse_query(text, file)
    low = Lowerer.over_model(model, Program(file=file, text=text))
    query = low.attempt(low.lower_query, q, unit, {}, text)
    if query is not None:
        check_query(model, query, low.errors)
    low.errors.raise_if_any({file: text})
    return query


def lower(program: Program, overrides: dict[str, str] | None = None, base_dir: Path | None = None, *,
          allow_paths: bool = False) -> ir.Model:
    """Lower a parsed program to the IR.

    File paths (templates, matrices, flow weights) resolve against ``base_dir`` (default:
    the spec's directory); one outside it is an error (E0216) unless ``allow_paths``.

    Raises:
        SpecError: all the problems found, each with a span.
        UsageError: a bad ``--set``.
    """
    algebra.reset()
    try:
        with gc_paused():
            return Lowerer(program, overrides, base_dir, allow_paths).run()
    finally:
        algebra.reset()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector inside the block; re-enabled on exit, also on an error.

    Lowering builds hundreds of thousands of small objects that all survive it (IR nodes, terms),
    so each collection traverses the whole growing heap for nothing: at decay N = 300 the collector
    was about half of lowering's time. Reference counting still frees everything acyclic at once;
    cycles wait for the next collection after the block. Nested use leaves the outer state alone.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


__all__ = ["Lowerer", "gc_paused", "lower", "resolve_query"]
