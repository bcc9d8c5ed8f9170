"""The built-ins' one definition (mmmi_dsl.builtins): every argument checked when the spec is checked."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mmmi_dsl import builtins, loads
from mmmi_dsl.builtins.signature import Arg
from mmmi_dsl.cli import main
from mmmi_dsl.errors import SpecError

from ..conftest import ROOT

DIGITS_SPEC = "proto u : vector[64]\nlatent z = u\nflow x = {call} : image[1x8x8]\n"


# Each bad call of issue 13: plain `mmmic check` (no --flows, nothing built) refuses it at the argument.
@pytest.mark.parametrize("call, code, column, text", [
    ("digits(z, class = 12)", "E0206", 28, "class 12 is outside the 10 classes of these weights"),
    ("digits(z, steps = 0)", "E0206", 28, "`steps` must be in 1..10,000, got 0"),
    ('digits(z, method = "rk5")', "E0209", 29, '`method` must be one of "rk4"'),
    ("digits(z, class = 3, class = 5)", "E0209", 31, "argument `class` given twice"),
    ("digits(z, guidance = 1e308)", "E0206", 31, "`guidance` must be in 0..100"),
    ("digits(z, guidance = -1)", "E0206", 31, "`guidance` must be in 0..100"),
    ("digits(z, rtol = 1e-300)", "E0206", 27, "`rtol` must be in [1e-12, 1)"),
    ("digits(z, steps = 28, grid_power = 6)", "E0203", 10, "t_27 and t_28 are the same float32 number"),
    ("digits(z, grid_power = 0)", "E0206", 33, "`grid_power` must be in 0.1..10"),
    ("digits(z, atol = 1)", "E0206", 27, "`atol` must be in [1e-12, 1)"),
    ("digits(z, steps = 2.5)", "E0206", 28, "`steps` must be an integer"),
    ('digits(z, steps = "many")', "E0209", 28, "`steps` is a number, not a string"),
    ("digits(z, weights = 3)", "E0209", 20, "digits() has no argument `weights`"),
    ("coupling(z, layers = 1000000)", "E0206", 31, "`layers` must be in 1..64"),
    ("coupling(z, hidden = 0)", "E0206", 31, "`hidden` must be in 1..4,096"),
    ("affine(z, scale = 1e308)", "E0206", 28, "`scale` must be |value| in 1e-06..1e+06"),
    ("affine(z, scale = 0)", "E0206", 28, "`scale` must be nonzero"),
    ("spiral(z, speed = 1e9)", "E0206", 28, "`speed` must be |value| in 0..1000"),
    ("affine(z, seed = -1)", "E0206", 27, "a seed is a non-negative integer"),
    ("identity(z, scale = 2)", "E0209", 22, "identity() has no argument `scale`"),
])
def test_plain_check_refuses_each_bad_flow_argument_at_its_position(tmp_path, capsys, call, code, column, text):
    spec = tmp_path / "bad.mmi"
    spec.write_text(DIGITS_SPEC.format(call=call))
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert f"error[{code}]" in err and text in err, err
    assert f"{spec}:3:{column}" in err and "^" in err, err
    assert "Traceback" not in err


def test_a_learned_flow_on_a_latent_of_another_size_is_refused_at_check(tmp_path, capsys):
    spec = tmp_path / "bad.mmi"
    spec.write_text("proto u : vector[32]\nlatent z = u\nflow x = digits(z, class = 1)\n")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "error[E0203]" in err and "acts on vectors of size 64" in err and "has size 32" in err, err


def test_flows_that_build_dense_matrices_are_bounded_by_size(tmp_path, capsys):
    spec = tmp_path / "big.mmi"
    spec.write_text("proto u : vector[20000]\nlatent z = u\nflow x = affine(z)\n")
    assert main(["check", str(spec)]) == 1
    assert "builds a 20,000 x 20,000 matrix" in capsys.readouterr().err


def test_good_arguments_pass_and_keep_the_ir_as_written():
    model = loads(DIGITS_SPEC.format(call='digits(z, class = 3, method = "dopri5", rtol = 1e-6, guidance = 0.5)'))
    step = model.flows["x"].steps[0]
    assert step.args == {"class": 3, "method": "dopri5", "rtol": 1e-6, "guidance": 0.5}
    assert isinstance(step.args["class"], int)


def test_each_flow_definition_names_a_class_that_declares_it():
    from mmmi_dsl.flows import flow_class

    for name, definition in builtins.FLOWS.items():
        assert definition.kind == "flow" and not definition.positional
        assert flow_class(name).builtin == name


def test_templates_and_matrices_are_realised_by_their_definition():
    for table in (builtins.TEMPLATES, builtins.MATRICES):
        for name, definition in table.items():
            assert definition.realise is not None, name
            assert len({a.name for a in definition.args}) == len(definition.args), name


def test_a_flow_built_from_python_checks_its_arguments_the_same_way():
    from mmmi_dsl.flows import REGISTRY

    with pytest.raises(ValueError, match="`layers` must be in 1..64"):
        REGISTRY["coupling"](8, layers=1000)
    with pytest.raises(ValueError, match="unknown argument"):
        REGISTRY["affine"](8, sclae=2)
    with pytest.raises(ValueError, match="size 2 or more"):
        REGISTRY["coupling"](1)


@pytest.mark.parametrize("arg, value, ok", [
    (Arg("k", "int", low=1, high=3), 2, True), (Arg("k", "int", low=1, high=3), 4, False),
    (Arg("k", "int", low=1, high=3), 2.5, False), (Arg("k", "int"), True, False),
    (Arg("t", "float", low=0, high=1, open_high=True), 1.0, False),
    (Arg("t", "float", low=0, high=1, open_high=True), 0.999, True),
    (Arg("t", "float"), float("inf"), False), (Arg("t", "float"), float("nan"), False),
    (Arg("s", "float", low=1, high=2, magnitude=True, nonzero=True), -1.5, True),
    (Arg("s", "float", low=1, high=2, magnitude=True, nonzero=True), 0.5, False),
    (Arg("m", "str", choices=("a", "b")), "b", True), (Arg("m", "str", choices=("a", "b")), "c", False),
    (Arg("m", "str"), 3, False),
])
def test_arg_problem(arg, value, ok):
    assert (arg.problem(value) is None) == ok


def test_checking_a_spec_with_learned_flows_never_imports_torch():
    code = ("import sys; import mmmi_dsl as mm; "
            "mm.load('specs/digits_views.mmi'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_unknown_flow_arguments_in_a_spec_are_spec_errors_not_build_errors():
    with pytest.raises(SpecError) as err:
        loads(DIGITS_SPEC.format(call="coupling(z, layerz = 2)"))
    d = err.value.diagnostics[0]
    assert d.code == "E0209" and "did you mean `layers`" in d.hint
