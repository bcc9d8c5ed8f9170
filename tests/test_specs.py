"""Every spec in specs/ checks, compiles, and round-trips IR -> JSON -> IR unchanged."""

from __future__ import annotations

import json
import math

import pytest

from mmmi_dsl import load
from mmmi_dsl.cli import main
from mmmi_dsl.ir import Model

from .conftest import SPECS

EXPECTED = {"two_views", "telescopes", "decay", "ablation", "disentangled"}


def test_the_corpus_has_the_five_stories():
    assert EXPECTED <= {p.stem for p in SPECS}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_checks_and_round_trips(path):
    model = load(path)
    again = Model.model_validate_json(model.model_dump_json())
    assert again == model
    assert again.model_dump() == model.model_dump()


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_compile_writes_ir_json(path, tmp_path, capsys):
    assert main(["compile", str(path), "-o", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "ir.json").read_text())
    assert Model.model_validate(data) == load(path)


def test_ir_is_frozen():
    model = load(SPECS[0])
    with pytest.raises(Exception):
        model.name = "other"  # type: ignore[misc]


def test_two_views_structure():
    m = load([p for p in SPECS if p.stem == "two_views"][0])
    assert m.name == "two_views"
    assert {k: p.value for k, p in m.params.items()} == {
        "eta": 1.0, "rho_t1": 0.3, "rho_t2": 0.3, "rho_h1": 0.1, "rho_h2": 0.2}
    assert m.dims["d"].value == 3072
    assert m.targets == ["theta"] and m.modalities == ["x1", "x2"]
    z1 = m.variables["z1"]
    assert [(t.op, t.sources) for t in z1.terms] == [("template", ("u",)), ("identity", ("n1",))]
    assert m.templates[z1.terms[0].template].kind == "ones"
    assert [q.text for q in m.reports] == ["I(theta; x1)", "I(theta; x2)", "I(x1; x2)"]


def test_decay_families_and_reports():
    m = load([p for p in SPECS if p.stem == "decay"][0])
    assert m.modalities == [f"x[{i}]" for i in range(1, 11)]
    assert m.families["n"] == tuple(f"n[{i}]" for i in range(1, 11))
    assert len(m.variables["z[4]"].terms) == 11
    texts = [q.text for q in m.reports]
    assert texts[:9] == [f"I(x[1]; x[{j}])" for j in range(2, 11)]
    assert texts[9:] == [f"I(theta; x[{j}])" for j in range(1, 11)]


def test_decay_scales_with_set():
    m = load([p for p in SPECS if p.stem == "decay"][0], {"N": "100"})
    assert len(m.flows) == 100 and len(m.reports) == 199


def test_telescopes_templates_are_images():
    m = load([p for p in SPECS if p.stem == "telescopes"][0])
    t = m.templates["T_mass1"]
    assert t.kind == "image" and t.size == 3072 and t.args["shape"] == (3, 32, 32)
    assert t.path is not None and t.path.endswith("theta0_mod0.png")


def test_disentangled_matrices_and_labels():
    m = load([p for p in SPECS if p.stem == "disentangled"][0])
    assert m.matrices["T1"].rows == 100 and m.matrices["T1"].cols == 100
    h1 = m.variables["h1"]
    assert h1.terms[0].op == "matrix" and h1.terms[0].sources == ("z_s1", "z_c")
    assert set(m.labels) == {"y_c", "y_s1", "y_s2"}
    assert m.labels["y_c"].terms[0].op == "dot"


def test_paper_benchmark_sweeps_the_papers_ranges():
    """specs/paper_benchmark.mmi: its own sweeps are the paper's ten datasets. Each value equals
    the closed form (s = d rho_t^2 at rho_h = 1), and the ends round to the digits the paper
    prints: I(x1; x2) from 0.0284 to 1.39, I(theta; x1) from 0.134 to 1.73 nats."""
    from mmmi_dsl.mi.sweep import spec_sweeps

    m = load([p for p in SPECS if p.stem == "paper_benchmark"][0])
    (table,) = spec_sweeps(m)  # both sweeps run over the same ten values: one table
    assert table.param == "rho_t" and table.queries == ["I(x1; x2)", "I(theta; x1)"]
    values = [r.value for r in table.rows]
    assert values == pytest.approx([0.01 * k for k in range(1, 11)], rel=1e-12)
    for row in table.rows:
        s = 3072 * row.value ** 2
        shared, theta = (r.nats for r in row.results)
        assert theta == pytest.approx(0.5 * math.log1p(s), rel=1e-12)
        assert shared == pytest.approx(-0.5 * math.log1p(-(s / (1 + s)) ** 2), rel=1e-12)
    first, last = table.rows[0].results, table.rows[-1].results
    assert (round(first[0].nats, 4), round(last[0].nats, 2)) == (0.0284, 1.39)
    assert (round(first[1].nats, 3), round(last[1].nats, 2)) == (0.134, 1.73)


def test_paper_benchmark_against_dense_covariance():
    """The MIs depend on d and rho_t only through s = d rho_t^2, so at d = 6 with rho_t scaled by
    sqrt(3072 / 6) the dense log-determinants of tests/dense_reference.py (cheap at that size) must
    give the engine's values at d = 3072, at both ends of the family."""
    from mmmi_dsl.lang.lower import resolve_query
    from mmmi_dsl.mi.analysis import Analysis

    from .dense_reference import dense_mi

    path = [p for p in SPECS if p.stem == "paper_benchmark"][0]
    for rho_t in (0.01, 0.1):
        full = Analysis(load(path, {"rho_t": repr(rho_t)}))
        small = load(path, {"d": "6", "rho_t": repr(rho_t * math.sqrt(3072 / 6))})
        for a, b in (("x1", "x2"), ("theta", "x1")):
            got = full.evaluate(resolve_query(full.model, f"I({a}; {b})")).nats
            latent = lambda x: small.flows[x].latent if x in small.flows else x  # noqa: E731
            want = dense_mi(small, [latent(a)], [latent(b)])
            assert math.isclose(got, want, rel_tol=1e-9), (rho_t, a, b, got, want)
