"""docs/tutorial.md runs as written: its spec, its `mmmic` commands and its Python, in a temp dir.

A ```text block right after a ```sh block is that command's output: each of its lines
must appear in the real output (``...`` stands for any text).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def blocks() -> list[tuple[str, str]]:
    """The tutorial's fenced blocks as (language, text), in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(TUTORIAL.read_text(encoding="utf-8"))]


def steps() -> list[tuple[str, str | None]]:
    """Each ``mmmic`` command line with the output shown after its block (or None)."""
    bs = blocks()
    out = []
    for i, (lang, text) in enumerate(bs):
        if lang != "sh":
            continue
        cmds = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("mmmic ")]
        shown = bs[i + 1][1] if i + 1 < len(bs) and bs[i + 1][0] == "text" else None
        out += [(c, shown if j == len(cmds) - 1 else None) for j, c in enumerate(cmds)]
    return out


def expect(shown: str, actual: str, cmd: str) -> None:
    for line in shown.splitlines():
        if not line.strip() or line.strip() == "...":
            continue
        pattern = ".*".join(re.escape(part) for part in line.strip().split("..."))
        assert re.search(pattern, actual), f"`{cmd}`: the tutorial shows\n  {line}\nbut the output was\n{actual}"


def test_tutorial_has_every_step():
    cmds = [c.split()[1] for c, _ in steps()]
    for sub in ("check", "mi", "formula", "solve", "generate", "verify", "preview"):
        assert sub in cmds, f"the tutorial has no `mmmic {sub}` command"
    assert sum(lang == "mmi" for lang, _ in blocks()) == 1


def test_tutorial_runs_as_written(tmp_path):
    spec = next(text for lang, text in blocks() if lang == "mmi")
    (tmp_path / "tutorial.mmi").write_text(spec, encoding="utf-8")
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
               MPLBACKEND="Agg")
    for cmd, shown in steps():
        r = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"`{cmd}` exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        if shown is not None:
            expect(shown, r.stdout, cmd)
    assert (tmp_path / "preview.png").stat().st_size > 0
    for lang, code in blocks():
        if lang == "python":
            r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            assert "(20000, 1, 8, 8)" in r.stdout


def test_expect_catches_a_wrong_line():
    expect("rho = 0.54...", "rho = 0.5488\n", "x")
    with pytest.raises(AssertionError):
        expect("I(x1; x2)   0.9", "I(x1; x2)   0.6\n", "x")
