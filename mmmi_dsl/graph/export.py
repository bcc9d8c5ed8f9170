"""The causal graph as text: Graphviz DOT and dagitty."""

from __future__ import annotations

import re

import networkx as nx

from mmmi_dsl import ir
from mmmi_dsl.graph.build import KINDS, causal_graph, family_range
from mmmi_dsl.graph.layout import layout


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: nx.DiGraph) -> str:
    """Graphviz DOT text: shapes and colours by kind, edge labels, plates as clusters."""
    lines = [f"digraph {_quote(graph.graph.get('name', 'model'))} {{",
             "  rankdir=LR;",
             '  node [fontname="Helvetica", style=filled];',
             '  edge [fontname="Helvetica", fontsize=10];']
    in_plate = set()
    for stem, members in graph.graph.get("plates", {}).items():
        lines.append(f"  subgraph {_quote('cluster_' + stem)} {{")
        lines.append(f"    label={_quote(family_range(members))}; style=\"rounded,dashed\"; color=\"#888888\";")
        for m in members:
            if m in graph:
                lines.append(f"    {_node_dot(graph, m)}")
                in_plate.add(m)
        lines.append("  }")
    for n in graph.nodes:
        if n not in in_plate:
            lines.append(f"  {_node_dot(graph, n)}")
    for a, b, data in graph.edges(data=True):
        lines.append(f"  {_quote(a)} -> {_quote(b)} [label={_quote(data['label'])}];")
    for n, inside in graph.nodes(data="internal_edges"):
        if inside:  # a collapsed family whose members feed each other (z[i] -> z[i+1])
            lines.append(f"  {_quote(n)} -> {_quote(n)} [label={_quote(f'{inside} edges within')}, style=dashed];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_dot(graph: nx.DiGraph, n: str) -> str:
    shape, colour, _ = KINDS[graph.nodes[n]["kind"]]
    if shape == "circle" and "\n" in graph.nodes[n]["label"]:
        shape = "ellipse"  # a vector proto-latent: its label has a second line
    return f"{_quote(n)} [label={_quote(graph.nodes[n]['label'])}, shape={shape}, fillcolor={_quote(colour)}];"


def _dagitty_id(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z_0-9.]*", name) else _quote(name)


def to_dagitty(graph: nx.DiGraph | ir.Model, exposures=(), outcomes=()) -> str:
    """dagitty ``dag { ... }`` text for d-separation tools (dagitty.net, R dagitty).

    Proto-latents and latents are marked ``latent`` (unobserved); ``exposures`` and
    ``outcomes`` are marked as such. Node positions come from the picture's layout.
    A model is drawn with every family member (collapsed nodes would change which
    variables are d-separated, so a collapsed graph is refused).
    """
    if isinstance(graph, ir.Model):
        graph = causal_graph(graph, collapse=None)
    collapsed = [n for n, c in graph.nodes(data="collapsed") if c]
    if collapsed:
        raise ValueError(f"dagitty needs every family member, but {collapsed[0]} is collapsed: "
                         "build the graph with collapse=None")
    for name in (*exposures, *outcomes):
        if name not in graph:
            raise ValueError(f"`{name}` is not a node of the graph")
    pos = layout(graph)[0]
    lines = ["dag {"]
    for n, kind in graph.nodes(data="kind"):
        attrs = []
        if n in exposures:
            attrs.append("exposure")
        if n in outcomes:
            attrs.append("outcome")
        if kind in ("proto", "latent") and not attrs:
            attrs.append("latent")
        x, y = pos[n]
        attrs.append(f'pos="{x:.3f},{-y:.3f}"')
        lines.append(f"{_dagitty_id(n)} [{','.join(attrs)}]")
    for a, b in graph.edges:
        lines.append(f"{_dagitty_id(a)} -> {_dagitty_id(b)}")
    lines.append("}")
    return "\n".join(lines) + "\n"
