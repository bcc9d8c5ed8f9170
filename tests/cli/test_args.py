"""The argparse types the scripts share (mmmi_dsl.cli.args): checked where a flag enters."""

import argparse

import pytest

from mmmi_dsl.cli.args import integer, integers, positive


def test_integer_takes_values_from_its_least_and_names_the_problem():
    assert integer(1)("1") == 1 and integer(0)("0") == 0 and integer(-3)("-3") == -3
    with pytest.raises(argparse.ArgumentTypeError, match="at least 1, got 0"):
        integer(1)("0")
    for bad in ("2.5", "", "ten", "1e3"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected an integer"):
            integer(0)(bad)


def test_integers_are_comma_separated_and_empty_means_none():
    assert integers(1)("256,1024, 4096") == [256, 1024, 4096] and integers(1)("") == []
    with pytest.raises(argparse.ArgumentTypeError, match="at least 1"):
        integers(1)("1,0")
    with pytest.raises(argparse.ArgumentTypeError, match="separated by commas"):
        integers(0)("1;2")
    with pytest.raises(argparse.ArgumentTypeError, match="at least one integer"):
        integers(1, empty=False)(" , ")


def test_positive_is_a_finite_number_above_zero():
    assert positive("3") == 3.0 and positive("2e-3") == 2e-3
    for bad in ("0", "-1", "inf", "nan", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive(bad)


def test_a_script_reports_the_flag_and_exits_2(capsys):
    p = argparse.ArgumentParser(prog="s")
    p.add_argument("--batch", type=integer(1))
    with pytest.raises(SystemExit) as stop:
        p.parse_args(["--batch", "0"])
    assert stop.value.code == 2 and "argument --batch: must be at least 1, got 0" in capsys.readouterr().err
