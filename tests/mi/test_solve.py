"""mmmic solve / sweep: ask for a dataset by its exact MI.

Every solved value is re-checked independently: a fresh ``Analysis`` at the value,
and, for two_views, the closed form of docs/science.md.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from mmmi_dsl import load, loads
from mmmi_dsl.errors import SpecError, UsageError
from mmmi_dsl.lang.lower import resolve_query
from mmmi_dsl.mi.analysis import Analysis
from mmmi_dsl.mi.solve import solve, solve_all
from mmmi_dsl.mi.sweep import sweep, sweep_targets

from ..conftest import ROOT

TWO_VIEWS = str(ROOT / "specs" / "two_views.mmi")
D, RHO_H1, RHO_H2, RHO_T2 = 3072, 0.1, 0.2, 0.3  # two_views' defaults
TARGETS = list(np.linspace(0.05, 1.4, 10))


@pytest.fixture(scope="module")
def two_views():
    return load(TWO_VIEWS)


def exact(model, param, value, query_text):
    """The MI (nats) at param = value, computed afresh."""
    moved = model.with_params({param: value})
    return Analysis(moved).evaluate(resolve_query(moved, query_text)).nats


def i_theta_x1(rho_t1):  # docs/science.md, section 5, as 1/2 log(1 + d rho^2 / rho_h1^2) (no cancellation)
    return 0.5 * math.log1p(D * rho_t1**2 / RHO_H1**2)


def i_x1_x2(rho_t1):
    a = RHO_H1**2 + D * rho_t1**2
    b = RHO_H2**2 + D * RHO_T2**2
    return -0.5 * math.log(1 - D**2 * rho_t1**2 * RHO_T2**2 / (a * b))



NON_MONOTONE = """model bump
param p = 2 in (0, 3)
proto u : scalar
proto n : vector[4]
target t = u
latent z = (p - 1) * u * ones(4) + n
flow x = identity(z)
"""

DETERMINISTIC_END = """model sharp
param s = 1 in [0, 10]
proto u : scalar
proto n : vector[4]
target t = u
latent z = u * ones(4) + s * n
flow x = identity(z)
"""


# ---------------------------------------------------------------- solve


def test_cli_solve_two_views_hits_target_and_closed_form(two_views, mmmic):
    code, out, err = mmmic("solve", TWO_VIEWS, "--for", "rho_t1", "--target", "I(theta; x1) = 1", "--json")
    assert code == 0, err
    res = json.loads(out)["solves"][0]
    rho = res["value"]
    assert res["param"] == "rho_t1" and res["unit"] == "nats"
    assert abs(exact(two_views, "rho_t1", rho, "I(theta; x1)") - 1.0) <= 1e-9
    closed = RHO_H1 * math.sqrt((math.exp(2 * 1.0) - 1) / D)
    assert abs(rho - closed) <= 1e-9 * closed
    assert abs(i_theta_x1(rho) - 1.0) <= 1e-9
    assert res["evaluations"] < 80


def test_cli_solve_text_prints_value_and_set_line(mmmic):
    code, out, _ = mmmic("solve", TWO_VIEWS, "--for", "rho_t1", "--target", "I(theta; x1) = 1")
    assert code == 0
    value = float(out.splitlines()[1].split("=")[1])
    assert f"--set rho_t1={value!r}" in out and "I(theta; x1) = 1 nats" in out


def test_solve_in_bits_gives_bits(two_views, mmmic):
    code, out, err = mmmic("solve", TWO_VIEWS, "--for", "rho_t1", "--target", "I(theta; x1) = 2 bits",
                         "--json")
    assert code == 0, err
    res = json.loads(out)["solves"][0]
    assert res["unit"] == "bits" and res["target"] == 2.0
    assert abs(res["achieved"] - 2.0) <= 1e-9
    assert abs(exact(two_views, "rho_t1", res["value"], "I(theta; x1)") / math.log(2) - 2.0) <= 1e-9
    # 2 bits = log 4 nats: rho = rho_h1 sqrt(15 / d)
    assert res["value"] == pytest.approx(RHO_H1 * math.sqrt(15 / D), rel=1e-9)


def test_solve_python_api_decreasing_param_and_bracket(two_views):
    q = resolve_query(two_views, "I(theta; x1)")
    r = solve(two_views, "rho_h1", q, 3.0)  # the MI falls as the noise grows
    assert abs(exact(two_views, "rho_h1", r.value, "I(theta; x1)") - 3.0) <= 1e-9
    r2 = solve(two_views, "rho_h1", q, 3.0, bracket=(0.5, 5))
    assert r2.bracket == (0.5, 5.0) and r2.value == pytest.approx(r.value, rel=1e-12)


def test_out_of_reach_exits_1_with_reachable_range(mmmic):
    code, _, err = mmmic("solve", TWO_VIEWS, "--for", "rho_t1", "--target", "I(theta; x1) = 20")
    assert code == 1
    top = i_theta_x1(math.nextafter(10, 0))  # the bounds are (0, 10)
    assert "error[E0207]" in err and "out of reach" in err
    assert f"[0, {top:.10g}] nats" in err
    assert "--> --target:1:16" in err and "^^" in err  # the caret sits under the number


def test_out_of_reach_in_bits_states_range_in_bits(mmmic):
    code, _, err = mmmic("solve", TWO_VIEWS, "--for", "rho_t1", "--target", "I(theta; x1) = 1 bits",
                       "--bracket", "0.01,1")
    assert code == 1
    lo, hi = i_theta_x1(0.01) / math.log(2), i_theta_x1(1) / math.log(2)
    assert f"[{lo:.10g}, {hi:.10g}] bits" in err


@pytest.mark.parametrize("target, column, message", [
    ("I(theta; x1) = abc", 16, "`abc` is not a number"),
    ("I(theta x1) = 1", 9, "unexpected `x1`"),
    ("I(theta; x1) = 1 bit", 16, "expected a number and an optional unit"),
    ("I(theta; nope) = 1", 10, "unknown name `nope`"),
    ("I(theta; x1) = -1", 16, "finite number >= 0"),
])
def test_bad_target_syntax_has_a_caret(target, column, message, mmmic):
    code, _, err = mmmic("solve", TWO_VIEWS, "--for", "rho_t1", "--target", target)
    assert code == 1
    assert message in err and f"--> --target:1:{column}" in err
    assert f"1 | {target}" in err and "^" in err.split(target)[1]


@pytest.mark.parametrize("param, message", [
    ("rho", "`rho` is not a parameter of model `two_views`; did you mean"),
    ("s", "`s` is derived (s := sqrt(v)), not a free parameter; solve for a free parameter it uses (v)"),
])
def test_unknown_or_derived_param_is_a_usage_error(param, message, mmmic):
    spec = TWO_VIEWS if param == "rho" else str(ROOT / "specs" / "disentangled.mmi")
    code, _, err = mmmic("solve", spec, "--for", param, "--target", "I(x1; x2) = 1")
    assert code == 2 and message in err


@pytest.mark.parametrize("args, message", [
    ([], "has no `solve` statements"),
    (["--for", "rho_t1"], "go together"),
    (["--for", "rho_t1", "--target", "I(theta; x1) = 1", "--bracket", "0,20"], "leaves the bounds (0, 10)"),
    (["--for", "rho_t1", "--target", "I(theta; x1) = 1", "--bracket", "1"], "expected LO,HI"),
])
def test_solve_usage_errors_exit_2(args, message, mmmic):
    code, _, err = mmmic("solve", TWO_VIEWS, *args)
    assert code == 2 and message in err


def test_no_bounds_needs_bracket():
    m = load(str(ROOT / "specs" / "telescopes.mmi"))
    q = resolve_query(m, "I(theta; x1)")
    with pytest.raises(UsageError, match="--bracket LO,HI"):
        solve(m, "rho_mass1", q, 1.0)
    r = solve(m, "rho_mass1", q, 1.0, bracket=(0.01, 10))
    assert abs(exact(m, "rho_mass1", r.value, "I(theta; x1)") - 1.0) <= 1e-9


def test_non_monotone_mi_is_detected():
    m = loads(NON_MONOTONE)
    q = resolve_query(m, "I(t; x)")
    with pytest.raises(SpecError, match="not monotone in `p`") as info:
        solve(m, "p", q, 0.5)
    assert "E0206" in str(info.value) and "narrower bracket" in str(info.value)
    # on one side of the minimum at p = 1 it is monotone, and both sides have a root
    left = solve(m, "p", q, 0.5, bracket=(0, 0.9))
    right = solve(m, "p", q, 0.5, bracket=(1.1, 3))
    expect = 1 - math.sqrt((math.exp(1.0) - 1) / 4)  # I = 1/2 log(1 + 4 (p - 1)^2)
    assert left.value == pytest.approx(expect, rel=1e-9) and right.value == pytest.approx(2 - expect, rel=1e-9)


def test_flat_mi_is_detected():
    m = loads(NON_MONOTONE + "param other = 1 in (0, 2)\n")
    with pytest.raises(SpecError, match="does not change with `other`"):
        solve(m, "other", resolve_query(m, "I(t; x)"), 0.5)


def test_infinite_end_is_a_reachable_upper_limit():
    m = loads(DETERMINISTIC_END)
    q = resolve_query(m, "I(t; x)")
    assert math.isinf(exact(m, "s", 0.0, "I(t; x)"))  # s = 0: x determines t
    for target in (0.5, 5.0, 12.0, 100.0, 300.0):
        r = solve(m, "s", q, target)
        assert abs(exact(m, "s", r.value, "I(t; x)") - target) <= 1e-9 * target
        assert r.value == pytest.approx(2 / math.sqrt(math.expm1(2 * target)), rel=1e-6)
    # beyond what double precision resolves (mi.logdet.HTOL: ~334 nats per direction):
    # an out-of-reach error naming the largest finite MI
    with pytest.raises(SpecError, match="out of reach: the MI is finite up to 333.7"):
        solve(m, "s", q, 700.0)


def test_spec_solve_statements_are_answered(tmp_path, mmmic):
    spec = tmp_path / "own.mmi"
    spec.write_text(DETERMINISTIC_END.replace("model sharp", "model own")
                    + "solve s in (0.01, 10) such that I(t; x) = 1\n"
                    + "solve s in (0.01, 10) such that I(t; x) = 2 bits\n")
    m = load(spec)
    results, errors = solve_all(m)
    assert not errors and [r.unit for r in results] == ["nats", "bits"]
    assert abs(exact(m, "s", results[0].value, "I(t; x)") - 1) <= 1e-9
    assert abs(exact(m, "s", results[1].value, "I(t; x)") / math.log(2) - 2) <= 1e-9
    code, out, err = mmmic("solve", spec, "--json")
    assert code == 0, err
    assert [s["target"] for s in json.loads(out)["solves"]] == [1.0, 2.0]
    # an unreachable statement: the others are still answered, then exit 1 with its line
    spec.write_text(spec.read_text() + "solve s in (0.01, 10) such that I(t; x) = 50\n")
    code, out, err = mmmic("solve", spec)
    assert code == 1 and [line[:4] for line in out.splitlines()].count("s = ") == 2
    assert f"--> {spec}:10:1" in err and "out of reach" in err


# ---------------------------------------------------------------- sweep


def _check_target_rows(model, values, achieved):
    assert len(values) == 10
    for t, rho, mi in zip(TARGETS, values, achieved):
        assert abs(mi - t) <= 1e-9
        assert abs(exact(model, "rho_t1", rho, "I(x1; x2)") - t) <= 1e-9
        assert abs(i_x1_x2(rho) - t) <= 1e-9
    assert values == sorted(values)


def test_sweep_targets_csv(tmp_path, two_views, mmmic):
    out = tmp_path / "family.csv"
    code, stdout, err = mmmic("sweep", TWO_VIEWS, "--for", "rho_t1", "--targets", "linspace(0.05, 1.4, 10)",
                            "--query", "I(x1; x2)", "-o", out)
    assert code == 0, err
    assert "wrote" in stdout and "10 rows" in stdout
    with out.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["rho_t1", "I(x1; x2) [nats]", "I(x1; x2) [bits]", "target [nats]"]
    body = [[float(c) for c in r] for r in rows[1:]]
    _check_target_rows(two_views, [r[0] for r in body], [r[1] for r in body])
    assert [r[3] for r in body] == pytest.approx(TARGETS, abs=1e-15)
    assert all(r[2] == pytest.approx(r[1] / math.log(2), rel=1e-12) for r in body)


def test_sweep_targets_json(tmp_path, two_views, mmmic):
    out = tmp_path / "family.json"
    targets = ",".join(repr(float(t)) for t in TARGETS)
    code, _, err = mmmic("sweep", TWO_VIEWS, "--for", "rho_t1", "--targets", targets, "-q", "I(x1; x2)",
                       "-o", out)
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["model"] == "two_views" and data["param"] == "rho_t1"
    values = [r["rho_t1"] for r in data["rows"]]
    achieved = [r["results"][0]["nats"] for r in data["rows"]]
    assert all(r["results"][0]["query"] == "I(x1; x2)" for r in data["rows"])
    _check_target_rows(two_views, values, achieved)


def test_sweep_targets_python_api_in_bits(two_views):
    q = resolve_query(two_views, "I(x1; x2)")
    also = [resolve_query(two_views, "I(theta; x1)")]
    rows = sweep_targets(two_views, "rho_t1", q, [0.5, 1, 2], unit="bits", also=also)
    for row, t in zip(rows, [0.5, 1, 2]):
        assert abs(row.results[0].bits - t) <= 1e-9
        assert row.results[1].nats == pytest.approx(i_theta_x1(row.value), rel=1e-12)


def test_spec_sweep_statement(tmp_path, two_views, mmmic):
    rows = sweep(two_views, two_views.sweeps[0].param, two_views.sweeps[0].values, [two_views.sweeps[0].query])
    assert [r.value for r in rows] == pytest.approx(list(np.linspace(0.001, 0.05, 10)), rel=1e-12)
    mis = [r.results[0].nats for r in rows]
    assert all(b > a for a, b in zip(mis, mis[1:]))
    assert mis == pytest.approx([i_x1_x2(r.value) for r in rows], rel=1e-9)
    code, out, err = mmmic("sweep", TWO_VIEWS)
    assert code == 0, err
    lines = out.splitlines()
    assert "I(x1; x2) [nats]" in lines[1] and len(lines) == 3 + 10
    out_csv = tmp_path / "own.csv"
    assert mmmic("sweep", TWO_VIEWS, "-o", out_csv)[0] == 0
    body = list(csv.reader(out_csv.open()))[1:]
    assert len(body) == 10 and [float(r[1]) for r in body] == pytest.approx(mis, rel=1e-15)


def test_sweep_values_and_infinity_in_json(tmp_path, mmmic):
    spec = tmp_path / "sharp.mmi"
    spec.write_text(DETERMINISTIC_END)
    out = tmp_path / "t.json"
    code, _, err = mmmic("sweep", spec, "--for", "s", "--values", "0,1,2", "-q", "I(t; x)", "-o", out)
    assert code == 0, err
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["s"] == 0 and rows[0]["results"][0]["nats"] == "inf" and rows[0]["results"][0]["bits"] == "inf"
    assert rows[1]["results"][0]["nats"] == pytest.approx(0.5 * math.log(5), rel=1e-12)
    code, out_text, _ = mmmic("sweep", spec, "--for", "s", "--values", "logspace(-1, 1, 3)")
    assert code == 0 and "0.1" in out_text and "inf" not in out_text


@pytest.mark.parametrize("args, message", [
    (["--for", "rho_t1", "--values", "11"], "outside the bounds (0, 10)"),
    (["--for", "rho_t1", "--targets", "1"], "exactly one --query"),
    (["--for", "rho_t1"], "needs --values"),
    (["--values", "1"], "go with --for"),
    (["-o", "x.txt"], "must end in .csv or .json"),
    (["--for", "rho_t1", "--values", "linspace(1, 2)"], "takes (start, stop, count)"),
    (["--for", "rho_t1", "--values", "1,,2"], "expected linspace"),
])
def test_sweep_usage_errors_exit_2(args, message, mmmic):
    code, _, err = mmmic("sweep", TWO_VIEWS, *args)
    assert code == 2 and message in err


def test_sweep_without_statements_is_a_usage_error(mmmic):
    code, _, err = mmmic("sweep", str(ROOT / "specs" / "decay.mmi"))
    assert code == 2 and "no `sweep` statements" in err
