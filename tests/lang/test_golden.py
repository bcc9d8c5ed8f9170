"""Golden files: the full diagnostics of one bad spec per error code, and the IR of every example spec.

As Stan's compiler keeps ``test/integration/bad/*/stanc.expected``: a change to a message or
to the IR shows up as a diff of a file someone reviews. Regenerate after an intended change
with ``pytest tests/lang/test_golden.py --update-golden`` and read the diff before committing.

- ``tests/golden/diagnostics/<CODE>-<slug>.mmi``: a bad spec (hand-written, not generated);
  ``<CODE>-<slug>.stderr``: what ``mmmic check <CODE>-<slug>.mmi`` prints, run from that
  folder so the ``-->`` lines name the file alone; the folder's absolute path, where a
  message names it, is written ``<spec-dir>``.
- ``tests/golden/ir/<name>.json``: ``mmmic compile specs/<name>.mmi`` run from the
  repository root, absolute paths inside the checkout made relative to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmmi_dsl.errors import CODES
from mmmi_dsl.ir import Model

from ..conftest import ROOT

DIAGNOSTICS = ROOT / "tests" / "golden" / "diagnostics"
IR = ROOT / "tests" / "golden" / "ir"

#: Goldens of a command line rather than of a spec alone: name -> the arguments after `mmmic`.
COMMAND_LINE = {
    # E0002 has a spec golden too (E0002-not-utf8.mmi); a missing file has no spec to keep.
    "E0002-missing-file": ["check", "absent.mmi"],
    # E0104 comes from --set only: the spec is good, the value given on the command line is not.
    "E0104-set-not-a-number": ["check", "E0104-set-not-a-number.mmi", "--set", "rho=abc"],
}

#: Exit codes other than 1 (a spec error).
EXIT = {"E0104-set-not-a-number": 2}  # a bad --set is a usage error

#: Cases whose stderr does not show their code: E0104 is raised as a UsageError, rendered as
#: `error: --set ...` without `[E0104]` (the code is in CODES but never printed).
UNCODED = {"E0104-set-not-a-number"}

#: Codes in CODES without a golden, with the reason. Empty: every code has one.
NO_GOLDEN: dict[str, str] = {}


def diagnostic_cases() -> list[str]:
    stems = {p.stem for p in DIAGNOSTICS.glob("*.mmi")} - set(COMMAND_LINE)
    return sorted(stems | set(COMMAND_LINE))


def stable(text: str) -> str:
    """Machine-independent text: the golden folder's absolute path becomes ``<spec-dir>``."""
    return text.replace(str(DIAGNOSTICS), "<spec-dir>")


@pytest.mark.parametrize("case", diagnostic_cases())
def test_diagnostic_golden(case, mmmic, golden, monkeypatch):
    monkeypatch.chdir(DIAGNOSTICS)
    code, out, err = mmmic(*COMMAND_LINE.get(case, ["check", f"{case}.mmi"]))
    assert code == EXIT.get(case, 1), err
    assert out == ""
    err = stable(err)
    if case not in UNCODED:
        assert err.startswith(f"error[{case[:5]}]: "), err
    golden(DIAGNOSTICS / f"{case}.stderr", err)


def test_every_code_has_a_golden_or_a_reason():
    covered = {case[:5] for case in diagnostic_cases()}
    missing = set(CODES) - covered - set(NO_GOLDEN)
    assert not missing, f"error codes without a golden diagnostic (add a spec or a NO_GOLDEN reason): {missing}"
    assert covered <= set(CODES), f"goldens of codes not in CODES: {covered - set(CODES)}"
    assert not set(NO_GOLDEN) & covered, "a code with a golden needs no NO_GOLDEN reason"


def test_no_stale_golden_diagnostics():
    cases = set(diagnostic_cases())
    stale = sorted(p.name for p in DIAGNOSTICS.glob("*.stderr") if p.stem not in cases)
    assert not stale, f"golden stderr files without a case (delete them): {stale}"


# ---------------------------------------------------------------- IR of the example specs

SPEC_FILES = sorted((ROOT / "specs").rglob("*.mmi"))


def relative_paths(node):
    """The IR with every absolute path inside the checkout made relative to its root."""
    if isinstance(node, dict):
        return {k: relative_paths(v) for k, v in node.items()}
    if isinstance(node, list):
        return [relative_paths(v) for v in node]
    if isinstance(node, str) and Path(node).is_absolute() and Path(node).is_relative_to(ROOT):
        return Path(node).relative_to(ROOT).as_posix()
    return node


@pytest.mark.parametrize("spec", SPEC_FILES, ids=lambda p: p.relative_to(ROOT / "specs").with_suffix("").as_posix())
def test_ir_golden_and_round_trip(spec, mmmic, golden, monkeypatch):
    monkeypatch.chdir(ROOT)
    rel = spec.relative_to(ROOT).as_posix()
    code, out, err = mmmic("compile", rel)
    assert code == 0, err
    model = Model.model_validate_json(out)
    assert model.model_dump_json(indent=2) + "\n" == out  # the IR JSON reads back equal
    assert model.source_file == rel
    text = json.dumps(relative_paths(json.loads(out)), indent=2, ensure_ascii=False) + "\n"
    assert str(ROOT) not in text
    Model.model_validate_json(text)  # the golden itself is valid IR
    golden(IR / spec.relative_to(ROOT / "specs").with_suffix(".json"), text)


def test_no_stale_golden_ir():
    names = {spec.relative_to(ROOT / "specs").with_suffix(".json") for spec in SPEC_FILES}
    stale = sorted(str(p.relative_to(IR)) for p in IR.rglob("*.json") if p.relative_to(IR) not in names)
    assert not stale, f"golden IR without a spec (delete them): {stale}"
