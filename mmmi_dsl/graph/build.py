"""The causal DAG of a model as a :class:`networkx.DiGraph` (reads the IR only).

Nodes are the proto-latents, latents, targets, labels and modalities; edges are the
terms of the structural equations (labelled with their coefficient, and the template,
matrix or flow they go through). Families ``n[1..N]`` with more than ``collapse``
members become one node ``n[1..N]``; smaller ones are listed as plates
(``graph.graph["plates"]``), drawn as a DOT cluster or a dashed box.
"""

from __future__ import annotations

import re

import networkx as nx

from mmmi_dsl import ir
from mmmi_dsl.errors import UsageError
from mmmi_dsl.lang.coef import unrolled

#: Node kinds: (DOT shape, fill colour, what it is).
KINDS: dict[str, tuple[str, str, str]] = {
    "proto": ("circle", "#e8e8e8", "proto-latent N(0, I)"),
    "latent": ("ellipse", "#cfe2f3", "latent"),
    "target": ("doublecircle", "#ffe599", "target"),
    "label": ("hexagon", "#d9ead3", "label"),
    "modality": ("box", "#f4cccc", "modality (flow of a latent)"),
}

_MEMBER = re.compile(r"^(?P<stem>.+)\[(?P<index>[^\]]+)\]$")


def _coef_text(expr: ir.Expr) -> str:
    text = ir.to_text(expr)
    return "" if text == "1" else text


def _term_label(term: ir.Term) -> str:
    """The coefficient and what the term goes through, e.g. ``rho · T_mass1``."""
    coef = _coef_text(term.coef)
    if term.op == "template":
        via = f"× {term.template}"
    elif term.op == "dot":
        via = f"dot({term.template}, ·)"
    elif term.op == "matrix":
        via = f"{term.matrix} @ [{', '.join(term.sources)}]" if len(term.sources) > 1 else f"{term.matrix} @"
    else:
        via = ""
    if term.op == "template":
        return f"{coef or '1'} {via}"
    if coef and via:
        return f"{coef} · {via}"
    return coef or via or "1"


def _flow_label(flow: ir.Flow) -> str:
    """The flow chain, outermost first, e.g. ``digits(class=3)`` or ``spiral ∘ affine(seed=1)``."""
    parts = []
    for step in reversed(flow.steps):
        args = ", ".join(f"{k}={v}" for k, v in step.args.items())
        parts.append(f"{step.name}({args})" if args else step.name)
    return " ∘ ".join(parts)


def _size_text(model: ir.Model, name: str) -> str:
    if name in model.flows:
        f = model.flows[name]
        return ("image " if len(f.shape) > 1 else "vector ") + "x".join(str(s) for s in f.shape)
    size = model.size_of(name)
    return "" if size == 1 and (name not in model.protos or model.protos[name].kind == "scalar") else f"dim {size}"


def _full_graph(model: ir.Model) -> nx.DiGraph:
    g = nx.DiGraph(name=model.name)
    member_of = {m: stem for stem, ms in model.families.items() for m in ms}

    def add(name: str, kind: str, extra: str = "") -> None:
        sub = _size_text(model, name) if kind != "label" else extra
        g.add_node(name, kind=kind, label=name + (f"\n{sub}" if sub else ""), family=member_of.get(name),
                   members=(name,), size=model.size_of(name))

    for p in model.protos:
        add(p, "proto")
    for v in model.variables.values():
        add(v.name, v.role)
    for lab in model.labels.values():
        add(lab.name, "label", f"{lab.comparison} {ir.to_text(lab.threshold)}")
    for f in model.flows.values():
        add(f.name, "modality")

    def connect(src: str, dst: str, text: str, **info) -> None:
        if g.has_edge(src, dst):  # several terms with the same source: one edge, summed labels
            e = g.edges[src, dst]
            e["terms"] = e["terms"] + (text,)
            e["label"] = " + ".join(e["terms"])
            for k in ("template", "matrix"):
                if info.get(k) and not e.get(k):
                    e[k] = info[k]
            return
        g.add_edge(src, dst, label=text, terms=(text,), coef=info.get("coef", ""), op=info.get("op", ""),
                   template=info.get("template"), matrix=info.get("matrix"), count=1)

    for v in [*model.variables.values(), *model.labels.values()]:
        for t in unrolled(v.terms):
            for s in t.sources:
                connect(s, v.name, _term_label(t), coef=ir.to_text(t.coef), op=t.op, template=t.template,
                        matrix=t.matrix)
    for f in model.flows.values():
        connect(f.latent, f.name, _flow_label(f), op="flow")
    return g


def family_range(members: tuple[str, ...]) -> str:
    """``n[1..10]`` for the members ``n[1]`` ... ``n[10]``; ``a..b`` for names without an index."""
    first, last = _MEMBER.match(members[0]), _MEMBER.match(members[-1])
    if first is None or last is None:
        return f"{members[0]}..{members[-1]}"
    return f"{first['stem']}[{first['index']}..{last['index']}]"


def _summary(datas: list[dict]) -> str:
    """One label for many merged edges: their count, shared template/matrix, and first … last coefficient."""
    count = len(datas)
    if count == 1:
        return datas[0]["label"]
    via = {d["template"] for d in datas} if all(d["op"] == "template" for d in datas) else set()
    if len(via) == 1:  # the same template on every edge: say it once
        labels = [_coef_text_or_1(d["coef"]) for d in datas]
        head = f"{count} edges × {via.pop()}" if count > 1 else f"× {datas[0]['template']}"
    else:
        labels = [d["label"] for d in datas]
        head = f"{count} edges" if count > 1 else ""
    distinct = list(dict.fromkeys(labels))
    if len(distinct) <= 2:
        body = ", ".join(distinct)
    elif len(distinct) == 3:
        body = f"{distinct[0]}, {distinct[1]}, {distinct[2]}"
    elif len(distinct[0]) + len(distinct[1]) + len(distinct[-1]) <= 40:
        body = f"{distinct[0]}, {distinct[1]}, …, {distinct[-1]}"
    else:
        body = f"{distinct[0]}, …, {distinct[-1]}"
    return f"{head}\n{body}" if head else body


def _coef_text_or_1(coef: str) -> str:
    return coef if coef else "1"


def causal_graph(model: ir.Model, collapse: int | None = 8) -> nx.DiGraph:
    """The causal DAG of ``model``: one node per variable, one edge per term source.

    Node attributes: ``kind`` (proto, latent, target, label, modality), ``label`` (the
    text drawn), ``family`` (the family stem or None), ``members`` (the IR names a
    node stands for), ``collapsed`` (True for a collapsed family). Edge attributes:
    ``label`` (coefficient with template/matrix, or the flow chain), ``terms``,
    ``coef``, ``op`` (identity, template, dot, matrix, flow), ``template``, ``matrix``
    and ``count`` (IR edges merged into it). ``graph.graph["plates"]`` maps each
    family drawn as a plate to its member nodes.

    Args:
        model: a checked IR.
        collapse: families with more members than this become one node; ``None``
            keeps every member (the exact DAG, as :func:`to_dagitty` needs).
    """
    if collapse is not None and collapse < 1:
        raise UsageError(f"collapse must be at least 1, got {collapse}")
    full = _full_graph(model)
    big = {stem: ms for stem, ms in model.families.items() if collapse is not None and len(ms) > collapse}
    rename = {m: family_range(ms) for stem, ms in big.items() for m in ms}
    if not rename:
        g = full
        for n in g.nodes:
            g.nodes[n]["collapsed"] = False
    else:
        g = nx.DiGraph(name=model.name)
        for n, data in full.nodes(data=True):
            new = rename.get(n, n)
            if new in g:
                g.nodes[new]["members"] = g.nodes[new]["members"] + (n,)
                continue
            data = dict(data, collapsed=n in rename)
            if n in rename:
                sub = data["label"].split("\n", 1)[1] if "\n" in data["label"] else ""
                count = len(big[data["family"]])
                data["label"] = new + (f"\n{count} × {sub}" if sub else f"\n{count} members")
                data["internal_edges"] = 0
            g.add_node(new, **data)
        merged: dict[tuple[str, str], list[dict]] = {}
        for a, b, data in full.edges(data=True):
            key = (rename.get(a, a), rename.get(b, b))
            if key[0] == key[1]:
                g.nodes[key[0]]["internal_edges"] += 1  # e.g. z[i] -> z[i+1] inside one family
                continue
            merged.setdefault(key, []).append(data)
        for n in g.nodes:
            inside = g.nodes[n].get("internal_edges", 0)
            if inside:
                g.nodes[n]["label"] += f"\n+ {inside} edge{'s' * (inside > 1)} within"
        for (a, b), datas in merged.items():
            templates = list(dict.fromkeys(d["template"] for d in datas if d.get("template")))
            matrices = list(dict.fromkeys(d["matrix"] for d in datas if d.get("matrix")))
            g.add_edge(a, b, label=_summary(datas), terms=tuple(t for d in datas for t in d["terms"]),
                       coef=datas[0]["coef"], op=datas[0]["op"], template=", ".join(templates) or None,
                       matrix=", ".join(matrices) or None, count=len(datas))
    g.graph["plates"] = {stem: tuple(ms) for stem, ms in model.families.items() if stem not in big}
    g.graph["params"] = {p.name: p.value for p in model.params.values()}
    return g
