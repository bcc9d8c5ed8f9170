"""Output stage: the causal DAG of a model as a graph, DOT, dagitty, SVG or PNG.

Reads the IR only. :func:`causal_graph` (:mod:`~mmmi_dsl.graph.build`) builds a
:class:`networkx.DiGraph` whose nodes are the proto-latents, latents, targets, labels
and modalities, and whose edges are the terms of the structural equations (labelled
with their coefficient, and the template, matrix or flow they go through). Families
``n[1..N]`` with more than ``collapse`` members become one node ``n[1..N]``; smaller
ones are drawn inside a plate (a DOT cluster, a dashed box in the pictures).

:func:`to_dot` and :func:`to_dagitty` (:mod:`~mmmi_dsl.graph.export`) write text;
:func:`draw` (:mod:`~mmmi_dsl.graph.picture`) draws with matplotlib in layers
(:mod:`~mmmi_dsl.graph.layout`, topological generations) from left to right: causes on
the left, modalities on the right. No Graphviz is needed; the ``.dot`` text is for
those who have it. :func:`write_graph` writes any of them to a file.
"""

from __future__ import annotations

from pathlib import Path

from mmmi_dsl import ir
from mmmi_dsl.errors import UsageError
from mmmi_dsl.graph.build import KINDS, causal_graph, family_range
from mmmi_dsl.graph.export import to_dagitty, to_dot
from mmmi_dsl.graph.layout import layout
from mmmi_dsl.graph.picture import draw

#: Graph formats :func:`write_graph` writes, by name; the suffix picks one of the first three.
FORMATS = ("dot", "svg", "png", "dagitty")


def suffix_format(path: str | Path) -> str | None:
    """The format a file name asks for: ``.dot``/``.gv``, ``.svg``, ``.png``, ``.dagitty``; None otherwise."""
    suffix = Path(path).suffix.lower().lstrip(".")
    fmt = {"gv": "dot"}.get(suffix, suffix)
    return fmt if fmt in FORMATS else None


def write_graph(model: ir.Model, path: str | Path, fmt: str | None = None, collapse: int | None = 8) -> Path:
    """Write the causal graph of ``model`` to ``path``.

    The format is ``fmt`` (``dot``, ``svg``, ``png``, ``dagitty``) or else the
    suffix (:func:`suffix_format`). dagitty always gets the full DAG (every family
    member). Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if fmt is None:
        fmt = suffix_format(path)
        if fmt is None:
            raise UsageError(f"{path}: cannot tell the format from the suffix; use .dot, .svg, .png or "
                             "give the format (dot, svg, png or dagitty)")
    if fmt not in FORMATS:
        raise UsageError(f"unknown graph format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt in ("svg", "png") and suffix != fmt:
        raise UsageError(f"{path}: a {fmt} picture must end in .{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dagitty":
        path.write_text(to_dagitty(model))
    elif fmt == "dot":
        path.write_text(to_dot(causal_graph(model, collapse)))
    else:
        draw(causal_graph(model, collapse), path)
    return path


__all__ = ["KINDS", "FORMATS", "causal_graph", "family_range", "layout", "to_dot", "to_dagitty", "draw",
           "suffix_format", "write_graph"]
