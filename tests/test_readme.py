"""The README starts with two commands; CI must run the test one verbatim."""

from __future__ import annotations

import re

from .conftest import ROOT


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text)


def test_readme_has_two_commands_first():
    cmds = _commands()
    assert len(cmds) >= 2
    assert "mmmic" in cmds[0] and "pytest" in cmds[1]


def test_ci_runs_both_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _commands()[0] in ci and _commands()[1] in ci
