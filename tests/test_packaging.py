"""The wheel carries the grammar (and its parser tables) and the specs, and an installed copy runs
`mmmic check` and `mmmic suite list` outside the repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from .conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{r.stdout}\n{r.stderr}")
    (path,) = out.glob("*.whl")
    return path


def test_wheel_contains_the_grammar(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "mmmi_dsl/grammar/mmi.lark" in names
    packaged = zipfile.ZipFile(wheel).read("mmmi_dsl/grammar/mmi.lark").decode()
    assert packaged == (ROOT / "grammar" / "mmi.lark").read_text()
    # the parser's LALR tables (mmmi_dsl.lang.grammar): without them every start builds the parser again
    tables = zipfile.ZipFile(wheel).read("mmmi_dsl/lang/mmi_lalr_tables.json").decode()
    assert tables == (ROOT / "mmmi_dsl" / "lang" / "mmi_lalr_tables.json").read_text()


def test_installed_wheel_checks_specs_outside_the_repo(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = ("import mmmi_dsl, sys; assert mmmi_dsl.__file__.startswith(sys.argv[1]), mmmi_dsl.__file__;"
            "import json, lark; from mmmi_dsl.lang.grammar import parser, read_tables;"
            "assert read_tables()['lark_version'] != lark.__version__ or parser().source_path == '<deserialized>';"
            "from mmmi_dsl.cli import main; raise SystemExit(main(['check', *sys.argv[2:]]))")
    specs = [str(p) for p in sorted((ROOT / "specs").glob("*.mmi"))]
    r = subprocess.run([sys.executable, "-c", code, str(target), *specs], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr


def test_wheel_ships_the_suite_and_its_specs(wheel, tmp_path):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mmmi_dsl/suite/mmmic-suite-1.yaml" in names and "mmmi_dsl/adapters/bmi_estimator.py" in names
    for spec in (ROOT / "specs").rglob("*.mmi"):
        assert f"mmmi_dsl/specs/{spec.relative_to(ROOT / 'specs').as_posix()}" in names
    assert "mmmi_dsl/specs/templates/theta0_mod0.png" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = ("import sys; from mmmi_dsl.suite import specs_dir; assert str(specs_dir()).startswith(sys.argv[1]);"
            "from mmmi_dsl.cli import main; raise SystemExit(main(['suite', 'list', '--json']))")
    r = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(target)}, timeout=300)
    assert r.returncode == 0, r.stderr
    tasks = {t["id"]: t for t in json.loads(r.stdout)["tasks"]}
    assert tasks["1v1-normal-0.75"]["available"] and tasks["digits_decay-x1-x5"]["available"]
