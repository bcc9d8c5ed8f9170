"""End to end on a Student-t and uniform spec: mi, formula, a refused query, generate, verify, estimate."""

from __future__ import annotations

import json

import pytest

SPEC = """\
model heavy
param eps = 0.1 in (0, 10)
proto x0 : uniform[0, 1]
proto n : uniform[-eps, eps]
latent y = x0 + n
flow X = identity(x0)
flow Y = identity(y)
proto g : vector[2]
proto h : vector[2]
latent a = g
latent b = h
student(2): a, b
flow A = asinh(a)
flow B = identity(b)
report I(X; Y)
report I(A; B)
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "heavy.mmi"
    path.write_text(SPEC)
    return path


def test_mi_and_formula(mmmic, spec):
    code, out, err = mmmic("mi", str(spec), "--json")
    assert code == 0, err
    values = {r["query"]: r["nats"] for r in json.loads(out)["results"]}
    assert values["I(X; Y)"] == pytest.approx(0.1 - __import__("math").log(0.2), rel=1e-14)
    assert values["I(A; B)"] == pytest.approx(0.1931471805599453, rel=1e-12)  # BMI student-identity-2-2-2
    code, out, err = mmmic("formula", str(spec))
    assert code == 0, err
    assert "Piecewise" in out or "eps" in out


def test_refused_query_has_code_span_and_reason(mmmic, spec):
    spec.write_text(SPEC + "proto k : scalar\nlatent w = x0 + k\nreport I(X; w)\n")
    code, out, err = mmmic("mi", str(spec))
    assert code == 1
    assert "error[E0220]" in err and "adds Gaussian `k` to uniform noise" in err and "heavy.mmi:19:8" in err


def test_generate_verify_estimate(mmmic, spec, tmp_path):
    out_dir = tmp_path / "data"
    code, out, err = mmmic("generate", str(spec), "-n", "2000", "-o", str(out_dir))
    assert code == 0, err
    code, out, err = mmmic("verify", str(out_dir))
    assert code == 0, out + err
    assert "Student-t or built from uniform noise" in out
    code, out, err = mmmic("estimate", str(out_dir), "-q", "I(X; Y)", "-e", "ksg", "--json")
    assert code == 0, err
    row = json.loads(out)
    assert row
