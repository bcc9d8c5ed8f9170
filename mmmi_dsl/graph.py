"""Output stage: the causal DAG of a model as a graph, DOT, dagitty, SVG or PNG.

Reads the IR only. :func:`causal_graph` builds a :class:`networkx.DiGraph` whose
nodes are the proto-latents, latents, targets, labels and modalities, and whose
edges are the terms of the structural equations (labelled with their coefficient,
and the template, matrix or flow they go through). Families ``n[1..N]`` with more
than ``collapse`` members become one node ``n[1..N]``; smaller ones are drawn
inside a plate (a DOT cluster, a dashed box in the pictures).

Pictures are drawn with matplotlib in layers (topological generations) from left
to right: causes on the left, modalities on the right. No Graphviz is needed; the
``.dot`` text is for those who have it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import networkx as nx

from mmmi_dsl import ir
from mmmi_dsl.errors import UsageError

#: Node kinds: (DOT shape, fill colour, what it is).
KINDS: dict[str, tuple[str, str, str]] = {
    "proto": ("circle", "#e8e8e8", "proto-latent N(0, I)"),
    "latent": ("ellipse", "#cfe2f3", "latent"),
    "target": ("doublecircle", "#ffe599", "target"),
    "label": ("hexagon", "#d9ead3", "label"),
    "modality": ("box", "#f4cccc", "modality (flow of a latent)"),
}

#: Graph formats :func:`write_graph` writes, by name; the suffix picks one of the first three.
FORMATS = ("dot", "svg", "png", "dagitty")

_MEMBER = re.compile(r"^(?P<stem>.+)\[(?P<index>[^\]]+)\]$")


# ---------------------------------------------------------------- the graph


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
        for t in v.terms:
            for s in t.sources:
                connect(s, v.name, _term_label(t), coef=ir.to_text(t.coef), op=t.op, template=t.template,
                        matrix=t.matrix)
    for f in model.flows.values():
        connect(f.latent, f.name, _flow_label(f), op="flow")
    return g


def _family_range(members: tuple[str, ...]) -> str:
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
        raise UsageError(f"--collapse must be at least 1, got {collapse}")
    full = _full_graph(model)
    big = {stem: ms for stem, ms in model.families.items() if collapse is not None and len(ms) > collapse}
    rename = {m: _family_range(ms) for stem, ms in big.items() for m in ms}
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


# ---------------------------------------------------------------- text formats


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
        lines.append(f"    label={_quote(_family_range(members))}; style=\"rounded,dashed\"; color=\"#888888\";")
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
    pos = _layout(graph)[0]
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


# ---------------------------------------------------------------- layout


def _layers(graph: nx.DiGraph) -> list[list[str]]:
    """Nodes by topological generation, ordered to reduce crossings; families kept together."""
    dag = nx.DiGraph(graph.edges)
    dag.add_nodes_from(graph.nodes)
    dag.remove_edges_from(nx.selfloop_edges(dag))
    layer = {n: i for i, gen in enumerate(nx.topological_generations(dag)) for n in gen}
    for n in dag.nodes:  # a cause sits just left of the first node it feeds (noise next to its latent)
        if dag.in_degree(n) == 0 and dag.out_degree(n) > 0:
            layer[n] = min(layer[m] for m in dag.successors(n)) - 1
    layers = [[n for n in dag.nodes if layer[n] == i] for i in range(max(layer.values(), default=-1) + 1)]
    layers = [lay for lay in layers if lay]
    kind_rank = {"target": 0, "proto": 1, "latent": 2, "label": 3, "modality": 4}
    order = {n: i for i, n in enumerate(graph.nodes)}  # the spec's order to start with
    for layer in layers:
        layer.sort(key=lambda n: (kind_rank[graph.nodes[n]["kind"]], order[n]))
    position = {n: i for layer in layers for i, n in enumerate(layer)}

    def reorder(layer: list[str], neighbours) -> list[str]:
        groups: dict[str, list[str]] = {}
        for n in layer:
            groups.setdefault(graph.nodes[n].get("family") or n, []).append(n)

        def centre(group: list[str]) -> float:
            ys = [position[m] for n in group for m in neighbours(n) if m in position]
            return sum(ys) / len(ys) if ys else sum(position[n] for n in group) / len(group)
        keyed = sorted(groups.values(), key=lambda grp: (centre(grp), position[grp[0]]))
        return [n for grp in keyed for n in grp]

    for _ in range(4):  # barycentre sweeps, forward then backward
        for i in range(1, len(layers)):
            layers[i] = reorder(layers[i], graph.predecessors)
            position.update({n: j for j, n in enumerate(layers[i])})
        for i in range(len(layers) - 2, -1, -1):
            layers[i] = reorder(layers[i], graph.successors)
            position.update({n: j for j, n in enumerate(layers[i])})
    return layers


def _label_chars(text: str) -> int:
    return max((len(s) for s in text.split("\n")), default=0)


def _layout(graph: nx.DiGraph) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """Node centres in inches (x right, y up) and the drawing's (width, height)."""
    layers = _layers(graph)
    layer_of = {n: i for i, layer in enumerate(layers) for n in layer}
    node_w = [max((_label_chars(graph.nodes[n]["label"]) for n in layer), default=1) * 0.085 + 0.5
              for layer in layers]
    gaps = []
    for i in range(len(layers) - 1):
        chars = [_label_chars(d["label"]) for a, b, d in graph.edges(data=True)
                 if layer_of[a] == i and layer_of[b] > i]
        gaps.append(max(1.4, 0.075 * max(chars, default=0) + 0.9) + (node_w[i] + node_w[i + 1]) / 2)
    edges = graph.number_of_edges()
    row = 1.0 if edges <= 12 or edges > 60 else min(1.5, 1.0 + 0.025 * (edges - 12))  # room for the labels
    tallest = max(len(layer) for layer in layers) if layers else 1
    height = max(tallest * row, 2.0)
    pos: dict[str, tuple[float, float]] = {}
    x = node_w[0] / 2 + 0.3 if layers else 0.0
    for i, layer in enumerate(layers):
        top = height / 2 + (len(layer) - 1) * row / 2
        for j, n in enumerate(layer):
            pos[n] = (x, top - j * row)
        if i < len(gaps):
            x += gaps[i]
    width = x + (node_w[-1] / 2 + 0.3 if layers else 0.0)
    return pos, (width, height)


# ---------------------------------------------------------------- pictures


_BOXSTYLE = {"proto": "round,pad=0.4,rounding_size=1.1", "latent": "round,pad=0.4,rounding_size=0.5",
             "target": "round4,pad=0.4", "label": "sawtooth,pad=0.35", "modality": "square,pad=0.4"}


def _boxstyle(kind: str, label: str) -> str:
    if kind == "proto" and "\n" not in label and len(label) <= 3:
        return "circle,pad=0.3"  # a scalar cause: a small circle
    return _BOXSTYLE[kind]


def draw(graph: nx.DiGraph, path: str | Path, title: str | None = None) -> Path:
    """Draw the graph to ``path`` (.png or .svg, by its suffix) with matplotlib.

    Layers run left to right (causes first); nodes are coloured by kind (legend at
    the bottom), edges carry their coefficient labels, plates are dashed boxes, and
    the parameter values are listed under the graph.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch, Patch

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg", "pdf"):
        raise UsageError(f"{path}: a picture must end in .png, .svg or .pdf")
    pos, (width, height) = _layout(graph)
    many = graph.number_of_edges() > 60  # beyond this, labels would cover the picture
    footer = 1.0
    header = 0.6
    fig_w, fig_h = max(width, 5.0), height + footer + header
    with matplotlib.rc_context({"svg.fonttype": "none", "font.family": "DejaVu Sans"}):
        fig = Figure(figsize=(fig_w, fig_h), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(-(fig_w - width) / 2, width + (fig_w - width) / 2)
        ax.set_ylim(-footer, height + header)
        ax.axis("off")
        texts = {}
        for n, data in graph.nodes(data=True):
            kind = data["kind"]
            x, y = pos[n]
            texts[n] = ax.text(x, y, data["label"], ha="center", va="center", fontsize=10, zorder=3,
                               bbox=dict(boxstyle=_boxstyle(kind, data["label"]), fc=KINDS[kind][1], ec="#444444",
                                         lw=1.6 if kind == "target" else 1.0))
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        to_data = ax.transData.inverted()

        def box(artist, pad=0.0):
            bb = artist.get_window_extent(renderer)
            (x0, y0), (x1, y1) = to_data.transform([(bb.x0, bb.y0), (bb.x1, bb.y1)])
            return (x0 - pad, y0 - pad, x1 + pad, y1 + pad)

        node_boxes = {n: box(t.get_bbox_patch()) for n, t in texts.items()}
        # plates: a dashed box around the members of a small family, per layer
        for stem, members in graph.graph.get("plates", {}).items():
            members = [m for m in members if m in pos]
            if not members:
                continue
            xs = {}
            for m in members:
                xs.setdefault(round(pos[m][0], 3), []).append(m)
            for group in xs.values():
                bx = [node_boxes[m] for m in group]
                x0, y0 = min(b[0] for b in bx) - 0.12, min(b[1] for b in bx) - 0.28
                x1, y1 = max(b[2] for b in bx) + 0.12, max(b[3] for b in bx) + 0.12
                ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.1",
                                            fc="none", ec="#888888", ls="--", lw=1.0, zorder=1))
                ax.text(x1 - 0.05, y0 + 0.04, _family_range(tuple(group)) if len(xs) > 1 else
                        _family_range(tuple(members)), ha="right", va="bottom", fontsize=8, color="#555555")
        routes = _routes(graph, pos, node_boxes, bend=not many)
        for (a, b), (rad, _) in routes.items():
            ax.annotate("", xy=(0.5, 0.5), xycoords=texts[b], xytext=(0.5, 0.5), textcoords=texts[a],
                        arrowprops=dict(arrowstyle="-|>", color="#555555", lw=1.0, shrinkA=1, shrinkB=1,
                                        patchA=texts[a].get_bbox_patch(), patchB=texts[b].get_bbox_patch(),
                                        mutation_scale=12, connectionstyle=f"arc3,rad={rad}"),
                        zorder=2)
        if not many:
            _edge_labels(ax, graph, routes, node_boxes, box)
        # legend, parameters, title
        kinds = [k for k in KINDS if any(d == k for _, d in graph.nodes(data="kind"))]
        ax.legend(handles=[Patch(fc=KINDS[k][1], ec="#444444", label=KINDS[k][2]) for k in kinds],
                  loc="lower left", bbox_to_anchor=(0.0, 0.0), ncol=min(len(kinds), 5), fontsize=8,
                  frameon=False, borderaxespad=0.3)
        params = graph.graph.get("params", {})
        note = "  ".join(f"{k} = {v:g}" for k, v in params.items())
        if many:
            note = (f"{graph.number_of_edges()} edges: coefficients not drawn (see the .dot output)"
                    + ("\n" + note if note else ""))
        if note:
            ax.text(ax.get_xlim()[0] + 0.15, -footer + 0.42, _wrap(note, int(fig_w * 13)), ha="left", va="bottom",
                    fontsize=8, color="#333333")
        ax.text(sum(ax.get_xlim()) / 2, height + header - 0.15,
                title or f"{graph.graph.get('name', '')}: causal graph", ha="center", va="top", fontsize=12)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format=fmt, facecolor="white")
    return path


def _wrap(text: str, width: int) -> str:
    import textwrap
    return "\n".join(textwrap.fill(line, max(width, 20)) for line in text.split("\n"))


def _curve(p0, p1, rad: float, n: int = 80):
    """Points of matplotlib's ``arc3`` connection from p0 to p1 (a quadratic Bézier), (n, 2)."""
    import numpy as np
    (x1, y1), (x2, y2) = p0, p1
    c = ((x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1))
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * np.array(p0) + 2 * (1 - t) * t * np.array(c) + t ** 2 * np.array(p1)


def _inside(pts, b, pad: float = 0.0):
    return ((pts[:, 0] >= b[0] - pad) & (pts[:, 0] <= b[2] + pad)
            & (pts[:, 1] >= b[1] - pad) & (pts[:, 1] <= b[3] + pad))


def _routes(graph: nx.DiGraph, pos, node_boxes, bend: bool = True) -> dict:
    """Each edge's bend (``arc3`` rad; 0 is straight) and its points: an edge that would pass
    through another node (one skipping a layer) is bent around it (if ``bend``)."""
    routes = {}
    for a, b in graph.edges:
        if a == b:
            continue
        if not bend:
            routes[(a, b)] = (0.0, _curve(pos[a], pos[b], 0.0, 2))
            continue
        others = [bx for n, bx in node_boxes.items() if n not in (a, b)]
        best = None
        for rad in (0.0, 0.12, -0.12, 0.22, -0.22, 0.32, -0.32, 0.45, -0.45):
            pts = _curve(pos[a], pos[b], rad)
            hits = sum(int(_inside(pts, bx, 0.08).sum()) for bx in others)
            if best is None or hits < best[0]:
                best = (hits, rad, pts)
            if hits == 0:
                break
        routes[(a, b)] = best[1:]
    return routes


def _edge_labels(ax, graph, routes, node_boxes, box) -> None:
    """Edge labels along their edges (rotated with them), slid along each edge to keep
    clear of the nodes, of the labels already placed and of the other edges."""
    import numpy as np
    from matplotlib.path import Path as MPath

    def rect(cx, cy, w, h, angle):
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        corners = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
        return MPath([(cx + c * dx - s * dy, cy + s * dx + c * dy) for dx, dy in corners], closed=False)

    obstacles = [MPath([(b[0], b[1]), (b[2], b[1]), (b[2], b[3]), (b[0], b[3])]) for b in node_boxes.values()]
    placed: list = []
    unit = np.array([(u, v) for u in np.linspace(-0.5, 0.5, 9) for v in (-0.4, 0.0, 0.4)])
    # longest edges first: they have the most room to move along
    order = sorted(routes, key=lambda e: -abs(routes[e][1][-1, 0] - routes[e][1][0, 0]))
    for a, b in order:
        data = graph.edges[a, b]
        pts = routes[(a, b)][1]
        # the visible part of the edge: outside both end boxes
        free = ~_inside(pts, node_boxes[a], 0.05) & ~_inside(pts, node_boxes[b], 0.05)
        idx = np.flatnonzero(free)
        lo, hi = (idx[0], idx[-1]) if idx.size else (0, len(pts) - 1)
        probe = ax.text(0, 0, data["label"], fontsize=8)
        w, h = (box(probe)[2] - box(probe)[0]) + 0.1, (box(probe)[3] - box(probe)[1]) + 0.06
        probe.remove()
        best = None
        for t in (0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8, 0.12, 0.88):
            k = int(round(lo + (hi - lo) * t))
            x, y = pts[k]
            dx, dy = pts[min(k + 1, len(pts) - 1)] - pts[max(k - 1, 0)]
            angle = math.degrees(math.atan2(dy, dx)) if dx or dy else 0.0
            if abs(angle) > 90:  # keep text upright
                angle -= math.copysign(180, angle)
            c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            poly = rect(x, y, w, h, angle)
            cells = np.column_stack([x + c * unit[:, 0] * w - s * unit[:, 1] * h,
                                     y + s * unit[:, 0] * w + c * unit[:, 1] * h])
            covered = sum(int(o.contains_points(cells).sum()) for o in obstacles + placed) / len(cells)
            crossed = sum(bool(poly.contains_points(r[1]).any()) for key, r in routes.items() if key != (a, b))
            cost = 10 * covered + crossed + abs(t - 0.5) * 0.2
            if best is None or cost < best[0]:
                best = (cost, x, y, angle, poly)
            if cost < 0.05:
                break
        _, x, y, angle, poly = best
        ax.text(x, y, data["label"], ha="center", va="center", fontsize=8, color="#1a1a1a", zorder=4,
                rotation=angle, rotation_mode="anchor", multialignment="center",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
        placed.append(poly)


# ---------------------------------------------------------------- files


def write_graph(model: ir.Model, path: str | Path, fmt: str | None = None, collapse: int | None = 8) -> Path:
    """Write the causal graph of ``model`` to ``path``.

    The format is ``fmt`` (``dot``, ``svg``, ``png``, ``dagitty``) or else the
    suffix (``.dot``/``.gv``, ``.svg``, ``.png``; ``.dagitty``). dagitty always
    gets the full DAG (every family member). Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if fmt is None:
        fmt = {"gv": "dot"}.get(suffix, suffix)
        if fmt not in FORMATS:
            raise UsageError(f"{path}: cannot tell the format from the suffix; use .dot, .svg, .png or "
                             "--format dot|svg|png|dagitty")
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


def run_graph_command(model: ir.Model, output: str | None, fmt: str | None, collapse: int | None) -> str:
    """``mmmic graph``: write the graph file, or return DOT/dagitty text when there is no ``-o``."""
    if output is None:
        if fmt in ("svg", "png"):
            raise UsageError(f"--format {fmt} needs -o FILE.{fmt}")
        if fmt == "dagitty":
            return to_dagitty(model).rstrip("\n")
        return to_dot(causal_graph(model, collapse)).rstrip("\n")
    path = write_graph(model, output, fmt, collapse)
    g = causal_graph(model, None if fmt == "dagitty" else collapse)
    return f"wrote {path} ({g.number_of_nodes()} nodes, {g.number_of_edges()} edges)"


__all__ = ["KINDS", "FORMATS", "causal_graph", "to_dot", "to_dagitty", "draw", "write_graph", "run_graph_command"]
