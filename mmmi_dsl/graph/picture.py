"""Pictures of the causal graph (PNG, SVG, PDF) with matplotlib; no Graphviz needed.

Layers run left to right (:func:`mmmi_dsl.graph.layout.layout`): causes on the left,
modalities on the right. Edges that would cross a node are bent around it; edge labels
are slid along their edges to keep clear of nodes, other labels and other edges.
"""

from __future__ import annotations

import math
from pathlib import Path

import networkx as nx

from mmmi_dsl.errors import UsageError
from mmmi_dsl.graph.build import KINDS, family_range
from mmmi_dsl.graph.layout import layout

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
    pos, (width, height) = layout(graph)
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
                ax.text(x1 - 0.05, y0 + 0.04, family_range(tuple(group)) if len(xs) > 1 else
                        family_range(tuple(members)), ha="right", va="bottom", fontsize=8, color="#555555")
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
