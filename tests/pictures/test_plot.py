"""mmmic plot: the numbers drawn are the exact engine's, and every spec's MI matrix draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmmi_dsl import load
from mmmi_dsl.cli import main
from mmmi_dsl.cli.pictures import parse_axis_values, parse_by, parse_index_range
from mmmi_dsl.errors import SpecError, UsageError
from mmmi_dsl.ir import Query
from mmmi_dsl.lang.lower import resolve_query
from mmmi_dsl.mi.analysis import Analysis
from mmmi_dsl.plot import plot_mi_matrix, plot_mi_vs_index, plot_mi_vs_param

from ..conftest import ROOT, SPECS
from .test_graph import assert_picture

TWO_VIEWS = ROOT / "specs" / "two_views.mmi"
DECAY = ROOT / "specs" / "decay.mmi"


def exact(model, a: str, b: str) -> float:
    return Analysis(model).evaluate(Query(kind="I", groups=((a,), (b,)), text=f"I({a}; {b})")).nats


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_mi_matrix_of_every_spec(path, tmp_path):
    model = load(path)
    m = plot_mi_matrix(model, tmp_path / "m.png")
    assert m.names == tuple(model.targets) + tuple(model.modalities)
    n = len(m.names)
    assert m.nats.shape == (n, n) and np.isnan(np.diag(m.nats)).all()
    assert np.array_equal(m.nats, m.nats.T, equal_nan=True)
    engine = Analysis(model)
    for i in range(n):  # the drawn matrix is the engine's answer to I(row; column)
        for j in range(i + 1, n):
            q = Query(kind="I", groups=((m.names[i],), (m.names[j],)), text="")
            assert m.nats[i, j] == engine.evaluate(q).nats
    assert_picture(tmp_path / "m.png", (300, 300), max_ink=0.95)


def test_mi_matrix_values_are_the_closed_forms(tmp_path):
    m = plot_mi_matrix(load(TWO_VIEWS), tmp_path / "m.svg", unit="bits")
    theta, x1, x2 = (m.names.index(k) for k in ("theta", "x1", "x2"))
    assert m.nats[theta, x1] == pytest.approx(5.11367, abs=1e-5)  # in the spec's comment; nats even for bits
    assert m.nats[theta, x2] == pytest.approx(4.42058, abs=1e-5)
    assert m.nats[x1, x2] == pytest.approx(4.30901, abs=1e-5)
    svg = (tmp_path / "m.svg").read_text()
    assert "7.38" in svg and "[bits]" in svg  # 5.11367 nats = 7.3775 bits, written in the cell


def test_mi_matrix_shows_infinity(tmp_path):
    from mmmi_dsl import loads
    model = loads("model m\nproto u : scalar\nproto n : scalar\ntarget t = u\nlatent z = u\nlatent w = u + n\n"
                  "flow x = identity(z)\nflow y = identity(w)\n")
    m = plot_mi_matrix(model, tmp_path / "m.svg")
    assert math.isinf(m.nats[0, 1]) and m.nats[0, 2] == pytest.approx(0.5 * math.log(2))
    assert "∞" in (tmp_path / "m.svg").read_text()


def test_mi_vs_param_equals_evaluate(tmp_path):
    model = load(TWO_VIEWS)
    xs = [0.01, 0.1, 0.5]
    curves = plot_mi_vs_param(model, tmp_path / "p.png", "rho_t1", xs)
    assert [c.query for c in curves] == [q.text for q in model.reports]
    for c in curves:
        q = next(r for r in model.reports if r.text == c.query)
        assert list(c.x) == xs
        for x, y in zip(xs, c.nats):
            assert y == Analysis(model.with_params({"rho_t1": x})).evaluate(q).nats
    assert_picture(tmp_path / "p.png")
    q = resolve_query(model, "I(x1; x2)")
    curves = plot_mi_vs_param(model, tmp_path / "b.png", "rho_t1", xs, [q], by=("rho_h1", [0.1, 1.0]))
    assert [c.by for c in curves] == [("rho_h1", 0.1), ("rho_h1", 1.0)]
    for c in curves:
        for x, y in zip(xs, c.nats):
            assert y == Analysis(model.with_params({"rho_t1": x, "rho_h1": c.by[1]})).evaluate(q).nats
    assert curves[0].nats[1] > curves[1].nats[1]  # more noise, less shared information
    assert_picture(tmp_path / "b.png")


def test_mi_vs_index_is_decay_with_distance(tmp_path):
    model = load(DECAY, {"N": "5"})
    index, js = parse_index_range(model, "j=1..N")
    assert (index, js) == ("j", [1, 2, 3, 4, 5])
    curves = plot_mi_vs_index(model, tmp_path / "d.png", "j", js, by=("beta", [1.2, 2.0]))
    assert {c.query for c in curves} == {"I(x[1]; x[j])", "I(theta; x[j])"}
    for c in curves:
        m = model.with_params({"beta": c.by[1]})
        a, b = ("x[1]", "x[{}]") if c.query.startswith("I(x[1]") else ("theta", "x[{}]")
        for j, y in zip(js, c.nats):
            assert y == exact(m, a, b.format(j))
        if a == "x[1]":
            assert math.isinf(c.nats[0]) and np.all(np.diff(c.nats[1:]) < 0)  # decays with distance
    assert_picture(tmp_path / "d.png")


def test_usage_errors():
    model = load(TWO_VIEWS)
    with pytest.raises(UsageError, match="not a parameter"):
        plot_mi_vs_param(model, "/tmp/x.png", "zeta", [1.0])
    with pytest.raises(UsageError, match="outside the bounds"):
        plot_mi_vs_param(model, "/tmp/x.png", "rho_t1", [0.0, 1.0])
    with pytest.raises(UsageError, match="must end in"):
        plot_mi_matrix(model, "/tmp/x.jpg")
    with pytest.raises(UsageError, match="derived"):
        plot_mi_vs_param(load(ROOT / "specs" / "disentangled.mmi"), "/tmp/x.png", "s", [1.0])
    with pytest.raises(UsageError, match="does not use the index"):
        plot_mi_vs_index(load(DECAY), "/tmp/x.png", "j", [1, 2], ["I(x[1]; x[2])"])
    with pytest.raises(UsageError, match="no family of modalities"):
        plot_mi_vs_index(model, "/tmp/x.png", "j", [1, 2])
    with pytest.raises(SpecError):
        plot_mi_vs_index(load(DECAY), "/tmp/x.png", "j", [1, 2], ["I(x[1]; y[j])"])
    assert parse_axis_values("0:2:5") == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert parse_by("beta=0.5,1,2") == ("beta", [0.5, 1.0, 2.0])
    for bad in ("beta", "beta=", "=1"):
        with pytest.raises(UsageError):
            parse_by(bad)
    for bad in ("j=1..M", "j=5..2", "1..3"):
        with pytest.raises(UsageError):
            parse_index_range(load(DECAY), bad)


def test_cli_plot(tmp_path, capsys):
    spec, decay = str(TWO_VIEWS), str(DECAY)
    assert main(["plot", spec, "--kind", "mi-matrix", "-o", str(tmp_path / "m.png")]) == 0
    assert "exact MI of 3 variables" in capsys.readouterr().out
    assert main(["plot", spec, "--kind", "mi-vs-param", "--param", "rho_t1", "--values", "0.01:0.5:6",
                 "-q", "I(x1; x2) bits", "-o", str(tmp_path / "p.png")]) == 0
    assert "1 query over rho_t1 in [0.01, 0.5] (6 points)" in capsys.readouterr().out
    assert main(["plot", decay, "--kind", "mi-vs-param", "--over", "j=2..N", "--by", "alpha=1.2,2",
                 "--set", "N=4", "-o", str(tmp_path / "d.png")]) == 0
    assert "over j = 2..4, one line per alpha = 1.2, 2" in capsys.readouterr().out
    assert_picture(tmp_path / "d.png")
    usage = [
        [spec, "--kind", "mi-matrix", "-o", str(tmp_path / "m.jpg")],
        [spec, "--kind", "mi-matrix", "--param", "rho_t1", "-o", str(tmp_path / "m.png")],
        [spec, "--kind", "mi-vs-param", "-o", str(tmp_path / "p.png")],
        [spec, "--kind", "mi-vs-param", "--param", "eta", "-o", str(tmp_path / "p.png")],  # no bounds, no values
        [spec, "--kind", "mi-vs-param", "--param", "rho_t1", "--values", "0:1:3", "-o", str(tmp_path / "p.png")],
        [decay, "--kind", "mi-vs-param", "--over", "j=2..N", "--param", "alpha", "-o", str(tmp_path / "p.png")],
        [spec, "--kind", "mi-vs-param", "--param", "rho_t1", "--by", "rho_t1=1", "-o", str(tmp_path / "p.png")],
    ]
    for args in usage:
        assert main(["plot", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error:") and "Traceback" not in err, err
    assert main(["plot", spec, "--kind", "mi-vs-param", "--param", "rho_t1", "-q", "I(x1; x3)",
                 "-o", str(tmp_path / "p.png")]) == 1
    assert "error[E0101]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["plot", spec, "--kind", "heatmap", "-o", str(tmp_path / "p.png")])
    assert exit_.value.code == 2


def test_a_zero_curve_does_not_pick_a_log_scale(tmp_path):
    model = load(ROOT / "specs" / "disentangled.mmi")
    qs = [resolve_query(model, q) for q in ("I(x1; x2 | z_c)", "I(x1; x2)", "I(y_c; x1)")]
    curves = plot_mi_vs_param(model, tmp_path / "s.svg", "sigma", [0.001, 0.01, 0.1, 1.0], qs)
    assert np.all(np.abs(curves[0].nats) < 1e-6)  # conditionally independent: 0 up to round-off
    assert curves[1].nats[0] > 100 and curves[2].nats[-1] < 1
    svg = (tmp_path / "s.svg").read_text()
    assert "I(x1; x2 | z_c) = 0 (&lt; 1e-06 nats)" in svg and "log scale" in svg


def test_mi_matrix_of_chosen_names(tmp_path, capsys):
    model = load(ROOT / "specs" / "disentangled.mmi")
    names = ["x1", "z_c", "y_c", "y_s1"]
    m = plot_mi_matrix(model, tmp_path / "m.png", names)
    assert m.names == tuple(names)
    assert m.nats[1, 2] == pytest.approx(math.log(2))  # y_c = 1[dot(w_c, z_c) > 0]: one bit about z_c
    assert m.nats[0, 2] == exact(model, "y_c", "x1") and m.nats[0, 1] == exact(model, "x1", "z_c")
    assert np.isnan(m.nats[2, 3])  # two labels: no such query
    with pytest.raises(UsageError, match="not a variable"):
        plot_mi_matrix(model, tmp_path / "m.png", ["x1", "nope"])
    spec = str(ROOT / "specs" / "disentangled.mmi")
    assert main(["plot", spec, "--kind", "mi-matrix", "--names", "x1,z_c,y_c", "-o", str(tmp_path / "n.png")]) == 0
    assert "exact MI of 3 variables (x1, z_c, y_c)" in capsys.readouterr().out
    for bad in ("x1", "x1,,x2", "x1,x1"):
        assert main(["plot", spec, "--kind", "mi-matrix", "--names", bad, "-o", str(tmp_path / "n.png")]) == 2
    assert main(["plot", spec, "--kind", "mi-vs-param", "--param", "sigma", "--names", "x1,x2",
                 "-o", str(tmp_path / "n.png")]) == 2
