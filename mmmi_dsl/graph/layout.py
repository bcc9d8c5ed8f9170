"""Where the nodes go: topological generations from left to right (causes first), in inches."""

from __future__ import annotations

import networkx as nx


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


def layout(graph: nx.DiGraph) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
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
