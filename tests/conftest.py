"""Shared fixtures and the opt-in options: --runslow for slow tests, --rungpu for CUDA ones,
--update-golden to rewrite the golden files under tests/golden/ (review the diff, then commit)."""

from __future__ import annotations

import os
import subprocess as _subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import settings

# CI runs the same hypothesis examples every time (a failure there is reproducible);
# local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.mmi"))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")
    parser.addoption("--rungpu", action="store_true", default=False, help="run tests that need CUDA")
    parser.addoption("--update-golden", action="store_true", default=False, help="rewrite golden files")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow")
    skip_gpu = pytest.mark.skip(reason="needs CUDA: pass --rungpu")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not config.getoption("--rungpu"):
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


# ---------------------------------------------------------------- golden files


@pytest.fixture
def golden(request):
    """``golden(path, text)``: assert ``text`` equals the file, or rewrite it under ``--update-golden``.

    A missing golden file is an error (not silently created): run ``pytest --update-golden``
    once, review the new files and commit them.
    """
    update = request.config.getoption("--update-golden")

    def compare(path: Path, text: str) -> None:
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
            return
        assert path.exists(), f"no golden file {path.relative_to(ROOT)}; run pytest --update-golden"
        want = path.read_text(encoding="utf-8")
        assert text == want, f"{path.relative_to(ROOT)} changed; if intended, rerun with --update-golden"

    return compare


# ---------------------------------------------------------------- the command line


class Result(NamedTuple):
    """What one ``mmmic`` run gave: unpacks as ``code, stdout, stderr``."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout then stderr, for assertions that do not care which stream."""
        return self.stdout + self.stderr


class Mmmic:
    """Runs ``mmmic ARGS`` and returns a :class:`Result`.

    In-process by default (through ``mmmi_dsl.cli.main``, streams captured by pytest's
    ``capsys``); ``subprocess=True`` starts ``python -m mmmi_dsl`` instead, for what needs a
    real process (the entry point, another working directory, real file descriptors).
    With ``clean=True`` (the default) a traceback or an internal error (exit 3) fails the test.
    """

    def __init__(self, capsys):
        self._capsys = capsys

    def __call__(self, *args, subprocess: bool = False, cwd: Path | str | None = None, clean: bool = True,
                 timeout: float = 120) -> Result:
        argv = [str(a) for a in args]
        if subprocess:
            path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # this checkout
            proc = _subprocess.run([sys.executable, "-m", "mmmi_dsl", *argv], check=False, capture_output=True,
                                   text=True, cwd=cwd or ROOT, env={**os.environ, "PYTHONPATH": path},
                                   timeout=timeout)
            result = Result(proc.returncode, proc.stdout, proc.stderr)
        else:
            assert cwd is None, "in-process runs use the test's cwd (monkeypatch.chdir to change it)"
            from mmmi_dsl.cli import main

            self._capsys.readouterr()  # drop what the test printed before
            try:
                code = main(argv)
            except SystemExit as exit_:  # argparse's usage errors
                code = exit_.code if isinstance(exit_.code, int) else 2
            out, err = self._capsys.readouterr()
            result = Result(code, out, err)
        if clean:
            assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
            assert result.code != 3, result.stderr
        return result


@pytest.fixture
def mmmic(capsys) -> Mmmic:
    """The one way tests run the command line: ``mmmic("check", spec)`` -> ``Result(code, stdout, stderr)``."""
    return Mmmic(capsys)
