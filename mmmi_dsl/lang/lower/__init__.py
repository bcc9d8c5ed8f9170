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
        return Lowerer(program, overrides, base_dir, allow_paths).run()
    finally:
        algebra.reset()


__all__ = ["Lowerer", "lower", "resolve_query"]
