"""The Python API (mmmi_dsl.Spec): docs/python.md runs as written, and its contract."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys

import pytest

import mmmi_dsl as mm
from mmmi_dsl import ir
from mmmi_dsl.mi.symbolic import Derivation

from .conftest import ROOT

TWO_VIEWS = ROOT / "specs" / "two_views.mmi"


def _python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", (ROOT / "docs" / "python.md").read_text(encoding="utf-8"),
                      re.M | re.S)


@pytest.fixture(scope="module")
def spec() -> mm.Spec:
    return mm.load(TWO_VIEWS, d=64)


def test_docs_python_blocks_run_in_order(tmp_path, monkeypatch):
    """Every ```python block of docs/python.md, in one namespace, from a copy of the repository's specs."""
    blocks = _python_blocks()
    assert len(blocks) >= 8
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_python"}
    for i, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"docs/python.md block {i}", "exec"), namespace)
        except Exception as err:  # noqa: BLE001 - name the block that failed
            raise AssertionError(f"docs/python.md block {i} failed: {type(err).__name__}: {err}\n{block}") from err
    assert namespace["r"] > 0 and mm.verify(tmp_path / "out" / "tv").ok


def test_readme_python_block_runs(tmp_path, monkeypatch):
    (block,) = re.findall(r"^```python\n(.*?)^```$", (ROOT / "README.md").read_text(encoding="utf-8"), re.M | re.S)
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert mm.verify("out/tv").ok and next(iter(namespace["stream"]))["x1"].shape == (64,)


def test_the_example_of_the_brief_exactly(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    spec = mm.load("specs/two_views.mmi", d=64)
    assert isinstance(spec.mi("I(theta; x1)"), float)
    import sympy as sp
    assert isinstance(spec.formula("I(theta; x1)"), sp.Expr)
    r = spec.solve("rho_t1", "I(theta; x1) = 1")
    assert isinstance(r, float) and math.isclose(spec.at(rho_t1=r).mi("I(theta; x1)"), 1.0, rel_tol=1e-9)
    manifest = spec.generate("out/tv", n=1000, seed=0)
    assert manifest["complete"] and mm.verify("out/tv").ok is True


# ---------------------------------------------------------------- loading


def test_keyword_and_dict_overrides_agree(spec):
    assert spec == mm.load(TWO_VIEWS, {"d": "64"}) == mm.load(TWO_VIEWS, {"d": 64}) == mm.load(str(TWO_VIEWS), d="64")
    assert spec.dims["d"].value == 64
    both = mm.load(TWO_VIEWS, {"d": "8"}, rho_t1=0.25)
    assert both.dims["d"].value == 8 and both.params["rho_t1"].value == 0.25
    assert mm.loads(TWO_VIEWS.read_text(), d=64, base_dir=ROOT / "specs").mi("I(x1; x2)") == spec.mi("I(x1; x2)")


def test_float_overrides_pass_their_shortest_text():
    assert mm.load(TWO_VIEWS, d=4, rho_t1=0.1).params["rho_t1"].value == 0.1
    import numpy as np
    assert mm.load(TWO_VIEWS, d=np.int64(4), rho_t1=np.float64(0.1)).params["rho_t1"].value == 0.1


@pytest.mark.parametrize("kwargs, overrides, words", [
    ({"d": 4}, {"d": "4"}, "given twice"),
    ({"nope": 1}, None, "unknown name nope"),
    ({"d": [4]}, None, "give a number or a string"),
    ({"d": True}, None, "give a number or a string"),
    ({"rho_t1": 50}, None, "outside the bounds"),
])
def test_bad_overrides_are_usage_errors(kwargs, overrides, words):
    with pytest.raises(mm.UsageError, match=words):
        mm.load(TWO_VIEWS, overrides, **kwargs)


def test_a_spec_is_the_ir(spec):
    assert isinstance(spec, mm.Spec) and isinstance(spec, ir.Model) and type(spec).__mro__[1] is ir.Model
    assert set(mm.Spec.model_fields) == set(ir.Model.model_fields)
    text = spec.model_dump_json()
    back = ir.Model.model_validate_json(text)
    assert back == spec and spec == back and type(back) is ir.Model
    assert back.model_dump_json() == text
    moved = spec.with_params({"rho_t1": 0.2})
    assert type(moved) is mm.Spec and type(spec.model_copy()) is mm.Spec and moved != spec
    assert mm.Spec.of(back) == spec and mm.Spec.of(spec) is spec


def test_the_cli_ir_json_is_unchanged(spec, capsys):
    from mmmi_dsl.cli import main
    from mmmi_dsl.report import ir_json
    assert main(["compile", str(TWO_VIEWS), "--set", "d=64"]) == 0
    assert capsys.readouterr().out == ir_json(spec) + "\n" == ir.Model.model_validate_json(ir_json(spec)) \
        .model_dump_json(indent=2) + "\n"


def test_import_and_mi_do_not_import_torch():
    code = ("import sys, mmmi_dsl as mm\n"
            f"s = mm.load({str(TWO_VIEWS)!r}, d=16)\n"
            "s.mi('I(theta; x1)'); s.mis(); s.table(); s.solve('rho_t1', 'I(theta; x1) = 1')\n"
            "s.sweep('rho_t1', [0.1, 0.2]); s.formula('I(theta; x1)'); mm.verify\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---------------------------------------------------------------- answers


def test_mi_units_and_inf(spec):
    nats = spec.mi("I(theta; x1)")
    assert math.isclose(spec.mi("I(theta; x1)", unit="bits"), nats / math.log(2))
    assert spec.mi("I(theta; x1) bits") == spec.mi("I(theta; x1)", unit="bits")
    assert spec.mi("I(x1; x1)") == math.inf
    assert spec.mis("I(x1; x1)") == {"I(x1; x1)": math.inf}
    assert list(spec.mis()) == [q.text for q in spec.reports]
    with pytest.raises(mm.UsageError, match="nats or bits"):
        spec.mi("I(theta; x1)", unit="nat")


def test_table_is_the_cli_table(spec, capsys):
    from mmmi_dsl.cli import main
    assert main(["mi", str(TWO_VIEWS), "--set", "d=64"]) == 0
    assert capsys.readouterr().out == spec.table() + "\n"


def test_formula_matches_the_value_and_the_cli(spec, capsys):
    import sympy as sp
    f = spec.formula("I(theta; x1)")
    assert isinstance(f, sp.Expr) and {s.name for s in f.free_symbols} == {"d", "rho_t1", "rho_h1"}
    value = float(f.subs({s: spec.env()[s.name] for s in f.free_symbols}))
    assert math.isclose(value, spec.mi("I(theta; x1)"), rel_tol=1e-12)
    assert spec.formula("I(theta; x1)", numeric="all").is_number
    from mmmi_dsl.cli import main
    assert main(["formula", str(TWO_VIEWS), "--set", "d=64", "-q", "I(theta; x1)"]) == 0
    assert capsys.readouterr().out == "\\begin{equation}\n  " + spec.latex("I(theta; x1)") + "\n\\end{equation}\n"


def test_formulas_are_data():
    mixed = mm.load(ROOT / "specs" / "disentangled.mmi")
    derived = mixed.formulas()
    assert [r.query.text for r in derived] == [q.text for q in mixed.reports]
    assert all(isinstance(r, Derivation) for r in derived)
    none = [r for r in derived if r.formula is None]
    assert none and all(r.error is not None and r.reason and "no closed form" not in r.reason for r in none)
    with pytest.raises(mm.SpecError) as caught:
        mixed.formula(none[0].query.text)
    assert caught.value.diagnostics[0].code == "E0211"


def test_formula_timeout_is_e0215(spec):
    import signal
    if not hasattr(signal, "setitimer"):
        pytest.skip("no interval timers")
    with pytest.raises(mm.SpecError) as caught:
        spec.formula("I(x1; x2)", timeout=1e-6)
    assert caught.value.diagnostics[0].code == "E0215"
    assert "<query>" in caught.value.render()


def test_solve_sweep_and_at(spec):
    r = spec.solve("rho_t1", "I(theta; x1) = 1")
    assert math.isclose(spec.at(rho_t1=r).mi("I(theta; x1)"), 1.0, rel_tol=1e-9)
    rb = spec.solve("rho_t1", "I(theta; x1) = 1 bits", bracket=(0.001, 1))
    assert math.isclose(spec.at(rho_t1=rb).mi("I(theta; x1)", unit="bits"), 1.0, rel_tol=1e-9)
    sol = spec.solution("rho_t1", "I(theta; x1) = 1")
    assert sol.value == r and sol.evaluations > 0
    rows = spec.sweep("rho_t1", [0.01, 0.02], "I(x1; x2)")
    assert rows == [{"rho_t1": v, "I(x1; x2)": spec.at(rho_t1=v).mi("I(x1; x2)")} for v in (0.01, 0.02)]
    assert len(spec.sweep("rho_t1", "linspace(0.01, 0.1, 3)")) == 3
    assert spec.sweep("rho_t1", [0.01], unit="bits")[0]["I(x1; x2)"] == spec.at(rho_t1=0.01).mi("I(x1; x2) bits")


@pytest.mark.parametrize("call, error, words", [
    (lambda s: s.mi("I(theta; x9)"), mm.SpecError, "unknown name `x9`"),
    (lambda s: s.mi("I(theta; "), mm.SpecError, "unexpected end"),
    (lambda s: s.mi(3), mm.UsageError, "a query is text"),
    (lambda s: s.solve("rho_t1", "I(theta; x1) = 100"), mm.SpecError, "out of reach"),
    (lambda s: s.solve("rho_t1", "I(theta; x1) = abc"), mm.SpecError, "not a number"),
    (lambda s: s.solve("nope", "I(theta; x1) = 1"), mm.UsageError, "not a parameter"),
    (lambda s: s.solve("rho_t1", "I(theta; x1) = 1", bracket=(1,)), mm.UsageError, "bracket"),
    (lambda s: s.at(rho_t1=100), mm.UsageError, r"in \(0, 10\)"),
    (lambda s: s.at(nope=1), mm.UsageError, "not a parameter"),
    (lambda s: s.sweep("rho_t1", [100]), mm.UsageError, "outside the bounds"),
    (lambda s: s.generate("unused", n=0), mm.UsageError, "at least 1"),
])
def test_errors(spec, call, error, words):
    with pytest.raises(error, match=words):
        call(spec)


def test_a_bad_query_points_into_its_text(spec):
    with pytest.raises(mm.SpecError) as caught:
        spec.mi("I(theta; x9)")
    d = caught.value.diagnostics[0]
    assert (d.span.file, d.span.line, d.span.column, d.span.end_column) == ("<query>", 1, 10, 12)
    assert "1 | I(theta; x9)" in caught.value.render() and "^^" in caught.value.render()
    with pytest.raises(mm.SpecError) as caught:
        spec.solve("rho_t1", "I(theta; x1) = 100")
    assert caught.value.diagnostics[0].span.file == "<target>" and "I(theta; x1) = 100" in caught.value.render()


def test_generate_matches_the_cli_byte_for_byte(tmp_path):
    from mmmi_dsl.cli import main
    small = mm.load(TWO_VIEWS, d=4)
    small.generate(tmp_path / "api", n=300, seed=3, pmi=["x1;x2"])
    assert main(["generate", str(TWO_VIEWS), "--set", "d=4", "-o", str(tmp_path / "cli"), "-n", "300",
                 "--seed", "3", "--pmi", "x1;x2", "--no-progress"]) == 0
    api, cli = sorted((tmp_path / "api").rglob("*.npy")), sorted((tmp_path / "cli").rglob("*.npy"))
    assert [p.relative_to(tmp_path / "api") for p in api] == [p.relative_to(tmp_path / "cli") for p in cli]
    assert all(a.read_bytes() == c.read_bytes() for a, c in zip(api, cli))
    assert mm.verify(tmp_path / "api").ok


def test_load_a_dataset_directory_answers_from_its_recorded_spec(tmp_path):
    """mm.load(DIR) is the spec a dataset was generated from, at its recorded values (as `mmmic mi DIR`)."""
    spec = mm.load(ROOT / "specs" / "two_views.mmi", d=4, rho_t1=0.2)
    spec.generate(tmp_path / "tv", n=50, seed=0)
    again = mm.load(tmp_path / "tv")
    assert again.params["rho_t1"].value == 0.2 and again.dims["d"].value == 4
    assert again.mi("I(theta; x1, x2)") == spec.mi("I(theta; x1, x2)")
    assert mm.load(tmp_path / "tv" / "manifest.json").mi("I(x1; x2)") == spec.mi("I(x1; x2)")
    with pytest.raises(mm.UsageError, match="is a dataset"):
        mm.load(tmp_path / "tv", d=8)
