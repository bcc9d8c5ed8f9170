"""The estimator a suite run measures: a built-in by name, a Python callable, or a command.

Every kind is an :class:`Estimator`: ``est(x, y, seed=..., timeout=...) -> float`` (nats) on
``x`` (n, p) and ``y`` (n, q) float64 arrays (each side's variables flattened and concatenated;
a built-in reads a single image variable with its shape, so its conv critics apply).

- ``builtin``: :func:`mmmi_dsl.estimators.estimate` with its options.
- ``python``: ``module:function``, called ``f(x, y, **options)`` (with ``seed=`` too when it
  takes one), or ``module:Class``, built as ``Class(**options)`` once and called
  ``obj.estimate(x, y)`` per task. It returns a number (or anything with a ``nats``).
- ``command``: a command line with ``{x}`` and ``{y}``: each task's arrays are written as two
  ``.npy`` files, the command is split with :func:`shlex.split` and run without a shell, and
  the last line it prints is the estimate (BMI's external-estimator interface).

Timeouts: a command is killed after ``timeout`` seconds; an in-process estimator is interrupted
by ``SIGALRM`` (main thread, POSIX only; a long C call is interrupted when it returns to Python).
"""

from __future__ import annotations

import inspect
import math
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmmi_dsl.deadline import deadline
from mmmi_dsl.errors import UsageError
from mmmi_dsl.process import user_environment
from mmmi_dsl.user_code import import_named


class TaskTimeout(Exception):
    """An estimator ran past the task's timeout."""


class EstimatorFailed(Exception):
    """An estimator that did not give a finite number (the message says why)."""


@dataclass
class Estimator:
    """One estimator of a run: ``kind`` (builtin, python, command), a label, its options."""

    kind: str
    label: str
    options: dict = field(default_factory=dict)
    target: object = None  # the built-in's name, the Python callable, or the command's argv template

    def describe(self) -> dict:
        """What results.json records of it."""
        return {"kind": self.kind, "label": self.label, "options": self.options}

    def shaped(self) -> bool:
        """Whether it reads a single image variable with its shape (built-ins); else (n, p) arrays."""
        return self.kind == "builtin"

    def __call__(self, x: np.ndarray, y: np.ndarray, *, seed: int, device: str, timeout: float | None) -> float:
        if self.kind == "command":
            return _run_command(self.target, x, y, timeout)
        with _alarm(timeout):
            if self.kind == "builtin":
                from mmmi_dsl.estimators import estimate
                value = estimate(self.target, x, y, seed=seed, device=device, **self.options).nats
            else:
                value = self.target(x, y, seed)
        return _as_nats(value, self.label)


def builtin(name: str, options: dict) -> Estimator:
    """A built-in estimator (``gaussian``, ``ksg``, ...) with its options, checked now."""
    from mmmi_dsl.estimators import VARIATIONAL, get_estimator

    fn = get_estimator(name)
    if name not in VARIATIONAL:
        valid = set(inspect.signature(fn).parameters) - {"x", "y", "seed", "device"}
        unknown = sorted(set(options) - valid)
        if unknown:
            raise UsageError(f"--estimator {name}: unknown option {', '.join(unknown)}; "
                             f"valid: {', '.join(sorted(valid))}")
    label = name + (":" + ",".join(f"{k}={v}" for k, v in options.items()) if options else "")
    return Estimator("builtin", label, dict(options), name)


def python(text: str, options: dict) -> Estimator:
    """``module:function`` or ``module:Class`` (a class with an ``estimate(x, y)`` method), imported now.

    The module is found on ``sys.path`` with the working directory first, as ``python -m`` would.
    """
    attr = text.partition(":")[2]
    try:
        obj = import_named(text)
    except ValueError as err:
        raise UsageError(f"--estimator {text}: {err}") from None
    if inspect.isclass(obj):
        if not callable(getattr(obj, "estimate", None)):
            raise UsageError(f"--estimator {text}: the class {attr} has no estimate(x, y) method")
        try:
            instance = obj(**options)
        except TypeError as err:
            raise UsageError(f"--estimator {text}: {attr}(**options) failed ({err})") from None
        return Estimator("python", text, dict(options), lambda x, y, seed: instance.estimate(x, y))
    if not callable(obj):
        raise UsageError(f"--estimator {text}: {attr!r} is not callable")
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        params = {}
    takes_seed = "seed" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if takes_seed and "seed" in options:
        raise UsageError(f"--estimator {text}: seed is given by the suite (its seeds); drop --option seed")

    def call(x, y, seed):
        return obj(x, y, **options, **({"seed": seed} if takes_seed else {}))

    return Estimator("python", text, dict(options), call)


def command(template: str) -> Estimator:
    """A command line with ``{x}`` and ``{y}`` (the .npy paths), split with :func:`shlex.split`."""
    try:
        argv = shlex.split(template)
    except ValueError as err:
        raise UsageError(f"--estimator-cmd {template!r}: {err}") from None
    joined = " ".join(argv)
    if not argv or "{x}" not in joined or "{y}" not in joined:
        raise UsageError(f"--estimator-cmd {template!r}: give a command with {{x}} and {{y}}, the two .npy paths "
                         "it reads, e.g. \"python my_estimator.py {x} {y}\"")
    return Estimator("command", template, {}, argv)


def _run_command(argv: list[str], x: np.ndarray, y: np.ndarray, timeout: float | None) -> float:
    with tempfile.TemporaryDirectory(prefix="mmmic-suite-") as tmp:
        paths = {"{x}": str(Path(tmp) / "x.npy"), "{y}": str(Path(tmp) / "y.npy")}
        np.save(paths["{x}"], x)
        np.save(paths["{y}"], y)
        args = [_fill(a, paths) for a in argv]
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False,
                                  env=user_environment())
        except subprocess.TimeoutExpired:
            raise TaskTimeout(f"the command ran past {timeout:g} s") from None
        except OSError as err:
            raise EstimatorFailed(f"the command could not start: {err}") from None
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise EstimatorFailed(f"the command exited with {proc.returncode}" + (f": {tail}" if tail else ""))
    lines = [s for s in proc.stdout.strip().splitlines() if s.strip()]
    try:
        return _as_nats(float(lines[-1]), "the command")
    except (IndexError, ValueError):
        last = lines[-1] if lines else "(nothing)"
        raise EstimatorFailed(f"the command's last line is not a number: {last!r}") from None


def _fill(arg: str, paths: dict[str, str]) -> str:
    for key, value in paths.items():
        arg = arg.replace(key, value)
    return arg


def _as_nats(value, who: str) -> float:
    value = getattr(value, "nats", value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise EstimatorFailed(f"{who} returned {type(value).__name__}, not a number") from None
    if not math.isfinite(out):
        raise EstimatorFailed(f"{who} returned {out}")
    return out


def _alarm(timeout: float | None):
    """Raise :class:`TaskTimeout` in the block after ``timeout`` seconds (main thread, POSIX); else no limit."""
    return deadline(timeout, lambda: TaskTimeout(f"the estimator ran past {timeout:g} s"))
