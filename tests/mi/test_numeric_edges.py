"""Numerical edge cases: coefficients at 0 and 1e+-300, nearly singular covariances, d = 1,
one modality, a thousand modalities. Correct values (closed forms of docs/science.md or
the dense reference), inf where due, or a clear error; never NaN (docs/reliability.md)."""

from __future__ import annotations

import math
import time

import pytest

from mmmi_dsl import loads
from mmmi_dsl.cli import main
from mmmi_dsl.errors import SpecError
from mmmi_dsl.mi.analysis import Analysis
from tests.dense_reference import dense_mi

TWO_VIEWS = """param t1 = {t1}
param t2 = {t2}
param h1 = {h1}
param h2 = {h2}
param eta = {eta}
dim d = {d}
proto u : scalar
proto n1 : vector[d]
proto n2 : vector[d]
target theta = eta * u
latent z1 = t1 * u * ones(d) + h1 * n1
latent z2 = t2 * u * ones(d) + h2 * n2
report I(theta; z1)
report I(z1; z2)
report I(theta; z1 | z2)
"""
DEFAULTS = dict(t1=0.3, t2=0.3, h1=0.1, h2=0.2, eta=1, d=3072)


def two_views(**kw) -> tuple[list, dict]:
    p = {**DEFAULTS, **kw}
    model = loads(TWO_VIEWS.format(**p), file="edge.mmi")
    results = Analysis(model).evaluate_all(model.reports)
    for r in results:
        assert not math.isnan(r.nats), r
    return [r.nats for r in results], p


def closed(p: dict) -> tuple[float, float, float]:
    """docs/science.md section 5, in log1p form (exact for tiny and huge ratios)."""
    d, t1, t2, h1, h2 = p["d"], p["t1"], p["t2"], p["h1"], p["h2"]
    s1, s2 = d * (t1 / h1) ** 2, d * (t2 / h2) ** 2  # signal-to-noise of each view
    i_t1 = 0.5 * math.log1p(s1)
    i_12 = -0.5 * math.log1p(-(s1 / (1 + s1)) * (s2 / (1 + s2)))
    i_t1_given_2 = 0.5 * (math.log1p(s1 + s2) - math.log1p(s2))  # I(u; z1, z2) - I(u; z2)
    return i_t1, i_12, i_t1_given_2


def test_defaults_match_the_closed_forms():
    values, p = two_views()
    assert values == pytest.approx(closed(p), rel=1e-10)


@pytest.mark.parametrize("h1", [1e-3, 1e-5, 1e-6, 1e-8, 1e-12])
def test_nearly_singular_noise(h1):
    """Noise 1e-12 of the signal: the MI stays exact (30.44 nats at 1e-12).

    The conditional I(theta; z1 | z2) was inf below h1 = 1e-6 (16.81 nats at 1e-8):
    the noise Gram's eigenvalues were thresholded at 1e-12 of the other noise's
    variance, though the SVD gives them to eps of its singular values (mi/logdet.py).
    """
    values, p = two_views(h1=h1)
    assert values == pytest.approx(closed(p), rel=1e-9)


def test_zero_coefficients():
    values, _ = two_views(t1=0)
    assert values == [0.0, 0.0, 0.0]
    values, _ = two_views(eta=0)  # theta is the constant 0
    assert values[0] == 0.0 and values[2] == 0.0
    values, p = two_views(h1=0)  # z1 is a deterministic function of u
    assert values[0] == math.inf and values[2] == math.inf
    s2 = p["d"] * (p["t2"] / p["h2"]) ** 2
    assert values[1] == pytest.approx(0.5 * math.log1p(s2), rel=1e-9)  # I(z1; z2) = I(u; z2)


@pytest.mark.parametrize("scale", [1e-300, 1e-150, 1e-100, 1e100, 1e149])
def test_scale_invariance_at_extreme_magnitudes(scale):
    """Every coefficient times 1e-300 ... 1e149: the same MI (a block's scale cancels)."""
    values, p = two_views(t1=scale, t2=scale, h1=scale, h2=scale, eta=scale)
    assert values == pytest.approx(closed({**p, "t1": 1, "t2": 1, "h1": 1, "h2": 1}), rel=1e-10)


def test_mixed_extreme_magnitudes():
    """A signal 1e-300 against noise 1: MI underflows to exactly 0; 1e-300 noise under signal 1: finite."""
    values, _ = two_views(t1=1e-300)
    assert values == [0.0, 0.0, 0.0]
    values, p = two_views(h1=1e-300, h2=1e-300, d=64)  # d = 3072 takes the dense residual path: ~1 min
    assert values[0] == math.inf and values[2] in (0.0, math.inf)


@pytest.mark.parametrize("coef,what", [
    ("1e300", "overflow"),                      # beyond 1e150: its variance would overflow
    ("a * a", "not a finite real number"),      # a = 1e200: the product is inf
])
def test_huge_coefficients_are_a_clear_error(coef, what):
    text = (f"param a = 1e200\nproto u : scalar\nproto n : vector[3]\nlatent z = {coef} * u * ones(3) + n\n"
            "report I(u; z)\n")
    with pytest.raises(SpecError) as info:
        model = loads(text, file="edge.mmi")
        Analysis(model).evaluate_all(model.reports)
    assert info.value.diagnostics[0].code == "E0212" and what in info.value.render()


@pytest.mark.parametrize("coef", ["a * a", "1e-200 * 1e-200", "1e-200 / 1e200", "10^-400", "exp(-1000)", "a^2"])
def test_underflowing_products_are_a_clear_error(coef):
    """1e-200 * 1e-200 is 0.0 in doubles: the term vanished and I(u; z) silently became 0."""
    text = (f"param a = 1e-200\nproto u : scalar\nproto n : vector[3]\n"
            f"latent z = {coef} * u * ones(3) + {coef} * n\nreport I(u; z)\n")
    with pytest.raises(SpecError) as info:
        model = loads(text, file="edge.mmi")
        Analysis(model).evaluate_all(model.reports)
    assert "underflows" in info.value.render() and info.value.diagnostics[0].span.line == 4


def test_small_products_that_fit_are_exact():
    text = ("param a = 1e-100\nproto u : scalar\nproto n : vector[3]\n"
            "latent z = a * a * u * ones(3) + a * a * n\nreport I(u; z)\n")
    model = loads(text)
    (r,) = Analysis(model).evaluate_all(model.reports)
    assert r.nats == pytest.approx(0.5 * math.log(4), rel=1e-12)


def test_d_equals_one():
    values, p = two_views(d=1)
    assert values == pytest.approx(closed(p), rel=1e-10)


def test_one_modality(capsys, tmp_path):
    spec = tmp_path / "one.mmi"
    spec.write_text("param t = 0.5\ndim d = 16\nproto u : scalar\nproto n : vector[d]\ntarget theta = u\n"
                    "latent z = t * u * ones(d) + n\nflow x = identity(z)\n")
    assert main(["mi", str(spec), "--json"]) == 0
    out = capsys.readouterr().out
    assert f"{0.5 * math.log1p(16 * 0.25):.10f}"[:10] in out and "nan" not in out.lower()


def _many(m: int, reports: str) -> str:
    return (f"param t = 0.5\nparam h = 1\ndim d = 8\nproto u : scalar\nproto n[1..{m}] : vector[d]\n"
            f"target theta = u\nfor i in 1..{m}: latent z[i] = t * u * ones(d) + h * n[i]\n"
            f"for i in 1..{m}: flow x[i] = identity(z[i])\n" + reports)


def test_a_thousand_modalities():
    m = 1000
    everything = ", ".join(f"x[{i}]" for i in range(1, m + 1))
    text = _many(m, f"report I(theta; x[1])\nreport I(x[1]; x[{m}])\nreport I(theta; {everything})\n"
                    f"report I(x[1]; x[2] | theta)\n")
    t = time.process_time()  # CPU seconds: a loaded machine stretches the wall clock, not the work
    model = loads(text)
    values = [r.nats for r in Analysis(model).evaluate_all(model.reports)]
    assert time.process_time() - t < 60  # about 7 s of CPU on this machine
    s = 8 * 0.25  # d t^2 / h^2
    assert values[0] == pytest.approx(0.5 * math.log1p(s), rel=1e-10)
    assert values[1] == pytest.approx(-0.5 * math.log1p(-(s / (1 + s)) ** 2), rel=1e-10)
    assert values[2] == pytest.approx(0.5 * math.log1p(m * s), rel=1e-10)
    assert values[3] == pytest.approx(0.0, abs=1e-8)  # independent given the cause


def test_a_thousand_modalities_without_reports_is_a_clear_error(capsys, tmp_path):
    """All 500,500 pairs would take minutes: refused with a position and a hint."""
    spec = tmp_path / "many.mmi"
    spec.write_text(_many(1000, ""))
    assert main(["mi", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "500,500 pairs" in err and "many.mmi:8:" in err and "report" in err


def test_tiny_noise_with_dense_matrices_grows_without_nan():
    """disentangled.mmi: I(x1; x2) grows as the noise shrinks; finite or inf, never NaN."""
    from pathlib import Path

    from mmmi_dsl import load
    spec = Path(__file__).resolve().parents[2] / "specs" / "disentangled.mmi"
    last = -1.0
    for sigma in ["1e-2", "1e-4", "1e-6", "1e-8", "1e-10"]:
        model = load(spec, {"sigma": sigma, "k": "6"})
        (r,) = Analysis(model).evaluate_all(model.reports[:1])
        assert not math.isnan(r.nats) and r.nats >= last
        last = r.nats


def test_near_singular_against_the_dense_reference():
    text = ("param e = 1e-3\ndim d = 5\nproto u : scalar\nproto v : scalar\nproto n1 : vector[d]\n"
            "proto n2 : vector[d]\nlatent z1 = u * ones(d) + e * n1\n"
            "latent z2 = u * ones(d) + v * onehot(d, 2) + e * n2\n"
            "report I(z1; z2)\nreport I(u; z2)\n")
    model = loads(text)
    values = [r.nats for r in Analysis(model).evaluate_all(model.reports)]
    assert values[0] == pytest.approx(dense_mi(model, ["z1"], ["z2"]), rel=1e-6)
    assert values[1] == pytest.approx(dense_mi(model, ["u"], ["z2"]), rel=1e-6)


@pytest.mark.parametrize("threshold,want", [("1e300", 0.0), ("-1e300", 0.0), ("0", None)])
def test_labels_with_extreme_thresholds(threshold, want):
    text = ("dim d = 4\nproto u : scalar\nproto n : vector[d]\ntarget theta = u\nlatent z = u * ones(d) + n\n"
            f"label y = theta > {threshold}\nreport I(y; z)\n")
    model = loads(text)
    (r,) = Analysis(model).evaluate_all(model.reports)
    assert not math.isnan(r.nats) and r.nats >= 0
    if want is not None:
        assert r.nats == pytest.approx(want, abs=1e-12)
    else:
        assert 0 < r.nats < math.log(2)


def test_underflow_along_a_chain_of_latents():
    """z2 = 1e-200 * z1 with z1 = 1e-200 * (u + n): the product 1e-400 made I(u; z2) silently 0."""
    text = ("dim d = 3\nproto u : scalar\nproto n : vector[d]\nlatent z1 = {k} * u * ones(d) + {k} * n\n"
            "latent z2 = {k} * z1\nreport I(u; z2)\n")
    with pytest.raises(SpecError) as info:
        model = loads(text.format(k="1e-200"))
        Analysis(model).evaluate_all(model.reports)
    assert "underflows" in info.value.render() and info.value.diagnostics[0].span.line == 5
    model = loads(text.format(k="1e-100"))
    (r,) = Analysis(model).evaluate_all(model.reports)
    assert r.nats == pytest.approx(0.5 * math.log(4), rel=1e-12)
