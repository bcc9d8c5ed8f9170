"""mmmic graph: the causal DAG against the IR, its DOT/dagitty text, and the pictures of every spec."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from mmmi_dsl import load
from mmmi_dsl.cli import main
from mmmi_dsl.errors import UsageError
from mmmi_dsl.graph import causal_graph, layout, to_dagitty, to_dot, write_graph

from ..conftest import ROOT, SPECS

SPEC_IDS = [p.stem for p in SPECS]


def ir_edges(model) -> set[tuple[str, str]]:
    """Every (source, variable) of a term, and (latent, modality) of a flow, straight from the IR."""
    edges = {(s, v.name) for v in [*model.variables.values(), *model.labels.values()] for t in v.terms
             for s in t.sources}
    return edges | {(f.latent, f.name) for f in model.flows.values()}


@pytest.fixture(scope="module")
def models():
    return {p.stem: load(p) for p in SPECS}


@pytest.mark.parametrize("name", SPEC_IDS)
def test_full_graph_is_the_ir(models, name):
    model = models[name]
    g = causal_graph(model, collapse=None)
    kinds = {**{p: "proto" for p in model.protos}, **{v.name: v.role for v in model.variables.values()},
             **{lab: "label" for lab in model.labels}, **{f: "modality" for f in model.flows}}
    assert dict(g.nodes(data="kind")) == kinds
    assert set(g.edges) == ir_edges(model)
    for f in model.flows.values():  # every flow has its modality node, fed by its latent
        assert g.has_edge(f.latent, f.name) and g.nodes[f.name]["kind"] == "modality"
    for v in model.variables.values():  # coefficients on the edges
        for t in v.terms:
            label = g.edges[t.sources[0], v.name]["label"]
            assert t.template is None or t.template in label
            assert t.matrix is None or t.matrix in label


@pytest.mark.parametrize("name", SPEC_IDS)
def test_dot_and_dagitty_text_have_every_edge(models, name):
    model = models[name]
    dot = to_dot(causal_graph(model))
    for a, b in causal_graph(model).edges:
        assert f'"{a}" -> "{b}"' in dot
    assert dot.startswith(f'digraph "{model.name}" {{') and dot.rstrip().endswith("}")
    dag = to_dagitty(model)
    assert dag.startswith("dag {") and dag.rstrip().endswith("}")
    found = {(a.strip('"'), b.strip('"')) for a, b in re.findall(r'^("[^"]+"|\S+) -> ("[^"]+"|\S+)$', dag, re.M)}
    assert found == ir_edges(model)
    for p in model.protos:
        assert re.search(rf'^"?{re.escape(p)}"? \[latent,', dag, re.M)
    for x in model.flows:  # modalities are observed
        assert not re.search(rf'^"?{re.escape(x)}"? \[latent', dag, re.M)


def test_coefficients_and_templates_on_edges(models):
    g = causal_graph(models["two_views"])
    assert g.edges["u", "z1"]["label"] == "rho_t1 × ones(3072)"
    assert g.edges["n2", "z2"]["label"] == "rho_h2"
    assert g.edges["z1", "x1"]["label"] == "identity"
    g = causal_graph(models["telescopes"])
    assert g.edges["u_mass", "z2"]["label"] == "rho_mass2 × T_mass2"
    assert g.edges["u_mass", "z2"]["template"] == "T_mass2"
    g = causal_graph(models["disentangled"])
    assert g.nodes["y_c"]["kind"] == "label" and g.edges["z_c", "y_c"]["label"] == "dot(w_c, ·)"
    assert "T1 @" in g.edges["z_c", "h1"]["label"] and g.edges["z_c", "h1"]["matrix"] == "T1"
    g = causal_graph(models["digits_views"])
    assert g.edges["z1", "x1"]["label"] == "digits(class=3)"


def test_large_families_collapse_small_ones_are_plates(models):
    decay = models["decay"]  # N = 10 > 8
    g = causal_graph(decay)
    assert set(g.nodes) == {"u", "theta", "n[1..10]", "z[1..10]", "x[1..10]"}
    assert g.nodes["n[1..10]"]["members"] == decay.families["n"] and g.nodes["n[1..10]"]["collapsed"]
    e = g.edges["n[1..10]", "z[1..10]"]
    assert e["count"] == 100 and "100 edges" in e["label"] and "alpha^-9 * rho_h" in e["label"]
    assert g.edges["u", "z[1..10]"]["count"] == 10 and "ones(3072)" in g.edges["u", "z[1..10]"]["label"]
    assert g.graph["plates"] == {}
    assert set(causal_graph(decay, collapse=10).nodes) == set(causal_graph(decay, collapse=None).nodes)
    small = load(ROOT / "specs" / "decay.mmi", {"N": "3"})
    g = causal_graph(small)
    assert g.graph["plates"] == {"n": ("n[1]", "n[2]", "n[3]"), "z": ("z[1]", "z[2]", "z[3]"),
                                 "x": ("x[1]", "x[2]", "x[3]")}
    dot = to_dot(g)
    cluster = dot[dot.index('subgraph "cluster_n"'):]
    cluster = cluster[:cluster.index("}")]
    assert all(f'"n[{i}]"' in cluster for i in (1, 2, 3)) and 'label="n[1..3]"' in cluster
    with pytest.raises(ValueError, match="collapsed"):
        to_dagitty(causal_graph(decay))
    with pytest.raises(UsageError):
        causal_graph(decay, collapse=0)


def test_dagitty_exposure_and_outcome(models):
    text = to_dagitty(causal_graph(models["two_views"], None), exposures=("x1",), outcomes=("theta",))
    assert re.search(r"^x1 \[exposure,", text, re.M) and re.search(r"^theta \[outcome,", text, re.M)
    assert '"n[1]" [latent' in to_dagitty(load(ROOT / "specs" / "decay.mmi", {"N": "2"}))


@pytest.mark.parametrize("name", SPEC_IDS)
def test_layout_keeps_nodes_apart(models, name):
    g = causal_graph(models[name])
    pos, (w, h) = layout(g)
    pts = np.array(list(pos.values()))
    assert len({tuple(p) for p in pts.round(6)}) == len(pts)
    for i in range(len(pts)):  # nodes of a layer are a row (1 inch) apart, layers > 1 inch apart
        d = np.abs(pts - pts[i])
        others = np.ones(len(pts), bool)
        others[i] = False
        assert np.all((d[others, 0] > 1.0) | (d[others, 1] >= 0.99))
    assert 0 < pts[:, 0].min() and pts[:, 0].max() < w and 0 < pts[:, 1].min() and pts[:, 1].max() < h


def assert_picture(path, min_size=(400, 250), max_ink=0.6):
    img = Image.open(path)
    img.verify()
    img = Image.open(path).convert("RGB")
    assert img.size[0] >= min_size[0] and img.size[1] >= min_size[1]
    a = np.asarray(img, dtype=np.int16)
    ink = (a.min(axis=2) < 200).mean()
    assert 0.01 < ink < max_ink, f"{path}: {ink:.3f} of the pixels are drawn"
    assert len(np.unique(a.reshape(-1, 3)[::7], axis=0)) > 20  # colours, not a blank or one-tone image


@pytest.mark.parametrize("name", SPEC_IDS)
def test_every_format_writes(models, name, tmp_path):
    model = models[name]
    g = causal_graph(model)
    for suffix in ("dot", "svg", "png"):
        assert write_graph(model, tmp_path / f"g.{suffix}").stat().st_size > 200
    assert write_graph(model, tmp_path / "g.txt", fmt="dagitty").read_text() == to_dagitty(model)
    assert (tmp_path / "g.dot").read_text() == to_dot(g)
    assert_picture(tmp_path / "g.png")
    svg = ET.parse(tmp_path / "g.svg").getroot()
    text = " ".join("".join(t.itertext()) for t in svg.iter() if t.tag.endswith("text"))
    for n in g.nodes:
        assert n in text, f"node {n} is not drawn in the SVG"


def test_cli_graph(tmp_path, capsys):
    spec = str(ROOT / "specs" / "two_views.mmi")
    assert main(["graph", spec]) == 0
    assert capsys.readouterr().out.startswith('digraph "two_views"')
    assert main(["graph", spec, "--format", "dagitty"]) == 0
    assert capsys.readouterr().out.startswith("dag {")
    assert main(["graph", spec, "-o", str(tmp_path / "g.png"), "--set", "d=64"]) == 0
    assert "8 nodes, 7 edges" in capsys.readouterr().out
    assert_picture(tmp_path / "g.png")
    decay = str(ROOT / "specs" / "decay.mmi")
    assert main(["graph", decay, "-o", str(tmp_path / "d.dot"), "--collapse", "20"]) == 0
    assert '"n[10]"' in (tmp_path / "d.dot").read_text()
    assert main(["graph", decay, "-o", str(tmp_path / "d.dagitty"), "--format", "dagitty"]) == 0
    for bad in (["-o", str(tmp_path / "g.jpg")], ["--format", "png"], ["-o", str(tmp_path / "g.dot"),
                                                                       "--format", "svg"], ["--collapse", "0"]):
        assert main(["graph", spec, *bad]) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("error:") and "Traceback" not in err
    bad_spec = tmp_path / "bad.mmi"
    bad_spec.write_text("model m\nproto u : scalar\nlatent z = u * u\n")
    assert main(["graph", str(bad_spec)]) == 1
    assert "error[E0201]" in capsys.readouterr().err


CHAIN = """model chain
dim N = 12
dim d = 4
param a = 0.9 in (0, 2)
proto u : scalar
proto n[1..N] : vector[d]
latent z[1] : vector[d] = u * ones(d) + n[1]
for i in 2..N: latent z[i] = a * z[i-1] + n[i]
latent w = 2 * u * ones(d) + 3 * u * onehot(d, 2) + z[N]
target t = u
flow x = spiral(affine(w, seed = 1))
for i in 1..N: flow y[i] = identity(z[i])
label lab = dot(ones(d), w) < 0.5
"""


def test_chains_inside_a_family_and_skipping_edges(tmp_path):
    from mmmi_dsl import loads
    from mmmi_dsl.graph.picture import _routes
    model = loads(CHAIN)
    full = causal_graph(model, None)
    assert set(full.edges) == ir_edges(model) and full.has_edge("z[3]", "z[4]")
    assert full.edges["u", "w"]["label"] == "2 × ones(4) + 3 × onehot(4, 2)"  # two terms, one edge
    assert full.edges["w", "x"]["label"] == "spiral ∘ affine(seed=1)"  # outermost first
    g = causal_graph(model)
    assert g.nodes["z[1..12]"]["internal_edges"] == 11 and "11 edges within" in g.nodes["z[1..12]"]["label"]
    assert '"z[1..12]" -> "z[1..12]"' in to_dot(g)
    assert nx_is_dag(g)
    pos, _ = layout(g)
    assert pos["t"][0] < pos["w"][0]  # u -> w skips the layer of t ...
    boxes = {n: (x - 0.3, y - 0.2, x + 0.3, y + 0.2) for n, (x, y) in pos.items()}
    rad, pts = _routes(g, pos, boxes)[("u", "w")]
    x0, y0, x1, y1 = boxes["t"]
    inside = (pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1)
    assert not inside.any()  # ... and is drawn around it, not through it
    write_graph(model, tmp_path / "c.png")
    assert_picture(tmp_path / "c.png")


def nx_is_dag(g) -> bool:
    import networkx as nx
    h = g.copy()
    h.remove_edges_from(nx.selfloop_edges(h))
    return nx.is_directed_acyclic_graph(h)
