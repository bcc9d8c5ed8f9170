"""Every spec in specs/ checks, compiles, and round-trips IR -> JSON -> IR unchanged."""

from __future__ import annotations

import json

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
