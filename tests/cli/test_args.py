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


@pytest.mark.parametrize("argv, message", [
    (["generate", "s.mmi", "-o", "o", "-n", "0"], "argument -n: must be at least 1, got 0"),
    (["generate", "s.mmi", "-o", "o", "-n", "5", "--threads", "0"], "argument --threads: must be at least 1, got 0"),
    (["generate", "s.mmi", "-o", "o", "-n", "5", "--threads", "many"], "expected a number of threads or auto"),
    (["preview", "d", "-o", "p.png", "--rows", "0"], "argument --rows: must be at least 1, got 0"),
    (["verify", "d", "--subsample", "9"], "argument --subsample: must be at least 10, got 9"),
    (["estimate", "d", "-q", "I(a; b)", "--max-steps", "0"], "argument --max-steps: must be at least 1, got 0"),
    (["estimate", "d", "-q", "I(a; b)", "--max-samples", "1"], "argument --max-samples: must be at least 2, got 1"),
    (["estimate", "d", "-q", "I(a; b)", "--threads", "0"], "argument --threads: must be at least 1, got 0"),
    (["bench-estimators", "s.mmi", "--for", "r", "--targets", "1", "-n", "19"], "argument -n: must be at least 20"),
    (["bench-estimators", "s.mmi", "--for", "r", "--targets", "1", "--max-steps", "-1"], "--max-steps: must be at"),
    (["suite", "run", "-o", "o", "--timeout", "0"], "argument --timeout: must be a finite number above 0"),
    (["suite", "run", "-o", "o", "--threads", "0"], "argument --threads: must be at least 1, got 0"),
    (["suite", "run", "-o", "o", "-n", "5"], "argument -n: must be at least 20, got 5"),
])
def test_the_console_checks_its_counts_where_they_enter(capsys, argv, message):
    """Every count of `mmmic` is refused by the parser itself (exit 2, the flag named), before any work."""
    from mmmi_dsl.cli.main import build_parser

    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err
